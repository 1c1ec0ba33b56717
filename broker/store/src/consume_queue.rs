//! ConsumeQueues: per (topic, queue) arrays of fixed 20-byte entries that
//! point into the CommitLog.
//!
//! Entry layout (big-endian): CommitLog offset `u64`, record size `u32`,
//! tag hash code `u64` (Java `String.hashCode` of the tag, sign-extended, as
//! RocketMQ stores it). Entry *n* of a queue lives in file
//! `consumequeue/<topic>/<queue>/<byte offset of the file: first entry × 20>` at
//! position `(n mod entries_per_file) × 20`.
//!
//! This module owns those files and the min/max logical offsets of each
//! queue. Only the dispatcher (and recovery, before it starts) writes
//! entries; writes are idempotent, so replaying a record rewrites the same
//! bytes. It reads the CommitLog only through the closure given to
//! [`ConsumeQueue::offset_by_time`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;
use rill_common::TopicName;

use crate::error::{Error, Result};
use crate::mapped::{self, MappedFile};

/// Size of one entry in bytes.
pub const ENTRY_SIZE: usize = 20;

/// One ConsumeQueue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// Logical offset of the entry in its queue.
    pub queue_offset: u64,
    /// CommitLog offset of the record.
    pub physical_offset: u64,
    /// Record size.
    pub size: u32,
    /// Tag hash code.
    pub tag_hash: u64,
}

/// One queue's entry files.
#[derive(Debug)]
pub(crate) struct ConsumeQueue {
    dir: PathBuf,
    per_file: u64,
    files: RwLock<Vec<Arc<MappedFile>>>,
    min: AtomicU64,
    max: AtomicU64,
    dirty: AtomicBool,
}

impl ConsumeQueue {
    fn file_len(&self) -> u64 {
        self.per_file * ENTRY_SIZE as u64
    }

    fn open(dir: PathBuf, per_file: u64) -> Result<Self> {
        mapped::ensure_dir(&dir)?;
        let mut files = Vec::new();
        for (base, path) in mapped::list_files(&dir)? {
            // Files are named by the byte offset of their first entry, as in RocketMQ.
            files.push(MappedFile::open(path, base, per_file * ENTRY_SIZE as u64)?);
        }
        let q = Self {
            dir,
            per_file,
            files: RwLock::new(files),
            min: AtomicU64::new(0),
            max: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
        };
        q.load_bounds();
        Ok(q)
    }

