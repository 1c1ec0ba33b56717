//! [`SpillTable`]: an ordered scratch table of byte keys and byte values
//! on disk, for operators that keep their own state in memory and move
//! what passes their budget out here — keyed so that a range of keys is
//! what they need back at once (windows by their end, for instance).
//!
//! It owns the file and its reads and writes. What keys and values mean,
//! what is in memory and when to spill are its users' business; there is no
//! expiry here (users delete what they are done with).

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use crate::scratch::Scratch;
use crate::{Result, StateConfig, kv};

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// The entries of `reader` from `from` up to `to` (the end without one).
fn range<'a>(
    reader: &'a ReadOnlyTable<&'static [u8], &'static [u8]>,
    from: &'a [u8],
    to: Option<&'a [u8]>,
) -> Result<redb::Range<'a, &'static [u8], &'static [u8]>> {
    match to {
        Some(to) => reader.range(from..to),
        None => reader.range(from..),
    }
    .map_err(kv)
}

/// An ordered scratch table (see the module docs); the file is created on
/// the first write and removed with the table.
pub struct SpillTable {
    /// Dropped before the file it reads.
    reader: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    file: Option<Scratch>,
    config: StateConfig,
    len: u64,
    writes: u64,
}

impl std::fmt::Debug for SpillTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillTable").field("len", &self.len).field("writes", &self.writes).finish_non_exhaustive()
    }
}

impl SpillTable {
    /// An empty table whose file will go under `config.spill_dir`.
    pub fn new(config: StateConfig) -> Self {
        Self { reader: None, file: None, config, len: 0, writes: 0 }
    }

    /// Entries in the table.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write transactions so far (each spill is one).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Stores `puts` (replacing what a key held) and deletes `deletes`
    /// (absent keys are fine), all in one write.
    pub fn write(&mut self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> Result<()> {
        if puts.is_empty() && (deletes.is_empty() || self.file.is_none()) {
            return Ok(());
        }
        self.reader = None;
        if self.file.is_none() {
            self.file = Some(Scratch::open(&self.config)?);
        }
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        let txn = file.begin_write()?;
        let len;
        {
            let mut table = txn.open_table(ENTRIES).map_err(kv)?;
            for key in deletes {
                table.remove(&key[..]).map_err(kv)?;
            }
            for (key, value) in puts {
                table.insert(&key[..], &value[..]).map_err(kv)?;
            }
            len = table.len().map_err(kv)?;
        }
        txn.commit().map_err(kv)?;
        self.len = len;
        self.writes += 1;
        Ok(())
    }

    fn reader(&mut self) -> Result<Option<&ReadOnlyTable<&'static [u8], &'static [u8]>>> {
        if self.reader.is_none() {
            // Nothing written yet: nothing to read.
            let Some(file) = self.file.as_ref() else { return Ok(None) };
            let txn = file.db.begin_read().map_err(kv)?;
            self.reader = Some(txn.open_table(ENTRIES).map_err(kv)?);
        }
        Ok(self.reader.as_ref())
    }

    /// The value of `key`, if stored.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.len == 0 {
            return Ok(None);
        }
        let Some(reader) = self.reader()? else { return Ok(None) };
        Ok(reader.get(key).map_err(kv)?.map(|v| v.value().to_vec()))
    }

    /// Up to `limit` entries whose keys are at or after `from` and before
    /// `to` (to the end without one), in key order.
    pub fn scan(&mut self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if self.len == 0 || to.is_some_and(|to| from >= to) {
            return Ok(Vec::new());
        }
        let Some(reader) = self.reader()? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in range(reader, from, to)?.take(limit) {
            let (k, v) = entry.map_err(kv)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Calls `f(key, value)` for every entry whose key is at or after
    /// `from` and before `to` (to the end without one), in key order.
    pub fn for_each_in(&mut self, from: &[u8], to: Option<&[u8]>, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        if self.len == 0 || to.is_some_and(|to| from >= to) {
            return Ok(());
        }
        let Some(reader) = self.reader()? else { return Ok(()) };
        for entry in range(reader, from, to)? {
            let (k, v) = entry.map_err(kv)?;
            f(k.value(), v.value());
        }
        Ok(())
    }

    /// Forgets everything (the file goes; a later write makes a new one).
    pub fn clear(&mut self) {
        self.reader = None;
        self.file = None;
        self.len = 0;
    }
}
