//! Deduplication by key within a time bound: a row is dropped when a row
//! with the same key was kept less than `within` ms of event time from it
//! (a retried send, a replayed record). A key's memory ends once the
//! watermark is `within` past its last kept row, so state stays bounded by
//! the keys seen in one bound.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};

use crate::window_agg::event_times;
use crate::{Error, Result};

/// The deduplication operator (see the module docs).
pub struct Dedup {
    input: SchemaRef,
    key_indices: Vec<usize>,
    time_index: usize,
    within: i64,
    rows: RowConverter,
    /// Event time of each key's last kept row.
    kept: HashMap<OwnedRow, i64>,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup").field("keys", &self.kept.len()).field("within", &self.within).finish_non_exhaustive()
    }
}

impl Dedup {
    /// Deduplicates rows of `input` by `keys` within `within` ms of `time_column`.
    pub fn new(input: &SchemaRef, keys: &[&str], time_column: &str, within: i64) -> Result<Self> {
        if within <= 0 {
            return Err(Error::Plan(format!("the dedup bound must be positive, got {within} ms")));
        }
        if keys.is_empty() {
            return Err(Error::Plan("dedup needs at least one key column".into()));
        }
        let index = |name: &str| {
            input.index_of(name).map_err(|_| Error::Plan(format!("column '{name}' is not in the input schema")))
        };
        let key_indices = keys.iter().map(|k| index(k)).collect::<Result<Vec<_>>>()?;
        let time_index = index(time_column)?;
        let rows = RowConverter::new(
            key_indices.iter().map(|i| SortField::new(input.field(*i).data_type().clone())).collect(),
        )?;
        Ok(Self { input: Arc::clone(input), key_indices, time_index, within, rows, kept: HashMap::new() })
    }

    /// The schema of its batches (the input's).
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.input)
    }

    /// The rows of `batch` that are not duplicates (rows without a time are kept).
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let times = event_times(batch.column(self.time_index))?;
        let keys = self
            .rows
            .convert_columns(&self.key_indices.iter().map(|i| Arc::clone(batch.column(*i))).collect::<Vec<_>>())?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for (row, ts) in times.iter().enumerate() {
            let Some(ts) = *ts else {
                keep.push(true);
                continue;
            };
            let key = keys.row(row).owned();
            let fresh = self.kept.get(&key).is_none_or(|last| (ts - last).abs() >= self.within);
            if fresh {
                self.kept.insert(key, ts);
            }
            keep.push(fresh);
        }
        Ok(filter_record_batch(batch, &BooleanArray::from(keep))?)
    }

    /// Forgets keys whose last kept row is `within` behind `watermark`.
    pub fn advance(&mut self, watermark: i64) {
        let within = self.within;
        self.kept.retain(|_, last| last.saturating_add(within) > watermark);
    }

    /// The remembered keys with their last kept time, for a checkpoint.
    pub fn snapshot(&self) -> Result<Option<RecordBatch>> {
        if self.kept.is_empty() {
            return Ok(None);
        }
        let (keys, times): (Vec<_>, Vec<i64>) = self.kept.iter().map(|(k, t)| (k.row(), *t)).unzip();
        let mut columns = self.rows.convert_rows(keys)?;
        columns.push(Arc::new(Int64Array::from(times)));
        let mut fields: Vec<Field> = self.key_indices.iter().map(|i| self.input.field(*i).clone()).collect();
        fields.push(Field::new("__last", DataType::Int64, false));
        Ok(Some(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?))
    }

    /// Puts back the keys of a [`Dedup::snapshot`].
    pub fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        let k = self.key_indices.len();
        if state.num_columns() != k + 1 {
            return Err(Error::Plan("checkpointed dedup state does not fit this dedup operator".into()));
        }
        let keys = self.rows.convert_columns(&state.columns()[..k])?;
        let times = state.column(k).as_primitive::<Int64Type>();
        for row in 0..state.num_rows() {
            self.kept.insert(keys.row(row).owned(), times.value(row));
        }
        Ok(())
    }

    /// Keys remembered now.
    pub fn keys(&self) -> usize {
        self.kept.len()
    }
}
