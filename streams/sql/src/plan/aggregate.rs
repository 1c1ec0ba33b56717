//! Aggregates: a GROUP BY over a window TVF's rows becomes a keyed window
//! aggregate with DataFusion's accumulators; without a window, a running
//! aggregate (updates per key) over appended rows, or a retracting one
//! over a changelog.

use std::sync::Arc;

use datafusion::logical_expr::{Aggregate as DfAggregate, Expr};
use rill_streams::dsl::{Global, WindowDef};
use rill_streams::{Aggregate, OP_COLUMN};

use super::{Changes, Conv, Planner, col, resolve, stream_names};
use crate::{Error, Result};

impl Planner<'_> {
    /// An aggregate over a window TVF's rows, or (without a window) a
    /// running aggregate whose results are updates per key.
    pub(super) fn window_aggregate(&mut self, a: &DfAggregate) -> Result<Conv> {
        let c = self.convert(&a.input)?;
        if c.changes == Changes::Retractions && c.window.is_some() {
            return Err(self.error("window aggregates over a changelog are not supported yet"));
        }
        if c.changes == Changes::Upserts {
            return Err(self.error(
                "aggregating an updating result (a GROUP BY without a window) needs retractions: not supported yet",
            ));
        }
        let input = c.stream.schema();
        // The stream's column for each GROUP BY expression.
        let mut group = Vec::new();
        let mut keys = Vec::new();
        let (mut start, mut end) = (false, false);
        for g in &a.group_expr {
            let name = match resolve(g, a.input.schema(), &input) {
                Expr::Column(column) => column.name,
                other => {
                    return Err(
                        self.error(format!("GROUP BY {other}: group by columns (compute expressions in a view first)"))
                    );
                }
            };
            match name.as_str() {
                "window_start" if c.window.is_some() => start = true,
                "window_end" if c.window.is_some() => end = true,
                "window_time" if c.window.is_some() => {}
                _ => keys.push(name.clone()),
            }
            group.push(name);
        }
        if let Some(w) = &c.window {
            if !(start && end) {
                return Err(Error::At {
                    at: w.at.clone(),
                    message: "a window aggregate groups by window_start and window_end".into(),
                });
            }
            if w.partition.iter().any(|p| !keys.contains(p)) {
                return Err(Error::At {
                    at: w.at.clone(),
                    message: format!("SESSION … PARTITION BY {}: group by those columns too", w.partition.join(", ")),
                });
            }
        }
        let mut extra = Vec::new();
        let mut aggregates = Vec::new();
        for (j, e) in a.aggr_expr.iter().enumerate() {
            let name = a.schema.field(a.group_expr.len() + j).name().clone();
            let Expr::AggregateFunction(f) = e.clone().unalias() else {
                return Err(self.error(format!("{e} is not an aggregate function")));
            };
            // `approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY x)`: the order only names the values.
            let within_group = f.func.supports_within_group_clause()
                && matches!(f.params.order_by.as_slice(), [o] if o.asc && f.params.args.first() == Some(&o.expr));
            if f.params.filter.is_some() || !(f.params.order_by.is_empty() || within_group) {
                return Err(self.error(format!("{name}: FILTER and ORDER BY in aggregates are not supported yet")));
            }
            let args: Vec<Expr> = f.params.args.iter().map(|e| resolve(e, a.input.schema(), &input)).collect();
            // COUNT(*) counts rows: any column without nulls does, without computing one.
            let counts_rows = f.func.name() == "count"
                && !f.params.distinct
                && match args.as_slice() {
                    [] => true,
                    [Expr::Literal(v, _)] => !v.is_null(),
                    _ => false,
                };
            let non_null = input.fields().iter().find(|f| !f.is_nullable()).map(|f| f.name().clone());
            let column = match args.first() {
                Some(Expr::Column(c)) => c.name.clone(),
                _ if counts_rows && non_null.is_some() => non_null.unwrap_or_default(),
                Some(other) => {
                    let n = format!("__agg{j}");
                    extra.push(other.clone().alias(&n));
                    n
                }
                None => {
                    let n = format!("__agg{j}");
                    extra.push(datafusion::prelude::lit(1i64).alias(&n));
                    n
                }
            };
            let mut params = Vec::new();
            for p in args.iter().skip(1) {
                match p {
                    Expr::Literal(v, _) => params.push(v.clone()),
                    other => return Err(self.error(format!("{name}: argument {other} must be a constant"))),
                }
            }
            aggregates.push(Aggregate {
                function: Arc::clone(&f.func),
                column,
                name,
                distinct: f.params.distinct,
                params,
            });
        }
        let mut stream = c.stream;
        if !extra.is_empty() {
            let mut all: Vec<Expr> = stream.schema().fields().iter().map(|f| col(f.name())).collect();
            all.extend(extra);
            stream = self.checked(stream.select(all))?;
        }
        let shown: Vec<&str> = aggregates.iter().map(|a| a.name.as_str()).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let aggregated = match &c.window {
            Some(w) => {
                if stream.event_time() != Some(w.time.as_str()) {
                    // A view's rows: its column becomes their event time.
                    stream = self.checked(stream.with_event_time(&w.time))?;
                }
                self.lines.push(format!(
                    "  window {} on {}, keys [{}]: {}",
                    w.label,
                    w.time,
                    keys.join(", "),
                    shown.join(", ")
                ));
                stream.key_by(&key_refs).window(WindowDef::from(w.windows)).aggregate(aggregates)
            }
            None if c.changes == Changes::Retractions => {
                self.lines.push(format!(
                    "  changelog aggregate (retractions), keys [{}]: {}",
                    keys.join(", "),
                    shown.join(", ")
                ));
                stream.key_by(&key_refs).aggregate_changes(aggregates)
            }
            None => {
                if stream.event_time().is_none() {
                    // One global window per key: no row is ever late, so any
                    // time does; results still go out as the watermark moves.
                    let mut all: Vec<Expr> = stream.schema().fields().iter().map(|f| col(f.name())).collect();
                    let zero = datafusion::scalar::ScalarValue::TimestampMillisecond(Some(0), None);
                    all.push(datafusion::prelude::lit(zero).alias("__time"));
                    stream = self.checked(stream.select(all))?;
                    stream = self.checked(stream.with_event_time("__time"))?;
                }
                self.lines.push(format!(
                    "  running aggregate (updates per key), keys [{}]: {}",
                    keys.join(", "),
                    shown.join(", ")
                ));
                stream.key_by(&key_refs).window(Global::window()).early_fire().aggregate(aggregates)
            }
        };
        let aggregated = self.checked(aggregated)?;
        // Columns in DataFusion's order, named as the plan names them.
        let produced = group
            .iter()
            .cloned()
            .chain(a.aggr_expr.iter().enumerate().map(|(j, _)| a.schema.field(a.group_expr.len() + j).name().clone()));
        let mut out: Vec<Expr> = produced.zip(stream_names(&a.schema)).map(|(from, to)| col(&from).alias(to)).collect();
        let changes = match (c.changes, &c.window) {
            (Changes::Retractions, _) => {
                out.push(col(OP_COLUMN));
                Changes::Retractions
            }
            (_, Some(_)) => Changes::Append,
            (_, None) => Changes::Upserts,
        };
        Ok(Conv { stream: self.checked(aggregated.select(out))?, window: None, changes })
    }
}