    /// Derives min and max from the files: min is the first non-empty entry
    /// of the first file, max is one past the last non-empty entry.
    fn load_bounds(&self) {
        let files = self.files.read();
        let (Some(first), Some(last)) = (files.first(), files.last()) else { return };
        let first_base = first.base() / ENTRY_SIZE as u64;
        let first_used = (0..self.per_file).find(|&i| !entry_is_empty(first, i)).unwrap_or(self.per_file);
        let last_base = last.base() / ENTRY_SIZE as u64;
        // Entries are written in order, so the filled ones form a prefix.
        let (mut lo, mut hi) = (0u64, self.per_file);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry_is_empty(last, mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        self.min.store(first_base + first_used, Ordering::Release);
        self.max.store((last_base + lo).max(first_base + first_used), Ordering::Release);
    }

    /// Smallest logical offset still present.
    pub fn min_offset(&self) -> u64 {
        self.min.load(Ordering::Acquire)
    }

    /// One past the last logical offset.
    pub fn max_offset(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }

    fn file_for(&self, queue_offset: u64) -> Option<Arc<MappedFile>> {
        let base = queue_offset - queue_offset % self.per_file;
        let files = self.files.read();
        let first = files.first()?.base() / ENTRY_SIZE as u64;
        if base < first {
            return None;
        }
        files.get(((base - first) / self.per_file) as usize).cloned()
    }

    /// Writes the entry for `queue_offset` (dispatcher and recovery only).
    pub fn put(&self, queue_offset: u64, physical_offset: u64, size: u32, tag_hash: u64) -> Result<()> {
        let file = match self.file_for(queue_offset) {
            Some(f) => f,
            None => {
                let base = queue_offset - queue_offset % self.per_file;
                let f =
                    MappedFile::create(&self.dir, base * ENTRY_SIZE as u64, self.file_len()).or_else(|e| match e {
                        // An earlier crash may have left an empty file behind.
                        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
                            let path = self.dir.join(mapped::file_name(base * ENTRY_SIZE as u64));
                            MappedFile::open(path, base * ENTRY_SIZE as u64, self.file_len())
                        }
                        other => Err(other),
                    })?;
                let mut files = self.files.write();
                if files.is_empty() {
                    self.min.store(queue_offset, Ordering::Release);
                }
                files.push(Arc::clone(&f));
                files.sort_by_key(|f| f.base());
                f
            }
        };
        let pos = ((queue_offset % self.per_file) as usize) * ENTRY_SIZE;
        let mut buf = [0u8; ENTRY_SIZE];
        buf[0..8].copy_from_slice(&physical_offset.to_be_bytes());
        buf[8..12].copy_from_slice(&size.to_be_bytes());
        buf[12..20].copy_from_slice(&tag_hash.to_be_bytes());
        // SAFETY: entries at or past `max` are unpublished and only the
        // dispatcher writes; a replay rewrites identical bytes.
        unsafe { file.region_mut(pos, ENTRY_SIZE) }.copy_from_slice(&buf);
        let next = queue_offset + 1;
        let max = self.max.load(Ordering::Acquire);
        if queue_offset > max {
            tracing::warn!(queue = %self.dir.display(), expected = max, got = queue_offset, "gap in ConsumeQueue");
        }
        if next > max {
            self.max.store(next, Ordering::Release);
        }
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// The entry at `queue_offset`, if it is between min and max.
    pub fn get(&self, queue_offset: u64) -> Option<CqEntry> {
        if queue_offset < self.min_offset() || queue_offset >= self.max_offset() {
            return None;
        }
        let file = self.file_for(queue_offset)?;
        let pos = ((queue_offset % self.per_file) as usize) * ENTRY_SIZE;
        let b = file.bytes(pos, ENTRY_SIZE);
        let mut u8s = [0u8; 8];
        u8s.copy_from_slice(&b[0..8]);
        let physical_offset = u64::from_be_bytes(u8s);
        let size = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        u8s.copy_from_slice(&b[12..20]);
        Some(CqEntry { queue_offset, physical_offset, size, tag_hash: u64::from_be_bytes(u8s) })
    }

    /// First logical offset whose record was stored at or after `timestamp`
    /// (or `max` when none was); `store_time` reads a record's store time.
    pub fn offset_by_time(&self, timestamp: i64, store_time: impl Fn(u64) -> Option<i64>) -> u64 {
        let (mut lo, mut hi) = (self.min_offset(), self.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let t = self.get(mid).and_then(|e| store_time(e.physical_offset));
            match t {
                Some(t) if t >= timestamp => hi = mid,
                Some(_) => lo = mid + 1,
                // Unreadable (deleted) records are older than anything readable.
                None => lo = mid + 1,
            }
        }
        lo
    }

    /// Drops entries at and after the first one pointing at or past `end`
    /// (recovery, after the CommitLog was cut).
    pub fn truncate_to_log_end(&self, end: u64) {
        let mut new_max = self.max_offset();
        while new_max > self.min_offset() {
            match self.get(new_max - 1) {
                Some(e) if e.physical_offset + u64::from(e.size) > end => new_max -= 1,
                _ => break,
            }
        }
        for q in new_max..self.max_offset() {
            if let Some(file) = self.file_for(q) {
                let pos = ((q % self.per_file) as usize) * ENTRY_SIZE;
                // SAFETY: recovery runs before readers exist.
                unsafe { file.region_mut(pos, ENTRY_SIZE) }.fill(0);
            }
        }
        self.max.store(new_max, Ordering::Release);
    }

    /// Moves min past entries that point below `log_min` and deletes files
    /// that hold only such entries. Returns the new min.
    pub fn drop_below(&self, log_min: u64) -> Result<u64> {
        let (mut lo, mut hi) = (self.min_offset(), self.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(e) if e.physical_offset >= log_min => hi = mid,
                _ => lo = mid + 1,
            }
        }
        self.min.store(lo, Ordering::Release);
        let doomed: Vec<_> = {
            let mut files = self.files.write();
            let keep_from = files
                .iter()
                .position(|f| f.base() / ENTRY_SIZE as u64 + self.per_file > lo)
                .unwrap_or(files.len().saturating_sub(1));
            files.drain(..keep_from).collect()
        };
        for f in doomed {
            std::fs::remove_file(f.path()).map_err(Error::io("delete", f.path()))?;
        }
        Ok(lo)
    }

