//! Deduplication by key within a time bound: a row is dropped when a row
//! with the same key was kept less than `within` ms of event time from it
//! (a retried send, a replayed record). A key's memory ends once the
//! watermark is `within` past its last kept row (its TTL), so state stays
//! bounded by the keys seen in one bound; those keys live in a
//! [`KeyedState`] that spills to disk beyond its memory budget.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::row::{RowConverter, SortField};
use rill_state::{KeyedState, StateConfig};

use crate::window_agg::event_times;
use crate::{Error, Result};

/// The deduplication operator (see the module docs).
pub struct Dedup {
    input: SchemaRef,
    key_indices: Vec<usize>,
    time_index: usize,
    within: i64,
    rows: RowConverter,
    /// Event time of each key's last kept row, expiring `within` after it.
    kept: KeyedState,
    watermark: i64,
    /// Watermark of the last purge of expired keys.
    purged_at: i64,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup").field("keys", &self.kept).field("within", &self.within).finish_non_exhaustive()
    }
}

impl Dedup {
    /// Deduplicates rows of `input` by `keys` within `within` ms of
    /// `time_column`, with the default state settings.
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
        Ok(Self {
            input: Arc::clone(input),
            key_indices,
            time_index,
            within,
            rows,
            kept: KeyedState::new(StateConfig::default()),
            watermark: i64::MIN,
            purged_at: i64::MIN,
        })
    }

    /// Keeps the remembered keys within `config`'s memory budget.
    pub fn with_state(mut self, config: StateConfig) -> Self {
        self.kept = KeyedState::new(config);
        self
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
            let key = keys.row(row);
            // Read whatever is still kept: the bound decides, expiry only reclaims space.
            let last = self.kept.get(key.as_ref(), i64::MIN)?.and_then(|v| v.try_into().ok()).map(i64::from_le_bytes);
            let fresh = last.is_none_or(|last| (ts - last).abs() >= self.within);
            if fresh {
                self.kept.put(key.as_ref(), &ts.to_le_bytes(), ts.saturating_add(self.within))?;
            }
            keep.push(fresh);
        }
        Ok(filter_record_batch(batch, &BooleanArray::from(keep))?)
    }

    /// Forgets keys whose last kept row is `within` behind `watermark`
    /// (reclaiming their space each time event time moves an eighth of the bound).
    pub fn advance(&mut self, watermark: i64) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        if self.watermark >= self.purged_at.saturating_add((self.within / 8).max(1)) {
            self.kept.purge(self.watermark)?;
            self.purged_at = self.watermark;
        }
        Ok(())
    }

    /// The remembered keys with their last kept time, for a checkpoint.
    pub fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let (mut keys, mut times) = (Vec::new(), Vec::new());
        self.kept.for_each(i64::MIN, |k, v, _| {
            if let Ok(t) = v.try_into() {
                keys.push(k.to_vec());
                times.push(i64::from_le_bytes(t));
            }
        })?;
        if keys.is_empty() {
            return Ok(None);
        }
        let parser = self.rows.parser();
        let mut columns = self.rows.convert_rows(keys.iter().map(|k| parser.parse(k)))?;
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
        self.kept.clear();
        let keys = self.rows.convert_columns(&state.columns()[..k])?;
        let times = state.column(k).as_primitive::<Int64Type>();
        for row in 0..state.num_rows() {
            let t = times.value(row);
            self.kept.put(keys.row(row).as_ref(), &t.to_le_bytes(), t.saturating_add(self.within))?;
        }
        Ok(())
    }

    /// Keys held now, in memory and spilled (expired ones count until purged).
    pub fn keys(&self) -> usize {
        self.kept.in_memory() + self.kept.on_disk() as usize
    }

    /// The key store, for its memory figures.
    pub fn state(&self) -> &KeyedState {
        &self.kept
    }
}
