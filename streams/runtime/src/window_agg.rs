//! Keyed event-time window aggregation over Arrow micro-batches, with
//! DataFusion's aggregate functions as accumulators.
//!
//! Rows are assigned to windows ([`rill_time::WindowSpec`], or per-key
//! sessions that merge when a row joins two) by their event time column and
//! grouped by key columns; each (key, window) keeps one
//! DataFusion accumulator per aggregate. A watermark fires every window
//! whose last millisecond it passed; the window's state is kept until the
//! watermark is also past the allowed lateness, and a row arriving in that
//! time updates the window and makes it fire again with the new result.
//! Rows for windows already dropped are late: they come back from
//! [`WindowAggregate::process`] so the caller can route them to a side
//! output — never dropped silently.
//!
//! It owns the per-window state only; reading sources, watermarks and
//! checkpoints are the runtime's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::logical_expr::{Accumulator, AggregateUDF};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::scalar::ScalarValue;
use rill_time::{SessionWindows, Window, WindowSpec};

use crate::{Error, Result};

mod checkpoint;
mod count;
mod inputs;
mod sessions;
mod spill;

pub(crate) use inputs::{aggregate_arguments, assign_rows, event_times, physical_aggregates};

/// One aggregate to compute: a DataFusion aggregate function over a column.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The function (`count_udaf()`, `sum_udaf()`, …).
    pub function: Arc<AggregateUDF>,
    /// The input column it reads.
    pub column: String,
    /// The output column's name.
    pub name: String,
    /// Over distinct values only (`COUNT(DISTINCT x)`).
    pub distinct: bool,
    /// Constant arguments after the column (the percentile of
    /// `approx_percentile_cont`).
    pub params: Vec<ScalarValue>,
}

impl Aggregate {
    /// `function(column)`, named `{function}_{column}` until [`Aggregate::alias`].
    pub fn new(function: Arc<AggregateUDF>, column: &str) -> Self {
        let name = format!("{}_{column}", function.name());
        Self { function, column: column.to_owned(), name, distinct: false, params: Vec::new() }
    }

    /// Names the output column.
    pub fn alias(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }
}

/// Aggregate functions by name, as the DSL offers them.
pub mod agg {
    use datafusion::functions_aggregate::{approx_percentile_cont, average, count, min_max, sum};
    use datafusion::scalar::ScalarValue;

    use super::Aggregate;

    /// Rows with a non-null `column`.
    pub fn count(column: &str) -> Aggregate {
        Aggregate::new(count::count_udaf(), column)
    }
    /// Distinct non-null values of `column`.
    pub fn count_distinct(column: &str) -> Aggregate {
        let mut a = Aggregate::new(count::count_udaf(), column);
        a.distinct = true;
        a.name = format!("count_distinct_{column}");
        a
    }
    /// Sum of `column`.
    pub fn sum(column: &str) -> Aggregate {
        Aggregate::new(sum::sum_udaf(), column)
    }
    /// Smallest value of `column`.
    pub fn min(column: &str) -> Aggregate {
        Aggregate::new(min_max::min_udaf(), column)
    }
    /// Largest value of `column`.
    pub fn max(column: &str) -> Aggregate {
        Aggregate::new(min_max::max_udaf(), column)
    }
    /// Mean of `column`.
    pub fn avg(column: &str) -> Aggregate {
        Aggregate::new(average::avg_udaf(), column)
    }
    /// Approximate `percentile` (0..=1) of `column` (a t-digest).
    pub fn approx_percentile(column: &str, percentile: f64) -> Aggregate {
        let mut a = Aggregate::new(approx_percentile_cont::approx_percentile_cont_udaf(), column);
        a.params.push(ScalarValue::Float64(Some(percentile)));
        a.name = format!("p{}_{column}", (percentile * 100.0).round());
        a
    }
}

