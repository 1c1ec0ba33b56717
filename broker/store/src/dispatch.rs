//! What the dispatcher does with one record: its ConsumeQueue entries (one
//! per message; a packed record holds many) and its key index entries.
//!
//! It owns turning a record into queue and index entries; following the
//! log (which records, when) is the dispatcher thread's, in `services`.

use std::sync::Arc;

use rill_common::{TopicName, packed};

use crate::consume_queue::ConsumeQueue;
use crate::error::Result;
use crate::index;
use crate::record::{self, RecordView};
use crate::store::Inner;

impl Inner {
    /// Writes one record's entries into its queue and the index.
    ///
    /// `last` remembers the previous record's queue: consecutive records of
    /// one queue (the common case under load) skip the name check and the
    /// map lookup.
    pub(crate) fn dispatch_record(&self, v: &RecordView<'_>, last: &mut Option<LastQueue>) -> Result<()> {
        let queue = match last {
            Some(l) if l.queue_id == v.queue_id() && l.topic.as_str() == v.topic => Arc::clone(&l.queue),
            _ => {
                let topic = TopicName::new(v.topic)?;
                let queue = self.queues.get_or_create(&topic, v.queue_id())?;
                *last = Some(LastQueue { topic, queue_id: v.queue_id(), queue: Arc::clone(&queue) });
                queue
            }
        };
        if packed::property(v.properties, record::keys::INNER_NUM).is_none() {
            let tag = packed::property(v.properties, record::keys::TAGS);
            queue.put(v.queue_offset(), v.physical_offset(), v.size() as u32, record::tag_hash(tag))?;
            let keys = packed::property(v.properties, record::keys::KEYS);
            return self.index_keys(v, std::iter::once((keys, packed::property(v.properties, record::keys::UNIQ_KEY))));
        }
        // A packed record: a queue entry per message, each with its own
        // tag, all pointing at the record; so do their keys and ids.
        let mut own = Vec::new();
        for (i, entry) in packed::entries(v.body()).enumerate() {
            let entry = entry?;
            let (mut tag, mut keys, mut id) = (None, None, None);
            for (k, value) in entry.pairs() {
                match k {
                    record::keys::TAGS => tag = Some(value),
                    record::keys::KEYS => keys = Some(value),
                    record::keys::UNIQ_KEY => id = Some(value),
                    _ => {}
                }
            }
            queue.put(v.queue_offset() + i as u64, v.physical_offset(), v.size() as u32, record::tag_hash(tag))?;
            own.push((keys, id));
        }
        self.index_keys(v, own.into_iter())
    }

    /// Indexes business keys and unique ids (`(KEYS, UNIQ_KEY)` of each
    /// message) as pointing at record `v`, in one index entry group (the
    /// index skips a record it has seen).
    fn index_keys<'a>(
        &self,
        v: &RecordView<'_>,
        messages: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
    ) -> Result<()> {
        // The dispatcher is one thread: its key strings are reused from
        // record to record instead of allocated for each.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut used = 0;
            let mut next = |scratch: &mut Vec<String>| {
                if scratch.len() == used {
                    scratch.push(String::new());
                }
                used += 1;
                let s = &mut scratch[used - 1];
                s.clear();
                used - 1
            };
            for (keys, id) in messages {
                for k in keys.into_iter().flat_map(|k| k.split(record::keys::KEY_SEPARATOR)).filter(|k| !k.is_empty()) {
                    let i = next(scratch);
                    index::write_topic_key(&mut scratch[i], v.topic, k);
                }
                if let Some(id) = id {
                    let i = next(scratch);
                    index::write_id_key(&mut scratch[i], id);
                }
            }
            let n = used;
            self.index.add_message(v.physical_offset(), v.store_timestamp(), scratch[..n].iter().map(String::as_str))
        })
    }
}

/// The queue the dispatcher wrote to last.
#[derive(Debug)]
pub(crate) struct LastQueue {
    topic: TopicName,
    queue_id: u32,
    queue: Arc<ConsumeQueue>,
}
