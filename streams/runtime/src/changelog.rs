//! Changelogs: rows that are changes to a table (a database's change data
//! capture), each with its kind in a last Utf8 column [`OP_COLUMN`] —
//! `+I` insert, `-U` the row before an update, `+U` the row after it,
//! `-D` delete — and the running aggregate that consumes them.
//!
//! [`GroupAggregate`] keeps one set of accumulators per key: inserted rows
//! are added, removed ones retracted (`retract_batch`), and each batch's
//! effect on a key goes out as a change of the result row: `+I` for a new
//! key, `-U`/`+U` when its values change, `-D` when its last row is gone.
//! Only aggregates that retract any value exactly are taken: COUNT, SUM,
//! AVG (DataFusion's sliding accumulators) and MIN, MAX (every value kept
//! with its count).
//!
//! [`LastRow`] turns appended rows into a changelog: the latest row per key.
//!
//! It owns the row kinds and the operators that make or consume
//! changelogs; decoding changelog formats is [`crate::decode`]'s.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::scalar::ScalarValue;

use crate::operator::{Operator, Output};
use crate::window_agg::{Aggregate, aggregate_arguments, physical_aggregates};
use crate::{Error, Result};

/// Name of the row-kind column of a changelog.
pub const OP_COLUMN: &str = "__op";
/// An inserted row.
pub const INSERT: &str = "+I";
/// A row as it was before an update.
pub const UPDATE_BEFORE: &str = "-U";
/// A row as it is after an update.
pub const UPDATE_AFTER: &str = "+U";
/// A deleted row.
pub const DELETE: &str = "-D";

mod extreme;
mod last_row;
mod spill;

pub use last_row::LastRow;

/// Functions whose accumulators retract exactly (MIN and MAX by keeping every value).
const RETRACTABLE: &[&str] = &["count", "sum", "avg", "min", "max"];

struct Group {
    accumulators: Vec<Box<dyn Accumulator>>,
    rows: i64,
    /// Recency stamp: the least recently used groups spill first.
    used: u64,
    /// Memory it costs, by the operator's accounting.
    bytes: usize,
    /// An older copy is on disk (replaced when it spills again, deleted when the key goes).
    on_disk: bool,
}

/// The running aggregate over a changelog (see the module docs).
pub struct GroupAggregate {
    input: SchemaRef,
    output: SchemaRef,
    key_indices: Vec<usize>,
    op_index: usize,
    rows: RowConverter,
    aggregates: Vec<AggregateFunctionExpr>,
    groups: HashMap<OwnedRow, Group>,
    /// Per aggregate: `Some((max, type))` for MIN / MAX, kept by value.
    extremes: Vec<Option<(bool, DataType)>>,
    /// Groups past the memory budget, on disk.
    spill: crate::spill::SpillBook,
    /// How many state values each accumulator has.
    widths: Vec<usize>,
    /// The state columns' types after the keys: the row count, then the state values.
    state_types: Vec<DataType>,
}

impl std::fmt::Debug for GroupAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupAggregate").field("groups", &self.groups.len()).finish_non_exhaustive()
    }
}

