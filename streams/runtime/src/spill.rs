//! Book-keeping for operators whose state is live objects (DataFusion
//! accumulators) that must stay within a memory budget: what the objects
//! in memory cost, which are least recently used, the row format their
//! state takes on disk and the [`SpillTable`] it goes to.
//!
//! It owns the accounting and the table. What an entry is, its key on disk
//! and when an operator may spill it are the operator's.

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use rill_state::{SpillTable, StateConfig};

use crate::Result;

/// Entries read back from disk at a time.
pub(crate) const CHUNK: usize = 16_384;

/// Memory accounting and the spill table of one operator.
pub(crate) struct SpillBook {
    table: SpillTable,
    budget: usize,
    /// Memory the entries in memory cost.
    bytes: usize,
    clock: u64,
    /// An entry's state as one row of bytes.
    codec: Option<RowConverter>,
    /// Disk copies of entries gone for good, deleted with the next write.
    deletes: Vec<Vec<u8>>,
    spills: u64,
    /// The state has a type the row format cannot hold: it stays in memory.
    unsupported: bool,
}

impl SpillBook {
    /// An empty book within `config`'s budget.
    pub(crate) fn new(config: StateConfig) -> Self {
        Self {
            budget: config.entry_budget(),
            table: SpillTable::new(config),
            bytes: 0,
            clock: 0,
            codec: None,
            deletes: Vec::new(),
            spills: 0,
            unsupported: false,
        }
    }

    /// Memory the entries in memory cost.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries on disk (stale copies of entries back in memory included).
    pub(crate) fn on_disk(&self) -> u64 {
        self.table.len()
    }

    /// How many times entries were spilled.
    pub(crate) fn spills(&self) -> u64 {
        self.spills
    }

    /// An entry that cost `old` bytes now costs `new`; returns its recency stamp.
    pub(crate) fn touch(&mut self, old: usize, new: usize) -> u64 {
        self.bytes = self.bytes + new - old;
        self.clock += 1;
        self.clock
    }

    /// An entry of `bytes` is gone for good, with its disk copy if it has one.
    pub(crate) fn release(&mut self, bytes: usize, disk_copy: Option<Vec<u8>>) {
        self.bytes -= bytes;
        self.deletes.extend(disk_copy);
    }

    /// Whether memory is past the budget and entries can go to disk.
    pub(crate) fn over_budget(&self) -> bool {
        self.bytes > self.budget && !self.unsupported
    }

    /// Of `candidates` (recency, entry, bytes), the least recently used
    /// ones whose going brings memory down to half the budget.
    pub(crate) fn choose<T: Ord>(&self, mut candidates: Vec<(u64, T, usize)>) -> Vec<T> {
        candidates.sort_unstable_by_key(|c| c.0);
        let target = self.budget / 2;
        let mut freed = 0;
        let mut chosen = Vec::new();
        for (_, entry, bytes) in candidates {
            if self.bytes - freed <= target {
                break;
            }
            freed += bytes;
            chosen.push(entry);
        }
        chosen
    }

    /// Whether the row format of the state is still to be made (see [`SpillBook::set_codec`]).
    pub(crate) fn needs_codec(&self) -> bool {
        self.codec.is_none() && !self.unsupported
    }

    /// Makes the row format for state columns of `types`. When it cannot
    /// hold them, that is warned about once and the state stays in memory
    /// from then on.
    pub(crate) fn set_codec(&mut self, types: Vec<DataType>) -> Result<()> {
        let names: Vec<String> = types.iter().map(DataType::to_string).collect();
        let fields: Vec<SortField> = types.into_iter().map(SortField::new).collect();
        if RowConverter::supports_fields(&fields) {
            self.codec = Some(RowConverter::new(fields)?);
        } else {
            let types = names;
            tracing::warn!(?types, "state of these types cannot spill; it stays in memory past the budget");
            self.unsupported = true;
        }
        Ok(())
    }

    /// The row format of the state, once made.
    pub(crate) fn codec(&self) -> Result<&RowConverter> {
        self.codec.as_ref().ok_or_else(|| crate::Error::Plan("spilled state without its row format".into()))
    }

    /// Deletes the disk copies of entries gone for good.
    pub(crate) fn flush_deletes(&mut self) -> Result<()> {
        if !self.deletes.is_empty() {
            self.table.write(&[], &self.deletes)?;
            self.deletes.clear();
        }
        Ok(())
    }

    /// Writes `puts` (and the pending deletes) in one go; `freed` bytes
    /// leave memory with them. On failure nothing changes.
    pub(crate) fn spill(&mut self, puts: &[(Vec<u8>, Vec<u8>)], freed: usize) -> Result<()> {
        self.table.write(puts, &self.deletes)?;
        self.deletes.clear();
        self.bytes -= freed;
        self.spills += 1;
        Ok(())
    }

    /// The disk copy stored under `key`, if any.
    pub(crate) fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.table.is_empty() {
            return Ok(None);
        }
        self.flush_deletes()?;
        Ok(self.table.get(key)?)
    }

    /// Up to [`CHUNK`] disk entries from `from` up to `to` (the end without one).
    pub(crate) fn scan(&mut self, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if self.table.is_empty() {
            return Ok(Vec::new());
        }
        self.flush_deletes()?;
        Ok(self.table.scan(from, to, CHUNK)?)
    }
}

/// The smallest key after `key` (to scan on from it).
pub(crate) fn after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}
