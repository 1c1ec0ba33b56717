//! Packing: the messages of one request put into the body of one message
//! (layout in `rill_common::packed`), for a broker that stores packed
//! batches and hands consumers the messages one by one. Messages go packed
//! from either form: as users build them ([`Message`], for prepared
//! batches) or as they travel (`v2::Message`, for coalesced single sends).
//!
//! It owns deciding whether messages can go packed and building the packed
//! message; when to pack (the broker's say, the settings) is the producer's.

use std::collections::HashMap;

use rill_common::packed::{INNER_NUM, Packer};
use rill_proto::v2;

use crate::message::{Message, new_message_id, now_ms};

/// Most body bytes packed into one message.
const MAX_PACKED_BYTES: usize = 1 << 20;

/// Property names a packed message sets itself.
const PACKED_OWN: [&str; 4] = ["TAGS", "KEYS", "UNIQ_KEY", INNER_NUM];

/// What packing needs of a message, in either form.
pub(crate) trait Packable {
    /// Its topic.
    fn topic(&self) -> &str;
    /// Its body.
    fn body(&self) -> &[u8];
    /// Its tag.
    fn tag(&self) -> Option<&str>;
    /// Its business keys.
    fn keys(&self) -> &[String];
    /// Its message group.
    fn group(&self) -> Option<&str>;
    /// Whether it may not go in a packed batch as it is (delayed,
    /// transactional, compressed).
    fn special(&self) -> bool;
    /// Its user properties.
    fn properties(&self) -> &HashMap<String, String>;
    /// The id it already has (a wire message's), if any.
    fn id(&self) -> Option<&str>;
}

impl Packable for Message {
    fn topic(&self) -> &str {
        &self.topic
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
    fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    fn keys(&self) -> &[String] {
        &self.keys
    }
    fn group(&self) -> Option<&str> {
        self.message_group.as_deref()
    }
    fn special(&self) -> bool {
        self.deliver_at_ms.is_some()
    }
    fn properties(&self) -> &HashMap<String, String> {
        &self.properties
    }
    fn id(&self) -> Option<&str> {
        None
    }
}

impl Packable for v2::Message {
    fn topic(&self) -> &str {
        self.topic.as_ref().map_or("", |t| t.name.as_str())
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
    fn tag(&self) -> Option<&str> {
        self.system_properties.as_ref().and_then(|s| s.tag.as_deref())
    }
    fn keys(&self) -> &[String] {
        self.system_properties.as_ref().map_or(&[], |s| s.keys.as_slice())
    }
    fn group(&self) -> Option<&str> {
        self.system_properties.as_ref().and_then(|s| s.message_group.as_deref())
    }
    fn special(&self) -> bool {
        let plain = [v2::MessageType::Normal as i32, v2::MessageType::Fifo as i32];
        self.system_properties.as_ref().is_none_or(|s| {
            !plain.contains(&s.message_type)
                || s.delivery_timestamp.is_some()
                || s.body_encoding != v2::Encoding::Identity as i32
        })
    }
    fn properties(&self) -> &HashMap<String, String> {
        &self.user_properties
    }
    fn id(&self) -> Option<&str> {
        self.system_properties.as_ref().map(|s| s.message_id.as_str()).filter(|id| !id.is_empty())
    }
}

/// `messages` (one topic) packed into one wire message, with each one's
/// message id (the one it has, or a new one). `None` when they cannot go
/// as one: fewer than two, delayed or transactional ones, several message
/// groups, too many bytes, or a message the broker would refuse on its own
/// (which then gets its own answer, unpacked).
pub(crate) fn pack<P: Packable>(messages: &[P], config: &crate::ClientConfig) -> Option<(v2::Message, Vec<String>)> {
    let first = messages.first().filter(|_| messages.len() >= 2)?;
    let bodies: usize = messages.iter().map(|m| m.body().len()).sum();
    if bodies > MAX_PACKED_BYTES {
        return None;
    }
    // Room for the bodies and typical properties; it grows if need be.
    let mut packer = Packer::with_capacity(bodies + messages.len() * 160);
    let mut ids = Vec::with_capacity(messages.len());
    let mut keys = String::new();
    for m in messages {
        let refused = m.special()
            || m.group() != first.group()
            || m.topic() != first.topic()
            || m.body().is_empty()
            || m.tag().is_some_and(|t| t.trim().is_empty() || t.contains('|'))
            || m.keys().iter().any(|k| k.trim().is_empty() || k.contains(char::is_whitespace));
        if refused || packer.bytes() > MAX_PACKED_BYTES {
            return None;
        }
        let id = m.id().map_or_else(new_message_id, str::to_owned);
        keys.clear();
        for (i, k) in m.keys().iter().enumerate() {
            if i > 0 {
                keys.push(' ');
            }
            keys.push_str(k);
        }
        let own = [("TAGS", m.tag()), ("KEYS", (!keys.is_empty()).then_some(keys.as_str())), ("UNIQ_KEY", Some(&id))];
        // A user property of a name the packing sets itself: the batch goes unpacked.
        let mut clash = false;
        let user = m.properties().iter().map(|(k, v)| {
            clash |= PACKED_OWN.contains(&k.as_str());
            (k.as_str(), v.as_str())
        });
        packer.push(0, m.body(), own.into_iter().filter_map(|(k, v)| Some((k, v?))).chain(user)).ok()?;
        if clash {
            return None;
        }
        ids.push(id);
    }
    let (body, n) = packer.finish();
    let message_type = if first.group().is_some() { v2::MessageType::Fifo } else { v2::MessageType::Normal };
    let wire = v2::Message {
        topic: Some(v2::Resource { resource_namespace: config.namespace.clone(), name: first.topic().to_owned() }),
        user_properties: HashMap::from([(INNER_NUM.to_owned(), n.to_string())]),
        system_properties: Some(v2::SystemProperties {
            message_id: new_message_id(),
            body_encoding: v2::Encoding::Identity as i32,
            message_type: message_type as i32,
            born_timestamp: Some(rill_proto::time::timestamp_from_millis(now_ms())),
            message_group: first.group().map(str::to_owned),
            ..Default::default()
        }),
        body: body.into(),
    };
    Some((wire, ids))
}