    /// Flushes the files written since the last flush.
    pub fn flush(&self) -> Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let files = self.files.read().clone();
        // Only the last two files can have been written since the last flush
        // at any sane flush interval; flushing a clean file is cheap anyway.
        for f in files.iter().rev().take(2) {
            f.sync().map_err(Error::io("sync", f.path()))?;
        }
        Ok(())
    }
}

fn entry_is_empty(file: &MappedFile, index: u64) -> bool {
    let pos = index as usize * ENTRY_SIZE;
    // Size 0 never occurs in a real entry.
    file.bytes(pos + 8, 4) == [0, 0, 0, 0]
}

/// All ConsumeQueues of a store.
#[derive(Debug)]
pub(crate) struct ConsumeQueues {
    root: PathBuf,
    per_file: u64,
    queues: RwLock<HashMap<(TopicName, u32), Arc<ConsumeQueue>>>,
}

impl ConsumeQueues {
    /// Opens every queue below `root`.
    pub fn open(root: PathBuf, per_file: u32) -> Result<Self> {
        mapped::ensure_dir(&root)?;
        let per_file = u64::from(per_file);
        let mut queues = HashMap::new();
        for topic_dir in std::fs::read_dir(&root).map_err(Error::io("list", &root))? {
            let topic_dir = topic_dir.map_err(Error::io("list", &root))?.path();
            let Some(topic) = topic_dir.file_name().and_then(|n| n.to_str()).and_then(|n| TopicName::new(n).ok())
            else {
                tracing::warn!(dir = %topic_dir.display(), "ignoring a directory that is not a topic");
                continue;
            };
            for queue_dir in std::fs::read_dir(&topic_dir).map_err(Error::io("list", &topic_dir))? {
                let queue_dir = queue_dir.map_err(Error::io("list", &topic_dir))?.path();
                let Some(qid) = queue_dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let q = ConsumeQueue::open(queue_dir, per_file)?;
                queues.insert((topic.clone(), qid), Arc::new(q));
            }
        }
        Ok(Self { root, per_file, queues: RwLock::new(queues) })
    }

    /// The queue, if it exists.
    pub fn get(&self, topic: &str, queue_id: u32) -> Option<Arc<ConsumeQueue>> {
        let topic = TopicName::new(topic).ok()?;
        self.queues.read().get(&(topic, queue_id)).cloned()
    }

    /// The queue, created if needed.
    pub fn get_or_create(&self, topic: &TopicName, queue_id: u32) -> Result<Arc<ConsumeQueue>> {
        if let Some(q) = self.queues.read().get(&(topic.clone(), queue_id)) {
            return Ok(Arc::clone(q));
        }
        let mut w = self.queues.write();
        if let Some(q) = w.get(&(topic.clone(), queue_id)) {
            return Ok(Arc::clone(q));
        }
        let dir = self.root.join(topic.as_str()).join(queue_id.to_string());
        let q = Arc::new(ConsumeQueue::open(dir, self.per_file)?);
        w.insert((topic.clone(), queue_id), Arc::clone(&q));
        Ok(q)
    }

