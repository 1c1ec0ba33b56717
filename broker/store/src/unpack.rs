//! Packed records read as the messages they hold: a record whose property
//! `INNER_NUM` says it packs n messages (layout in [`rill_common::packed`])
//! takes n queue offsets, and a read at one of them yields that message
//! alone, as if it had been stored by itself.
//!
//! It owns that expansion and nothing else: how records are found (queues,
//! index) is the store's, the byte layout is `rill-common`'s.

use rill_common::packed::{self, PackError};

use crate::record::{Properties, StoredMessage, keys};

/// Properties each packed message has of its own; the others it takes
/// from the record that carries it (message group, born host, …).
const OWN: [&str; 4] = [keys::INNER_NUM, keys::UNIQ_KEY, keys::TAGS, keys::KEYS];

/// Whether `m` is a packed record.
pub(crate) fn is_packed(m: &StoredMessage) -> bool {
    m.properties.get(keys::INNER_NUM).is_some()
}

/// The message at `queue_offset` of packed record `m`.
pub(crate) fn packed_at(m: &StoredMessage, queue_offset: u64) -> Result<StoredMessage, PackError> {
    let i = queue_offset.checked_sub(m.queue_offset).ok_or(PackError::Count { announced: 0, found: 0 })?;
    let entry = packed::nth(&m.body, i as usize)?;
    Ok(unpacked(m, queue_offset, &entry))
}

/// The messages of packed record `m` that `keep` accepts (only those are
/// taken apart: a key or id lookup wants one of a thousand).
pub(crate) fn messages_where(
    m: &StoredMessage,
    keep: impl Fn(&packed::Entry<'_>) -> bool,
) -> Result<Vec<StoredMessage>, PackError> {
    let mut out = Vec::new();
    for (i, e) in packed::entries(&m.body).enumerate() {
        let e = e?;
        if keep(&e) {
            out.push(unpacked(m, m.queue_offset + i as u64, &e));
        }
    }
    Ok(out)
}

fn unpacked(outer: &StoredMessage, queue_offset: u64, entry: &packed::Entry<'_>) -> StoredMessage {
    let mut properties = Properties::new();
    for (k, v) in entry.pairs() {
        properties.insert(k, v);
    }
    for (k, v) in outer.properties.iter().filter(|(k, _)| !OWN.contains(k)) {
        if properties.get(k).is_none() {
            properties.insert(k, v);
        }
    }
    let body = outer.body.slice(entry.body.clone());
    StoredMessage {
        topic: outer.topic.clone(),
        queue_id: outer.queue_id,
        flags: entry.flags,
        queue_offset,
        physical_offset: outer.physical_offset,
        record_size: outer.record_size,
        born_timestamp: outer.born_timestamp,
        born_host: outer.born_host,
        store_timestamp: outer.store_timestamp,
        store_host: outer.store_host,
        reconsume_times: outer.reconsume_times,
        prepared_transaction_offset: outer.prepared_transaction_offset,
        body_crc: crc32fast::hash(&body),
        properties,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MessageToStore;
    use rill_common::TopicName;

    fn stored(body: Vec<u8>, properties: Properties, queue_offset: u64) -> StoredMessage {
        let m = MessageToStore::new(TopicName::new("logs").unwrap(), 2, body).with_properties(properties);
        StoredMessage {
            topic: m.topic,
            queue_id: 2,
            flags: 0,
            queue_offset,
            physical_offset: 4096,
            record_size: 500,
            born_timestamp: 7,
            born_host: m.born_host,
            store_timestamp: 9,
            store_host: m.store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body_crc: 0,
            properties: m.properties,
            body: m.body,
        }
    }

    #[test]
    fn each_packed_message_reads_as_its_own_with_the_carriers_shared_properties() {
        let mut p = packed::Packer::default();
        p.push(1, b"first", [("TAGS", "a"), ("UNIQ_KEY", "id-1"), ("file", "app.log")]).unwrap();
        p.push(2, b"second", [("TAGS", "b"), ("KEYS", "k1 k2"), ("UNIQ_KEY", "id-2")]).unwrap();
        let (body, n) = p.finish();
        let carrier = Properties::new()
            .with(keys::INNER_NUM, n.to_string())
            .with(keys::UNIQ_KEY, "outer")
            .with("__SHARDINGKEY", "device-7");
        let m = stored(body, carrier, 10);
        let second = packed_at(&m, 11).unwrap();
        assert_eq!((second.queue_offset, second.flags, &second.body[..]), (11, 2, &b"second"[..]));
        assert_eq!(second.properties.tag(), Some("b"));
        assert_eq!(second.properties.unique_id(), Some("id-2"));
        assert_eq!(second.properties.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(second.properties.get("__SHARDINGKEY"), Some("device-7"), "shared from the carrier");
        assert_eq!(second.properties.get(keys::INNER_NUM), None);
        assert_eq!((second.physical_offset, second.store_timestamp, second.born_timestamp), (4096, 9, 7));
        assert_eq!(second.body_crc, crc32fast::hash(b"second"));
        let all = messages_where(&m, |_| true).unwrap();
        assert_eq!(all.iter().map(|m| m.queue_offset).collect::<Vec<_>>(), [10, 11]);
        assert_eq!(all[0].properties.get("file"), Some("app.log"));
        assert_eq!(all[1], second);
        let tagged_b = messages_where(&m, |e| e.property("TAGS") == Some("b")).unwrap();
        assert_eq!(tagged_b, std::slice::from_ref(&second));
        assert!(packed_at(&m, 12).is_err(), "past the last packed message");
        assert!(packed_at(&m, 9).is_err(), "before the first");
        let plain = stored(b"plain".to_vec(), Properties::new(), 3);
        assert!(!is_packed(&plain));
    }
}
