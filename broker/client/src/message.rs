//! Messages as users build and receive them.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use rill_proto::v2;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Destination topic.
    pub topic: String,
    /// Payload.
    pub body: Bytes,
    /// Tag (sub-type), used by consumers' filters.
    pub tag: Option<String>,
    /// Business keys, queryable on the broker.
    pub keys: Vec<String>,
    /// User properties.
    pub properties: HashMap<String, String>,
    /// Message group: messages of one group are delivered in order (FIFO topics).
    pub message_group: Option<String>,
    /// Deliver no earlier than this (ms since the epoch): a delay message.
    pub deliver_at_ms: Option<i64>,
}

/// RocketMQ's 18 delay levels (`1s 5s 10s 30s 1m 2m 3m … 10m 20m 30m 1h 2h`).
pub const DELAY_LEVELS: [Duration; 18] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(180),
    Duration::from_secs(240),
    Duration::from_secs(300),
    Duration::from_secs(360),
    Duration::from_secs(420),
    Duration::from_secs(480),
    Duration::from_secs(540),
    Duration::from_secs(600),
    Duration::from_secs(1200),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(7200),
];

/// The delay of RocketMQ delay level `level` (1–18).
pub fn delay_level(level: u8) -> Option<Duration> {
    DELAY_LEVELS.get(usize::from(level).checked_sub(1)?).copied()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Message {
    /// A message with a body and nothing else.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            body: body.into(),
            tag: None,
            keys: Vec::new(),
            properties: HashMap::new(),
            message_group: None,
            deliver_at_ms: None,
        }
    }

    /// Delivers the message `delay` from now (a delay message).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.deliver_at_ms = Some(now_ms().saturating_add(delay.as_millis() as i64));
        self
    }

    /// Delivers the message at `at_ms` (ms since the epoch; a timer message).
    pub fn with_delivery_time(mut self, at_ms: i64) -> Self {
        self.deliver_at_ms = Some(at_ms);
        self
    }

    /// Sets the tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Adds a business key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Adds a user property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Sets the message group.
    pub fn with_message_group(mut self, group: impl Into<String>) -> Self {
        self.message_group = Some(group.into());
        self
    }

    /// The wire form, with a fresh message id.
    pub(crate) fn to_wire(&self, config: &crate::ClientConfig, message_id: String) -> v2::Message {
        self.to_wire_as(config, message_id, false)
    }

    /// The wire form; `transactional` marks it a half message until committed.
    pub(crate) fn to_wire_as(
        &self,
        config: &crate::ClientConfig,
        message_id: String,
        transactional: bool,
    ) -> v2::Message {
        self.clone().into_wire_as(config, message_id, transactional)
    }

    /// The wire form, taking the message's fields instead of copying them.
    pub(crate) fn into_wire_as(
        self,
        config: &crate::ClientConfig,
        message_id: String,
        transactional: bool,
    ) -> v2::Message {
        let mut user_properties = self.properties;
        if config.trace {
            user_properties.insert("TRACE_ON".into(), "true".into());
        }
        let message_type = match (&self.message_group, self.deliver_at_ms) {
            _ if transactional => v2::MessageType::Transaction,
            (Some(_), _) => v2::MessageType::Fifo,
            (None, Some(_)) => v2::MessageType::Delay,
            (None, None) => v2::MessageType::Normal,
        };
        let now = now_ms();
        v2::Message {
            topic: Some(v2::Resource { resource_namespace: config.namespace.clone(), name: self.topic }),
            user_properties,
            system_properties: Some(v2::SystemProperties {
                tag: self.tag,
                keys: self.keys,
                message_id,
                body_encoding: v2::Encoding::Identity as i32,
                message_type: message_type as i32,
                born_timestamp: Some(rill_proto::time::timestamp_from_millis(now)),
                message_group: self.message_group,
                delivery_timestamp: self.deliver_at_ms.map(rill_proto::time::timestamp_from_millis),
                ..Default::default()
            }),
            body: self.body,
        }
    }
}

/// What the broker answered to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The message's id.
    pub message_id: String,
    /// Its offset in the queue it landed in.
    pub offset: i64,
    /// For a transactional message, what names its transaction.
    pub transaction_id: String,
    /// `host:port` of the broker that stored it.
    pub broker: String,
}

/// A message received by a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub body: Bytes,
    /// Tag.
    pub tag: Option<String>,
    /// Business keys.
    pub keys: Vec<String>,
    /// User properties.
    pub properties: HashMap<String, String>,
    /// Message id.
    pub message_id: String,
    /// Message group, if any.
    pub message_group: Option<String>,
    /// Queue it was stored in.
    pub queue_id: i32,
    /// Offset in that queue.
    pub queue_offset: i64,
    /// 1 on first delivery.
    pub delivery_attempt: i32,
    /// When the broker stored it (ms since the epoch).
    pub store_timestamp: i64,
    /// For a delay message, when it was due (ms since the epoch).
    pub delivery_timestamp: Option<i64>,
    /// Handle for ack and change-invisible-duration.
    pub receipt_handle: String,
    /// How long it stays invisible after receipt.
    pub invisible_duration: Option<Duration>,
    /// `host:port` of the broker that delivered it; acks and visibility
    /// changes go back there (receipt handles are the broker's own).
    pub broker: String,
}

impl ReceivedMessage {
    pub(crate) fn from_wire(m: v2::Message, broker: String) -> Self {
        let sys = m.system_properties.unwrap_or_default();
        Self {
            topic: m.topic.map(|t| t.name).unwrap_or_default(),
            body: m.body,
            tag: sys.tag,
            keys: sys.keys,
            properties: m.user_properties,
            message_id: sys.message_id,
            message_group: sys.message_group,
            queue_id: sys.queue_id,
            queue_offset: sys.queue_offset.unwrap_or(-1),
            delivery_attempt: sys.delivery_attempt.unwrap_or(1),
            store_timestamp: sys
                .store_timestamp
                .as_ref()
                .and_then(|t| rill_proto::time::timestamp_to_millis(t).ok())
                .unwrap_or(0),
            delivery_timestamp: sys
                .delivery_timestamp
                .as_ref()
                .and_then(|t| rill_proto::time::timestamp_to_millis(t).ok()),
            receipt_handle: sys.receipt_handle.unwrap_or_default(),
            invisible_duration: sys.invisible_duration.as_ref().and_then(|d| rill_proto::time::to_duration(d).ok()),
            broker,
        }
    }
}

/// A message id in the shape the official clients use: version `01`, then
/// upper-case hex of process, time and a counter.
pub(crate) fn new_message_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    message_id_of(pid, nanos as u64, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// `01`, then the process id, time and counter as upper-case hex, written
/// digit by digit: ids are made per message, and `format!` costs more than
/// the rest of packing a message.
fn message_id_of(pid: u32, nanos: u64, counter: u32) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut id = String::with_capacity(34);
    id.push_str("01");
    for (value, digits) in [(u64::from(pid), 8), (nanos, 16), (u64::from(counter), 8)] {
        for d in (0..digits).rev() {
            id.push(char::from(HEX[((value >> (4 * d)) & 0xF) as usize]));
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_have_the_official_clients_shape() {
        let id = message_id_of(0x1234, 0x0187_6543_2109_ABCD, 0xFFFF_FFFE);
        assert_eq!(id, format!("01{:08X}{:016X}{:08X}", 0x1234, 0x0187_6543_2109_ABCDu64, 0xFFFF_FFFEu32));
        assert_eq!(id.len(), 34);
        assert_ne!(new_message_id(), new_message_id());
    }
}
