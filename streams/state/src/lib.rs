//! Keyed state for Rill's stream operators: byte keys to byte values, each
//! with a time it expires at (its TTL), held in memory up to a budget and
//! spilled to an embedded on-disk B-tree ([redb]) beyond it, so an
//! operator's memory stays bounded however many keys it sees.
//!
//! What it owns: where a key's value lives (memory or the spill file), when
//! it expires and how much memory the store uses. What it must not touch:
//! what keys and values mean (operators encode them), checkpoints
//! (operators read the store with [`KeyedState::for_each`] for their
//! snapshots) and the clock (callers pass the time expiry is measured
//! against — event time or processing time, the operator's choice).
//!
//! The spill file is scratch space: it is created empty, on the first
//! spill, in a fresh directory under [`StateConfig::spill_dir`], and
//! removed with the store. Durability is the checkpoints' job.
//!
//! Memory holds the most recently used keys. When it passes its share of
//! the budget, the least recently used half of it moves to disk in one
//! write; a read of a spilled key brings it back. A removed key that may
//! still be on disk is remembered as a tombstone until the next spill
//! deletes it there. Expired entries read as absent at once and are
//! reclaimed by [`KeyedState::purge`].
//!
//! ```
//! use rill_state::{KeyedState, StateConfig};
//! let mut state = KeyedState::new(StateConfig::default());
//! state.put(b"user-7", b"seen", 1_000).unwrap(); // lives until t = 1000
//! assert_eq!(state.get(b"user-7", 999).unwrap(), Some(&b"seen"[..]));
//! assert_eq!(state.get(b"user-7", 1_000).unwrap(), None); // expired
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

mod scratch;
mod table;

use scratch::Scratch;
pub use table::SpillTable;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spill directory could not be created or used.
    #[error("state spill directory {dir}: {source}")]
    SpillDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded store failed (disk full, I/O error, corruption).
    #[error("state spill file: {0}")]
    Kv(#[from] redb::Error),
    /// A setting is out of range.
    #[error("invalid state setting: {0}")]
    Config(String),
}

/// Result of the state store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn kv(e: impl Into<redb::Error>) -> Error {
    Error::Kv(e.into())
}

/// How much memory a store may use and where it spills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// Bytes of memory for the store: seven eighths for entries kept in
    /// memory, one eighth for the spill file's page cache.
    pub memory_budget: usize,
    /// Directory under which the spill file's own directory is made.
    pub spill_dir: PathBuf,
}

impl Default for StateConfig {
    /// 256 MiB, spilling under the system's temporary directory.
    fn default() -> Self {
        Self { memory_budget: 256 << 20, spill_dir: std::env::temp_dir() }
    }
}

impl StateConfig {
    /// A budget of `bytes`, spilling under `dir`.
    pub fn new(bytes: usize, dir: impl Into<PathBuf>) -> Result<Self> {
        if bytes < MIN_BUDGET {
            return Err(Error::Config(format!(
                "a memory budget of {bytes} bytes is below the minimum of {MIN_BUDGET}"
            )));
        }
        Ok(Self { memory_budget: bytes, spill_dir: dir.into() })
    }

    /// The share of the budget for entries in memory (the rest is the
    /// spill file's page cache).
    pub fn entry_budget(&self) -> usize {
        self.hot_budget()
    }

    fn hot_budget(&self) -> usize {
        self.memory_budget - self.cache_budget()
    }

    fn cache_budget(&self) -> usize {
        self.memory_budget / 8
    }
}

/// The smallest memory budget accepted (tests use it to spill early).
pub const MIN_BUDGET: usize = 4096;

/// Bytes an entry costs beyond its key and value: the map's slot, two
/// allocations' headers, the expiry and the recency stamp.
const ENTRY_OVERHEAD: usize = 80;

/// Values on disk: expiry (8 bytes, big-endian) then the value.
const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("values");
/// Expiry index on disk: expiry as an order-preserving u64 then the key.
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");

/// One key in memory; `None` is a tombstone hiding a spilled value.
struct Slot {
    value: Option<Box<[u8]>>,
    expires: i64,
    used: u64,
}

