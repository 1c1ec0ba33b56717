//! The key index: message keys and unique ids → CommitLog offsets.
//!
//! Each index file is a hash table with chaining, laid out like RocketMQ's:
//!
//! | part | size |
//! |------|------|
//! | header: magic `RIX1`, entry count, first/last store time, first/last CommitLog offset | 40 bytes |
//! | slots: index (1-based) of the newest entry per hash bucket, `u32` | 4 × slots |
//! | entries: key hash `u32`, CommitLog offset `u64`, seconds since the file's first time `u32`, previous entry in the bucket `u32` | 20 × max_entries |
//!
//! Keys are indexed as `topic#key`; unique message ids as `#id#<id>` (no
//! topic contains `#`, so the two never collide). Hashes can collide, so a
//! lookup returns *candidate* offsets and the caller checks the message.
//! A file is full after `max_entries` entries and a new one is started;
//! files whose newest offset lies below the CommitLog's minimum are deleted.
//!
//! This module owns the index files only. Writes come from the dispatcher,
//! one message at a time, in CommitLog order; the header's last offset is
//! updated after all of a message's keys, so a replay after a crash skips
//! messages that are already indexed.

use std::path::PathBuf;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use rill_common::java_string_hash;

use crate::error::{Error, Result};
use crate::mapped::{self, MappedFile};

const MAGIC: u32 = 0x5249_5831;
const HEADER: usize = 40;
const ENTRY: usize = 20;

/// The prefix of unique-id keys.
pub(crate) const ID_PREFIX: &str = "#id#";

/// Builds the index key of a business key.
pub(crate) fn topic_key(topic: &str, key: &str) -> String {
    format!("{topic}#{key}")
}

/// Builds the index key of a unique message id.
pub(crate) fn id_key(id: &str) -> String {
    format!("{ID_PREFIX}{id}")
}

/// [`topic_key`] into a reused buffer.
pub(crate) fn write_topic_key(buf: &mut String, topic: &str, key: &str) {
    buf.push_str(topic);
    buf.push('#');
    buf.push_str(key);
}

/// [`id_key`] into a reused buffer.
pub(crate) fn write_id_key(buf: &mut String, id: &str) {
    buf.push_str(ID_PREFIX);
    buf.push_str(id);
}

fn hash(key: &str) -> u32 {
    java_string_hash(key) as u32
}

#[derive(Debug)]
struct IndexFile {
    file: Arc<MappedFile>,
    slots: u32,
    max_entries: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Header {
    count: u32,
    begin_ts: i64,
    end_ts: i64,
    begin_offset: u64,
    end_offset: u64,
}

fn rd_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn rd_u64(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    u64::from_be_bytes(x)
}

impl IndexFile {
    fn len(slots: u32, max_entries: u32) -> u64 {
        HEADER as u64 + 4 * u64::from(slots) + ENTRY as u64 * u64::from(max_entries)
    }

    fn header(&self) -> Header {
        let b = self.file.bytes(0, HEADER);
        Header {
            count: rd_u32(&b[4..]),
            begin_ts: rd_u64(&b[8..]) as i64,
            end_ts: rd_u64(&b[16..]) as i64,
            begin_offset: rd_u64(&b[24..]),
            end_offset: rd_u64(&b[32..]),
        }
    }

    fn write_header(&self, h: &Header) {
        // SAFETY: the dispatcher is the only writer; readers of the header
        // may see a mix of old and new fields, which only widens a search.
        let b = unsafe { self.file.region_mut(0, HEADER) };
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&h.count.to_be_bytes());
        b[8..16].copy_from_slice(&h.begin_ts.to_be_bytes());
        b[16..24].copy_from_slice(&h.end_ts.to_be_bytes());
        b[24..32].copy_from_slice(&h.begin_offset.to_be_bytes());
        b[32..40].copy_from_slice(&h.end_offset.to_be_bytes());
    }

    fn slot_pos(&self, h: u32) -> usize {
        HEADER + 4 * (h % self.slots) as usize
    }

    fn entry_pos(&self, index: u32) -> usize {
        HEADER + 4 * self.slots as usize + ENTRY * (index as usize - 1)
    }

