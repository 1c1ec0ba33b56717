//! Broker metadata: topics, subscription groups and consumer offsets.
//!
//! Three small JSON files below `meta/`, each replaced atomically (temp file,
//! fsync, rename, fsync directory), so a crash at any moment leaves either
//! the previous or the new version, never a torn file. Topic and group
//! changes are written at once; consumer offsets change constantly and are
//! written by [`MetaStore::flush_offsets`], which the broker calls
//! periodically and on shutdown (at-least-once: after a crash a consumer
//! may see the messages since the last flush again).
//!
//! This module knows nothing about the CommitLog or queues.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;
use crate::error::{Error, Result};
use crate::mapped;

/// Read/write permission bits of a topic (RocketMQ's values).
pub mod perm {
    /// Consumers may read.
    pub const READ: u32 = 1 << 2;
    /// Producers may write.
    pub const WRITE: u32 = 1 << 1;
    /// Both.
    pub const READ_WRITE: u32 = READ | WRITE;
}

/// A topic's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic name.
    pub name: String,
    /// Queues consumers read.
    pub read_queues: u32,
    /// Queues producers write.
    pub write_queues: u32,
    /// Permission bits, see [`perm`].
    pub perm: u32,
    /// Message type the topic accepts ("NORMAL", "FIFO", "DELAY", "TRANSACTION").
    #[serde(default = "default_message_type")]
    pub message_type: String,
}

fn default_message_type() -> String {
    "NORMAL".into()
}

impl TopicConfig {
    /// A read-write topic with `queues` queues accepting normal messages.
    pub fn new(name: impl Into<String>, queues: u32) -> Self {
        Self {
            name: name.into(),
            read_queues: queues,
            write_queues: queues,
            perm: perm::READ_WRITE,
            message_type: default_message_type(),
        }
    }
}

/// A subscription (consumer) group's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Group name.
    pub name: String,
    /// Every member receives every message (instead of sharing them).
    #[serde(default)]
    pub broadcast: bool,
    /// Redeliveries before a message goes to the dead-letter queue.
    #[serde(default = "default_retry")]
    pub max_retries: u32,
    /// Messages are delivered in order per message group.
    #[serde(default)]
    pub fifo: bool,
}

fn default_retry() -> u32 {
    16
}

impl GroupConfig {
    /// A clustering group with RocketMQ's defaults.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), broadcast: false, max_retries: default_retry(), fifo: false }
    }
}

type OffsetTable = BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>;

/// Topics, groups and consumer offsets, persisted below `meta/`.
#[derive(Debug)]
pub struct MetaStore {
    dir: PathBuf,
    topics: RwLock<BTreeMap<String, TopicConfig>>,
    groups: RwLock<BTreeMap<String, GroupConfig>>,
    /// group → topic → queue → next offset to consume.
    offsets: RwLock<OffsetTable>,
    offsets_dirty: AtomicBool,
}

fn load<T: DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| Error::Metadata { path: path.to_path_buf(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(Error::Io { op: "read", path: path.to_path_buf(), source: e }),
    }
}

fn save<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|source| Error::Metadata { path: path.to_path_buf(), source })?;
    write_atomically(path, &bytes)
}

