//! Joins: an inner join of two streams becomes one of the runtime's join
//! operators, picked by its condition.
//!
//! - Equal keys and a bound on the two sides' event times
//!   (`b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' HOUR`): an interval join,
//!   whose state the watermark retires.
//! - Equal keys including both sides' `window_end` (two window
//!   aggregates' results): a window join, retired the same way.
//! - Equal keys alone: a regular join, whose rows are remembered for
//!   `table.exec.state.ttl` of event time when that is set (for ever
//!   otherwise, as in Flink).
//!
//! - A table whose connector reads rows by key, `FOR SYSTEM_TIME AS OF` a
//!   PROCTIME() column: a lookup join (see [`lookup`]).
//!
//! Conditions on one side only are applied to that side before the join;
//! what is left of the condition filters the joined rows. A `WHERE` right
//! above the join (`FROM a, b WHERE …`) counts as its condition.

use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Join, JoinType, Operator};
use datafusion::scalar::ScalarValue;

use rill_streams::{OP_COLUMN, Stream};

use super::{Changes, Conv, Planner, col, resolve, stream_names, uncast};
use crate::query::AsOf;
use crate::{Error, Result};

mod lookup;

/// Which input of a join an expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
    Both,
    Neither,
}

fn side_of(e: &Expr, left: &DFSchema, right: &DFSchema) -> Side {
    let (mut l, mut r) = (false, false);
    for c in e.column_refs() {
        if left.maybe_index_of_column(c).is_some() {
            l = true;
        } else if right.maybe_index_of_column(c).is_some() {
            r = true;
        }
    }
    match (l, r) {
        (true, true) => Side::Both,
        (true, false) => Side::Left,
        (false, true) => Side::Right,
        (false, false) => Side::Neither,
    }
}

/// An interval literal in milliseconds (days and months are not fixed lengths; months are refused).
fn interval_ms(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::IntervalDayTime(Some(d)) => Some(i64::from(d.days) * 86_400_000 + i64::from(d.milliseconds)),
        ScalarValue::IntervalMonthDayNano(Some(d)) if d.months == 0 => {
            Some(i64::from(d.days) * 86_400_000 + d.nanoseconds / 1_000_000)
        }
        ScalarValue::DurationMillisecond(Some(ms)) => Some(*ms),
        ScalarValue::DurationSecond(Some(s)) => Some(s * 1_000),
        _ => None,
    }
}

