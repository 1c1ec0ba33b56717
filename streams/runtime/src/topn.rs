//! Top-N per window: the rows ranked 1..=N by a column (descending) within
//! each window and key, with ties sharing a rank as SQL's `RANK()` does —
//! so "the bids with the highest price in each window" keeps every bid at
//! that price.
//!
//! Windows come either from the rows' own `window_start` / `window_end`
//! columns (the output of a window aggregate) or from assigning the rows'
//! event time to a [`WindowSpec`]. A window's rows are kept until the
//! watermark reaches its last millisecond (a row for a window that has
//! fired is late: top-N results are final), pruned to the current top N (plus ties)
//! whenever they pile up, so state stays near N rows per key and window.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array, UInt64Array};
use datafusion::arrow::compute::{SortOptions, concat_batches, filter_record_batch, take, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use rill_time::WindowSpec;

use rill_state::StateConfig;

use crate::buffers::RowBuffers;
use crate::operator::{Operator, Output};
use crate::window_agg::{assign_rows, event_times};
use crate::{Error, Result};

/// Where a row's window comes from.
#[derive(Debug, Clone, Copy)]
pub enum TopNWindows {
    /// Assign the event time in column `time` to windows of `spec`.
    Assign {
        /// The windows.
        spec: WindowSpec,
        /// Event-time column index.
        time: usize,
    },
    /// The rows carry `window_start` and `window_end` (Timestamp ms) columns.
    Columns {
        /// Index of `window_start`.
        start: usize,
        /// Index of `window_end`.
        end: usize,
    },
}

/// The operator (see the module docs).
pub struct WindowTopN {
    input: SchemaRef,
    /// Rows as kept (the input, window columns added where assigned here).
    output: SchemaRef,
    /// Rows as emitted: `output`, plus the rank column when asked for.
    emitted: SchemaRef,
    ranked: bool,
    n: usize,
    windows: TopNWindows,
    /// Sorts rows by key ascending, then the ranked column descending.
    sort: RowConverter,
    sort_fields: Vec<SortField>,
    key_count: usize,
    columns: Vec<usize>,
    /// Rows per window (keyed by end, start), with window columns appended
    /// when they were assigned here; past the state budget on disk.
    pending: RowBuffers<(i64, i64)>,
    watermark: i64,
}

impl std::fmt::Debug for WindowTopN {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowTopN").field("n", &self.n).field("rows", &self.pending.rows()).finish_non_exhaustive()
    }
}

impl WindowTopN {
    /// The `n` best rows of `input` by `order_by` (descending) per window and `keys`.
    pub fn new(input: SchemaRef, keys: &[&str], order_by: &str, n: usize, windows: TopNWindows) -> Result<Self> {
        if n == 0 {
            return Err(Error::Plan("top-N needs N of at least 1".into()));
        }
        let index = |name: &str| {
            input.index_of(name).map_err(|_| Error::Plan(format!("column '{name}' is not in the input schema")))
        };
        let mut columns = keys.iter().map(|k| index(k)).collect::<Result<Vec<_>>>()?;
        columns.push(index(order_by)?);
        let mut fields: Vec<SortField> = keys
            .iter()
            .map(|k| Ok(SortField::new(input.field(index(k)?).data_type().clone())))
            .collect::<Result<_>>()?;
        fields.push(SortField::new_with_options(
            input.field(index(order_by)?).data_type().clone(),
            SortOptions { descending: true, nulls_first: false },
        ));
        let output = match windows {
            TopNWindows::Assign { .. } => {
                let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
                let mut f: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
                f.push(Field::new("window_start", ts.clone(), false));
                f.push(Field::new("window_end", ts, false));
                Arc::new(Schema::new(f))
            }
            TopNWindows::Columns { .. } => Arc::clone(&input),
        };
        Ok(Self {
            input,
            emitted: Arc::clone(&output),
            ranked: false,
            output,
            n,
            windows,
            sort: RowConverter::new(fields.clone())?,
            sort_fields: fields,
            key_count: keys.len(),
            columns,
            pending: RowBuffers::new(StateConfig::default()),
            watermark: i64::MIN,
        })
    }