/// The kind of windows to aggregate over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Windows fixed by time alone (tumbling, hopping, cumulate).
    Time(WindowSpec),
    /// Per-key sessions that close after `gap` ms without a row.
    Session {
        /// Inactivity gap in ms.
        gap: i64,
    },
    /// Per-key windows of `size` rows in arrival order, each fired as its
    /// last row arrives (`window_start`/`window_end` span its rows' event
    /// times). Like Flink's count windows, a window still short of `size`
    /// rows at the end of the input does not fire.
    Count {
        /// Rows per window.
        size: u64,
    },
}

impl From<WindowSpec> for Windows {
    fn from(spec: WindowSpec) -> Self {
        Windows::Time(spec)
    }
}

/// What the operator needs to know.
#[derive(Debug, Clone)]
pub struct WindowAggregateConfig {
    /// Event-time column: Int64 milliseconds or a millisecond timestamp.
    pub time_column: String,
    /// Group-by columns.
    pub keys: Vec<String>,
    /// The windows.
    pub windows: Windows,
    /// Aggregates to compute per key and window.
    pub aggregates: Vec<Aggregate>,
    /// How long after a window fired late rows still update it (ms).
    pub allowed_lateness: i64,
    /// Also emit the current result of every window that got rows since
    /// its last result, each time event time moves (an upsert stream keyed
    /// by keys and window: the latest row per key and window is the result).
    pub early_fire: bool,
}

struct Group {
    key: OwnedRow,
    window: Window,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Rows arrived since the window last fired (or it never fired).
    dirty: bool,
    fired: bool,
    /// Rows in it (kept for count windows).
    rows: u64,
    /// Recency stamp: the least recently used groups spill first.
    used: u64,
    /// Memory it costs, by the operator's accounting.
    bytes: usize,
    /// An older copy is in the spill table (replaced when it spills again,
    /// deleted when the group goes).
    on_disk: bool,
}

/// The operator (see the module docs).
pub struct WindowAggregate {
    config: WindowAggregateConfig,
    input: SchemaRef,
    output: SchemaRef,
    time_index: usize,
    key_indices: Vec<usize>,
    rows: RowConverter,
    aggregates: Vec<AggregateFunctionExpr>,
    groups: HashMap<(OwnedRow, Window), usize>,
    slots: Vec<Option<Group>>,
    free: Vec<usize>,
    /// Groups by window end, to find what a watermark fires.
    by_end: BTreeSet<(i64, usize)>,
    /// Session windows: each key's open sessions.
    sessions: Option<sessions::Sessions>,
    /// Count windows: each key's open window.
    counting: HashMap<OwnedRow, usize>,
    watermark: i64,
    /// Groups beyond the memory budget, on disk.
    spill: spill::Spilling,
}

impl std::fmt::Debug for WindowAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregate")
            .field("groups", &self.groups.len())
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

/// What [`WindowAggregate::process`] hands back.
#[derive(Debug)]
pub struct Processed {
    /// Rows too late for any window still kept (for a side output), if any.
    pub late: Option<RecordBatch>,
    /// Results of count windows the batch completed, if any.
    pub fired: Option<RecordBatch>,
}