    /// Every queue.
    pub fn all(&self) -> Vec<((TopicName, u32), Arc<ConsumeQueue>)> {
        self.queues.read().iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u32, u64),
        DropBelow(u64),
    }

    fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                8 => (1u32..5000, 0u64..1000).prop_map(|(size, tag)| Op::Put(size, tag)),
                1 => (0u64..400_000).prop_map(Op::DropBelow),
            ],
            1..300,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Lookups by logical offset, by time and after dropping old entries
        /// agree with a plain vector model, also after reopening the files.
        #[test]
        fn queue_matches_model(ops in arb_ops(), per_file in 1u32..16) {
            let dir = tempfile::tempdir().unwrap();
            let topic = TopicName::new("t").unwrap();
            let qs = ConsumeQueues::open(dir.path().to_path_buf(), per_file).unwrap();
            let q = qs.get_or_create(&topic, 3).unwrap();
            // Model: (physical offset, size, tag, store time) per logical offset.
            let mut model: Vec<(u64, u32, u64, i64)> = Vec::new();
            let mut min = 0u64;
            let mut phy = 0u64;
            let mut last_log_min = 0u64;
            for op in &ops {
                match *op {
                    Op::Put(size, tag) => {
                        // New records always land past the log's minimum.
                        phy = phy.max(last_log_min);
                        let n = model.len() as u64;
                        q.put(n, phy, size, tag).unwrap();
                        model.push((phy, size, tag, phy as i64 / 10));
                        phy += u64::from(size);
                    }
                    Op::DropBelow(log_min) => {
                        let log_min = log_min.max(last_log_min);
                        last_log_min = log_min;
                        let new_min = q.drop_below(log_min).unwrap();
                        let expect = (min..model.len() as u64)
                            .find(|&i| model[i as usize].0 >= log_min)
                            .unwrap_or(model.len() as u64);
                        prop_assert_eq!(new_min, expect.max(min));
                        min = new_min;
                    }
                }
            }
            let check = |q: &ConsumeQueue| -> Result<(), TestCaseError> {
                prop_assert_eq!(q.min_offset(), min);
                prop_assert_eq!(q.max_offset(), model.len() as u64);
                for (i, &(p, s, t, _)) in model.iter().enumerate() {
                    let got = q.get(i as u64);
                    if (i as u64) < min {
                        prop_assert_eq!(got, None);
                    } else {
                        prop_assert_eq!(got, Some(CqEntry { queue_offset: i as u64, physical_offset: p, size: s, tag_hash: t }));
                    }
                }
                prop_assert_eq!(q.get(model.len() as u64), None);
                let time_of = |p: u64| model.iter().find(|m| m.0 == p).map(|m| m.3);
                for probe in [0i64, 5, 100, 1000, i64::MAX] {
                    let expect = (min..model.len() as u64)
                        .find(|&i| model[i as usize].3 >= probe)
                        .unwrap_or(model.len() as u64);
                    prop_assert_eq!(q.offset_by_time(probe, time_of), expect);
                }
                Ok(())
            };
            check(&q)?;
            q.flush().unwrap();
            drop((q, qs));
            let reopened = ConsumeQueues::open(dir.path().to_path_buf(), per_file).unwrap();
            let q = reopened.get("t", 3).unwrap();
            // The store re-derives each queue's min from the log's min on open.
            q.drop_below(last_log_min).unwrap();
            check(&q)?;
        }
    }

    #[test]
    fn truncation_removes_entries_past_the_log_end() {
        let dir = tempfile::tempdir().unwrap();
        let qs = ConsumeQueues::open(dir.path().to_path_buf(), 4).unwrap();
        let q = qs.get_or_create(&TopicName::new("t").unwrap(), 0).unwrap();
        for i in 0..10u64 {
            q.put(i, i * 100, 100, 0).unwrap();
        }
        q.truncate_to_log_end(650);
        assert_eq!(q.max_offset(), 6);
        assert_eq!(q.get(6), None);
        q.put(6, 600, 50, 0).unwrap();
        assert_eq!(q.max_offset(), 7);
    }
}
