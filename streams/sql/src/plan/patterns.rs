//! Query shapes that stand for one streaming operator rather than the
//! nodes DataFusion plans for them: a rank over partitions, kept up to N.
//!
//! Deduplication keeps each key's first row, the key remembered for
//! `table.exec.state.ttl` of event time (the dedup operator) — or, with
//! `ORDER BY ts DESC`, its last row, as a changelog of updates:
//!
//! ```sql
//! SELECT … FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts ASC) AS rn FROM t)
//! WHERE rn = 1
//! ```
//!
//! Window top-N keeps the N best rows of each window (and key), ties
//! sharing a rank, emitted when the window closes (the top-N operator); the
//! rows are a window TVF's or a window aggregate's:
//!
//! ```sql
//! SELECT … FROM (SELECT *, RANK() OVER (PARTITION BY window_start, window_end
//!                                       ORDER BY price DESC) AS rk
//!                FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)))
//! WHERE rk <= 3
//! ```

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator, Projection, Window};
use rill_streams::OP_COLUMN;
use rill_streams::dsl::WindowDef;

use super::{Changes, Conv, Planner, col, resolve, stream_names, uncast};
use crate::Result;

/// The plan below `plan`, through aliases.
fn unaliased(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::SubqueryAlias(a) => unaliased(&a.input),
        other => other,
    }
}

/// A whole number literal.
fn whole(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::UInt64(Some(n)) => i64::try_from(*n).ok(),
        ScalarValue::Int64(Some(n)) => Some(*n),
        ScalarValue::Int32(Some(n)) => Some(i64::from(*n)),
        ScalarValue::UInt32(Some(n)) => Some(i64::from(*n)),
        _ => None,
    }
}

/// The pieces of `WHERE r <= N` over `SELECT …, RANK() OVER (…) AS r`.
struct Ranked<'p> {
    projection: &'p Projection,
    window: &'p Window,
    function: String,
    params: datafusion::logical_expr::expr::WindowFunctionParams,
    /// Largest rank kept.
    n: i64,
}

fn ranked(f: &Filter) -> Option<Ranked<'_>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &f.predicate else { return None };
    // Type coercion may have cast both sides (`rn` is UInt64, `1` Int64).
    let (Expr::Column(rn), Expr::Literal(v, _)) = (uncast(left), uncast(right)) else { return None };
    let n = match (op, whole(v)?) {
        (Operator::Eq, 1) => 1,
        (Operator::LtEq, n) => n,
        (Operator::Lt, n) => n - 1,
        _ => return None,
    };
    let LogicalPlan::Projection(p) = unaliased(&f.input) else { return None };
    let LogicalPlan::Window(w) = p.input.as_ref() else { return None };
    // The projected column `rn` is the window's function.
    let rank_at = p.schema.iter().position(|(_, field)| *field.name() == rn.name)?;
    let Expr::Column(source) = p.expr[rank_at].clone().unalias() else { return None };
    let k = w.schema.maybe_index_of_column(&source)?;
    let [window_expr] = w.window_expr.as_slice() else { return None };
    if k != w.input.schema().fields().len() {
        return None;
    }
    let Expr::WindowFunction(func) = window_expr.clone().unalias() else { return None };
    let WindowFunction { fun, params } = *func;
    let function = fun.name().to_owned();
    if function != "row_number" && function != "rank" {
        return None;
    }
    Some(Ranked { projection: p, window: w, function, params, n })
}