impl GroupAggregate {
    /// Aggregates changelog rows of `input` per `keys`; results are keys,
    /// aggregates and the row kind.
    pub fn new(input: SchemaRef, keys: &[&str], aggregates: &[Aggregate]) -> Result<Self> {
        let index = |name: &str| {
            input.index_of(name).map_err(|_| Error::Plan(format!("column '{name}' is not in the changelog's schema")))
        };
        let op_index = index(OP_COLUMN)?;
        if input.field(op_index).data_type() != &DataType::Utf8 {
            return Err(Error::Plan(format!("the row kind column {OP_COLUMN} must be Utf8")));
        }
        if keys.is_empty() {
            return Err(Error::Plan("a running aggregate over a changelog groups by at least one column".into()));
        }
        for a in aggregates {
            if !RETRACTABLE.contains(&a.function.name()) || a.distinct {
                return Err(Error::Plan(format!(
                    "{} over a changelog is not supported yet (it must retract any value exactly); \
                     COUNT, SUM, AVG, MIN and MAX are",
                    a.name
                )));
            }
        }
        let key_indices = keys.iter().map(|k| index(k)).collect::<Result<Vec<_>>>()?;
        let rows = RowConverter::new(
            key_indices.iter().map(|i| SortField::new(input.field(*i).data_type().clone())).collect(),
        )?;
        let exprs = physical_aggregates(&input, aggregates)?;
        let extremes = aggregates
            .iter()
            .map(|a| match a.function.name() {
                name @ ("min" | "max") => {
                    let t = input.field_with_name(&a.column)?.data_type().clone();
                    Ok(Some((name == "max", t)))
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut fields: Vec<Field> = key_indices.iter().map(|i| input.field(*i).clone()).collect();
        fields.extend(exprs.iter().map(|a| a.field().as_ref().clone().with_nullable(true)));
        fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        let mut op = Self {
            input,
            output: Arc::new(Schema::new(fields)),
            key_indices,
            op_index,
            rows,
            aggregates: exprs,
            groups: HashMap::new(),
            extremes,
            spill: crate::spill::SpillBook::new(rill_state::StateConfig::default()),
            widths: Vec::new(),
            state_types: vec![DataType::Int64],
        };
        // The state's layout, read once off a fresh group.
        let mut group = op.fresh()?;
        for acc in &mut group.accumulators {
            let state = acc.state()?;
            op.widths.push(state.len());
            op.state_types.extend(state.iter().map(ScalarValue::data_type));
        }
        Ok(op)
    }

    fn fresh(&self) -> Result<Group> {
        let accumulators = self
            .aggregates
            .iter()
            .zip(&self.extremes)
            .map(|(a, extreme)| match extreme {
                Some((max, t)) => Ok(Box::new(extreme::Extreme::new(t, *max)?) as Box<dyn Accumulator>),
                None => a.create_sliding_accumulator(),
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(Group { accumulators, rows: 0, used: 0, bytes: 0, on_disk: false })
    }

    fn values(group: &mut Group) -> Result<Vec<ScalarValue>> {
        Ok(group.accumulators.iter_mut().map(|a| a.evaluate()).collect::<datafusion::error::Result<Vec<_>>>()?)
    }

    /// Applies one batch of changes; returns the changes of the results.
    fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let ops = batch.column(self.op_index).as_string::<i32>();
        let keys: Vec<ArrayRef> = self.key_indices.iter().map(|i| Arc::clone(batch.column(*i))).collect();
        let keys = self.rows.convert_columns(&keys)?;
        let args = aggregate_arguments(&self.aggregates, batch)?;
        // Rows added and retracted per key, keys in order of first change.
        let mut order: Vec<OwnedRow> = Vec::new();
        let mut changes: HashMap<OwnedRow, (Vec<u32>, Vec<u32>)> = HashMap::new();
        for row in 0..batch.num_rows() {
            let add = match ops.is_valid(row).then(|| ops.value(row)) {
                Some(INSERT | UPDATE_AFTER) => true,
                Some(UPDATE_BEFORE | DELETE) => false,
                other => return Err(Error::Plan(format!("a changelog row has the unknown kind {other:?}"))),
            };
            let key = keys.row(row).owned();
            let entry = changes.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (Vec::new(), Vec::new())
            });
            if add { entry.0.push(row as u32) } else { entry.1.push(row as u32) }
        }
        let (mut out_keys, mut out_values, mut out_ops) = (Vec::new(), Vec::new(), Vec::new());
        for key in order {
            let Some((added, retracted)) = changes.remove(&key) else { continue };
            let mut group = match self.groups.remove(&key) {
                Some(g) => g,
                None => match self.load(&key)? {
                    Some(g) => g,
                    None => self.fresh()?,
                },
            };
            let before = if group.rows > 0 { Some(Self::values(&mut group)?) } else { None };
            for (acc, columns) in group.accumulators.iter_mut().zip(&args) {
                for (rows, add) in [(&added, true), (&retracted, false)] {
                    if rows.is_empty() {
                        continue;
                    }
                    let indices = UInt32Array::from(rows.clone());
                    let taken =
                        columns.iter().map(|c| Ok(take(c.as_ref(), &indices, None)?)).collect::<Result<Vec<_>>>()?;
                    if add { acc.update_batch(&taken)? } else { acc.retract_batch(&taken)? }
                }
            }
            group.rows += added.len() as i64 - retracted.len() as i64;
            let after = if group.rows > 0 { Some(Self::values(&mut group)?) } else { None };
            let mut emit = |values: Vec<ScalarValue>, op: &'static str| {
                out_keys.push(key.clone());
                out_values.push(values);
                out_ops.push(op);
            };
            match (before, after) {
                (None, Some(a)) => emit(a, INSERT),
                (Some(b), Some(a)) if b != a => {
                    emit(b, UPDATE_BEFORE);
                    emit(a, UPDATE_AFTER);
                }
                (Some(b), None) => emit(b, DELETE),
                _ => {}
            }
            // A key whose rows are all retracted is forgotten (a retraction of
            // a row never seen leaves nothing behind either).
            if group.rows > 0 {
                self.touch(&mut group);
                self.groups.insert(key, group);
            } else {
                self.forget(&key, &group);
            }
        }
        self.make_room()?;
        self.results(out_keys, out_values, out_ops)
    }

    fn results(&self, keys: Vec<OwnedRow>, values: Vec<Vec<ScalarValue>>, ops: Vec<&str>) -> Result<RecordBatch> {
        if keys.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.output)));
        }
        let mut columns = self.rows.convert_rows(keys.iter().map(OwnedRow::row))?;
        for (j, f) in self.output.fields().iter().skip(self.key_indices.len()).take(self.aggregates.len()).enumerate() {
            let cells = values.iter().map(|v| v[j].clone());
            let array = ScalarValue::iter_to_array(cells)?;
            let array = if array.data_type() == f.data_type() {
                array
            } else {
                datafusion::arrow::compute::cast(&array, f.data_type())?
            };
            columns.push(array);
        }
        columns.push(Arc::new(StringArray::from(ops)));
        Ok(RecordBatch::try_new(Arc::clone(&self.output), columns)?)
    }
}

impl Operator for GroupAggregate {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit(self.apply(&batch)?);
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.groups.len()
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        GroupAggregate::snapshot(self)
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        GroupAggregate::restore(self, state)
    }
}

/// Row `row` of `batch` in buffers of its own: a slice would keep the whole
/// batch alive for as long as the row is kept.
pub(crate) fn own_row(batch: &RecordBatch, row: usize) -> Result<RecordBatch> {
    Ok(datafusion::arrow::compute::take_record_batch(batch, &UInt32Array::from(vec![row as u32]))?)
}
