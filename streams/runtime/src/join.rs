//! Joins of two streams on equal keys: an interval join (a left row meets
//! the right rows whose event time is within a bound of its own; without a
//! bound it is a regular join whose state grows with its inputs) and a
//! window join (rows meet when they share a key and a window).
//!
//! Output rows are the left columns followed by the right columns (names
//! must differ; rename with a projection first), plus `window_start` and
//! `window_end` for window joins. State is the rows that can still meet a
//! future row; the watermark retires the rest.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, TimestampMillisecondArray, UInt8Array,
    UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, UInt8Type};
use datafusion::arrow::row::{RowConverter, SortField};
use rill_time::WindowSpec;

use rill_state::StateConfig;

use crate::buffers::RowBuffers;
use crate::operator::{Operator, Output};
use crate::window_agg::{assign_rows, event_times};
use crate::{Error, Result};

/// One side of a join as the operator needs it.
#[derive(Debug, Clone)]
pub struct JoinSide {
    /// The side's schema.
    pub schema: SchemaRef,
    /// Key columns (paired by position with the other side's).
    pub keys: Vec<String>,
    /// Event-time column, where the join needs one.
    pub time: Option<String>,
}

struct Prepared {
    keys: Vec<usize>,
    time: Option<usize>,
    rows: RowConverter,
}

fn prepare(side: &JoinSide, other: &JoinSide, what: &str) -> Result<Prepared> {
    if side.keys.is_empty() || side.keys.len() != other.keys.len() {
        return Err(Error::Plan(format!(
            "a join needs the same number (at least one) of key columns on both sides; got {:?} and {:?}",
            side.keys, other.keys
        )));
    }
    let index = |name: &str| {
        side.schema.index_of(name).map_err(|_| Error::Plan(format!("{what} join column '{name}' does not exist")))
    };
    let keys = side.keys.iter().map(|k| index(k)).collect::<Result<Vec<_>>>()?;
    let time = side.time.as_deref().map(index).transpose()?;
    let rows =
        RowConverter::new(keys.iter().map(|i| SortField::new(side.schema.field(*i).data_type().clone())).collect())?;
    Ok(Prepared { keys, time, rows })
}