impl Planner<'_> {
    /// Deduplication or top-N, if `f` is the `WHERE rn <= N` of one.
    pub(super) fn rank_pattern(&mut self, f: &Filter) -> Result<Option<Conv>> {
        let Some(r) = ranked(f) else { return Ok(None) };
        if r.n < 1 {
            return Err(self.error(format!("{}() … keeps no rank below 1: no row would pass", r.function)));
        }
        let c = self.convert(&r.window.input)?;
        if c.changes != Changes::Append {
            return Err(self.error("ranking an updating result needs retractions: not supported yet"));
        }
        let input = c.stream.schema();
        let ws = r.window.input.schema();
        let mut partition = Vec::new();
        for e in &r.params.partition_by {
            match resolve(e, ws, &input) {
                Expr::Column(c) => partition.push(c.name),
                other => return Err(self.error(format!("{}() partitions by columns, not {other}", r.function))),
            }
        }
        let [order] = r.params.order_by.as_slice() else {
            return Err(self.error(format!("{}() orders by one column here", r.function)));
        };
        let Expr::Column(order_by) = resolve(&order.expr, ws, &input) else {
            return Err(self.error(format!("{}() orders by a column, not {}", r.function, order.expr)));
        };
        let windowed = partition.iter().any(|p| p == "window_start") && partition.iter().any(|p| p == "window_end");
        let keys: Vec<&str> =
            partition.iter().map(String::as_str).filter(|p| *p != "window_start" && *p != "window_end").collect();
        // Rows whose columns are the window node's: its input's, then the rank.
        let mut changes = Changes::Append;
        let stream = if windowed && order.asc {
            return Err(self.error(
                "window top-N ranks by ORDER BY … DESC (the largest first); order by a negated column for the smallest",
            ));
        } else if windowed {
            if r.function == "row_number" && r.n > 1 {
                return Err(self.error(
                    "ROW_NUMBER() top-N would drop ties at random; use RANK() (rows with equal values share a rank)",
                ));
            }
            self.lines.push(format!(
                "  top {} per window{} by {} desc",
                r.n,
                if keys.is_empty() { String::new() } else { format!(" and [{}]", keys.join(", ")) },
                order_by.name
            ));
            let n = usize::try_from(r.n).unwrap_or(usize::MAX);
            match &c.window {
                Some(w) => {
                    // TVF rows: the operator assigns windows, then window_time follows.
                    let ranked = c.stream.key_by(&keys).window(WindowDef::from(w.windows)).ranked_top_n(
                        n,
                        &order_by.name,
                        Some("__rank"),
                    );
                    let ranked = self.checked(ranked)?;
                    let mut exprs: Vec<Expr> = input.fields().iter().map(|f| col(f.name())).collect();
                    let one_ms = datafusion::prelude::lit(ScalarValue::new_interval_mdn(0, 0, 1_000_000));
                    exprs.extend([
                        col("window_start"),
                        col("window_end"),
                        (col("window_end") - one_ms).alias("window_time"),
                        col("__rank"),
                    ]);
                    self.checked(ranked.select(exprs))?
                }
                None => self.checked(c.stream.ranked_top_n_per_window(n, &order_by.name, &keys, Some("__rank")))?,
            }
        } else {
            let (stream, kind) = self.dedup(&r, c, &partition, &order_by.name, order.asc)?;
            changes = kind;
            stream
        };
        // The projection above the rank, over those rows.
        let rows = stream.schema();
        let mut exprs: Vec<Expr> = r
            .projection
            .expr
            .iter()
            .zip(stream_names(&r.projection.schema))
            .map(|(e, name)| resolve(&e.clone().unalias(), &r.window.schema, &rows).alias(name))
            .collect();
        if changes == Changes::Retractions {
            exprs.push(col(OP_COLUMN));
        }
        Ok(Some(Conv { stream: self.checked(stream.select(exprs))?, window: None, changes }))
    }

    /// Deduplication (`ROW_NUMBER() … = 1`): the first row per key (the
    /// dedup operator, appended rows) or, ordered descending, the last (a
    /// changelog); its rows followed by the rank (1), then the row kind.
    fn dedup(
        &mut self,
        r: &Ranked<'_>,
        c: Conv,
        keys: &[String],
        order_by: &str,
        asc: bool,
    ) -> Result<(rill_streams::Stream, Changes)> {
        if r.function != "row_number" {
            return Err(self.error(
                "RANK() ranks rows per window: PARTITION BY window_start, window_end of a window TVF or aggregate",
            ));
        }
        if r.n != 1 {
            return Err(self
                .error("ROW_NUMBER() … WHERE rn = 1 keeps the first row per key; other ranks are not supported yet"));
        }
        let Some(ttl) = self.sql.duration("table.exec.state.ttl")? else {
            return Err(self.error(
                "deduplication remembers keys for a while: SET 'table.exec.state.ttl' = '1 h' (or another length)",
            ));
        };
        if c.window.is_some() {
            return Err(self.error("deduplicating a window TVF's rows is not supported; deduplicate the table first"));
        }
        match c.stream.event_time() {
            Some(t) if t == order_by => {}
            Some(t) => {
                return Err(
                    self.error(format!("deduplication orders by the rows' time attribute ({t}), not {order_by}"))
                );
            }
            None => {
                return Err(self.error("deduplication needs a time attribute: declare WATERMARK FOR … in the table"));
            }
        }
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let which = if asc { "first" } else { "last" };
        self.lines.push(format!(
            "  dedup: {which} row per [{}] for {} ms of event time{}",
            keys.join(", "),
            ttl.as_millis(),
            if asc { "" } else { " (a changelog: updates as later rows come)" }
        ));
        let (stream, changes) = if asc {
            (self.checked(c.stream.dedup(&key_refs, ttl))?, Changes::Append)
        } else {
            (self.checked(c.stream.keep_last(&key_refs, ttl))?, Changes::Retractions)
        };
        let mut exprs: Vec<Expr> =
            stream.schema().fields().iter().filter(|f| f.name() != OP_COLUMN).map(|f| col(f.name())).collect();
        exprs.push(datafusion::prelude::lit(1u64).alias("__rank"));
        if changes == Changes::Retractions {
            exprs.push(col(OP_COLUMN));
        }
        Ok((self.checked(stream.select(exprs))?, changes))
    }
}