/// `column`, `column + INTERVAL …` or `column - INTERVAL …`: the column and the offset in ms.
fn shifted(e: &Expr) -> Option<(&datafusion::common::Column, i64)> {
    match uncast(e) {
        Expr::Column(c) => Some((c, 0)),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (c, base) = shifted(left)?;
            let Expr::Literal(v, _) = uncast(right) else { return None };
            let ms = interval_ms(v)?;
            match op {
                Operator::Plus => Some((c, base + ms)),
                Operator::Minus => Some((c, base - ms)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// What a join's condition says.
#[derive(Default)]
struct Condition<'e> {
    /// Equal columns, left and right.
    keys: Vec<(&'e Expr, &'e Expr)>,
    /// Bound on left time minus right time, in ms: (lower, upper).
    bounds: Option<(i64, i64)>,
    left: Vec<&'e Expr>,
    right: Vec<&'e Expr>,
    rest: Vec<&'e Expr>,
}

/// The conjuncts of `j`'s condition: its equal columns, its filter and `extra`.
fn conjuncts(j: &Join, extra: Option<&Expr>) -> Vec<Expr> {
    let mut all: Vec<Expr> =
        j.on.iter()
            .map(|(l, r)| Expr::BinaryExpr(BinaryExpr::new(Box::new(l.clone()), Operator::Eq, Box::new(r.clone()))))
            .collect();
    for e in j.filter.iter().chain(extra) {
        all.extend(split_conjunction(e).into_iter().cloned());
    }
    all
}

impl<'e> Condition<'e> {
    /// Sorts `conjuncts` by the sides they read; equal columns of the two sides become keys.
    fn split(conjuncts: &'e [Expr], ls: &DFSchema, rs: &DFSchema) -> Self {
        let mut cond = Condition::default();
        for e in conjuncts {
            match side_of(e, ls, rs) {
                Side::Left => cond.left.push(e),
                Side::Right => cond.right.push(e),
                Side::Both | Side::Neither => cond.rest.push(e),
            }
        }
        cond.rest.retain(|e| {
            if let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) = e
                && let (Expr::Column(_), Expr::Column(_)) = (uncast(left), uncast(right))
            {
                match (side_of(left, ls, rs), side_of(right, ls, rs)) {
                    (Side::Left, Side::Right) => cond.keys.push((uncast(left), uncast(right))),
                    (Side::Right, Side::Left) => cond.keys.push((uncast(right), uncast(left))),
                    _ => return true,
                }
                return false;
            }
            true
        });
        cond
    }
}

/// The stream column name of column `e` of `schema`, whose columns the stream names `names`.
fn name_in(e: &Expr, schema: &DFSchema, names: &[String]) -> Option<String> {
    match e {
        Expr::Column(c) => schema.maybe_index_of_column(c).and_then(|i| names.get(i)).cloned(),
        _ => None,
    }
}

impl Planner<'_> {
    /// `c` filtered by `filters`, conditions on its side only (`schema`: the join input's).
    fn filter_below(&mut self, c: &mut Conv, filters: &[&Expr], schema: &DFSchema) -> Result<()> {
        for f in filters {
            let predicate = resolve(f, schema, &c.stream.schema());
            self.lines.push(format!("  filter: {predicate}"));
            c.stream = self.checked(c.stream.clone().filter(predicate))?;
        }
        Ok(())
    }

    /// Renames `c`'s columns to `wanted` (the joined rows' names) where they differ.
    fn rename(&self, c: &mut Conv, wanted: &[String]) -> Result<()> {
        let schema = c.stream.schema();
        if schema.fields().iter().map(|f| f.name()).take(wanted.len()).ne(wanted.iter()) {
            let mut exprs: Vec<Expr> =
                schema.fields().iter().zip(wanted).map(|(f, n)| col(f.name()).alias(n)).collect();
            if c.changes == Changes::Retractions {
                exprs.push(col(OP_COLUMN));
            }
            c.stream = self.checked(c.stream.clone().select(exprs))?;
        }
        Ok(())
    }
}

impl Planner<'_> {
    /// The join `j`, with `extra` (a WHERE right above it) as more of its condition.
    pub(super) fn join(&mut self, j: &Join, extra: Option<&Expr>) -> Result<Conv> {
        let as_of = super::sources::scan_below(&j.right).and_then(|t| self.as_of.get(&t).cloned());
        let sql = self.sql;
        if let Some(a) = &as_of
            && let Some(def) = sql.tables.iter().find(|t| t.name == a.table)
            && let Some(connector) = sql.connectors.lookup_connector(def)
        {
            return self.lookup_join(j, extra, a, def, connector.as_ref());
        }
        if j.join_type != JoinType::Inner {
            return Err(self.error(format!(
                "{} joins are not supported yet (their results would need updates); use an inner join",
                j.join_type
            )));
        }
        let (ls, rs) = (j.left.schema().as_ref(), j.right.schema().as_ref());
        let conjuncts = conjuncts(j, extra);
        let mut cond = Condition::split(&conjuncts, ls, rs);
        if as_of.is_none()
            && let Some(t) = super::sources::scan_below(&j.left).filter(|t| self.as_of.contains_key(t))
        {
            return Err(self.error(format!("put the table read FOR SYSTEM_TIME AS OF ({t}) on the right of the join")));
        }
        let mut left = self.convert(&j.left)?;
        let mut right = self.convert(&j.right)?;
        for (c, versioned) in [(&left, false), (&right, as_of.is_some())] {
            if c.window.is_some() {
                return Err(self.error("join a window TVF's aggregated rows, not the TVF itself"));
            }
            // A versioned table may be a changelog: its rows are its versions.
            if c.changes == Changes::Upserts || (c.changes == Changes::Retractions && !versioned) {
                return Err(self.error(
                    "joining updates or a changelog is not supported yet (except as the table of a temporal join: \
                     FOR SYSTEM_TIME AS OF)",
                ));
            }
        }
        // Conditions on one side go below the join.
        for (c, filters, schema) in [(&mut left, &cond.left, ls), (&mut right, &cond.right, rs)] {
            self.filter_below(c, filters, schema)?;
        }
        // Both sides renamed to the joined rows' names (a name on both sides gets its table's).
        let names = stream_names(&j.schema);
        let (left_names, right_names) = names.split_at(ls.fields().len());
        for (c, wanted) in [(&mut left, left_names), (&mut right, right_names)] {
            self.rename(c, wanted)?;
        }
        let mut keys: Vec<(String, String)> = Vec::new();
        for (l, r) in &cond.keys {
            match (name_in(l, ls, left_names), name_in(r, rs, right_names)) {
                (Some(l), Some(r)) => keys.push((l, r)),
                _ => return Err(self.error(format!("cannot find the join columns of {l} = {r}"))),
            }
        }
        if let Some(as_of) = as_of {
            let stream = self.temporal(&as_of, left.stream, right.stream, &keys)?;
            let mut stream = self.checked(stream)?;
            for e in &cond.rest {
                let predicate = resolve(e, &j.schema, &stream.schema());
                self.lines.push(format!("  filter: {predicate}"));
                stream = self.checked(stream.filter(predicate))?;
            }
            return Ok(Conv { stream, window: None, changes: Changes::Append });
        }
        // Time bounds between the two sides' event times.
        let (lt, rt) = (left.stream.event_time().map(str::to_owned), right.stream.event_time().map(str::to_owned));
        cond.rest.retain(|e| {
            let Some((lower, upper)) = time_bound(e, ls, left_names, rs, right_names, lt.as_deref(), rt.as_deref())
            else {
                return true;
            };
            let (l0, u0) = cond.bounds.unwrap_or((i64::MIN, i64::MAX));
            cond.bounds = Some((l0.max(lower), u0.min(upper)));
            false
        });
        if keys.is_empty() {
            return Err(self.error(
                "a streaming join needs at least one equality between the two sides' columns (a.k = b.k); \
                 cross joins are not supported",
            ));
        }
        let windowed = keys.iter().any(|(l, r)| l.ends_with("window_end") && r.ends_with("window_end"));
        let key_text: Vec<String> = keys.iter().map(|(l, r)| format!("{l} = {r}")).collect();
        let (lk, rk): (Vec<&str>, Vec<&str>) = keys.iter().map(|(l, r)| (l.as_str(), r.as_str())).unzip();
        let stream = match (cond.bounds, windowed) {
            (Some((lower, upper)), _) => {
                if lower == i64::MIN || upper == i64::MAX {
                    return Err(self.error(
                        "an interval join bounds the two sides' event times both ways \
                         (b.ts BETWEEN a.ts - INTERVAL … AND a.ts + INTERVAL …)",
                    ));
                }
                self.lines.push(format!(
                    "  interval join on {}: left time - right time in [{lower} ms, {upper} ms]",
                    key_text.join(", ")
                ));
                left.stream.interval_join(&right.stream, &lk, &rk, lower..=upper)
            }
            (None, true) => {
                let (le, re) = keys
                    .iter()
                    .find(|(l, r)| l.ends_with("window_end") && r.ends_with("window_end"))
                    .map(|(l, r)| (l.clone(), r.clone()))
                    .unwrap_or_default();
                self.lines.push(format!("  window join on {}", key_text.join(", ")));
                let l = left.stream.with_event_time(&le);
                let r = right.stream.with_event_time(&re);
                l.interval_join(&r, &lk, &rk, 0..=0)
            }
            (None, false) => match self.sql.duration("table.exec.state.ttl")? {
                Some(ttl) => {
                    self.lines.push(format!(
                        "  join on {} (rows kept {} ms of event time)",
                        key_text.join(", "),
                        ttl.as_millis()
                    ));
                    left.stream.join_with_ttl(&right.stream, &lk, &rk, ttl)
                }
                None => {
                    self.lines.push(format!("  join on {} (state grows with both inputs)", key_text.join(", ")));
                    left.stream.join(&right.stream, &lk, &rk)
                }
            },
        };
        let mut stream = self.checked(stream)?;
        for e in &cond.rest {
            let predicate = resolve(e, &j.schema, &stream.schema());
            self.lines.push(format!("  filter: {predicate}"));
            stream = self.checked(stream.filter(predicate))?;
        }
        Ok(Conv { stream, window: None, changes: Changes::Append })
    }
}

