//! Query shapes that stand for one streaming operator rather than the
//! nodes DataFusion plans for them. Deduplication:
//!
//! ```sql
//! SELECT … FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts ASC) AS rn FROM t)
//! WHERE rn = 1
//! ```
//!
//! keeps each key's first row, and the key is remembered for
//! `table.exec.state.ttl` of event time — the dedup operator.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator};

use super::{Conv, Planner, col, strip};
use crate::Result;

/// `e` without the casts around it.
fn uncast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => uncast(&c.expr),
        Expr::TryCast(c) => uncast(&c.expr),
        other => other,
    }
}

/// The plan below `plan`, through aliases.
fn unaliased(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::SubqueryAlias(a) => unaliased(&a.input),
        other => other,
    }
}

impl Planner<'_> {
    /// The dedup pattern, if `f` is its `WHERE rn = 1`.
    pub(super) fn dedup_pattern(&mut self, f: &Filter) -> Result<Option<Conv>> {
        // WHERE rn = 1 (or rn <= 1)
        let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq | Operator::LtEq, right }) = &f.predicate else {
            return Ok(None);
        };
        // Type coercion may have cast both sides (`rn` is UInt64, `1` Int64).
        let (Expr::Column(rn), Expr::Literal(one, _)) = (uncast(left), uncast(right)) else { return Ok(None) };
        let is_one =
            matches!(one, ScalarValue::UInt64(Some(1)) | ScalarValue::Int64(Some(1)) | ScalarValue::Int32(Some(1)));
        let LogicalPlan::Projection(p) = unaliased(&f.input) else { return Ok(None) };
        let LogicalPlan::Window(w) = p.input.as_ref() else { return Ok(None) };
        // The projected column `rn` is the window's row_number.
        let Some(i) = p.schema.fields().iter().position(|field| *field.name() == rn.name) else { return Ok(None) };
        let Expr::Column(source) = p.expr[i].clone().unalias() else { return Ok(None) };
        let Some(k) = w.schema.fields().iter().position(|field| *field.name() == source.name) else { return Ok(None) };
        let Some(window_expr) = k.checked_sub(w.input.schema().fields().len()).and_then(|j| w.window_expr.get(j))
        else {
            return Ok(None);
        };
        let Expr::WindowFunction(func) = window_expr.clone().unalias() else { return Ok(None) };
        let WindowFunction { fun, params } = *func;
        if fun.name() != "row_number" {
            return Ok(None);
        }
        if !is_one {
            return Err(self
                .error("ROW_NUMBER() … WHERE rn = 1 keeps the first row per key; other ranks are not supported yet"));
        }
        let keys: Vec<String> = params
            .partition_by
            .iter()
            .map(|e| match strip(e) {
                Expr::Column(c) => Ok(c.name),
                other => Err(self.error(format!("deduplication partitions by columns, not {other}"))),
            })
            .collect::<Result<_>>()?;
        let [order] = params.order_by.as_slice() else {
            return Err(self.error("deduplication orders by the time attribute alone: ORDER BY ts ASC"));
        };
        if !order.asc {
            return Err(self.error(
                "ORDER BY … DESC keeps each key's last row, which needs updates (a changelog): not supported yet; \
                 ORDER BY the time attribute ASC keeps the first",
            ));
        }
        let Some(ttl) = self.sql.duration("table.exec.state.ttl")? else {
            return Err(self.error(
                "deduplication remembers keys for a while: SET 'table.exec.state.ttl' = '1 h' (or another length)",
            ));
        };
        let c = self.convert(&w.input)?;
        if c.window.is_some() {
            return Err(self.error("deduplicating a window TVF's rows is not supported; deduplicate the table first"));
        }
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.lines.push(format!(
            "  dedup: first row per [{}] for {} ms of event time",
            keys.join(", "),
            ttl.as_millis()
        ));
        let stream = self.checked(c.stream.dedup(&key_refs, ttl))?;
        // The projection's columns, `rn` being 1 for every row kept.
        let exprs: Vec<Expr> = p
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(
                |(j, field)| {
                    if j == i { datafusion::prelude::lit(1u64).alias(field.name()) } else { col(field.name()) }
                },
            )
            .collect();
        Ok(Some(Conv { stream: self.checked(stream.select(exprs))?, window: None }))
    }
}
