//! [`LastRow`]: appended rows to a changelog of the latest row per key.
//!
//! The row kept per key lives in a [`KeyedState`] (so it spills past the
//! memory budget and expires with the TTL): its event time, then the row
//! in Arrow's row format.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use rill_state::{KeyedState, StateConfig};

use super::{INSERT, OP_COLUMN, UPDATE_AFTER, UPDATE_BEFORE};
use crate::operator::{Operator, Output};
use crate::{Error, Result};

/// Keeps the latest row per key (by an event-time column; a later arrival
/// wins a tie) and emits a changelog: `+I` for a key's first row, `-U` of
/// the row kept and `+U` of the new one when a later row replaces it. A
/// key is forgotten once event time passes its row's time plus the TTL.
pub struct LastRow {
    input: SchemaRef,
    output: SchemaRef,
    key_indices: Vec<usize>,
    time_index: usize,
    rows: RowConverter,
    /// Whole input rows as bytes.
    codec: RowConverter,
    /// Per key: the kept row's time (8 bytes, big-endian), then the row.
    kept: KeyedState,
    ttl: i64,
    watermark: i64,
    /// Watermark of the last purge of expired keys.
    purged_at: i64,
}

impl std::fmt::Debug for LastRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastRow").field("keys", &self.kept).finish_non_exhaustive()
    }
}

/// A kept value: the row's time and its bytes.
fn split(value: &[u8]) -> Option<(i64, &[u8])> {
    let time: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some((i64::from_be_bytes(time), &value[8..]))
}

impl LastRow {
    /// The latest row of `input` per `keys` by `time`, each key kept `ttl` ms of event time.
    pub fn new(input: SchemaRef, keys: &[&str], time: &str, ttl: i64) -> Result<Self> {
        let index = |name: &str| {
            input.index_of(name).map_err(|_| Error::Plan(format!("column '{name}' is not in the input schema")))
        };
        if keys.is_empty() {
            return Err(Error::Plan("keeping the last row needs at least one key column".into()));
        }
        if ttl <= 0 {
            return Err(Error::Plan(format!("the state TTL must be positive, got {ttl} ms")));
        }
        if input.index_of(OP_COLUMN).is_ok() {
            return Err(Error::Plan("keeping the last row of a changelog is not supported".into()));
        }
        let key_indices = keys.iter().map(|k| index(k)).collect::<Result<Vec<_>>>()?;
        let time_index = index(time)?;
        let sort_fields = |indices: &mut dyn Iterator<Item = usize>| -> Vec<SortField> {
            indices.map(|i| SortField::new(input.field(i).data_type().clone())).collect()
        };
        let rows = RowConverter::new(sort_fields(&mut key_indices.iter().copied()))?;
        let codec = RowConverter::new(sort_fields(&mut (0..input.fields().len())))?;
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        Ok(Self {
            output: Arc::new(Schema::new(fields)),
            input,
            key_indices,
            time_index,
            rows,
            codec,
            kept: KeyedState::new(StateConfig::default()),
            ttl,
            watermark: i64::MIN,
            purged_at: i64::MIN,
        })
    }

    /// Keeps the rows within `config`'s memory budget.
    pub fn with_state(mut self, config: StateConfig) -> Self {
        self.kept = KeyedState::new(config);
        self
    }

    /// The kept rows' store (sizes, spills).
    pub fn state(&self) -> &KeyedState {
        &self.kept
    }

    /// The time a row at `ts` is forgotten at (exclusive).
    fn expiry(&self, ts: i64) -> i64 {
        ts.saturating_add(self.ttl).saturating_add(1)
    }

    /// Rows of the input schema from kept values' row bytes.
    fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<RecordBatch> {
        let parser = self.codec.parser();
        let columns = self.codec.convert_rows(rows.into_iter().map(|r| parser.parse(r)))?;
        Ok(RecordBatch::try_new(Arc::clone(&self.input), columns)?)
    }

    fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let keys: Vec<ArrayRef> = self.key_indices.iter().map(|i| Arc::clone(batch.column(*i))).collect();
        let keys = self.rows.convert_columns(&keys)?;
        let times = crate::window_agg::event_times(batch.column(self.time_index))?;
        // Rows out, each from `batch` (source 0) or a row kept before (source i > 0).
        let mut sources: Vec<RecordBatch> = vec![batch.clone()];
        let (mut picks, mut ops): (Vec<(usize, usize)>, Vec<&str>) = (Vec::new(), Vec::new());
        // The row of this batch each key ends up with; stored once, at the end.
        let mut latest: HashMap<OwnedRow, (i64, usize)> = HashMap::new();
        for (row, ts) in times.iter().enumerate() {
            let Some(ts) = *ts else { continue };
            let key = keys.row(row).owned();
            let before = match latest.get(&key) {
                Some(&(kept, _)) if kept > ts => continue,
                Some(&(_, old_row)) => Some((0, old_row)),
                None => match self.kept.get(key.row().as_ref(), self.watermark)?.map(<[u8]>::to_vec) {
                    Some(value) => {
                        let (kept, old) = split(&value).ok_or_else(|| Error::Plan("a kept row is cut short".into()))?;
                        if kept > ts {
                            continue;
                        }
                        sources.push(self.decode([old])?);
                        Some((sources.len() - 1, 0))
                    }
                    None => None,
                },
            };
            match before {
                Some(pick) => {
                    picks.push(pick);
                    ops.push(UPDATE_BEFORE);
                    picks.push((0, row));
                    ops.push(UPDATE_AFTER);
                }
                None => {
                    picks.push((0, row));
                    ops.push(INSERT);
                }
            }
            latest.insert(key, (ts, row));
        }
        if !latest.is_empty() {
            let encoded = self.codec.convert_columns(batch.columns())?;
            let mut value = Vec::new();
            for (key, (ts, row)) in latest {
                value.clear();
                value.extend_from_slice(&ts.to_be_bytes());
                value.extend_from_slice(encoded.row(row).as_ref());
                self.kept.put(key.row().as_ref(), &value, self.expiry(ts))?;
            }
        }
        let mut columns = Vec::with_capacity(self.output.fields().len());
        for c in 0..self.input.fields().len() {
            let arrays: Vec<&dyn Array> = sources.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(datafusion::arrow::compute::interleave(&arrays, &picks)?);
        }
        columns.push(Arc::new(StringArray::from(ops)));
        Ok(RecordBatch::try_new(Arc::clone(&self.output), columns)?)
    }
}

impl Operator for LastRow {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit(self.apply(&batch)?);
        Ok(())
    }

    fn advance(&mut self, watermark: i64, _out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        // Expired rows read as absent at once; their memory is reclaimed
        // each time event time moves an eighth of the TTL.
        if self.watermark.saturating_sub(self.purged_at) >= (self.ttl / 8).max(1) {
            self.kept.purge(self.watermark)?;
            self.purged_at = self.watermark;
        }
        Ok(())
    }

    fn set_watermark(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
    }

    fn state_size(&self) -> usize {
        self.kept.in_memory() + self.kept.on_disk() as usize
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let mut values: Vec<Vec<u8>> = Vec::new();
        self.kept.for_each(self.watermark, |_, value, _| values.push(value.to_vec()))?;
        if values.is_empty() {
            return Ok(None);
        }
        let rows = values.iter().map(|v| split(v).map(|(_, row)| row)).collect::<Option<Vec<&[u8]>>>();
        let rows = rows.ok_or_else(|| Error::Plan("a kept row is cut short".into()))?;
        Ok(Some(self.decode(rows)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        if state.schema().fields() != self.input.fields() {
            return Err(Error::Plan("checkpointed last rows do not fit this operator's input".into()));
        }
        let keys: Vec<ArrayRef> = self.key_indices.iter().map(|i| Arc::clone(state.column(*i))).collect();
        let keys = self.rows.convert_columns(&keys)?;
        let encoded = self.codec.convert_columns(state.columns())?;
        let times = crate::window_agg::event_times(state.column(self.time_index))?;
        let mut value = Vec::new();
        for (row, ts) in times.into_iter().enumerate() {
            if let Some(ts) = ts {
                value.clear();
                value.extend_from_slice(&ts.to_be_bytes());
                value.extend_from_slice(encoded.row(row).as_ref());
                self.kept.put(keys.row(row).as_ref(), &value, self.expiry(ts))?;
            }
        }
        Ok(())
    }
}
