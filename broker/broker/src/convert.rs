//! Wire messages ⇄ stored messages, with RocketMQ's validation rules.
//!
//! This module owns the mapping of `apache.rocketmq.v2.Message` fields onto
//! record properties (RocketMQ's property names where RocketMQ has one) and
//! back, and the checks a message must pass before it is stored. It does no
//! I/O and holds no state.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use md5::{Digest as _, Md5};
use rill_common::TopicName;
use rill_common::packed::PackError;
use rill_proto::v2;
use rill_store::record::keys;
use rill_store::{MessageToStore, Properties, StoredMessage};

use crate::park::props;

/// A request the broker refuses, with the protocol code and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Protocol status code.
    pub code: v2::Code,
    /// What was wrong, for a person.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code`.
    pub fn new(code: v2::Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// As a protocol status.
    pub fn status(&self) -> v2::Status {
        rill_proto::status::new(self.code, self.message.clone())
    }
}

/// Property holding the message group (RocketMQ's sharding key).
pub const MESSAGE_GROUP: &str = "__SHARDINGKEY";
/// Property recording a compressed body's encoding.
pub const BODY_ENCODING: &str = "__BODY_ENCODING";
/// Property holding a born host that is not an IP address.
pub const BORN_HOST: &str = "__BORN_HOST";
/// Longest message group, as RocketMQ allows.
pub const MAX_MESSAGE_GROUP_LEN: usize = 64;
/// Largest total size of user properties (RocketMQ's default, 16 KiB).
pub const MAX_PROPERTIES_SIZE: usize = 16 * 1024;
/// Largest encoded properties of a record, system ones included.
pub const MAX_ENCODED_PROPERTIES: usize = 32 * 1024;

/// Property names users may not set: the broker derives them.
const SYSTEM_KEYS: [&str; 13] = [
    crate::txn::TRAN_MSG,
    keys::TAGS,
    keys::KEYS,
    keys::UNIQ_KEY,
    MESSAGE_GROUP,
    BODY_ENCODING,
    BORN_HOST,
    props::REAL_TOPIC,
    props::REAL_QID,
    props::TIMER_DELIVER_MS,
    props::RETRY_TOPIC,
    props::DLQ_ORIGIN_TOPIC,
    props::DLQ_ORIGIN_MESSAGE_ID,
];

/// Limits that apply to incoming messages.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body in bytes.
    pub max_body_size: usize,
}