/// Whether an entry expiring at `expires` is gone at `now` (`i64::MAX` never expires).
fn expired(expires: i64, now: i64) -> bool {
    expires != i64::MAX && expires <= now
}

fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

/// The expiry as a big-endian u64 that sorts as the i64 does.
fn expiry_bytes(expires: i64) -> [u8; 8] {
    ((expires as u64) ^ (1 << 63)).to_be_bytes()
}

fn expiry_of(bytes: &[u8]) -> Option<i64> {
    let head: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(head) ^ (1 << 63)) as i64)
}

/// Fields drop in order: the reader, then the file.
struct Spill {
    reader: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    file: Scratch,
    /// Entries in the values table after the last write.
    len: u64,
}

impl Spill {
    fn open(config: &StateConfig) -> Result<Self> {
        Ok(Self { reader: None, file: Scratch::open(config)?, len: 0 })
    }

    fn reader(&mut self) -> Result<&ReadOnlyTable<&'static [u8], &'static [u8]>> {
        if self.reader.is_none() {
            let txn = self.file.db.begin_read().map_err(kv)?;
            self.reader = Some(match txn.open_table(VALUES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => {
                    // Nothing spilled yet: create the tables, then read.
                    let w = self.file.begin_write()?;
                    w.open_table(VALUES).map_err(kv)?;
                    w.open_table(EXPIRY).map_err(kv)?;
                    w.commit().map_err(kv)?;
                    self.file.db.begin_read().map_err(kv)?.open_table(VALUES).map_err(kv)?
                }
                Err(e) => return Err(kv(e)),
            });
        }
        match &self.reader {
            Some(r) => Ok(r),
            None => Err(Error::Config("spill reader missing".into())),
        }
    }

    /// The spilled value and expiry of `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<(Box<[u8]>, i64)>> {
        let Some(v) = self.reader()?.get(key).map_err(kv)? else { return Ok(None) };
        let bytes = v.value();
        Ok(expiry_of(bytes).map(|e| (Box::from(&bytes[8..]), e)))
    }

    /// Writes `entries` (a `None` value deletes) in one transaction, and
    /// removes what expired at or before `expired_by`.
    fn write(&mut self, entries: &[(Box<[u8]>, Slot)], expired_by: Option<i64>) -> Result<usize> {
        let (purged, len) = self.write_txn(entries, expired_by)?;
        self.len = len;
        Ok(purged)
    }

    fn write_txn(&mut self, entries: &[(Box<[u8]>, Slot)], expired_by: Option<i64>) -> Result<(usize, u64)> {
        self.reader = None;
        let txn = self.file.begin_write()?;
        let mut purged = 0;
        let len;
        {
            let mut values = txn.open_table(VALUES).map_err(kv)?;
            let mut expiry = txn.open_table(EXPIRY).map_err(kv)?;
            let mut buf = Vec::new();
            for (key, slot) in entries {
                match &slot.value {
                    Some(v) => {
                        buf.clear();
                        buf.extend_from_slice(&expiry_bytes(slot.expires));
                        buf.extend_from_slice(v);
                        values.insert(&key[..], &buf[..]).map_err(kv)?;
                        buf.clear();
                        buf.extend_from_slice(&expiry_bytes(slot.expires));
                        buf.extend_from_slice(key);
                        expiry.insert(&buf[..], ()).map_err(kv)?;
                    }
                    None => {
                        values.remove(&key[..]).map_err(kv)?;
                    }
                }
            }
            if let Some(now) = expired_by {
                let end = expiry_bytes(now.saturating_add(1));
                let due: Vec<Vec<u8>> = expiry
                    .range(..&end[..])
                    .map_err(kv)?
                    .map(|r| r.map(|(k, _)| k.value().to_vec()))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(kv)?;
                for index_key in due {
                    expiry.remove(&index_key[..]).map_err(kv)?;
                    let key = &index_key[8..];
                    // Only if the stored value is the one this index entry was for.
                    let stale = values.get(key).map_err(kv)?.is_some_and(|v| v.value().get(..8) == index_key.get(..8));
                    if stale {
                        values.remove(key).map_err(kv)?;
                        purged += 1;
                    }
                }
            }
            len = values.len().map_err(kv)?;
        }
        txn.commit().map_err(kv)?;
        Ok((purged, len))
    }

    /// Whether anything on disk expired at or before `now`.
    fn any_expired(&self, now: i64) -> Result<bool> {
        let txn = self.file.db.begin_read().map_err(kv)?;
        let index = match txn.open_table(EXPIRY) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(kv(e)),
        };
        let end = expiry_bytes(now.saturating_add(1));
        Ok(index.range(..&end[..]).map_err(kv)?.next().is_some())
    }
}

