//! The temporal join: each row of a stream (the probe side) meets the row
//! a versioned table (the build side: rows per primary key, each a new
//! version, or a changelog) held for its key at the probe row's time —
//! `JOIN rates FOR SYSTEM_TIME AS OF o.ts` in SQL.
//!
//! In event time a probe row waits until the watermark passes its time, so
//! every version up to then has arrived, and meets the latest version at or
//! before its time; versions older than the newest one behind the
//! watermark are dropped. In processing time it meets the version held
//! when it arrives. A probe row without a version for its key is dropped
//! (an inner join), as is a probe row behind the watermark (counted late).
//!
//! Output rows are the probe columns followed by the table's columns.
//!
//! State stays within the job's budget: each key's versions live in a
//! [`KeyedState`] (time, whether deleted, the row in Arrow's row format),
//! and probe rows waiting for the watermark in per-time row buffers, both
//! moving to disk past it. In processing time only a key's latest version
//! is kept.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt8Array, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, interleave, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};

use rill_state::{KeyedState, StateConfig};

use crate::buffers::RowBuffers;
use crate::changelog::{DELETE, OP_COLUMN, UPDATE_BEFORE, own_row};
use crate::join::JoinSide;
use crate::operator::{Operator, Output};
use crate::window_agg::event_times;
use crate::{Error, Result};

/// A key's versions: time → the row (in the table codec's row format), `None` once deleted.
type Versions = BTreeMap<i64, Option<Vec<u8>>>;

/// A key's versions as stored: per version its time (8 bytes), 1 if
/// present (then the row's length, 4 bytes, and the row) or 0 if deleted.
fn encode(versions: &Versions, out: &mut Vec<u8>) {
    out.clear();
    for (time, row) in versions {
        out.extend_from_slice(&time.to_be_bytes());
        match row {
            Some(row) => {
                out.push(1);
                out.extend_from_slice(&(row.len() as u32).to_be_bytes());
                out.extend_from_slice(row);
            }
            None => out.push(0),
        }
    }
}

fn decode(mut bytes: &[u8]) -> Result<Versions> {
    let cut = || Error::Plan("a key's stored versions are cut short".into());
    let mut out = Versions::new();
    while !bytes.is_empty() {
        let time: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(cut)?;
        let time = i64::from_be_bytes(time);
        match bytes.get(8) {
            Some(1) => {
                let len: [u8; 4] = bytes.get(9..13).and_then(|b| b.try_into().ok()).ok_or_else(cut)?;
                let len = u32::from_be_bytes(len) as usize;
                out.insert(time, Some(bytes.get(13..13 + len).ok_or_else(cut)?.to_vec()));
                bytes = &bytes[13 + len..];
            }
            Some(_) => {
                out.insert(time, None);
                bytes = &bytes[9..];
            }
            None => return Err(cut()),
        }
    }
    Ok(out)
}

/// The operator (see the module docs).
pub struct TemporalJoin {
    probe: SchemaRef,
    /// The table's columns without its row kind.
    table_data: SchemaRef,
    output: SchemaRef,
    probe_keys: Vec<usize>,
    table_keys: Vec<usize>,
    probe_time: Option<usize>,
    table_time: Option<usize>,
    table_op: Option<usize>,
    rows: RowConverter,
    /// The table's rows (without the row kind) as bytes.
    codec: RowConverter,
    /// Each key's versions (see [`encode`]).
    versions: KeyedState,
    /// Keys with versions added since the last clean-up.
    touched: HashSet<OwnedRow>,
    /// Probe rows waiting for the watermark, by time.
    pending: RowBuffers<i64>,
    /// Version time in processing time: arrival order.
    arrivals: i64,
    watermark: i64,
}

impl std::fmt::Debug for TemporalJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalJoin").field("versions", &self.versions).finish_non_exhaustive()
    }
}