impl MetaStore {
    /// Opens (or creates) the metadata in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        mapped::ensure_dir(&dir)?;
        let topics: Vec<TopicConfig> = load(&dir.join("topics.json"))?;
        let groups: Vec<GroupConfig> = load(&dir.join("groups.json"))?;
        let offsets: OffsetTable = load(&dir.join("offsets.json"))?;
        Ok(Self {
            topics: RwLock::new(topics.into_iter().map(|t| (t.name.clone(), t)).collect()),
            groups: RwLock::new(groups.into_iter().map(|g| (g.name.clone(), g)).collect()),
            offsets: RwLock::new(offsets),
            offsets_dirty: AtomicBool::new(false),
            dir,
        })
    }

    /// Creates or replaces a topic and persists the change.
    pub fn put_topic(&self, topic: TopicConfig) -> Result<()> {
        rill_common::TopicName::new(&topic.name)?;
        let mut t = self.topics.write();
        t.insert(topic.name.clone(), topic);
        save(&self.dir.join("topics.json"), &t.values().collect::<Vec<_>>())
    }

    /// Deletes a topic; returns whether it existed.
    pub fn delete_topic(&self, name: &str) -> Result<bool> {
        let mut t = self.topics.write();
        let existed = t.remove(name).is_some();
        if existed {
            save(&self.dir.join("topics.json"), &t.values().collect::<Vec<_>>())?;
        }
        Ok(existed)
    }

    /// A topic's configuration.
    pub fn topic(&self, name: &str) -> Option<TopicConfig> {
        self.topics.read().get(name).cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<TopicConfig> {
        self.topics.read().values().cloned().collect()
    }

    /// Creates or replaces a group and persists the change.
    pub fn put_group(&self, group: GroupConfig) -> Result<()> {
        rill_common::GroupName::new(&group.name)?;
        let mut g = self.groups.write();
        g.insert(group.name.clone(), group);
        save(&self.dir.join("groups.json"), &g.values().collect::<Vec<_>>())
    }

    /// Deletes a group and its offsets; returns whether it existed.
    pub fn delete_group(&self, name: &str) -> Result<bool> {
        let mut g = self.groups.write();
        let existed = g.remove(name).is_some();
        if existed {
            save(&self.dir.join("groups.json"), &g.values().collect::<Vec<_>>())?;
        }
        if self.offsets.write().remove(name).is_some() {
            self.offsets_dirty.store(true, Ordering::Release);
        }
        Ok(existed)
    }

    /// A group's configuration.
    pub fn group(&self, name: &str) -> Option<GroupConfig> {
        self.groups.read().get(name).cloned()
    }

    /// Every group, by name.
    pub fn groups(&self) -> Vec<GroupConfig> {
        self.groups.read().values().cloned().collect()
    }

    /// Records a group's next offset for a queue (persisted on the next flush).
    pub fn commit_offset(&self, group: &str, topic: &str, queue_id: u32, offset: u64) {
        self.offsets
            .write()
            .entry(group.to_owned())
            .or_default()
            .entry(topic.to_owned())
            .or_default()
            .insert(queue_id, offset);
        self.offsets_dirty.store(true, Ordering::Release);
    }

    /// A group's committed offset for a queue.
    pub fn offset(&self, group: &str, topic: &str, queue_id: u32) -> Option<u64> {
        self.offsets.read().get(group)?.get(topic)?.get(&queue_id).copied()
    }

    /// A group's committed offsets: topic → queue → offset.
    pub fn group_offsets(&self, group: &str) -> BTreeMap<String, BTreeMap<u32, u64>> {
        self.offsets.read().get(group).cloned().unwrap_or_default()
    }

    /// Groups that have committed offsets, by name.
    pub fn offset_groups(&self) -> Vec<String> {
        self.offsets.read().keys().cloned().collect()
    }

    /// Writes consumer offsets if they changed since the last flush.
    pub fn flush_offsets(&self) -> Result<bool> {
        if !self.offsets_dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let snapshot = self.offsets.read().clone();
        if let Err(e) = save(&self.dir.join("offsets.json"), &snapshot) {
            self.offsets_dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_groups_and_offsets_persist() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(dir.path()).unwrap();
        m.put_topic(TopicConfig::new("orders", 8)).unwrap();
        m.put_group(GroupConfig::new("sms")).unwrap();
        m.commit_offset("sms", "orders", 3, 42);
        assert!(m.flush_offsets().unwrap());
        assert!(!m.flush_offsets().unwrap(), "nothing changed");
        assert!(m.put_topic(TopicConfig::new("bad topic", 1)).is_err());
        drop(m);
        let m = MetaStore::open(dir.path()).unwrap();
        assert_eq!(m.topic("orders").unwrap().write_queues, 8);
        assert_eq!(m.group("sms").unwrap().max_retries, 16);
        assert_eq!(m.offset("sms", "orders", 3), Some(42));
        assert!(m.delete_topic("orders").unwrap());
        assert!(!m.delete_topic("orders").unwrap());
        assert!(m.delete_group("sms").unwrap());
        assert_eq!(m.offset("sms", "orders", 3), None);
    }

    #[test]
    fn a_damaged_file_is_reported_with_its_path_and_position() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("topics.json"), "[{\"name\": \"t\",\n \"read_queues\": x}]").unwrap();
        let err = MetaStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("topics.json") && err.contains("line 2"), "{err}");
    }
}