    /// Emits each row's rank (1-based, UInt64) as a last column `name`.
    pub fn with_rank(mut self, name: &str) -> Result<Self> {
        if self.output.index_of(name).is_ok() {
            return Err(Error::Plan(format!("top-N rank column '{name}' is already a column")));
        }
        let mut fields: Vec<Field> = self.output.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(name, DataType::UInt64, false));
        self.emitted = Arc::new(Schema::new(fields));
        self.ranked = true;
        Ok(self)
    }

    /// Keeps its candidate rows within `config`'s memory budget: past it
    /// the windows that fire last wait on disk.
    pub fn with_state(mut self, config: StateConfig) -> Self {
        self.pending = RowBuffers::new(config);
        self
    }

    /// Rows waiting on disk for their window.
    pub fn rows_on_disk(&self) -> usize {
        self.pending.rows_on_disk()
    }

    fn add(&mut self, window: (i64, i64), batch: RecordBatch) -> Result<()> {
        self.pending.push(window, batch)?;
        // The best N of all rows are among the best N of each part, so the
        // part in memory can be pruned on its own.
        if self.pending.memory_rows(window) > (self.n * 4).max(4096) {
            let all = self.pending.take_memory(window);
            let (ranked, _) = self.rank(&all)?;
            self.pending.push(window, ranked)?;
        }
        Ok(())
    }

    /// The rows of `batches` ranked at most N, sorted by key then rank, and their ranks.
    fn rank(&self, batches: &[RecordBatch]) -> Result<(RecordBatch, Vec<u64>)> {
        let all = concat_batches(&self.output, batches)?;
        let cols: Vec<ArrayRef> = self.columns.iter().map(|i| Arc::clone(all.column(*i))).collect();
        let rows = self.sort.convert_columns(&cols)?;
        // Without key columns every row is in one partition (a converter
        // of no columns cannot tell how many rows it has).
        let key_rows = if self.key_count == 0 {
            None
        } else {
            Some(RowConverter::new(self.sort_fields_of_keys())?.convert_columns(&cols[..self.key_count])?)
        };
        let mut order: Vec<usize> = (0..all.num_rows()).collect();
        order.sort_by(|a, b| rows.row(*a).cmp(&rows.row(*b)));
        let value = RowConverter::new(self.sort_fields[self.key_count..].to_vec())?;
        let values = value.convert_columns(&cols[self.key_count..])?;
        let (mut keep, mut ranks) = (Vec::new(), Vec::new());
        let (mut position, mut rank) = (0usize, 0usize);
        for (i, row) in order.iter().enumerate() {
            let new_key = i == 0 || key_rows.as_ref().is_some_and(|k| k.row(*row) != k.row(order[i - 1]));
            if new_key {
                position = 0;
                rank = 1;
            } else {
                position += 1;
                if values.row(*row) != values.row(order[i - 1]) {
                    rank = position + 1;
                }
            }
            if rank <= self.n {
                keep.push(*row as u32);
                ranks.push(rank as u64);
            }
        }
        Ok((take_record_batch(&all, &UInt32Array::from(keep))?, ranks))
    }

    fn sort_fields_of_keys(&self) -> Vec<SortField> {
        self.sort_fields[..self.key_count].to_vec()
    }
}

impl Operator for WindowTopN {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.emitted)
    }

    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mut late = vec![false; batch.num_rows()];
        let mut per_window: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
        match self.windows {
            TopNWindows::Assign { spec, time } => {
                (per_window, late) = assign_rows(spec, &event_times(batch.column(time))?, self.watermark);
            }
            TopNWindows::Columns { start, end } => {
                let starts = event_times(batch.column(start))?;
                let ends = event_times(batch.column(end))?;
                for (row, (s, e)) in starts.into_iter().zip(ends).enumerate() {
                    match (s, e) {
                        (Some(s), Some(e)) if e - 1 > self.watermark => {
                            per_window.entry((e, s)).or_default().push(row as u32);
                        }
                        _ => late[row] = true,
                    }
                }
            }
        }
        if late.iter().any(|l| *l) {
            out.late.push(filter_record_batch(&batch, &late.into())?);
        }
        for ((end, start), rows) in per_window {
            let indices = UInt32Array::from(rows);
            let mut columns: Vec<ArrayRef> =
                batch.columns().iter().map(|c| Ok(take(c.as_ref(), &indices, None)?)).collect::<Result<_>>()?;
            if let TopNWindows::Assign { .. } = self.windows {
                columns.push(Arc::new(TimestampMillisecondArray::from(vec![start; indices.len()])));
                columns.push(Arc::new(TimestampMillisecondArray::from(vec![end; indices.len()])));
            }
            let rows = RecordBatch::try_new(Arc::clone(&self.output), columns)?;
            self.add((end, start), rows)?;
        }
        Ok(())
    }

    fn advance(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        while let Some(window) = self.pending.first_key() {
            if window.0 - 1 > watermark {
                break;
            }
            let batches = self.pending.take(window)?;
            if batches.is_empty() {
                continue;
            }
            let (rows, ranks) = self.rank(&batches)?;
            if self.ranked {
                let mut columns = rows.columns().to_vec();
                columns.push(Arc::new(UInt64Array::from(ranks)));
                out.emit(RecordBatch::try_new(Arc::clone(&self.emitted), columns)?);
            } else {
                out.emit(rows);
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
        let all: Vec<RecordBatch> = self.pending.all()?.into_iter().map(|(_, b)| b).collect();
        if all.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&self.output, &all)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        if state.schema().fields() != self.output.fields() {
            return Err(Error::Plan("checkpointed top-N state does not fit this top-N operator".into()));
        }
        let (start, end) = match self.windows {
            TopNWindows::Assign { .. } => (self.output.fields().len() - 2, self.output.fields().len() - 1),
            TopNWindows::Columns { start, end } => (start, end),
        };
        let starts = event_times(state.column(start))?;
        let ends = event_times(state.column(end))?;
        let mut per_window: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
        for (row, (s, e)) in starts.into_iter().zip(ends).enumerate() {
            if let (Some(s), Some(e)) = (s, e) {
                per_window.entry((e, s)).or_default().push(row as u32);
            }
        }
        for (window, rows) in per_window {
            let rows = take_record_batch(state, &UInt32Array::from(rows))?;
            self.add(window, rows)?;
        }
        Ok(())
    }
}

impl WindowTopN {
    /// The schema it reads.
    pub fn input_schema(&self) -> SchemaRef {
        Arc::clone(&self.input)
    }
}
