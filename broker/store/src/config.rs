//! Store configuration: serde structs with defaults and a validation pass.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{BLANK_MIN_LEN, FIXED_HEADER_LEN};

/// Everything the storage engine can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Root directory; the store keeps `commitlog/`, `consumequeue/`,
    /// `index/`, `meta/` and its checkpoint below it.
    pub data_dir: PathBuf,
    /// Size of each CommitLog segment file in bytes (RocketMQ: 1 GiB).
    #[serde(default = "default_segment_size")]
    pub segment_size: u64,
    /// Largest accepted encoded record, header included.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u32,
    /// When an append counts as durable.
    #[serde(default)]
    pub flush: FlushConfig,
    /// Entries per ConsumeQueue file (20 bytes each).
    #[serde(default = "default_cq_entries")]
    pub consume_queue_entries_per_file: u32,
    /// Key index layout.
    #[serde(default)]
    pub index: IndexConfig,
    /// How often queues and index are flushed and the checkpoint written.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// Check each record's CRCs when it is read (cheap; catches bit rot).
    #[serde(default = "default_true")]
    pub verify_crc_on_read: bool,
    /// Which old data is deleted, and when.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// Durability of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum FlushConfig {
    /// Acknowledge once the record is in the page cache; a background
    /// thread flushes every `interval_ms`.
    Async {
        /// Background flush period in milliseconds.
        #[serde(default = "default_flush_interval_ms")]
        interval_ms: u64,
    },
    /// Acknowledge after `fdatasync`; concurrent appends share one flush
    /// (group commit).
    Sync {},
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig::Async { interval_ms: default_flush_interval_ms() }
    }
}

impl FlushConfig {
    /// Whether appends wait for `fdatasync`.
    pub fn is_sync(&self) -> bool {
        matches!(self, FlushConfig::Sync {})
    }
}

/// Layout of the key index files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// Hash slots per index file.
    #[serde(default = "default_index_slots")]
    pub slots: u32,
    /// Entries per index file before a new file is started.
    #[serde(default = "default_index_entries")]
    pub max_entries: u32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self { slots: default_index_slots(), max_entries: default_index_entries() }
    }
}

/// Deletion of old CommitLog segments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// A segment whose newest message is older than this is expired.
    #[serde(default = "default_reserved_hours")]
    pub file_reserved_hours: u32,
    /// Expired segments are deleted during this hour of the day (UTC).
    #[serde(default = "default_delete_hour")]
    pub delete_hour_utc: u8,
    /// Above this fraction of the disk in use, the oldest segments are
    /// deleted at once, expired or not.
    #[serde(default = "default_disk_ratio")]
    pub disk_max_used_ratio: f64,
    /// How often the retention check runs, in milliseconds.
    #[serde(default = "default_retention_interval_ms")]
    pub check_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            file_reserved_hours: default_reserved_hours(),
            delete_hour_utc: default_delete_hour(),
            disk_max_used_ratio: default_disk_ratio(),
            check_interval_ms: default_retention_interval_ms(),
        }
    }
}

fn default_segment_size() -> u64 {
    1 << 30
}
fn default_max_message_size() -> u32 {
    4 * 1024 * 1024 + 64 * 1024
}
fn default_cq_entries() -> u32 {
    300_000
}
fn default_checkpoint_interval_ms() -> u64 {
    1_000
}
fn default_true() -> bool {
    true
}
fn default_flush_interval_ms() -> u64 {
    500
}
fn default_index_slots() -> u32 {
    500_009
}
fn default_index_entries() -> u32 {
    2_000_000
}
fn default_reserved_hours() -> u32 {
    72
}
fn default_delete_hour() -> u8 {
    4
}
fn default_disk_ratio() -> f64 {
    0.75
}
fn default_retention_interval_ms() -> u64 {
    10_000
}

impl StoreConfig {
    /// Defaults for a store rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            segment_size: default_segment_size(),
            max_message_size: default_max_message_size(),
            flush: FlushConfig::default(),
            consume_queue_entries_per_file: default_cq_entries(),
            index: IndexConfig::default(),
            checkpoint_interval_ms: default_checkpoint_interval_ms(),
            verify_crc_on_read: true,
            retention: RetentionConfig::default(),
        }
    }

    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| Err(Error::InvalidConfig { field, reason });
        let max_msg = u64::from(self.max_message_size);
        let smallest = FIXED_HEADER_LEN + 1 + rill_common::MAX_NAME_LEN + 2;
        if (max_msg as usize) < smallest {
            return bad("max_message_size", format!("{max_msg} cannot hold an empty message ({smallest} bytes)"));
        }
        if self.segment_size < max_msg + BLANK_MIN_LEN as u64 {
            return bad(
                "segment_size",
                format!(
                    "{} cannot hold one message of max_message_size {max_msg} plus the end marker",
                    self.segment_size
                ),
            );
        }
        if self.segment_size > (1u64 << 40) {
            return bad("segment_size", format!("{} is above the 1 TiB limit", self.segment_size));
        }
        if self.consume_queue_entries_per_file == 0 {
            return bad("consume_queue_entries_per_file", "must be at least 1".into());
        }
        if self.index.slots == 0 || self.index.max_entries == 0 {
            return bad("index", "slots and max_entries must be at least 1".into());
        }
        if self.checkpoint_interval_ms == 0 {
            return bad("checkpoint_interval_ms", "must be at least 1".into());
        }
        if let FlushConfig::Async { interval_ms: 0 } = self.flush {
            return bad("flush.interval_ms", "must be at least 1".into());
        }
        let r = &self.retention;
        if r.delete_hour_utc > 23 {
            return bad("retention.delete_hour_utc", format!("{} is not an hour (0–23)", r.delete_hour_utc));
        }
        if !(r.disk_max_used_ratio > 0.0 && r.disk_max_used_ratio <= 1.0) {
            return bad("retention.disk_max_used_ratio", format!("{} is not in (0, 1]", r.disk_max_used_ratio));
        }
        if r.check_interval_ms == 0 {
            return bad("retention.check_interval_ms", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_parse_from_json() {
        let c = StoreConfig::new("/tmp/x");
        c.validate().unwrap();
        let parsed: StoreConfig =
            serde_json::from_str(r#"{"data_dir":"/d","flush":{"mode":"sync"},"segment_size":1048576}"#).unwrap();
        assert!(parsed.flush.is_sync());
        assert_eq!(parsed.segment_size, 1 << 20);
        assert_eq!(parsed.retention.file_reserved_hours, 72);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        let err = serde_json::from_str::<StoreConfig>(r#"{"data_dir":"/d","segmentsize":1}"#).unwrap_err();
        assert!(err.to_string().contains("segmentsize"), "{err}");
        let mut c = StoreConfig::new("/d");
        c.segment_size = 1024;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("segment_size"), "{err}");
        let mut c = StoreConfig::new("/d");
        c.retention.delete_hour_utc = 24;
        assert!(c.validate().unwrap_err().to_string().contains("delete_hour_utc"));
    }
}