fn joined_schema(left: &SchemaRef, right: &SchemaRef, windows: bool) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
    for f in right.fields() {
        if left.index_of(f.name()).is_ok() {
            return Err(Error::Plan(format!(
                "column '{}' is on both sides of the join; rename one with a projection first",
                f.name()
            )));
        }
        fields.push(f.as_ref().clone());
    }
    if windows {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        fields.push(Field::new("window_start", ts.clone(), false));
        fields.push(Field::new("window_end", ts, false));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Rows whose key has a null: they meet nothing (`NULL = NULL` is not true).
fn null_keys(p: &Prepared, batch: &RecordBatch) -> Vec<bool> {
    let mut nulls = vec![false; batch.num_rows()];
    for i in &p.keys {
        let c = batch.column(*i);
        if c.null_count() > 0 {
            for (row, n) in nulls.iter_mut().enumerate() {
                *n |= c.is_null(row);
            }
        }
    }
    nulls
}

fn key_rows(p: &Prepared, batch: &RecordBatch) -> Result<datafusion::arrow::row::Rows> {
    Ok(p.rows.convert_columns(&p.keys.iter().map(|i| Arc::clone(batch.column(*i))).collect::<Vec<_>>())?)
}

/// Checkpoint layout of a join: both sides' rows in one batch — left
/// columns, right columns (null on the other side's rows), `__side`, and two
/// numbers per row (`__a`, `__b`: event time, or window end and start).
fn state_schema(left: &SchemaRef, right: &SchemaRef) -> SchemaRef {
    let mut fields = Vec::new();
    for (prefix, s) in [("l.", left), ("r.", right)] {
        for f in s.fields() {
            fields.push(Field::new(format!("{prefix}{}", f.name()), f.data_type().clone(), true));
        }
    }
    fields.push(Field::new("__side", DataType::UInt8, false));
    fields.push(Field::new("__a", DataType::Int64, false));
    fields.push(Field::new("__b", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

fn pack(
    schema: &SchemaRef,
    sides: &[SchemaRef; 2],
    side: usize,
    rows: &RecordBatch,
    a: Vec<i64>,
    b: Vec<i64>,
) -> Result<RecordBatch> {
    let n = rows.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (s, schema) in sides.iter().enumerate() {
        if s == side {
            columns.extend(rows.columns().iter().cloned());
        } else {
            columns.extend(schema.fields().iter().map(|f| new_null_array(f.data_type(), n)));
        }
    }
    columns.push(Arc::new(UInt8Array::from(vec![side as u8; n])));
    columns.push(Arc::new(Int64Array::from(a)));
    columns.push(Arc::new(Int64Array::from(b)));
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// One side's rows of a packed state with their two numbers.
fn unpack(state: &RecordBatch, sides: &[SchemaRef; 2], side: usize) -> Result<(RecordBatch, Vec<i64>, Vec<i64>)> {
    let width = sides[0].fields().len() + sides[1].fields().len();
    if state.num_columns() != width + 3 {
        return Err(Error::Plan("checkpointed join state does not fit this join".into()));
    }
    let mask: BooleanArray =
        state.column(width).as_primitive::<UInt8Type>().iter().map(|s| Some(s == Some(side as u8))).collect();
    let mine = filter_record_batch(state, &mask)?;
    let first = if side == 0 { 0 } else { sides[0].fields().len() };
    let columns: Vec<ArrayRef> =
        (first..first + sides[side].fields().len()).map(|c| Arc::clone(mine.column(c))).collect();
    let rows = RecordBatch::try_new(Arc::clone(&sides[side]), columns)?;
    let a = mine.column(width + 1).as_primitive::<Int64Type>().values().to_vec();
    let b = mine.column(width + 2).as_primitive::<Int64Type>().values().to_vec();
    Ok((rows, a, b))
}

/// A stored row of one side: batch slot, row, event time.
type Entry = (usize, u32, i64);

/// Slots from here on name batches of spilled rows read for one probe.
const SPILLED: usize = usize::MAX / 2;

#[derive(Default)]
struct SideState {
    batches: Vec<Option<RecordBatch>>,
    live: Vec<usize>,
    by_key: HashMap<Vec<u8>, Vec<Entry>>,
    rows: usize,
    /// Memory of the batches and the index (see `recount`).
    bytes: usize,
}

impl SideState {
    fn store(&mut self, slot: usize, batch: &RecordBatch, rows: Vec<(Vec<u8>, u32, i64)>) {
        self.batches.push(Some(batch.clone()));
        self.live.push(rows.len());
        self.rows += rows.len();
        self.bytes += batch.get_array_memory_size();
        for (key, row, ts) in rows {
            self.bytes += key.len() + 24;
            self.by_key.entry(key).or_default().push((slot, row, ts));
        }
    }
}

mod spill;

/// The interval (or, unbounded, regular) join (see the module docs).
pub struct IntervalJoin {
    sides: [Prepared; 2],
    schemas: [SchemaRef; 2],
    state: [SideState; 2],
    /// A left row at `l` meets right rows at `r` with `r + lower <= l <= r + upper`.
    bounds: Option<(i64, i64)>,
    /// A regular join's rows are forgotten this long (event time) after their own time.
    ttl: Option<i64>,
    output: SchemaRef,
    /// Rows moved out of memory past the state budget.
    overflow: spill::Overflow,
    /// Each side's whole rows as bytes (for the rows out of memory).
    codecs: [RowConverter; 2],
    watermark: i64,
}

impl std::fmt::Debug for IntervalJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalJoin")
            .field("bounds", &self.bounds)
            .field("rows", &self.state_size())
            .finish_non_exhaustive()
    }
}

impl IntervalJoin {
    /// Joins `left` and `right`; `bounds` = (lower, upper) in ms, or `None`
    /// for a regular join without a time condition.
    pub fn new(left: &JoinSide, right: &JoinSide, bounds: Option<(i64, i64)>) -> Result<Self> {
        let l = prepare(left, right, "left")?;
        let r = prepare(right, left, "right")?;
        if let Some((lower, upper)) = bounds {
            if lower > upper {
                return Err(Error::Plan(format!(
                    "interval join bounds are reversed: lower {lower} ms > upper {upper} ms"
                )));
            }
            if l.time.is_none() || r.time.is_none() {
                return Err(Error::Plan("an interval join needs an event-time column on both sides".into()));
            }
        }
        Ok(Self {
            output: joined_schema(&left.schema, &right.schema, false)?,
            schemas: [Arc::clone(&left.schema), Arc::clone(&right.schema)],
            sides: [l, r],
            state: [SideState::default(), SideState::default()],
            bounds,
            ttl: None,
            overflow: spill::Overflow::new(StateConfig::default()),
            codecs: [spill::row_codec(&left.schema)?, spill::row_codec(&right.schema)?],
            watermark: i64::MIN,
        })
    }

    /// A regular join that forgets each row `ttl` ms of event time after its
    /// own time (its state TTL): rows meet only while both are remembered.
    pub fn with_ttl(mut self, ttl: i64) -> Result<Self> {
        if ttl <= 0 {
            return Err(Error::Plan(format!("a join's state TTL must be positive, got {ttl} ms")));
        }
        if self.bounds.is_some() {
            return Err(Error::Plan("an interval join's bounds already limit its state; it takes no TTL".into()));
        }
        if self.sides.iter().any(|s| s.time.is_none()) {
            return Err(Error::Plan("a join with a state TTL needs an event-time column on both sides".into()));
        }
        self.ttl = Some(ttl);
        Ok(self)
    }

    fn meets(&self, port: usize, own: i64, other: i64) -> bool {
        let Some((lower, upper)) = self.bounds else { return true };
        let (l, r) = if port == 0 { (own, other) } else { (other, own) };
        l >= r.saturating_add(lower) && l <= r.saturating_add(upper)
    }
}

impl Operator for IntervalJoin {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    fn process(&mut self, port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let port = port.min(1);
        let other = 1 - port;
        let keys = key_rows(&self.sides[port], &batch)?;
        let nulls = null_keys(&self.sides[port], &batch);
        let times = match self.sides[port].time {
            Some(t) => event_times(batch.column(t))?,
            None => vec![Some(0); batch.num_rows()],
        };
        let slot = self.state[port].batches.len();
        // Pairs (own row, other side's batch slot, row); slots from
        // `SPILLED` on are batches of spilled rows read for this batch.
        let mut pairs: Vec<(u32, usize, u32)> = Vec::new();
        let mut spilled: Vec<RecordBatch> = Vec::new();
        let mut stored = Vec::new();
        for (row, ts) in times.iter().enumerate() {
            let Some(ts) = *ts else { continue };
            if nulls[row] {
                continue;
            }
            let key = keys.row(row);
            if let Some(entries) = self.state[other].by_key.get(key.as_ref()) {
                for (b, r, t) in entries {
                    if self.meets(port, ts, *t) {
                        pairs.push((row as u32, *b, *r));
                    }
                }
            }
            if let Some((rows, times)) = self.spilled_rows(other, key.as_ref())? {
                for (r, t) in times.iter().enumerate() {
                    if self.meets(port, ts, *t) {
                        pairs.push((row as u32, SPILLED + spilled.len(), r as u32));
                    }
                }
                spilled.push(rows);
            }
            stored.push((key.as_ref().to_vec(), row as u32, ts));
        }
        self.state[port].store(slot, &batch, stored);
        if pairs.is_empty() {
            return self.spill_if_over();
        }
        let mut other_batches: Vec<&RecordBatch> = self.state[other].batches.iter().flatten().collect();
        let mut slot_index: HashMap<usize, usize> = self.state[other]
            .batches
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_some())
            .enumerate()
            .map(|(dense, (slot, _))| (slot, dense))
            .collect();
        for (i, rows) in spilled.iter().enumerate() {
            slot_index.insert(SPILLED + i, other_batches.len());
            other_batches.push(rows);
        }
        let own_idx = UInt32Array::from(pairs.iter().map(|p| p.0).collect::<Vec<_>>());
        let own: Vec<ArrayRef> =
            batch.columns().iter().map(|c| Ok(take(c.as_ref(), &own_idx, None)?)).collect::<Result<_>>()?;
        let picks: Vec<(usize, usize)> = pairs.iter().map(|p| (slot_index[&p.1], p.2 as usize)).collect();
        let width = other_batches.first().map(|b| b.num_columns()).unwrap_or(0);
        let mut theirs = Vec::with_capacity(width);
        for c in 0..width {
            let arrays: Vec<&dyn Array> = other_batches.iter().map(|b| b.column(c).as_ref()).collect();
            theirs.push(interleave(&arrays, &picks)?);
        }
        let columns = if port == 0 { [own, theirs].concat() } else { [theirs, own].concat() };
        debug_assert_eq!(columns.len(), self.output.fields().len());
        out.emit(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        self.spill_if_over()
    }

    fn advance(&mut self, watermark: i64, _out: &mut Output) -> Result<()> {
        // Future rows are after the watermark. A left row at l can meet right
        // rows up to l - lower; a right row at r left rows up to r + upper.
        // Under a TTL a row is kept until the watermark is `ttl` past it.
        self.watermark = self.watermark.max(watermark);
        let Some(reaches) = self.reach() else { return Ok(()) };
        for (side, reach) in reaches.into_iter().enumerate() {
            let state = &mut self.state[side];
            let mut freed = vec![0usize; state.batches.len()];
            state.by_key.retain(|_, entries| {
                entries.retain(|(b, _, t)| {
                    let alive = t.saturating_add(reach) > watermark;
                    if !alive {
                        freed[*b] += 1;
                    }
                    alive
                });
                !entries.is_empty()
            });
            for (slot, n) in freed.into_iter().enumerate() {
                if n > 0 {
                    state.live[slot] -= n;
                    state.rows -= n;
                    if state.live[slot] == 0 {
                        state.batches[slot] = None;
                    }
                }
            }
            state.recount();
        }
        self.purge_spilled()
    }

    fn set_watermark(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
    }

    fn state_size(&self) -> usize {
        self.state[0].rows + self.state[1].rows + self.rows_on_disk()
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let schema = state_schema(&self.schemas[0], &self.schemas[1]);
        let mut parts = Vec::new();
        for side in 0..2 {
            let state = &self.state[side];
            let entries: Vec<&Entry> = state.by_key.values().flatten().collect();
            if entries.is_empty() {
                continue;
            }
            let batches: Vec<&RecordBatch> = state.batches.iter().flatten().collect();
            let dense: HashMap<usize, usize> = state
                .batches
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_some())
                .enumerate()
                .map(|(d, (slot, _))| (slot, d))
                .collect();
            let picks: Vec<(usize, usize)> = entries.iter().map(|(b, r, _)| (dense[b], *r as usize)).collect();
            let mut columns = Vec::new();
            for c in 0..self.schemas[side].fields().len() {
                let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
                columns.push(interleave(&arrays, &picks)?);
            }
            let rows = RecordBatch::try_new(Arc::clone(&self.schemas[side]), columns)?;
            let times = entries.iter().map(|e| e.2).collect();
            parts.push(pack(&schema, &self.schemas, side, &rows, times, vec![0; entries.len()])?);
        }
        for side in 0..2 {
            if let Some((rows, times)) = self.spilled_state(side)? {
                let n = rows.num_rows();
                parts.push(pack(&schema, &self.schemas, side, &rows, times, vec![0; n])?);
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&schema, &parts)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        for side in 0..2 {
            let (rows, times, _) = unpack(state, &self.schemas, side)?;
            if rows.num_rows() == 0 {
                continue;
            }
            let keys = key_rows(&self.sides[side], &rows)?;
            let stored = times.iter().enumerate().map(|(r, t)| (keys.row(r).as_ref().to_vec(), r as u32, *t)).collect();
            let slot = self.state[side].batches.len();
            self.state[side].store(slot, &rows, stored);
        }
        self.spill_if_over()
    }
}

/// The window join (see the module docs).
pub struct WindowJoin {
    sides: [Prepared; 2],
    spec: WindowSpec,
    /// Rows per window and side (end, start, side), window columns not
    /// added yet; past the state budget on disk.
    pending: RowBuffers<(i64, i64, u8)>,
    schemas: [SchemaRef; 2],
    output: SchemaRef,
    watermark: i64,
}

impl std::fmt::Debug for WindowJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowJoin")
            .field("spec", &self.spec)
            .field("rows", &self.pending.rows())
            .finish_non_exhaustive()
    }
}

impl WindowJoin {
    /// Joins rows of `left` and `right` with equal keys in the same window of `spec`.
    pub fn new(left: &JoinSide, right: &JoinSide, spec: WindowSpec) -> Result<Self> {
        let l = prepare(left, right, "left")?;
        let r = prepare(right, left, "right")?;
        if l.time.is_none() || r.time.is_none() {
            return Err(Error::Plan("a window join needs an event-time column on both sides".into()));
        }
        Ok(Self {
            output: joined_schema(&left.schema, &right.schema, true)?,
            schemas: [Arc::clone(&left.schema), Arc::clone(&right.schema)],
            sides: [l, r],
            spec,
            pending: RowBuffers::new(StateConfig::default()),
            watermark: i64::MIN,
        })
    }

    /// Keeps the rows waiting for their windows within `config`'s memory
    /// budget: past it the windows that fire last wait on disk.
    pub fn with_state(mut self, config: StateConfig) -> Self {
        self.pending = RowBuffers::new(config);
        self
    }

    /// Rows waiting on disk for their window.
    pub fn rows_on_disk(&self) -> usize {
        self.pending.rows_on_disk()
    }

    fn fire(&self, window: (i64, i64), sides: &[Vec<RecordBatch>; 2]) -> Result<Option<RecordBatch>> {
        if sides[0].is_empty() || sides[1].is_empty() {
            return Ok(None);
        }
        let left = concat_batches(&self.schemas[0], &sides[0])?;
        let right = concat_batches(&self.schemas[1], &sides[1])?;
        let lk = key_rows(&self.sides[0], &left)?;
        let rk = key_rows(&self.sides[1], &right)?;
        let (ln, rn) = (null_keys(&self.sides[0], &left), null_keys(&self.sides[1], &right));
        let mut build: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for r in (0..right.num_rows()).filter(|r| !rn[*r]) {
            build.entry(rk.row(r).data()).or_default().push(r as u32);
        }
        let (mut li, mut ri) = (Vec::new(), Vec::new());
        for l in (0..left.num_rows()).filter(|l| !ln[*l]) {
            if let Some(matches) = build.get(lk.row(l).data()) {
                for r in matches {
                    li.push(l as u32);
                    ri.push(*r);
                }
            }
        }
        if li.is_empty() {
            return Ok(None);
        }
        let (li, ri) = (UInt32Array::from(li), UInt32Array::from(ri));
        let n = li.len();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for c in left.columns() {
            columns.push(take(c.as_ref(), &li, None)?);
        }
        for c in right.columns() {
            columns.push(take(c.as_ref(), &ri, None)?);
        }
        columns.push(Arc::new(TimestampMillisecondArray::from(vec![window.1; n])));
        columns.push(Arc::new(TimestampMillisecondArray::from(vec![window.0; n])));
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.output), columns)?))
    }
}

