//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use rill_common::TopicName;
use rill_store::{FlushConfig, IndexConfig, MessageToStore, Properties, StoreConfig};

/// A configuration with small files so that tests cross file boundaries.
pub fn small_config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_size = 64 * 1024;
    c.max_message_size = 16 * 1024;
    c.consume_queue_entries_per_file = 50;
    c.index = IndexConfig { slots: 101, max_entries: 200 };
    // Tests that simulate crashes decide themselves where the checkpoint is.
    c.checkpoint_interval_ms = 3_600_000;
    c.flush = FlushConfig::Async { interval_ms: 100 };
    c
}

/// A deterministic body for message `seq` of `writer`, of varying length.
pub fn body(tag: u64, writer: u64, seq: u64) -> Vec<u8> {
    let len = 64 + ((tag * 7919 + writer * 104_729 + seq * 131) % 3000) as usize;
    let seed = format!("{tag}/{writer}/{seq}:");
    seed.bytes().cycle().take(len).collect()
}

/// A message on `topic`/`queue` with a tag, a key and a unique id.
pub fn message(topic: &str, queue: u32, body: Vec<u8>, tag: &str, key: &str) -> MessageToStore {
    MessageToStore::new(TopicName::new(topic).unwrap(), queue, body)
        .with_properties(Properties::new().with("TAGS", tag).with("KEYS", key).with("UNIQ_KEY", format!("ID-{key}")))
}