/// A keyed state store (see the crate docs).
pub struct KeyedState {
    config: StateConfig,
    hot: HashMap<Box<[u8]>, Slot>,
    hot_bytes: usize,
    clock: u64,
    spill: Option<Spill>,
    spills: u64,
}

impl std::fmt::Debug for KeyedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("in_memory", &self.hot.len())
            .field("memory_bytes", &self.hot_bytes)
            .field("spills", &self.spills)
            .finish_non_exhaustive()
    }
}

impl KeyedState {
    /// An empty store.
    pub fn new(config: StateConfig) -> Self {
        Self { config, hot: HashMap::new(), hot_bytes: 0, clock: 0, spill: None, spills: 0 }
    }

    /// The value of `key` unless it expired at or before `now`.
    pub fn get(&mut self, key: &[u8], now: i64) -> Result<Option<&[u8]>> {
        self.clock += 1;
        if !self.hot.contains_key(key) {
            let Some(spill) = self.spill.as_mut() else { return Ok(None) };
            let Some((value, expires)) = spill.get(key)? else { return Ok(None) };
            if expired(expires, now) {
                return Ok(None);
            }
            // Back into memory; it stays on disk too until replaced or deleted.
            self.make_room(cost(key, Some(&value)))?;
            self.hot_bytes += cost(key, Some(&value));
            self.hot.insert(Box::from(key), Slot { value: Some(value), expires, used: self.clock });
        }
        let clock = self.clock;
        Ok(self.hot.get_mut(key).and_then(|slot| {
            slot.used = clock;
            if expired(slot.expires, now) { None } else { slot.value.as_deref() }
        }))
    }

    /// Sets `key` to `value` until `expires` (exclusive; `i64::MAX` for never).
    pub fn put(&mut self, key: &[u8], value: &[u8], expires: i64) -> Result<()> {
        self.clock += 1;
        let new = cost(key, Some(value));
        if new > self.config.hot_budget() / 2 {
            return Err(Error::Config(format!(
                "an entry of {new} bytes does not fit half the state's memory budget of {} bytes",
                self.config.hot_budget()
            )));
        }
        if let Some(slot) = self.hot.get_mut(key) {
            let old = cost(key, slot.value.as_deref());
            slot.value = Some(Box::from(value));
            slot.expires = expires;
            slot.used = self.clock;
            self.hot_bytes = self.hot_bytes + new - old;
            return self.make_room(0);
        }
        self.make_room(new)?;
        self.hot_bytes += new;
        self.hot.insert(Box::from(key), Slot { value: Some(Box::from(value)), expires, used: self.clock });
        Ok(())
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &[u8]) -> Result<()> {
        self.clock += 1;
        let spilled = self.spill.is_some();
        match self.hot.get_mut(key) {
            Some(slot) if spilled => {
                self.hot_bytes -= slot.value.as_deref().map_or(0, <[u8]>::len);
                slot.value = None;
                slot.used = self.clock;
            }
            Some(_) => {
                if let Some((k, slot)) = self.hot.remove_entry(key) {
                    self.hot_bytes -= cost(&k, slot.value.as_deref());
                }
            }
            None if spilled => {
                self.make_room(cost(key, None))?;
                self.hot_bytes += cost(key, None);
                self.hot.insert(Box::from(key), Slot { value: None, expires: i64::MAX, used: self.clock });
            }
            None => {}
        }
        Ok(())
    }