impl WindowAggregate {
    /// An operator reading batches of `input`.
    pub fn new(input: SchemaRef, config: WindowAggregateConfig) -> Result<Self> {
        let index = |name: &str, what: &str| {
            input.index_of(name).map_err(|_| Error::Plan(format!("{what} column '{name}' is not in the input schema")))
        };
        let time_index = index(&config.time_column, "time")?;
        match input.field(time_index).data_type() {
            DataType::Int64 | DataType::Timestamp(TimeUnit::Millisecond, _) => {}
            other => {
                return Err(Error::Plan(format!(
                    "time column '{}' is {other}; it must be Int64 milliseconds or Timestamp(Millisecond)",
                    config.time_column
                )));
            }
        }
        let key_indices = config.keys.iter().map(|k| index(k, "key")).collect::<Result<Vec<_>>>()?;
        match config.windows {
            Windows::Session { gap } => {
                SessionWindows::new(gap)?;
            }
            Windows::Count { size } => {
                rill_time::CountWindows::new(size)?;
                if config.early_fire {
                    return Err(Error::Plan("early firing takes time or session windows, not count windows".into()));
                }
            }
            Windows::Time(_) => {}
        }
        if config.allowed_lateness < 0 {
            return Err(Error::Plan("allowed lateness must not be negative".into()));
        }
        // Without key columns one Null column stands in for the key (a
        // converter of no columns cannot tell how many rows it has).
        let key_fields: Vec<SortField> = if key_indices.is_empty() {
            vec![SortField::new(DataType::Null)]
        } else {
            key_indices.iter().map(|i| SortField::new(input.field(*i).data_type().clone())).collect()
        };
        let rows = RowConverter::new(key_fields)?;
        let aggregates = physical_aggregates(&input, &config.aggregates)?;
        let mut fields: Vec<Field> = key_indices.iter().map(|i| input.field(*i).clone()).collect();
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        fields.push(Field::new("window_start", ts.clone(), false));
        fields.push(Field::new("window_end", ts.clone(), false));
        fields.push(Field::new("window_time", ts, false));
        fields.extend(aggregates.iter().map(|a| a.field().as_ref().clone()));
        let sessions = match config.windows {
            Windows::Session { gap } => Some(sessions::Sessions::new(gap, &rill_state::StateConfig::default())),
            _ => None,
        };
        Ok(Self {
            config,
            input,
            output: Arc::new(Schema::new(fields)),
            time_index,
            key_indices,
            rows,
            aggregates,
            groups: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            by_end: BTreeSet::new(),
            sessions,
            counting: HashMap::new(),
            watermark: i64::MIN,
            spill: spill::Spilling::new(rill_state::StateConfig::default()),
        })
    }

    /// The schema of fired results: keys, `window_start`, `window_end`,
    /// `window_time` (the window's last millisecond, the results' event
    /// time downstream), aggregates.
    pub fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// Index of the event-time column in the input.
    pub fn time_index(&self) -> usize {
        self.time_index
    }

    /// Windows (per key) holding state in memory now.
    pub fn open_groups(&self) -> usize {
        self.groups.len() + self.counting.len()
    }