impl TemporalJoin {
    /// Joins `probe` rows with the versions of `table`; with
    /// `event_time`, both sides' time columns (`JoinSide::time`) place
    /// rows and versions, else arrival does (processing time).
    pub fn new(probe: &JoinSide, table: &JoinSide, event_time: bool) -> Result<Self> {
        if probe.keys.is_empty() || probe.keys.len() != table.keys.len() {
            return Err(Error::Plan("a temporal join pairs the same number (at least one) of key columns".into()));
        }
        let index = |s: &JoinSide, c: &str| {
            s.schema.index_of(c).map_err(|_| Error::Plan(format!("temporal join column '{c}' does not exist")))
        };
        let probe_keys = probe.keys.iter().map(|k| index(probe, k)).collect::<Result<Vec<_>>>()?;
        let table_keys = table.keys.iter().map(|k| index(table, k)).collect::<Result<Vec<_>>>()?;
        for (p, t) in probe_keys.iter().zip(&table_keys) {
            let (pt, tt) = (probe.schema.field(*p).data_type(), table.schema.field(*t).data_type());
            if pt != tt {
                return Err(Error::Plan(format!(
                    "temporal join keys {} ({pt}) and {} ({tt}) differ in type; cast one first",
                    probe.schema.field(*p).name(),
                    table.schema.field(*t).name()
                )));
            }
        }
        let (probe_time, table_time) = if event_time {
            let p = probe.time.as_deref().ok_or_else(|| Error::Plan("the probe side has no event time".into()))?;
            let t = table.time.as_deref().ok_or_else(|| {
                Error::Plan("an event-time temporal join needs the versioned table's event time (a WATERMARK)".into())
            })?;
            (Some(index(probe, p)?), Some(index(table, t)?))
        } else {
            (None, None)
        };
        let table_op = table.schema.index_of(OP_COLUMN).ok();
        let data: Vec<Field> =
            table.schema.fields().iter().filter(|f| f.name() != OP_COLUMN).map(|f| f.as_ref().clone()).collect();
        let mut fields: Vec<Field> = probe.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for f in &data {
            if fields.iter().any(|p| p.name() == f.name()) {
                return Err(Error::Plan(format!("column '{}' is on both sides; rename one first", f.name())));
            }
            fields.push(f.clone());
        }
        let rows = RowConverter::new(
            probe_keys.iter().map(|i| SortField::new(probe.schema.field(*i).data_type().clone())).collect(),
        )?;
        let codec = RowConverter::new(data.iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        Ok(Self {
            probe: Arc::clone(&probe.schema),
            table_data: Arc::new(Schema::new(data)),
            output: Arc::new(Schema::new(fields)),
            probe_keys,
            table_keys,
            probe_time,
            table_time,
            table_op,
            rows,
            codec,
            versions: KeyedState::new(StateConfig::default()),
            touched: HashSet::new(),
            pending: RowBuffers::new(StateConfig::default()),
            arrivals: 0,
            watermark: i64::MIN,
        })
    }

    /// Keeps the versions and waiting probe rows within `config`'s memory
    /// budget (half each), spilling past it.
    pub fn with_state(mut self, config: StateConfig) -> Self {
        let half = StateConfig {
            memory_budget: (config.memory_budget / 2).max(rill_state::MIN_BUDGET),
            spill_dir: config.spill_dir,
        };
        self.versions = KeyedState::new(half.clone());
        self.pending = RowBuffers::new(half);
        self
    }

    /// The versions' store (sizes, spills).
    pub fn versions(&self) -> &KeyedState {
        &self.versions
    }

    fn get_versions(&mut self, key: &[u8]) -> Result<Versions> {
        match self.versions.get(key, i64::MIN)? {
            Some(bytes) => decode(bytes),
            None => Ok(Versions::new()),
        }
    }

    fn put_versions(&mut self, key: &[u8], versions: &Versions) -> Result<()> {
        if versions.is_empty() {
            return Ok(self.versions.remove(key)?);
        }
        let mut bytes = Vec::new();
        encode(versions, &mut bytes);
        Ok(self.versions.put(key, &bytes, i64::MAX)?)
    }

    fn keys(&self, batch: &RecordBatch, indices: &[usize]) -> Result<datafusion::arrow::row::Rows> {
        let columns: Vec<ArrayRef> = indices.iter().map(|i| Arc::clone(batch.column(*i))).collect();
        Ok(self.rows.convert_columns(&columns)?)
    }

    /// Adds the table rows of `batch` as versions.
    fn add_versions(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = self.keys(batch, &self.table_keys)?;
        let times = match self.table_time {
            Some(t) => event_times(batch.column(t))?,
            None => {
                let first = self.arrivals;
                self.arrivals += batch.num_rows() as i64;
                (first..self.arrivals).map(Some).collect()
            }
        };
        let data_columns: Vec<ArrayRef> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| f.name() != OP_COLUMN)
            .map(|(_, c)| Arc::clone(c))
            .collect();
        let data = RecordBatch::try_new(Arc::clone(&self.table_data), data_columns)?;
        let encoded = self.codec.convert_columns(data.columns())?;
        let ops = self.table_op.map(|i| batch.column(i).as_string::<i32>().clone());
        for (row, time) in times.into_iter().enumerate() {
            let Some(time) = time else { continue };
            let version = match ops.as_ref().map(|o| o.value(row)) {
                // The row after an update comes as its own +U.
                Some(UPDATE_BEFORE) => continue,
                Some(DELETE) => None,
                _ => Some(encoded.row(row).as_ref().to_vec()),
            };
            let key = keys.row(row);
            let mut versions = self.get_versions(key.as_ref())?;
            if self.probe_time.is_none() {
                // Processing time: a probe meets the latest version only.
                versions.clear();
            }
            versions.insert(time, version);
            self.put_versions(key.as_ref(), &versions)?;
            if self.probe_time.is_some() {
                self.touched.insert(key.owned());
            }
        }
        Ok(())
    }

