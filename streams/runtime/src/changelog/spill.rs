//! The running aggregate's groups: their checkpoints, and those past the
//! memory budget on disk.
//!
//! A group's state is its row count and each accumulator's state values
//! (the same columns in checkpoints and on disk). When the groups in memory
//! cost more than the budget, the least recently used half goes to the
//! operator's [`SpillBook`] table in one write, keyed by the group key's
//! row bytes, valued by the state as one row of Arrow's row format; a
//! change to a spilled key brings it back. The copy on disk is stale from
//! then on: replaced when the group spills again, deleted when its key's
//! last row is retracted. Whatever is in memory wins over disk.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Field, Int64Type, Schema};
use datafusion::arrow::row::OwnedRow;
use datafusion::scalar::ScalarValue;
use rill_state::StateConfig;

use super::{Group, GroupAggregate};
use crate::spill::{SpillBook, after};
use crate::{Error, Result};

/// Memory a group costs beyond its key and accumulators: its map entry and
/// the accumulators' boxes.
const GROUP_OVERHEAD: usize = 128;

/// Rows of a checkpoint restored before the budget is checked.
const RESTORE_CHUNK: usize = 4096;

impl GroupAggregate {
    /// Keeps the groups within `config`'s memory budget, spilling the least
    /// recently used to disk beyond it.
    pub fn with_state(mut self, config: StateConfig) -> Self {
        self.spill = SpillBook::new(config);
        self
    }

    /// Memory the groups in memory cost, by the operator's accounting.
    pub fn memory_bytes(&self) -> usize {
        self.spill.bytes()
    }

    /// Groups on disk (a stale copy of a group back in memory counts until replaced).
    pub fn spilled_groups(&self) -> u64 {
        self.spill.on_disk()
    }

    /// Marks a group just used and brings its cost up to date.
    pub(super) fn touch(&mut self, group: &mut Group) {
        let bytes = group.accumulators.iter().map(|a| a.size()).sum::<usize>() + GROUP_OVERHEAD;
        group.used = self.spill.touch(group.bytes, bytes);
        group.bytes = bytes;
    }

    /// A key whose last row went: its memory and its disk copy go too.
    pub(super) fn forget(&mut self, key: &OwnedRow, group: &Group) {
        self.spill.release(group.bytes, group.on_disk.then(|| key.row().as_ref().to_vec()));
    }

    /// `key`'s group brought back from disk, if it was spilled.
    pub(super) fn load(&mut self, key: &OwnedRow) -> Result<Option<Group>> {
        let Some(value) = self.spill.get(key.row().as_ref())? else { return Ok(None) };
        let codec = self.spill.codec()?;
        let columns = codec.convert_rows([codec.parser().parse(&value)])?;
        let mut group = self.group_from(&columns, 0)?;
        group.on_disk = true;
        Ok(Some(group))
    }

    /// A group from row `row` of state columns (row count, then state values).
    fn group_from(&self, columns: &[ArrayRef], row: usize) -> Result<Group> {
        let widths = &self.widths;
        if columns.len() != 1 + widths.iter().sum::<usize>() {
            return Err(Error::Plan("checkpointed changelog aggregate state does not fit this aggregate".into()));
        }
        let mut group = self.fresh()?;
        group.rows = columns[0].as_primitive::<Int64Type>().value(row);
        let mut column = 1;
        for (acc, width) in group.accumulators.iter_mut().zip(widths) {
            let cells: Vec<ArrayRef> = columns[column..column + width].iter().map(|c| c.slice(row, 1)).collect();
            acc.merge_batch(&cells)?;
            column += width;
        }
        Ok(group)
    }

