//! The window aggregate's state as one Arrow batch, for checkpoints: per
//! open (key, window) the key columns, the window bounds, whether it has
//! unfired rows and whether it fired, and each accumulator's intermediate
//! state (DataFusion's `state()` / `merge_batch`, the same form its partial
//! aggregation uses), so a restored window continues exactly.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::scalar::ScalarValue;
use rill_time::Window;

use super::{WindowAggregate, Windows};
use crate::{Error, Result};

/// Rows of a checkpoint restored before the budget is checked.
const RESTORE_CHUNK: usize = 4096;

impl WindowAggregate {
    pub(super) fn state_schema(&self) -> Result<Arc<Schema>> {
        let mut fields: Vec<Field> = self.key_indices.iter().map(|i| self.input.field(*i).clone()).collect();
        fields.push(Field::new("__start", DataType::Int64, false));
        fields.push(Field::new("__end", DataType::Int64, false));
        fields.push(Field::new("__dirty", DataType::Boolean, false));
        fields.push(Field::new("__fired", DataType::Boolean, false));
        fields.push(Field::new("__rows", DataType::Int64, false));
        for (i, a) in self.aggregates.iter().enumerate() {
            for f in a.state_fields()? {
                fields.push(Field::new(format!("__s{i}_{}", f.name()), f.data_type().clone(), true));
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Every open window's state (see the module docs), in memory and spilled.
    pub fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let live: Vec<usize> = (0..self.slots.len()).filter(|s| self.slots[*s].is_some()).collect();
        let mut batches: Vec<RecordBatch> = self.state_batch(&live)?.into_iter().collect();
        batches.extend(self.spilled_state()?);
        match batches.len() {
            0 => Ok(None),
            1 => Ok(batches.pop()),
            _ => Ok(Some(datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches)?)),
        }
    }

    /// The state of the groups in `slots`, one row each (their
    /// accumulators go on, as if nothing was taken).
    pub(super) fn state_batch(&mut self, live: &[usize]) -> Result<Option<RecordBatch>> {
        let schema = self.state_schema()?;
        if live.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::with_capacity(live.len());
        let (mut starts, mut ends, mut dirty, mut fired) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rows = Vec::new();
        let width = schema.fields().len() - self.key_indices.len() - 5;
        let mut states: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(live.len()); width];
        let aggregates = &self.aggregates;
        for slot in live {
            let Some(g) = self.slots[*slot].as_mut() else { continue };
            keys.push(g.key.clone());
            starts.push(g.window.start);
            ends.push(g.window.end);
            dirty.push(g.dirty);
            fired.push(g.fired);
            rows.push(g.rows as i64);
            let mut column = 0;
            for (acc, agg) in g.accumulators.iter_mut().zip(aggregates) {
                // `state()` may hand over the accumulator's contents (a
                // median's values): continue with a fresh one that merged them.
                let state = acc.state()?;
                let arrays = state.iter().map(ScalarValue::to_array).collect::<datafusion::error::Result<Vec<_>>>()?;
                let mut fresh = agg.create_accumulator()?;
                fresh.merge_batch(&arrays)?;
                *acc = fresh;
                for v in state {
                    states[column].push(v);
                    column += 1;
                }
            }
        }
        let mut columns: Vec<ArrayRef> = self.rows.convert_rows(keys.iter().map(|k| k.row()))?;
        columns.truncate(self.key_indices.len());
        columns.push(Arc::new(Int64Array::from(starts)));
        columns.push(Arc::new(Int64Array::from(ends)));
        columns.push(Arc::new(BooleanArray::from(dirty)));
        columns.push(Arc::new(BooleanArray::from(fired)));
        columns.push(Arc::new(Int64Array::from(rows)));
        for (i, values) in states.into_iter().enumerate() {
            let field = schema.field(self.key_indices.len() + 5 + i);
            let array = ScalarValue::iter_to_array(values)?;
            columns.push(if array.data_type() == field.data_type() {
                array
            } else {
                datafusion::arrow::compute::cast(&array, field.data_type())?
            });
        }
        Ok(Some(RecordBatch::try_new(schema, columns)?))
    }

    /// Puts back the windows of a [`WindowAggregate::snapshot`] taken by an
    /// operator of the same configuration (event time is restored by
    /// advancing it afterwards).
    pub fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        // A chunk at a time, so restored state past the budget spills as it comes.
        let mut offset = 0;
        while offset < state.num_rows() {
            let n = RESTORE_CHUNK.min(state.num_rows() - offset);
            self.restore_rows(&state.slice(offset, n), true)?;
            self.make_room()?;
            offset += n;
        }
        Ok(())
    }

    /// Puts back the groups of a state batch, and with `sessions` their
    /// keys' open sessions (a group back from disk has them still); returns
    /// their slots.
    pub(super) fn restore_rows(&mut self, state: &RecordBatch, sessions: bool) -> Result<Vec<usize>> {
        let schema = self.state_schema()?;
        // Checkpoints from before count windows have no `__rows` column.
        let with_rows = state.schema().fields().len() == schema.fields().len()
            && state.schema().column_with_name("__rows").is_some();
        let without_rows = state.schema().fields().len() + 1 == schema.fields().len()
            && !matches!(self.config.windows, Windows::Count { .. });
        if !with_rows && !without_rows {
            return Err(Error::Plan("checkpointed window state does not fit this window operator".into()));
        }
        let k = self.key_indices.len();
        let keys = self.rows.convert_columns(&self.key_columns(state.columns()[..k].to_vec(), state.num_rows()))?;
        let starts = state.column(k).as_primitive::<Int64Type>();
        let ends = state.column(k + 1).as_primitive::<Int64Type>();
        let dirty = state.column(k + 2).as_boolean();
        let fired = state.column(k + 3).as_boolean();
        let rows = |row: usize| if with_rows { state.column(k + 4).as_primitive::<Int64Type>().value(row) } else { 0 };
        let first_state = if with_rows { k + 5 } else { k + 4 };
        let mut slots = Vec::with_capacity(state.num_rows());
        for row in 0..state.num_rows() {
            let window = Window::new(starts.value(row), ends.value(row));
            let key = keys.row(row).owned();
            let slot = match self.config.windows {
                Windows::Count { .. } => self.restore_count(key.clone(), window, rows(row) as u64)?,
                _ => self.new_group(key.clone(), window)?,
            };
            slots.push(slot);
            if let (Some(index), true) = (self.sessions.as_mut(), sessions) {
                index.restore(&key, window)?;
            }
            let Some(g) = self.slots[slot].as_mut() else { continue };
            g.dirty = dirty.value(row);
            g.fired = fired.value(row);
            let mut column = first_state;
            for (acc, agg) in g.accumulators.iter_mut().zip(&self.aggregates) {
                let n = agg.state_fields()?.len();
                let values: Vec<ArrayRef> = (column..column + n).map(|c| state.column(c).slice(row, 1)).collect();
                acc.merge_batch(&values)?;
                column += n;
            }
            self.touch(slot);
        }
        Ok(slots)
    }
}