    /// Reclaims the memory and disk of entries that expired at or before
    /// `now`; returns how many it dropped. Costs a pass over memory (and the
    /// expired part of the disk): call it as often as memory needs, not per row.
    pub fn purge(&mut self, now: i64) -> Result<usize> {
        let due: Vec<Box<[u8]>> = self
            .hot
            .iter()
            .filter(|(_, s)| s.value.is_some() && expired(s.expires, now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut dropped = due.len();
        if let Some(spill) = self.spill.as_mut() {
            // An older copy of an expiring key may be on disk, with a later
            // expiry: it goes in the same write, or it would come back.
            let deletes: Vec<(Box<[u8]>, Slot)> =
                due.iter().map(|k| (k.clone(), Slot { value: None, expires: i64::MAX, used: 0 })).collect();
            if !deletes.is_empty() || spill.any_expired(now)? {
                dropped += spill.write(&deletes, Some(now))?;
            }
        }
        for k in due {
            if let Some((k, slot)) = self.hot.remove_entry(&k) {
                self.hot_bytes -= cost(&k, slot.value.as_deref());
            }
        }
        Ok(dropped)
    }

    /// Calls `f(key, value, expires)` for every entry alive at `now`, in
    /// memory and on disk, each key once.
    pub fn for_each(&mut self, now: i64, mut f: impl FnMut(&[u8], &[u8], i64)) -> Result<()> {
        for (k, slot) in &self.hot {
            if let Some(v) = slot.value.as_deref().filter(|_| !expired(slot.expires, now)) {
                f(k, v, slot.expires);
            }
        }
        let Some(spill) = self.spill.as_mut() else { return Ok(()) };
        for entry in spill.reader()?.iter().map_err(kv)? {
            let (k, v) = entry.map_err(kv)?;
            let (key, bytes) = (k.value(), v.value());
            if self.hot.contains_key(key) {
                continue;
            }
            if let Some(expires) = expiry_of(bytes).filter(|e| !expired(*e, now)) {
                f(key, &bytes[8..], expires);
            }
        }
        Ok(())
    }

    /// Forgets everything (before restoring a checkpoint).
    pub fn clear(&mut self) {
        self.hot.clear();
        self.hot_bytes = 0;
        self.spill = None;
    }

    /// Keys held in memory (tombstones included).
    pub fn in_memory(&self) -> usize {
        self.hot.len()
    }

    /// Entries in the spill file (some may be shadowed, expired or removed
    /// since: it is what the file holds, not the live count).
    pub fn on_disk(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.len)
    }

    /// Bytes of memory the entries in memory use, by the store's accounting.
    pub fn memory_bytes(&self) -> usize {
        self.hot_bytes
    }

    /// How many times memory was spilled to disk.
    pub fn spills(&self) -> u64 {
        self.spills
    }

    /// Spills the least recently used half of memory when `extra` more
    /// bytes would pass the budget.
    fn make_room(&mut self, extra: usize) -> Result<()> {
        let budget = self.config.hot_budget();
        if self.hot_bytes + extra <= budget {
            return Ok(());
        }
        let mut order: Vec<(u64, usize)> =
            self.hot.iter().map(|(k, s)| (s.used, cost(k, s.value.as_deref()))).collect();
        order.sort_unstable_by_key(|(used, _)| *used);
        // The recency at and below which entries go.
        let mut freed = 0;
        let mut cutoff = 0;
        for (used, bytes) in &order {
            if self.hot_bytes + extra - freed <= budget / 2 {
                break;
            }
            freed += bytes;
            cutoff = *used;
        }
        drop(order);
        if self.spill.is_none() {
            self.spill = Some(Spill::open(&self.config)?);
        }
        let keys: Vec<Box<[u8]>> = self.hot.iter().filter(|(_, s)| s.used <= cutoff).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(entry) = self.hot.remove_entry(&k) {
                out.push(entry);
            }
        }
        let written = match self.spill.as_mut() {
            Some(spill) => spill.write(&out, None).map(|_| ()),
            None => Ok(()),
        };
        if let Err(e) = written {
            // Nothing is lost: the entries stay in memory, over the budget.
            self.hot.extend(out);
            return Err(e);
        }
        self.hot_bytes -= out.iter().map(|(k, s)| cost(k, s.value.as_deref())).sum::<usize>();
        self.spills += 1;
        tracing::debug!(spilled = out.len(), in_memory = self.hot.len(), "state spilled to disk");
        Ok(())
    }
}