/// Checks a wire message and turns it into a message for `queue_id`.
pub fn to_store(
    msg: &v2::Message,
    topic: &TopicName,
    queue_id: u32,
    store_host: SocketAddr,
    limits: Limits,
) -> Result<MessageToStore, Rejection> {
    use v2::Code;
    if msg.body.is_empty() {
        return Err(Rejection::new(Code::MessageBodyEmpty, "message body is empty"));
    }
    if msg.body.len() > limits.max_body_size {
        return Err(Rejection::new(
            Code::MessageBodyTooLarge,
            format!("message body is {} bytes; the limit is {}", msg.body.len(), limits.max_body_size),
        ));
    }
    let none = v2::SystemProperties::default();
    let sys = msg.system_properties.as_ref().unwrap_or(&none);
    let mut props = Properties::new();
    if let Some(tag) = &sys.tag {
        check_tag(tag)?;
        props.insert(keys::TAGS, tag.clone());
    }
    if !sys.keys.is_empty() {
        check_keys(sys.keys.iter().map(String::as_str))?;
        props.insert(keys::KEYS, sys.keys.join(" "));
    }
    let id = if sys.message_id.is_empty() { fallback_message_id() } else { sys.message_id.clone() };
    props.insert(keys::UNIQ_KEY, id);
    if let Some(group) = &sys.message_group {
        if group.trim().is_empty() || group.len() > MAX_MESSAGE_GROUP_LEN {
            return Err(Rejection::new(
                Code::IllegalMessageGroup,
                format!("message group {group:?} must be non-blank and at most {MAX_MESSAGE_GROUP_LEN} bytes"),
            ));
        }
        props.insert(MESSAGE_GROUP, group.clone());
    }
    if sys.body_encoding == v2::Encoding::Gzip as i32 {
        props.insert(BODY_ENCODING, "GZIP");
    }
    let born_ip: Option<IpAddr> = sys.born_host.parse().ok();
    if born_ip.is_none() && !sys.born_host.is_empty() {
        props.insert(BORN_HOST, sys.born_host.clone());
    }
    if let Some(n) = msg.user_properties.get(keys::INNER_NUM) {
        check_packed(msg, sys, n)?;
        props.insert(keys::INNER_NUM, n.clone());
    }
    let mut user_size = 0usize;
    let mut user: Vec<_> = msg.user_properties.iter().filter(|(k, _)| *k != keys::INNER_NUM).collect();
    user.sort();
    for (k, v) in user {
        if k.is_empty()
            || SYSTEM_KEYS.contains(&k.as_str())
            || k.contains(['\u{1}', '\u{2}'])
            || v.contains(['\u{1}', '\u{2}'])
        {
            return Err(Rejection::new(
                Code::IllegalMessagePropertyKey,
                format!("property {k:?} is reserved or contains a separator character"),
            ));
        }
        user_size += k.len() + v.len();
        props.insert(k.clone(), v.clone());
    }
    if user_size > MAX_PROPERTIES_SIZE {
        return Err(Rejection::new(
            Code::MessagePropertiesTooLarge,
            format!("user properties take {user_size} bytes; the limit is {MAX_PROPERTIES_SIZE}"),
        ));
    }
    // Keys, tag, id and group count against the record's property space too.
    let total: usize = props.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if total > MAX_ENCODED_PROPERTIES {
        return Err(Rejection::new(
            Code::MessagePropertiesTooLarge,
            format!("tag, keys, id and properties take {total} bytes; the limit is {MAX_ENCODED_PROPERTIES}"),
        ));
    }
    let mut out = MessageToStore::new(topic.clone(), queue_id, msg.body.clone());
    out.properties = props;
    out.born_timestamp =
        sys.born_timestamp.as_ref().and_then(|t| rill_proto::time::timestamp_to_millis(t).ok()).unwrap_or(0);
    out.born_host = SocketAddr::new(born_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
    out.store_host = store_host;
    Ok(out)
}

fn check_tag(tag: &str) -> Result<(), Rejection> {
    if tag.trim().is_empty() || tag.contains('|') {
        return Err(Rejection::new(
            v2::Code::IllegalMessageTag,
            format!("tag {tag:?} must be non-blank and may not contain '|'"),
        ));
    }
    Ok(())
}

fn check_keys<'a>(mut keys: impl Iterator<Item = &'a str>) -> Result<(), Rejection> {
    match keys.find(|k| k.trim().is_empty() || k.contains(char::is_whitespace)) {
        Some(bad) => Err(Rejection::new(
            v2::Code::IllegalMessageKey,
            format!("key {bad:?} must be non-blank and may not contain white space"),
        )),
        None => Ok(()),
    }
}

/// Checks a packed batch (a body of `n` messages, see
/// [`rill_common::packed`]): the carrier holds nothing of a message's own
/// (tag, keys, properties), is neither delayed nor transactional nor
/// compressed, and each packed message passes the checks a message sent
/// alone passes.
fn check_packed(msg: &v2::Message, sys: &v2::SystemProperties, n: &str) -> Result<(), Rejection> {
    use v2::Code;
    let bad = |message: String| Rejection::new(Code::BadRequest, message);
    let n: u32 = n.parse().map_err(|_| bad(PackError::NotACount { value: n.to_owned() }.to_string()))?;
    if n == 0 || n > rill_common::packed::MAX_ENTRIES {
        return Err(bad(PackError::Count { announced: n, found: 0 }.to_string()));
    }
    if sys.tag.is_some() || !sys.keys.is_empty() || msg.user_properties.len() > 1 {
        return Err(bad("a packed batch carries tags, keys and properties on its messages, not on itself".into()));
    }
    let plain = [v2::MessageType::Normal as i32, v2::MessageType::Fifo as i32, v2::MessageType::Unspecified as i32];
    if sys.delivery_timestamp.is_some() || !plain.contains(&sys.message_type) {
        return Err(bad("a packed batch holds normal or FIFO messages only (not delayed or transactional)".into()));
    }
    if sys.body_encoding == v2::Encoding::Gzip as i32 {
        return Err(bad("a packed batch's body is not compressed".into()));
    }
    let mut found = 0u32;
    for (i, entry) in rill_common::packed::entries(&msg.body).enumerate() {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        found += 1;
        let at = |r: Rejection| Rejection::new(r.code, format!("packed message {i}: {}", r.message));
        if entry.body.is_empty() {
            return Err(at(Rejection::new(Code::MessageBodyEmpty, "message body is empty")));
        }
        let mut user_size = 0;
        for (k, v) in entry.pairs() {
            match k {
                keys::TAGS => check_tag(v).map_err(at)?,
                keys::KEYS => check_keys(v.split(keys::KEY_SEPARATOR)).map_err(at)?,
                keys::UNIQ_KEY if !v.is_empty() => {}
                _ if k.is_empty() || k == keys::INNER_NUM || SYSTEM_KEYS.contains(&k) => {
                    return Err(at(Rejection::new(
                        Code::IllegalMessagePropertyKey,
                        format!("property {k:?} is reserved or empty"),
                    )));
                }
                _ => user_size += k.len() + v.len(),
            }
        }
        if user_size > MAX_PROPERTIES_SIZE {
            return Err(at(Rejection::new(
                Code::MessagePropertiesTooLarge,
                format!("user properties take {user_size} bytes; the limit is {MAX_PROPERTIES_SIZE}"),
            )));
        }
    }
    if found != n {
        return Err(bad(PackError::Count { announced: n, found }.to_string()));
    }
    Ok(())
}

