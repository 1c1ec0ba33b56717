//! The interval (and regular) join's rows past its memory budget.
//!
//! Rows live in memory as the batches they came in (the fast path). When
//! both sides' batches cost more than the state budget, every row in memory
//! moves to an ordered [`SpillTable`] per side, one entry a row: the key is
//! the join key's length and row bytes then a sequence number, so a key's
//! rows are one range; the value is the row's event time then the row in
//! Arrow's row format. A probing row reads its key's range besides the
//! rows in memory. Rows whose time is past their reach read as gone and
//! are deleted as event time moves an eighth of the shorter reach.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use rill_state::{SpillTable, StateConfig};

use super::{IntervalJoin, SideState};
use crate::{Error, Result};

/// Rows that moved out of the fast path.
pub(super) struct Overflow {
    config: StateConfig,
    /// Budget of the batches in memory.
    budget: usize,
    sides: [Option<SpillTable>; 2],
    /// Next sequence number of a spilled row.
    seq: u64,
    /// Watermark of the last purge of expired rows.
    purged_at: i64,
}

impl Overflow {
    pub(super) fn new(config: StateConfig) -> Self {
        Self { budget: config.entry_budget(), config, sides: [None, None], seq: 0, purged_at: i64::MIN }
    }
}

/// Whole rows of `schema` as bytes.
pub(super) fn row_codec(schema: &SchemaRef) -> Result<RowConverter> {
    let fields = schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
    Ok(RowConverter::new(fields)?)
}

/// The start of `key`'s range: its length, then its bytes.
fn prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + 8);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// A spilled row's time and row bytes.
fn record(value: &[u8]) -> Result<(i64, &[u8])> {
    let time: [u8; 8] = value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Plan("a spilled join row is cut short".into()))?;
    Ok((i64::from_be_bytes(time), &value[8..]))
}

impl IntervalJoin {
    /// Keeps the rows within `config`'s memory budget, spilling past it.
    pub fn with_state(mut self, config: StateConfig) -> Self {
        self.overflow = Overflow::new(config);
        self
    }

    /// Rows moved out of the fast path (some may be past their reach, until purged).
    pub fn rows_on_disk(&self) -> usize {
        self.overflow.sides.iter().flatten().map(|t| t.len() as usize).sum()
    }

    /// How long (event time) each side's rows stay: `None` forever.
    pub(super) fn reach(&self) -> Option<[i64; 2]> {
        match (self.bounds, self.ttl) {
            (Some((lower, upper)), _) => Some([lower.saturating_neg(), upper]),
            (None, Some(ttl)) => Some([ttl, ttl]),
            (None, None) => None,
        }
    }

    /// Rows of `side` as one batch from spilled values, keeping those alive.
    fn alive_rows(&self, side: usize, values: &[Vec<u8>]) -> Result<Option<(RecordBatch, Vec<i64>)>> {
        let reach = self.reach().map(|r| r[side]);
        let mut alive = Vec::new();
        for value in values {
            let (t, row) = record(value)?;
            if reach.is_none_or(|r| t.saturating_add(r) > self.watermark) {
                alive.push((t, row));
            }
        }
        if alive.is_empty() {
            return Ok(None);
        }
        let codec = &self.codecs[side];
        let parser = codec.parser();
        let columns = codec.convert_rows(alive.iter().map(|(_, row)| parser.parse(row)))?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schemas[side]), columns)?;
        Ok(Some((batch, alive.iter().map(|(t, _)| *t).collect())))
    }

    /// The spilled rows of `key` on `side` still alive, as one batch with their times.
    pub(super) fn spilled_rows(&mut self, side: usize, key: &[u8]) -> Result<Option<(RecordBatch, Vec<i64>)>> {
        let Some(table) = self.overflow.sides[side].as_mut() else { return Ok(None) };
        let from = prefix(key);
        let mut to = from.clone();
        to.extend_from_slice(&[0xff; 9]);
        let mut values = Vec::new();
        table.for_each_in(&from, Some(&to), |_, v| values.push(v.to_vec()))?;
        self.alive_rows(side, &values)
    }

    /// Moves every row in memory out of the fast path when the batches
    /// cost more than the budget.
    pub(super) fn spill_if_over(&mut self) -> Result<()> {
        if self.state[0].bytes + self.state[1].bytes <= self.overflow.budget {
            return Ok(());
        }
        for side in 0..2 {
            let state = std::mem::take(&mut self.state[side]);
            let codec = &self.codecs[side];
            let encoded = state
                .batches
                .iter()
                .map(|b| b.as_ref().map(|b| codec.convert_columns(b.columns())).transpose())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let mut puts = Vec::with_capacity(state.rows);
            for (key, entries) in &state.by_key {
                let start = prefix(key);
                for (slot, row, time) in entries {
                    let Some(rows) = encoded.get(*slot).and_then(Option::as_ref) else { continue };
                    let mut disk = start.clone();
                    disk.extend_from_slice(&self.overflow.seq.to_be_bytes());
                    self.overflow.seq += 1;
                    let mut value = time.to_be_bytes().to_vec();
                    value.extend_from_slice(rows.row(*row as usize).as_ref());
                    puts.push((disk, value));
                }
            }
            let config = self.overflow.config.clone();
            let table = self.overflow.sides[side].get_or_insert_with(|| SpillTable::new(config));
            table.write(&puts, &[])?;
        }
        tracing::debug!(rows = self.rows_on_disk(), "join rows moved out of memory");
        Ok(())
    }

    /// Deletes spilled rows past their reach, as event time moves an
    /// eighth of the shorter reach.
    pub(super) fn purge_spilled(&mut self) -> Result<()> {
        let Some(reach) = self.reach() else { return Ok(()) };
        let step = (reach[0].min(reach[1]) / 8).max(1);
        if self.watermark.saturating_sub(self.overflow.purged_at) < step {
            return Ok(());
        }
        self.overflow.purged_at = self.watermark;
        let watermark = self.watermark;
        for (side, table) in self.overflow.sides.iter_mut().enumerate() {
            let Some(table) = table.as_mut() else { continue };
            let mut gone = Vec::new();
            let mut cut = false;
            table.for_each_in(&[], None, |k, v| match record(v) {
                Ok((t, _)) if t.saturating_add(reach[side]) <= watermark => gone.push(k.to_vec()),
                Ok(_) => {}
                Err(_) => cut = true,
            })?;
            if cut {
                return Err(Error::Plan("a spilled join row is cut short".into()));
            }
            table.write(&[], &gone)?;
        }
        Ok(())
    }

    /// The spilled rows alive, per side, with their times (for checkpoints).
    pub(super) fn spilled_state(&mut self, side: usize) -> Result<Option<(RecordBatch, Vec<i64>)>> {
        let Some(table) = self.overflow.sides[side].as_mut() else { return Ok(None) };
        let mut values = Vec::new();
        table.for_each_in(&[], None, |_, v| values.push(v.to_vec()))?;
        self.alive_rows(side, &values)
    }
}

impl SideState {
    /// Memory of the batches and the key index, by the join's accounting.
    pub(super) fn recount(&mut self) {
        let batches: usize = self.batches.iter().flatten().map(RecordBatch::get_array_memory_size).sum();
        let index: usize = self.by_key.iter().map(|(k, v)| k.len() + 48 + v.len() * 24).sum();
        self.bytes = batches + index;
    }
}