impl Planner<'_> {
    /// `probe JOIN table FOR SYSTEM_TIME AS OF probe.time`: in event time when
    /// that is the probe's time attribute, in processing time for a
    /// PROCTIME() column; the table has a primary key among the join keys.
    fn temporal(&mut self, as_of: &AsOf, probe: Stream, table: Stream, keys: &[(String, String)]) -> Result<Stream> {
        let err = |m: String| Error::At { at: as_of.at.clone(), message: m };
        let def = self.sql.tables.iter().find(|t| t.name == as_of.table).ok_or_else(|| {
            err(format!(
                "'{}' read FOR SYSTEM_TIME AS OF is not a declared table (views are not versioned)",
                as_of.table
            ))
        })?;
        if def.primary_key.is_empty() {
            return Err(err(format!(
                "a table read FOR SYSTEM_TIME AS OF is versioned by its key: declare PRIMARY KEY (…) NOT ENFORCED in '{}'",
                def.name
            )));
        }
        let plain = |name: &str| name.rsplit_once('.').map_or(name, |(_, n)| n).to_owned();
        let table_keys: Vec<String> = keys.iter().map(|(_, r)| plain(r)).collect();
        if let Some(missing) = def.primary_key.iter().find(|k| !table_keys.contains(k)) {
            return Err(err(format!(
                "the join must give the whole primary key of '{}': {} is not in the ON condition",
                def.name, missing
            )));
        }
        let probe_time = probe.event_time().map(plain);
        let event_time = match probe_time {
            Some(t) if t == as_of.time => true,
            _ => {
                let proc = self.sql.tables.iter().any(|t| {
                    t.name != def.name
                        && t.column(&as_of.time).is_some_and(|c| c.kind == crate::ddl::ColumnKind::ProcTime)
                });
                if !proc {
                    return Err(err(format!(
                        "FOR SYSTEM_TIME AS OF {}: not the time attribute of the other side{}",
                        as_of.time,
                        probe.event_time().map(|t| format!(" (which is {t})")).unwrap_or_default()
                    )));
                }
                false
            }
        };
        let (lk, rk): (Vec<&str>, Vec<&str>) = keys.iter().map(|(l, r)| (l.as_str(), r.as_str())).unzip();
        let key_text: Vec<String> = keys.iter().map(|(l, r)| format!("{l} = {r}")).collect();
        self.lines.push(format!(
            "  temporal join with {} as of {} ({}) on {}",
            def.name,
            as_of.time,
            if event_time { "event time" } else { "processing time" },
            key_text.join(", ")
        ));
        Ok(probe.temporal_join(&table, &lk, &rk, event_time))
    }
}