impl Operator for WindowJoin {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    fn process(&mut self, port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let port = port.min(1);
        let Some(time) = self.sides[port].time else { return Ok(()) };
        let (per_window, late) = assign_rows(self.spec, &event_times(batch.column(time))?, self.watermark);
        if late.iter().any(|l| *l) {
            out.late.push(filter_record_batch(&batch, &late.into())?);
        }
        for ((end, start), rows) in per_window {
            let rows = datafusion::arrow::compute::take_record_batch(&batch, &UInt32Array::from(rows))?;
            self.pending.push((end, start, port as u8), rows)?;
        }
        Ok(())
    }

    fn advance(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        while let Some((end, start, _)) = self.pending.first_key() {
            if end - 1 > watermark {
                break;
            }
            let sides = [self.pending.take((end, start, 0))?, self.pending.take((end, start, 1))?];
            if let Some(b) = self.fire((end, start), &sides)? {
                out.emit(b);
            }
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.pending.rows()
    }

    fn set_watermark(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let schema = state_schema(&self.schemas[0], &self.schemas[1]);
        let mut parts = Vec::new();
        for ((end, start, side), b) in self.pending.all()? {
            let n = b.num_rows();
            parts.push(pack(&schema, &self.schemas, usize::from(side), &b, vec![end; n], vec![start; n])?);
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&schema, &parts)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        for side in 0..2 {
            let (rows, ends, starts) = unpack(state, &self.schemas, side)?;
            let mut per_window: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
            for (row, window) in ends.into_iter().zip(starts).enumerate() {
                per_window.entry(window).or_default().push(row as u32);
            }
            for ((end, start), idx) in per_window {
                let part = datafusion::arrow::compute::take_record_batch(&rows, &UInt32Array::from(idx))?;
                self.pending.push((end, start, side as u8), part)?;
            }
        }
        Ok(())
    }
}
