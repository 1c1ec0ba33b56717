//! Copies of stored messages that move between topics: parking a delayed
//! message on the timer topic, putting it on its real topic when due,
//! retry copies for a consumer group and dead letters.
//!
//! This module owns the system topic names and the properties that record
//! where a copy came from (RocketMQ's names where RocketMQ has them). It
//! does no I/O.

use rill_common::{TopicName, java_string_hash};
use rill_store::{MessageToStore, StoredMessage};

/// Where delayed and timer messages wait (one queue).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Prefix of a group's retry topics.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Longest topic name the store accepts.
const MAX_TOPIC_LEN: usize = 127;

/// Property names of copies.
pub mod props {
    /// Topic a parked message is delivered to when due.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Queue a parked message is delivered to when due.
    pub const REAL_QID: &str = "REAL_QID";
    /// When a delayed message is due (ms since the epoch).
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// The topic a retry copy was consumed from.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// The topic a dead letter was consumed from.
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    /// The message id a dead letter had.
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";

    /// All of them (users may not set these).
    pub const ALL: [&str; 6] =
        [REAL_TOPIC, REAL_QID, TIMER_DELIVER_MS, RETRY_TOPIC, DLQ_ORIGIN_TOPIC, DLQ_ORIGIN_MESSAGE_ID];
}

/// The retry topic of `group` for messages of `topic` (one per pair, so a
/// receive for one topic never scans another topic's retries).
pub fn retry_topic(group: &str, topic: &str) -> String {
    let name = format!("{RETRY_PREFIX}{group}_{topic}");
    if name.len() <= MAX_TOPIC_LEN {
        return name;
    }
    format!("{RETRY_PREFIX}{group}_{:08x}", java_string_hash(topic) as u32).chars().take(MAX_TOPIC_LEN).collect()
}

/// The dead-letter topic of `group`.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// A copy of `m` for `topic`/`queue`, keeping body, properties, born and
/// store hosts, flags and the redelivery count.
pub fn copy(m: &StoredMessage, topic: TopicName, queue: u32) -> MessageToStore {
    let mut out = MessageToStore::new(topic, queue, m.body.clone());
    out.properties = m.properties.clone();
    out.flags = m.flags;
    out.born_timestamp = m.born_timestamp;
    out.born_host = m.born_host;
    out.store_host = m.store_host;
    out.reconsume_times = m.reconsume_times;
    out
}

/// The topic a copy was originally sent to: its retry or DLQ origin, else
/// its own topic.
pub fn origin_topic(m: &StoredMessage) -> &str {
    m.properties
        .get(props::DLQ_ORIGIN_TOPIC)
        .or_else(|| m.properties.get(props::RETRY_TOPIC))
        .unwrap_or_else(|| m.topic.as_str())
}

/// When a parked message is due, if it is one.
pub fn due_ms(m: &StoredMessage) -> Option<i64> {
    m.properties.get(props::TIMER_DELIVER_MS).and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_topic_names_stay_valid() {
        assert_eq!(retry_topic("g", "orders"), "%RETRY%g_orders");
        let long = retry_topic(&"g".repeat(60), &"t".repeat(100));
        assert!(long.len() <= MAX_TOPIC_LEN);
        assert!(TopicName::new(&long).is_ok());
        assert_ne!(long, retry_topic(&"g".repeat(60), &"u".repeat(100)));
        assert_eq!(dlq_topic("sms"), "%DLQ%sms");
    }
}