    /// Adds one entry; the caller checked there is room.
    fn add(&self, h: &mut Header, key: &str, offset: u64, store_ts: i64) {
        let kh = hash(key);
        let slot = self.slot_pos(kh);
        let prev = rd_u32(self.file.bytes(slot, 4));
        if h.count == 0 {
            h.begin_ts = store_ts;
            h.begin_offset = offset;
        }
        h.count += 1;
        let index = h.count;
        let secs = u32::try_from((store_ts - h.begin_ts).max(0) / 1000).unwrap_or(u32::MAX);
        let pos = self.entry_pos(index);
        // SAFETY: a new entry and the bucket head are written only by the
        // dispatcher; the entry is complete before the slot points at it.
        let e = unsafe { self.file.region_mut(pos, ENTRY) };
        e[0..4].copy_from_slice(&kh.to_be_bytes());
        e[4..12].copy_from_slice(&offset.to_be_bytes());
        e[12..16].copy_from_slice(&secs.to_be_bytes());
        e[16..20].copy_from_slice(&prev.to_be_bytes());
        // SAFETY: as above.
        unsafe { self.file.region_mut(slot, 4) }.copy_from_slice(&index.to_be_bytes());
    }

    fn lookup(&self, key: &str, begin: i64, end: i64, out: &mut Vec<u64>, max: usize) {
        let h = self.header();
        let kh = hash(key);
        let mut index = rd_u32(self.file.bytes(self.slot_pos(kh), 4));
        let mut steps = 0u32;
        while index != 0 && index <= h.count && out.len() < max && steps <= h.count {
            let e = self.file.bytes(self.entry_pos(index), ENTRY);
            let ts = h.begin_ts + i64::from(rd_u32(&e[12..])) * 1000;
            // Times are stored in whole seconds: widen the range by one.
            if rd_u32(e) == kh && ts.saturating_add(1000) > begin && ts <= end {
                out.push(rd_u64(&e[4..]));
            }
            let prev = rd_u32(&e[16..]);
            if prev >= index {
                break;
            }
            index = prev;
            steps += 1;
        }
    }
}

/// All index files of a store, oldest first.
#[derive(Debug)]
pub(crate) struct KeyIndex {
    dir: PathBuf,
    slots: u32,
    max_entries: u32,
    files: RwLock<Vec<IndexFile>>,
    /// One past the newest CommitLog offset fully indexed in any file (0: none).
    ///
    /// Replays after a crash skip everything below it. It is the maximum
    /// over all files, not the newest file's: a file created just before a
    /// crash may still be empty.
    indexed_end: AtomicU64,
}

impl KeyIndex {
    /// Opens the index files in `dir`.
    pub fn open(dir: PathBuf, slots: u32, max_entries: u32) -> Result<Self> {
        mapped::ensure_dir(&dir)?;
        let len = IndexFile::len(slots, max_entries);
        let mut files = Vec::new();
        for (base, path) in mapped::list_files(&dir)? {
            let file = MappedFile::open(path, base, len)?;
            let magic = rd_u32(file.bytes(0, 4));
            if magic != MAGIC && magic != 0 {
                return Err(Error::Corrupt {
                    path: file.path().to_path_buf(),
                    offset: base,
                    position: 0,
                    reason: format!("bad index file magic 0x{magic:08x}"),
                });
            }
            files.push(IndexFile { file, slots, max_entries });
        }
        let indexed_end =
            files.iter().map(IndexFile::header).filter(|h| h.count > 0).map(|h| h.end_offset + 1).max().unwrap_or(0);
        Ok(Self { dir, slots, max_entries, files: RwLock::new(files), indexed_end: AtomicU64::new(indexed_end) })
    }

    /// Offset of the last message fully indexed.
    pub fn last_indexed(&self) -> Option<u64> {
        self.indexed_end.load(Ordering::Acquire).checked_sub(1)
    }