    /// Adds a batch: every row to each of its windows, unless it is late.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Processed> {
        if batch.schema().fields() != self.input.fields() {
            return Err(Error::Plan("a batch does not have the operator's input schema".into()));
        }
        let times = event_times(batch.column(self.time_index))?;
        let key_columns: Vec<ArrayRef> = self.key_indices.iter().map(|i| Arc::clone(batch.column(*i))).collect();
        let keys = self.rows.convert_columns(&self.key_columns(key_columns, batch.num_rows()))?;
        let args = aggregate_arguments(&self.aggregates, batch)?;
        // Row indices per group, in arrival order; late rows apart.
        let mut per_group: HashMap<usize, Vec<u32>> = HashMap::new();
        let mut late = Vec::new();
        let mut complete = Vec::new();
        let keep_after = self.watermark.saturating_sub(self.config.allowed_lateness);
        for (row, ts) in times.iter().enumerate() {
            let Some(ts) = *ts else {
                late.push(row as u32);
                continue;
            };
            let spec = match self.config.windows {
                Windows::Time(spec) => spec,
                Windows::Session { .. } => {
                    if !self.add_to_session(keys.row(row).owned(), ts, keep_after, &mut per_group, row as u32)? {
                        late.push(row as u32);
                    }
                    continue;
                }
                Windows::Count { size } => {
                    let slot = self.add_to_count(keys.row(row), ts, size)?;
                    per_group.entry(slot).or_default().push(row as u32);
                    if self.slots[slot].as_ref().is_some_and(|g| g.rows == size) {
                        complete.push(slot);
                    }
                    continue;
                }
            };
            let windows = spec.assign(ts);
            // Hopping windows with gaps between them hold no row of a gap:
            // such a row belongs to no window, which is not being late.
            let mut placed = windows.is_empty();
            for w in windows {
                // Dropped already: its last millisecond plus the lateness is behind the watermark.
                if w.max_timestamp() < keep_after {
                    continue;
                }
                let slot = self.group(keys.row(row).owned(), w)?;
                per_group.entry(slot).or_default().push(row as u32);
                placed = true;
            }
            if !placed {
                late.push(row as u32);
            }
        }
        for (slot, rows) in per_group {
            let indices = UInt32Array::from(rows);
            let columns = args
                .iter()
                .map(|a| a.iter().map(|c| Ok(take(c.as_ref(), &indices, None)?)).collect::<Result<Vec<_>>>())
                .collect::<Result<Vec<_>>>()?;
            if let Some(g) = self.slots[slot].as_mut() {
                for (acc, values) in g.accumulators.iter_mut().zip(&columns) {
                    acc.update_batch(values)?;
                }
                g.dirty = true;
            }
            self.touch(slot);
        }
        let fired = self.emit(&complete)?;
        self.release(&complete);
        self.make_room()?;
        let late = if late.is_empty() {
            None
        } else {
            let mask: Vec<bool> = {
                let mut m = vec![false; batch.num_rows()];
                for r in &late {
                    m[*r as usize] = true;
                }
                m
            };
            Some(filter_record_batch(batch, &mask.into())?)
        };
        Ok(Processed { late, fired })
    }

    /// Puts a row into its key's session, merging sessions it joins (their
    /// accumulated state and their rows of this batch go to the new one).
    /// False when the session it would belong to is already dropped.
    fn add_to_session(
        &mut self,
        key: OwnedRow,
        ts: i64,
        keep_after: i64,
        pending: &mut HashMap<usize, Vec<u32>>,
        row: u32,
    ) -> Result<bool> {
        let Some(index) = self.sessions.as_mut() else { return Ok(false) };
        let mut sessions = index.get(&key)?;
        let change = sessions.add(ts);
        if change.window.max_timestamp() < keep_after {
            return Ok(false);
        }
        index.put(&key, &sessions)?;
        let target = self.group(key.clone(), change.window)?;
        for old in change.merged {
            let Some(slot) = self.locate(&key, old)? else { continue };
            self.groups.remove(&(key.clone(), old));
            self.by_end.remove(&(old.end, slot));
            let Some(mut absorbed) = self.free_slot(slot) else { continue };
            if let Some(rows) = pending.remove(&slot) {
                pending.entry(target).or_default().extend(rows);
            }
            if let Some(g) = self.slots[target].as_mut() {
                for (into, from) in g.accumulators.iter_mut().zip(absorbed.accumulators.iter_mut()) {
                    let state = from
                        .state()?
                        .iter()
                        .map(ScalarValue::to_array)
                        .collect::<datafusion::error::Result<Vec<_>>>()?;
                    into.merge_batch(&state)?;
                }
                g.dirty = true;
            }
            self.touch(target);
        }
        pending.entry(target).or_default().push(row);
        Ok(true)
    }

    fn group(&mut self, key: OwnedRow, window: Window) -> Result<usize> {
        if let Some(slot) = self.locate(&key, window)? {
            return Ok(slot);
        }
        self.new_group(key, window)
    }

    /// A fresh group for `key` and `window`, known to be neither in memory nor on disk.
    fn new_group(&mut self, key: OwnedRow, window: Window) -> Result<usize> {
        let slot = self.new_slot(key.clone(), window)?;
        self.groups.insert((key, window), slot);
        self.by_end.insert((window.end, slot));
        Ok(slot)
    }

    /// A slot holding fresh accumulators for `key` and `window`.
    fn new_slot(&mut self, key: OwnedRow, window: Window) -> Result<usize> {
        let accumulators =
            self.aggregates.iter().map(|a| a.create_accumulator()).collect::<datafusion::error::Result<Vec<_>>>()?;
        let g =
            Group { key, window, accumulators, dirty: false, fired: false, rows: 0, used: 0, bytes: 0, on_disk: false };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(g);
                s
            }
            None => {
                self.slots.push(Some(g));
                self.slots.len() - 1
            }
        };
        self.touch(slot);
        Ok(slot)
    }

    /// The key columns as the row converter takes them: a Null column of
    /// `rows` rows when there are no keys.
    fn key_columns(&self, columns: Vec<ArrayRef>, rows: usize) -> Vec<ArrayRef> {
        if self.key_indices.is_empty() {
            vec![datafusion::arrow::array::new_null_array(&DataType::Null, rows)]
        } else {
            columns
        }
    }

    /// Restores event time from a checkpoint without firing anything.
    pub fn set_watermark(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
    }

    /// Moves event time to `watermark`: returns the results of windows it
    /// completed (and of fired windows that late rows updated), and drops
    /// the state of windows past the allowed lateness.
    pub fn advance(&mut self, watermark: i64) -> Result<Option<RecordBatch>> {
        let batches = self.advance_batches(watermark)?;
        match batches.len() {
            0 => Ok(None),
            1 => Ok(batches.into_iter().next()),
            _ => Ok(Some(datafusion::arrow::compute::concat_batches(&self.output, &batches)?)),
        }
    }

    /// [`WindowAggregate::advance`], the results in several batches when
    /// spilled windows come back from disk a chunk at a time.
    pub fn advance_batches(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        if watermark <= self.watermark {
            return Ok(out);
        }
        self.watermark = watermark;
        let drop_before = watermark.saturating_sub(self.config.allowed_lateness);
        self.fire_spilled(drop_before, &mut out)?;
        let mut ready: Vec<usize> = Vec::new();
        let mut drop_slots = Vec::new();
        for (end, slot) in &self.by_end {
            // `end - 1` is the window's last millisecond.
            if end - 1 > watermark {
                break;
            }
            if self.slots[*slot].as_ref().is_some_and(|g| g.dirty) {
                ready.push(*slot);
            }
            if end - 1 < drop_before {
                drop_slots.push((*end, *slot));
            }
        }
        if self.config.early_fire {
            let fired: std::collections::HashSet<usize> = ready.iter().copied().collect();
            ready.extend(
                (0..self.slots.len())
                    .filter(|s| !fired.contains(s) && self.slots[*s].as_ref().is_some_and(|g| g.dirty)),
            );
        }
        out.extend(self.emit(&ready)?);
        for (end, slot) in drop_slots {
            self.by_end.remove(&(end, slot));
            self.drop_group(slot)?;
        }
        self.drop_spilled(drop_before)?;
        self.make_room()?;
        Ok(out)
    }

    /// Frees a window's state for good: its slot, its session, its map entry.
    fn drop_group(&mut self, slot: usize) -> Result<()> {
        if let Some(g) = self.free_slot(slot) {
            if let Some(sessions) = self.sessions.as_mut() {
                sessions.remove(&g.key, g.window)?;
            }
            self.groups.remove(&(g.key, g.window));
        }
        Ok(())
    }

    /// Results of every window still open (end of a bounded input).
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        self.advance(i64::MAX)
    }

    fn emit(&mut self, slots: &[usize]) -> Result<Option<RecordBatch>> {
        if slots.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::with_capacity(slots.len());
        let (mut starts, mut ends) = (Vec::with_capacity(slots.len()), Vec::with_capacity(slots.len()));
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(slots.len()); self.aggregates.len()];
        for slot in slots {
            let Some(g) = self.slots[*slot].as_mut() else { continue };
            keys.push(g.key.clone());
            starts.push(g.window.start);
            ends.push(g.window.end);
            for (i, acc) in g.accumulators.iter_mut().enumerate() {
                // `evaluate` does not consume: a late row can update the window again.
                values[i].push(acc.evaluate()?);
            }
            g.dirty = false;
            g.fired = true;
        }
        let mut columns: Vec<ArrayRef> = self.rows.convert_rows(keys.iter().map(|k| k.row()))?;
        columns.truncate(self.key_indices.len());
        columns.push(Arc::new(TimestampMillisecondArray::from(starts)));
        let times: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        columns.push(Arc::new(TimestampMillisecondArray::from(ends)));
        columns.push(Arc::new(TimestampMillisecondArray::from(times)));
        for (i, v) in values.into_iter().enumerate() {
            let field = self.output.field(self.key_indices.len() + 3 + i);
            let array = if v.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(v)?
            };
            columns.push(array);
        }
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.output), columns)?))
    }
}