    /// Joins `batch`'s probe rows each with its key's version at `time_of(row)`.
    fn join(&mut self, batch: &RecordBatch, time_of: impl Fn(usize) -> i64) -> Result<Option<RecordBatch>> {
        let keys = self.keys(batch, &self.probe_keys)?;
        let mut probe_rows = Vec::new();
        let mut matched: Vec<Vec<u8>> = Vec::new();
        for row in 0..batch.num_rows() {
            let versions = self.get_versions(keys.row(row).as_ref())?;
            if let Some((_, Some(version))) = versions.range(..=time_of(row)).next_back() {
                probe_rows.push(row);
                matched.push(version.clone());
            }
        }
        if probe_rows.is_empty() {
            return Ok(None);
        }
        let parser = self.codec.parser();
        let table = self.codec.convert_rows(matched.iter().map(|r| parser.parse(r)))?;
        let picks: Vec<(usize, usize)> = probe_rows.iter().map(|r| (0, *r)).collect();
        let mut columns = Vec::with_capacity(self.output.fields().len());
        for c in batch.columns() {
            columns.push(interleave(&[c.as_ref()], &picks)?);
        }
        columns.extend(table);
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.output), columns)?))
    }

    /// Drops, for the keys touched since the last time, the versions older
    /// than the newest one at or behind the watermark.
    fn clean_up(&mut self) -> Result<()> {
        for key in std::mem::take(&mut self.touched) {
            let key = key.row();
            let mut versions = self.get_versions(key.as_ref())?;
            if let Some((&newest, _)) = versions.range(..=self.watermark).next_back() {
                versions = versions.split_off(&newest);
            }
            if versions.len() == 1 && versions.values().all(Option::is_none) {
                versions.clear();
            }
            self.put_versions(key.as_ref(), &versions)?;
        }
        Ok(())
    }
}

impl Operator for TemporalJoin {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    fn process(&mut self, port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if port == 1 {
            return self.add_versions(&batch);
        }
        let Some(t) = self.probe_time else {
            let latest = i64::MAX;
            if let Some(joined) = self.join(&batch, |_| latest)? {
                out.emit(joined);
            }
            return Ok(());
        };
        let times = event_times(batch.column(t))?;
        let late: Vec<bool> = times.iter().map(|ts| ts.is_none_or(|ts| ts < self.watermark)).collect();
        if late.iter().any(|l| *l) {
            out.late.push(filter_record_batch(&batch, &BooleanArray::from(late.clone()))?);
        }
        let mut by_time: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (row, ts) in times.iter().enumerate() {
            if let (Some(ts), false) = (ts, late[row]) {
                by_time.entry(*ts).or_default().push(row as u32);
            }
        }
        for (ts, rows) in by_time {
            let rows = take_record_batch(&batch, &UInt32Array::from(rows))?;
            self.pending.push(ts, rows)?;
        }
        Ok(())
    }

    fn advance(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        while let Some(ts) = self.pending.first_key() {
            if ts > self.watermark {
                break;
            }
            for batch in self.pending.take(ts)? {
                if let Some(joined) = self.join(&batch, |_| ts)? {
                    out.emit(joined);
                }
            }
        }
        if self.probe_time.is_some() {
            self.clean_up()?;
        }
        Ok(())
    }