    /// Indexes one message's keys. Skips messages indexed before a crash.
    pub fn add_message<'a>(
        &self,
        offset: u64,
        store_ts: i64,
        keys: impl Iterator<Item = &'a str> + Clone,
    ) -> Result<()> {
        if keys.clone().next().is_none() {
            return Ok(());
        }
        if self.last_indexed().is_some_and(|last| offset <= last) {
            return Ok(());
        }
        let needed = keys.clone().count() as u32;
        let mut files = self.files.write();
        let need_new = files.last().is_none_or(|f| f.header().count + needed > f.max_entries && f.header().count > 0);
        if need_new {
            // Files are named by the first CommitLog offset they index; the
            // skip above keeps those increasing, also across crashes.
            let file = MappedFile::create(&self.dir, offset, IndexFile::len(self.slots, self.max_entries))?;
            let f = IndexFile { file, slots: self.slots, max_entries: self.max_entries };
            f.write_header(&Header::default());
            files.push(f);
        }
        let Some(f) = files.last() else { return Ok(()) };
        let mut h = f.header();
        for key in keys {
            if h.count >= f.max_entries {
                tracing::warn!(offset, "message has more keys than an index file holds; the rest are not indexed");
                break;
            }
            f.add(&mut h, key, offset, store_ts);
        }
        h.end_ts = store_ts;
        h.end_offset = offset;
        f.write_header(&h);
        self.indexed_end.fetch_max(offset + 1, Ordering::AcqRel);
        Ok(())
    }

    /// Candidate offsets for `key` stored within `[begin, end]` (ms), newest first.
    pub fn lookup(&self, key: &str, begin: i64, end: i64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for f in self.files.read().iter().rev() {
            let h = f.header();
            if h.count == 0 || h.end_ts < begin.saturating_sub(1000) || h.begin_ts > end {
                continue;
            }
            f.lookup(key, begin, end, &mut out, max);
            if out.len() >= max {
                break;
            }
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.dedup();
        out
    }

    /// Deletes files whose every entry points below `log_min`.
    pub fn drop_below(&self, log_min: u64) -> Result<usize> {
        let mut files = self.files.write();
        let mut removed = 0;
        while files.len() > 1 && files[0].header().end_offset < log_min {
            let f = files.remove(0);
            std::fs::remove_file(f.file.path()).map_err(Error::io("delete", f.file.path()))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Flushes the newest file.
    pub fn flush(&self) -> Result<()> {
        if let Some(f) = self.files.read().last() {
            f.file.sync().map_err(Error::io("sync", f.file.path()))?;
        }
        Ok(())
    }

    /// Number of index files.
    pub fn file_count(&self) -> usize {
        self.files.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crash can leave a new, empty index file behind the last full one;
    /// replaying the messages of the full file must skip them, not refill
    /// the empty file and later collide with its own file names.
    #[test]
    fn replay_after_a_crash_skips_what_any_file_already_holds() {
        let dir = tempfile::tempdir().unwrap();
        let idx = KeyIndex::open(dir.path().to_path_buf(), 7, 4).unwrap();
        for i in 0..4u64 {
            idx.add_message(i * 10, 1000, std::iter::once("t#k")).unwrap();
        }
        // The next message opened a new file, then the process died.
        MappedFile::create(dir.path(), 40, IndexFile::len(7, 4)).unwrap();
        drop(idx);
        let idx = KeyIndex::open(dir.path().to_path_buf(), 7, 4).unwrap();
        assert_eq!(idx.last_indexed(), Some(30));
        for i in 0..12u64 {
            idx.add_message(i * 10, 1000, std::iter::once("t#k")).unwrap();
        }
        let hits = idx.lookup("t#k", 0, i64::MAX, 100);
        assert_eq!(hits, (0..12u64).rev().map(|i| i * 10).collect::<Vec<_>>(), "each message exactly once");
        assert_eq!(idx.file_count(), 3);
    }

    #[test]
    fn keys_are_found_within_time_ranges_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let idx = KeyIndex::open(dir.path().to_path_buf(), 7, 10).unwrap();
        for i in 0..50u64 {
            let k1 = topic_key("orders", &format!("k{}", i % 5));
            let k2 = id_key(&format!("ID{i}"));
            idx.add_message(i * 100, 1_000_000 + i as i64 * 1000, [k1.as_str(), k2.as_str()].into_iter()).unwrap();
        }
        assert!(idx.file_count() >= 10);
        let hits = idx.lookup(&topic_key("orders", "k3"), 0, i64::MAX, 100);
        let expect: Vec<u64> = (0..50u64).filter(|i| i % 5 == 3).map(|i| i * 100).rev().collect();
        // Hash collisions may add candidates; every real hit must be there.
        for e in &expect {
            assert!(hits.contains(e), "missing {e} in {hits:?}");
        }
        let ranged = idx.lookup(&topic_key("orders", "k3"), 1_000_000 + 10_000, 1_000_000 + 20_000, 100);
        for e in [1300u64, 1800] {
            assert!(ranged.contains(&e), "{ranged:?}");
        }
        assert!(!ranged.contains(&300) && !ranged.contains(&2800), "{ranged:?}");
        assert_eq!(idx.lookup(&id_key("ID42"), 0, i64::MAX, 10).first(), Some(&4200));
        // Replaying an already indexed message adds nothing.
        idx.add_message(4900, 1_049_000, std::iter::once("orders#k4")).unwrap();
        assert_eq!(idx.lookup(&topic_key("orders", "k4"), 1_049_000, 1_049_000, 10), vec![4900]);
        // Reopen and query again.
        drop(idx);
        let idx = KeyIndex::open(dir.path().to_path_buf(), 7, 10).unwrap();
        assert_eq!(idx.last_indexed(), Some(4900));
        assert_eq!(idx.lookup(&id_key("ID7"), 0, i64::MAX, 10).first(), Some(&700));
        let before = idx.file_count();
        assert!(idx.drop_below(2500).unwrap() > 0);
        assert!(idx.file_count() < before);
        assert!(idx.lookup(&id_key("ID7"), 0, i64::MAX, 10).is_empty());
    }
}