    /// The state columns (row count, then state values) of `keys`' groups in memory.
    fn state_columns(&mut self, keys: &[OwnedRow]) -> Result<Vec<ArrayRef>> {
        let types = self.state_types.clone();
        let mut cells: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(keys.len()); types.len()];
        for key in keys {
            let Some(group) = self.groups.get_mut(key) else { continue };
            cells[0].push(ScalarValue::Int64(Some(group.rows)));
            let mut column = 1;
            for acc in &mut group.accumulators {
                for value in acc.state()? {
                    cells[column].push(value);
                    column += 1;
                }
            }
        }
        cells
            .into_iter()
            .zip(&types)
            .map(|(values, t)| {
                let array = if values.is_empty() {
                    datafusion::arrow::array::new_empty_array(t)
                } else {
                    ScalarValue::iter_to_array(values)?
                };
                Ok(if array.data_type() == t { array } else { datafusion::arrow::compute::cast(&array, t)? })
            })
            .collect()
    }

    /// Moves the least recently used groups to disk when memory is past the budget.
    pub(super) fn make_room(&mut self) -> Result<()> {
        if !self.spill.over_budget() {
            return Ok(());
        }
        if self.spill.needs_codec() {
            self.spill.set_codec(self.state_types.clone())?;
            if !self.spill.over_budget() {
                return Ok(());
            }
        }
        let candidates: Vec<(u64, OwnedRow, usize)> =
            self.groups.iter().map(|(k, g)| (g.used, k.clone(), g.bytes)).collect();
        let chosen = self.spill.choose(candidates);
        let columns = self.state_columns(&chosen)?;
        let values = self.spill.codec()?.convert_columns(&columns)?;
        let mut puts = Vec::with_capacity(chosen.len());
        let mut freed = 0;
        for (i, key) in chosen.iter().enumerate() {
            puts.push((key.row().as_ref().to_vec(), values.row(i).as_ref().to_vec()));
            freed += self.groups.get(key).map_or(0, |g| g.bytes);
        }
        // On failure nothing is lost: the groups stay in memory, over the budget.
        self.spill.spill(&puts, freed)?;
        for key in &chosen {
            self.groups.remove(key);
        }
        tracing::debug!(spilled = puts.len(), in_memory = self.groups.len(), "aggregate state spilled to disk");
        Ok(())
    }

    /// Every group, in memory and spilled: keys, `__rows`, then each
    /// accumulator's state values.
    pub(super) fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let keys: Vec<OwnedRow> = self.groups.keys().cloned().collect();
        let mut batches = Vec::new();
        if !keys.is_empty() {
            let mut columns = self.rows.convert_rows(keys.iter().map(OwnedRow::row))?;
            columns.extend(self.state_columns(&keys)?);
            batches.push(columns);
        }
        let mut from = Vec::new();
        loop {
            let entries = self.spill.scan(&from, None)?;
            let Some((last, _)) = entries.last() else { break };
            from = after(last);
            let parser = self.rows.parser();
            let spilled: Vec<&(Vec<u8>, Vec<u8>)> =
                entries.iter().filter(|(k, _)| !self.groups.contains_key(&parser.parse(k).owned())).collect();
            if spilled.is_empty() {
                continue;
            }
            let codec = self.spill.codec()?;
            let values = codec.parser();
            let mut columns = self.rows.convert_rows(spilled.iter().map(|(k, _)| parser.parse(k)))?;
            columns.extend(codec.convert_rows(spilled.iter().map(|(_, v)| values.parse(v)))?);
            batches.push(columns);
        }
        let Some(first) = batches.first() else { return Ok(None) };
        let mut fields: Vec<Field> = self.key_indices.iter().map(|i| self.input.field(*i).clone()).collect();
        fields.push(Field::new("__rows", datafusion::arrow::datatypes::DataType::Int64, false));
        for (i, c) in first[self.key_indices.len() + 1..].iter().enumerate() {
            fields.push(Field::new(format!("__s{i}"), c.data_type().clone(), true));
        }
        let schema = Arc::new(Schema::new(fields));
        let batches = batches
            .into_iter()
            .map(|columns| RecordBatch::try_new(Arc::clone(&schema), columns))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Some(datafusion::arrow::compute::concat_batches(&schema, &batches)?))
    }

    /// Puts back the groups of a [`GroupAggregate::snapshot`], spilling
    /// past the budget as they come.
    pub(super) fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        let n = self.key_indices.len();
        let keys = self.rows.convert_columns(&state.columns()[..n])?;
        for row in 0..state.num_rows() {
            let mut group = self.group_from(&state.columns()[n..], row)?;
            self.touch(&mut group);
            self.groups.insert(keys.row(row).owned(), group);
            if row % RESTORE_CHUNK == RESTORE_CHUNK - 1 {
                self.make_room()?;
            }
        }
        self.make_room()
    }
}