    fn set_watermark(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
    }

    fn state_size(&self) -> usize {
        self.versions.in_memory() + self.versions.on_disk() as usize + self.pending.rows()
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        // One batch: `__side` (0 probe row, 1 version), `__time`,
        // `__deleted`, then the probe's columns and the table's (nullable).
        let schema = self.state_schema();
        let mut parts = Vec::new();
        for (ts, b) in self.pending.all()? {
            {
                let n = b.num_rows();
                let mut columns: Vec<ArrayRef> = vec![
                    Arc::new(UInt8Array::from(vec![0u8; n])),
                    Arc::new(Int64Array::from(vec![ts; n])),
                    Arc::new(BooleanArray::from(vec![false; n])),
                ];
                columns.extend(b.columns().iter().cloned());
                for f in self.table_data.fields() {
                    columns.push(datafusion::arrow::array::new_null_array(f.data_type(), n));
                }
                parts.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
            }
        }
        let mut stored = Vec::new();
        self.versions.for_each(i64::MIN, |_, value, _| stored.push(value.to_vec()))?;
        let parser = self.codec.parser();
        for value in stored {
            for (ts, version) in decode(&value)? {
                let version = match version {
                    Some(row) => Some(RecordBatch::try_new(
                        Arc::clone(&self.table_data),
                        self.codec.convert_rows([parser.parse(&row)])?,
                    )?),
                    None => None,
                };
                let mut columns: Vec<ArrayRef> = vec![
                    Arc::new(UInt8Array::from(vec![1u8])),
                    Arc::new(Int64Array::from(vec![ts])),
                    Arc::new(BooleanArray::from(vec![version.is_none()])),
                ];
                for f in self.probe.fields() {
                    columns.push(datafusion::arrow::array::new_null_array(f.data_type(), 1));
                }
                for (c, f) in self.table_data.fields().iter().enumerate() {
                    columns.push(match &version {
                        Some(v) => Arc::clone(v.column(c)),
                        None => datafusion::arrow::array::new_null_array(f.data_type(), 1),
                    });
                }
                parts.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&schema, &parts)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        let schema = self.state_schema();
        if state.schema().fields().len() != schema.fields().len() {
            return Err(Error::Plan("checkpointed temporal join state does not fit this join".into()));
        }
        let np = self.probe.fields().len();
        let side = state.column(0).as_primitive::<datafusion::arrow::datatypes::UInt8Type>();
        let time = state.column(1).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let deleted = state.column(2).as_boolean();
        for row in 0..state.num_rows() {
            let ts = time.value(row);
            let one = own_row(state, row)?;
            if side.value(row) == 0 {
                let columns = one.columns()[3..3 + np].to_vec();
                self.pending.push(ts, RecordBatch::try_new(Arc::clone(&self.probe), columns)?)?;
            } else {
                let columns = one.columns()[3 + np..].to_vec();
                let data = RecordBatch::try_new(Arc::clone(&self.table_data), columns)?;
                let keys = self.keys(&data, &self.table_keys_in_data())?;
                let version = match deleted.value(row) {
                    true => None,
                    false => Some(self.codec.convert_columns(data.columns())?.row(0).as_ref().to_vec()),
                };
                let key = keys.row(0);
                let mut versions = self.get_versions(key.as_ref())?;
                versions.insert(ts, version);
                self.put_versions(key.as_ref(), &versions)?;
                self.arrivals = self.arrivals.max(ts.saturating_add(1));
            }
        }
        Ok(())
    }
}

impl TemporalJoin {
    fn state_schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new("__side", DataType::UInt8, false),
            Field::new("__time", DataType::Int64, false),
            Field::new("__deleted", DataType::Boolean, false),
        ];
        for f in self.probe.fields().iter().chain(self.table_data.fields()) {
            fields.push(f.as_ref().clone().with_nullable(true));
        }
        Arc::new(Schema::new(fields))
    }

    /// The key columns' places among the table's columns without its row kind.
    fn table_keys_in_data(&self) -> Vec<usize> {
        self.table_keys
            .iter()
            .map(|i| match self.table_op {
                Some(op) if *i > op => i - 1,
                _ => *i,
            })
            .collect()
    }
}