/// The bound `e` puts on left time minus right time (ms), if it compares
/// the two sides' event-time columns (each maybe shifted by an interval).
fn time_bound(
    e: &Expr,
    ls: &DFSchema,
    left_names: &[String],
    rs: &DFSchema,
    right_names: &[String],
    lt: Option<&str>,
    rt: Option<&str>,
) -> Option<(i64, i64)> {
    // Which side's event time a shifted column is, and its offset.
    let time = |e: &Expr| -> Option<(Side, i64)> {
        let (c, offset) = shifted(e)?;
        if let Some(i) = ls.maybe_index_of_column(c) {
            return (left_names.get(i).map(String::as_str) == lt && lt.is_some()).then_some((Side::Left, offset));
        }
        let i = rs.maybe_index_of_column(c)?;
        (right_names.get(i).map(String::as_str) == rt && rt.is_some()).then_some((Side::Right, offset))
    };
    // `a op b` as a bound on left - right.
    let compare = |a: &Expr, op: Operator, b: &Expr| -> Option<(i64, i64)> {
        let ((sa, oa), (sb, ob)) = (time(a)?, time(b)?);
        // left + x op right + y  ⇔  left - right op y - x
        let (op, k) = match (sa, sb) {
            (Side::Left, Side::Right) => (op, ob - oa),
            (Side::Right, Side::Left) => (op.swap()?, oa - ob),
            _ => return None,
        };
        match op {
            Operator::Eq => Some((k, k)),
            Operator::GtEq => Some((k, i64::MAX)),
            Operator::Gt => Some((k + 1, i64::MAX)),
            Operator::LtEq => Some((i64::MIN, k)),
            Operator::Lt => Some((i64::MIN, k - 1)),
            _ => None,
        }
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => compare(left, *op, right),
        Expr::Between(Between { expr, negated: false, low, high }) => {
            // Each half bounds left - right from one end (which one depends on the side `expr` is).
            let lo = compare(expr, Operator::GtEq, low)?;
            let hi = compare(expr, Operator::LtEq, high)?;
            Some((lo.0.max(hi.0), lo.1.min(hi.1)))
        }
        _ => None,
    }
}
