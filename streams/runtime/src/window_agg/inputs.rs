//! What window operators share about their input: DataFusion aggregate
//! expressions built and evaluated over a batch, event times read from the
//! time column, and rows assigned to fixed windows. No state lives here.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_expr::expressions::{col, lit};
use rill_time::WindowSpec;

use super::Aggregate;
use crate::{Error, Result};

/// Row indices per window, keyed (end, start).
pub(crate) type RowsByWindow = std::collections::BTreeMap<(i64, i64), Vec<u32>>;

/// Rows by the windows of `spec` they fall in, keyed (end, start), for
/// operators whose windows fire once: a window whose last millisecond is at
/// or behind `watermark` has fired, so a row only for such windows (or
/// without a time) is late. A row in a gap between hopping windows is in
/// no window and not late.
pub(crate) fn assign_rows(spec: WindowSpec, times: &[Option<i64>], watermark: i64) -> (RowsByWindow, Vec<bool>) {
    let mut per_window = RowsByWindow::new();
    let mut late = vec![false; times.len()];
    for (row, ts) in times.iter().enumerate() {
        let Some(ts) = *ts else {
            late[row] = true;
            continue;
        };
        let windows = spec.assign(ts);
        let mut placed = windows.is_empty();
        for w in windows {
            if w.max_timestamp() > watermark {
                per_window.entry((w.end, w.start)).or_default().push(row as u32);
                placed = true;
            }
        }
        late[row] = !placed;
    }
    (per_window, late)
}

/// DataFusion's aggregate expressions for `aggregates` over rows of `input`,
/// their arguments coerced as DataFusion's planner would (avg of Int64 reads Float64).
pub(crate) fn physical_aggregates(input: &SchemaRef, aggregates: &[Aggregate]) -> Result<Vec<AggregateFunctionExpr>> {
    let mut out = Vec::new();
    for a in aggregates {
        input
            .index_of(&a.column)
            .map_err(|_| Error::Plan(format!("aggregate input column '{}' is not in the input schema", a.column)))?;
        let mut args = vec![col(&a.column, input)?];
        args.extend(a.params.iter().map(|p| lit(p.clone())));
        let given = args.iter().map(|e| e.return_field(input)).collect::<datafusion::error::Result<Vec<_>>>()?;
        let wanted = datafusion::logical_expr::type_coercion::functions::fields_with_udf(&given, a.function.as_ref())?;
        let args = args
            .into_iter()
            .zip(given.iter().zip(&wanted))
            .map(|(e, (g, w))| {
                if g.data_type() == w.data_type() {
                    Ok(e)
                } else {
                    datafusion::physical_expr::expressions::cast(e, input, w.data_type().clone())
                }
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let expr = AggregateExprBuilder::new(Arc::clone(&a.function), args)
            .with_distinct(a.distinct)
            .schema(Arc::clone(input))
            .alias(&a.name)
            .build()?;
        out.push(expr);
    }
    Ok(out)
}

/// Each aggregate's arguments evaluated over `batch` (with the casts coercion added).
pub(crate) fn aggregate_arguments(
    aggregates: &[AggregateFunctionExpr],
    batch: &RecordBatch,
) -> Result<Vec<Vec<ArrayRef>>> {
    aggregates
        .iter()
        .map(|a| {
            a.expressions()
                .iter()
                .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
                .collect::<Result<Vec<_>>>()
        })
        .collect()
}

/// Event times of a time column (null for a null cell).
pub(crate) fn event_times(column: &ArrayRef) -> Result<Vec<Option<i64>>> {
    if let Some(a) = column.as_any().downcast_ref::<Int64Array>() {
        return Ok(a.iter().collect());
    }
    if let Some(a) = column.as_any().downcast_ref::<TimestampMillisecondArray>() {
        return Ok(a.iter().collect());
    }
    Err(Error::Plan(format!("time column of type {} is not Int64 or Timestamp(Millisecond)", column.data_type())))
}