/// A message id for clients that send none: time and a counter, upper-case hex.
fn fallback_message_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("01{now:024X}{:08X}", NEXT.fetch_add(1, Ordering::Relaxed) as u32)
}

/// What the broker adds to a message it delivers.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Receipt handle for ack / change-invisible-duration (pop delivery).
    pub receipt_handle: Option<String>,
    /// How long the message stays invisible.
    pub invisible_duration: Option<std::time::Duration>,
    /// 1 for the first delivery.
    pub delivery_attempt: i32,
}

/// Turns a stored message into the wire form a consumer receives.
pub fn from_store(m: &StoredMessage, namespace: &str, delivery: Delivery) -> v2::Message {
    let p = &m.properties;
    let mut user = std::collections::HashMap::new();
    for (k, v) in p.iter() {
        if !SYSTEM_KEYS.contains(&k) {
            user.insert(k.to_owned(), v.to_owned());
        }
    }
    let group = p.get(MESSAGE_GROUP).map(str::to_owned);
    let gzip = p.get(BODY_ENCODING) == Some("GZIP");
    let born_host = p.get(BORN_HOST).map_or_else(|| m.born_host.ip().to_string(), str::to_owned);
    let delivery_ms: Option<i64> = p.get(props::TIMER_DELIVER_MS).and_then(|v| v.parse().ok());
    let message_type = match (&group, delivery_ms) {
        _ if p.get(crate::txn::TRAN_MSG).is_some() => v2::MessageType::Transaction,
        (Some(_), _) => v2::MessageType::Fifo,
        (None, Some(_)) => v2::MessageType::Delay,
        (None, None) => v2::MessageType::Normal,
    };
    let sys = v2::SystemProperties {
        tag: p.tag().map(str::to_owned),
        keys: p.keys().map(str::to_owned).collect(),
        message_id: p.unique_id().unwrap_or_default().to_owned(),
        body_digest: Some(v2::Digest { r#type: v2::DigestType::Md5 as i32, checksum: md5_upper_hex(&m.body) }),
        body_encoding: if gzip { v2::Encoding::Gzip } else { v2::Encoding::Identity } as i32,
        message_type: message_type as i32,
        born_timestamp: Some(rill_proto::time::timestamp_from_millis(m.born_timestamp)),
        born_host,
        store_timestamp: Some(rill_proto::time::timestamp_from_millis(m.store_timestamp)),
        store_host: m.store_host.to_string(),
        delivery_timestamp: delivery_ms.map(rill_proto::time::timestamp_from_millis),
        receipt_handle: delivery.receipt_handle,
        queue_id: m.queue_id as i32,
        queue_offset: Some(m.queue_offset as i64),
        invisible_duration: delivery.invisible_duration.map(rill_proto::time::from_duration),
        delivery_attempt: Some(delivery.delivery_attempt.max(1)),
        message_group: group,
        ..Default::default()
    };
    v2::Message {
        topic: Some(v2::Resource { resource_namespace: namespace.to_owned(), name: m.topic.to_string() }),
        user_properties: user,
        system_properties: Some(sys),
        body: m.body.clone(),
    }
}

/// MD5 of `body` as upper-case hex, the digest the official clients check.
pub fn md5_upper_hex(body: &[u8]) -> String {
    use std::fmt::Write;
    Md5::digest(body).iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(tag: Option<&str>, keys: &[&str], body: &[u8]) -> v2::Message {
        v2::Message {
            topic: Some(v2::Resource { resource_namespace: String::new(), name: "orders".into() }),
            user_properties: [("region".to_owned(), "eu".to_owned())].into_iter().collect(),
            system_properties: Some(v2::SystemProperties {
                tag: tag.map(str::to_owned),
                keys: keys.iter().map(|k| (*k).to_owned()).collect(),
                message_id: "01ABC".into(),
                born_host: "10.0.0.7".into(),
                ..Default::default()
            }),
            body: bytes::Bytes::copy_from_slice(body),
        }
    }

    const LIMITS: Limits = Limits { max_body_size: 16 };

    #[test]
    fn a_message_survives_the_trip_through_the_store_format() {
        let topic = TopicName::new("orders").unwrap();
        let host: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let m = to_store(&wire(Some("TagA"), &["k1", "k2"], b"hello"), &topic, 3, host, LIMITS).unwrap();
        assert_eq!(m.properties.tag(), Some("TagA"));
        assert_eq!(m.properties.get("KEYS"), Some("k1 k2"));
        assert_eq!(m.properties.unique_id(), Some("01ABC"));
        assert_eq!(m.born_host.ip().to_string(), "10.0.0.7");
        let stored = StoredMessage {
            topic: topic.clone(),
            queue_id: 3,
            flags: 0,
            queue_offset: 9,
            physical_offset: 100,
            record_size: 1,
            born_timestamp: m.born_timestamp,
            born_host: m.born_host,
            store_timestamp: 1_700_000_000_000,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body_crc: 0,
            properties: m.properties.clone(),
            body: m.body.clone(),
        };
        let back = from_store(&stored, "", Delivery { receipt_handle: Some("h".into()), ..Default::default() });
        let sys = back.system_properties.unwrap();
        assert_eq!(sys.tag.as_deref(), Some("TagA"));
        assert_eq!(sys.keys, vec!["k1", "k2"]);
        assert_eq!(sys.message_id, "01ABC");
        assert_eq!(sys.queue_offset, Some(9));
        assert_eq!(sys.receipt_handle.as_deref(), Some("h"));
        // MD5("hello"), upper-case hex.
        assert_eq!(sys.body_digest.unwrap().checksum, "5D41402ABC4B2A76B9719D911017C592");
        assert_eq!(back.user_properties.get("region").map(String::as_str), Some("eu"));
        assert!(!back.user_properties.contains_key("TAGS"));
        assert_eq!(&back.body[..], b"hello");
    }

    #[test]
    fn bad_messages_are_rejected_with_the_protocol_code() {
        let topic = TopicName::new("orders").unwrap();
        let host: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let code = |m: v2::Message| to_store(&m, &topic, 0, host, LIMITS).unwrap_err().code;
        assert_eq!(code(wire(None, &[], b"")), v2::Code::MessageBodyEmpty);
        assert_eq!(code(wire(None, &[], &[0; 17])), v2::Code::MessageBodyTooLarge);
        assert_eq!(code(wire(Some("a|b"), &[], b"x")), v2::Code::IllegalMessageTag);
        assert_eq!(code(wire(Some(" "), &[], b"x")), v2::Code::IllegalMessageTag);
        assert_eq!(code(wire(None, &["a b"], b"x")), v2::Code::IllegalMessageKey);
        let mut reserved = wire(None, &[], b"x");
        reserved.user_properties.insert("TAGS".into(), "sneaky".into());
        assert_eq!(code(reserved), v2::Code::IllegalMessagePropertyKey);
        let mut group = wire(None, &[], b"x");
        group.system_properties.as_mut().unwrap().message_group = Some("g".repeat(65));
        assert_eq!(code(group), v2::Code::IllegalMessageGroup);
        let many_keys: Vec<String> = (0..4000).map(|i| format!("key-{i:08}")).collect();
        let refs: Vec<&str> = many_keys.iter().map(String::as_str).collect();
        assert_eq!(code(wire(None, &refs, b"x")), v2::Code::MessagePropertiesTooLarge);
    }
}
