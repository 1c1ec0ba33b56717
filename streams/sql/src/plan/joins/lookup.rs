//! Lookup joins: a stream joined with a table that its connector reads by
//! key (`mysql`, say), as the table is when each row arrives —
//!
//! ```sql
//! SELECT o.id, c.name FROM orders AS o
//! LEFT JOIN customers FOR SYSTEM_TIME AS OF o.proc_time AS c ON o.customer_id = c.id
//! ```
//!
//! `AS OF` takes the stream's PROCTIME() column, as in Flink. Inner and
//! left joins. In the ON condition, equal columns are the lookup keys and
//! conditions on the table alone limit its matches; an inner join also
//! filters the stream first by conditions on it alone, and the joined rows
//! by the rest. A left join keeps every row of the stream, so its ON takes
//! no condition on the stream.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Join, JoinType};
use rill_streams::LookupConfig;

use super::{Condition, conjuncts, name_in};
use crate::connector::{LookupConnector, lookup_cache};
use crate::ddl::{ColumnKind, TableDef};
use crate::plan::{Changes, Conv, Planner, resolve, stream_names};
use crate::query::AsOf;
use crate::{Error, Result};

impl Planner<'_> {
    /// `j`, whose right side is `def` read by `connector` as of `as_of`; `extra` is a WHERE right above it.
    pub(in crate::plan) fn lookup_join(
        &mut self,
        j: &Join,
        extra: Option<&Expr>,
        as_of: &AsOf,
        def: &TableDef,
        connector: &dyn LookupConnector,
    ) -> Result<Conv> {
        let at_as_of = |m: String| Error::At { at: as_of.at.clone(), message: m };
        let at_table = |m: String| Error::At { at: def.at.clone(), message: m };
        let left_join = match j.join_type {
            JoinType::Inner => false,
            JoinType::Left => true,
            other => return Err(at_as_of(format!("{other} lookup joins are not supported; use JOIN or LEFT JOIN"))),
        };
        let proc_time = self
            .sql
            .tables
            .iter()
            .any(|t| t.name != def.name && t.column(&as_of.time).is_some_and(|c| c.kind == ColumnKind::ProcTime));
        if !proc_time {
            return Err(at_as_of(format!(
                "a lookup join reads '{}' as it is when each row arrives: FOR SYSTEM_TIME AS OF takes the stream's \
                 PROCTIME() column (declare `proc_time AS PROCTIME()` in its table), not {}",
                def.name, as_of.time
            )));
        }
        let mut fields = Vec::new();
        for c in &def.columns {
            match &c.kind {
                ColumnKind::Physical { data_type, nullable } => {
                    fields.push(Field::new(&c.name, data_type.clone(), *nullable))
                }
                _ => {
                    return Err(Error::At {
                        at: c.at.clone(),
                        message: format!(
                            "a table read by a lookup join has only physical columns; '{}' is not one",
                            c.name
                        ),
                    });
                }
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let (ls, rs) = (j.left.schema().as_ref(), j.right.schema().as_ref());
        // A left join's WHERE filters the joined rows; an inner join's is more of its condition.
        let (extra, after) = if left_join { (None, extra) } else { (extra, None) };
        let conjuncts = conjuncts(j, extra);
        let cond = Condition::split(&conjuncts, ls, rs);
        if left_join && (!cond.left.is_empty() || !cond.rest.is_empty()) {
            return Err(self.error(
                "the ON of a LEFT lookup join compares keys and tests the table's columns only; \
                 filter the stream in WHERE or in a subquery",
            ));
        }
        let mut left = self.convert(&j.left)?;
        if left.window.is_some() {
            return Err(self.error("join a window TVF's aggregated rows, not the TVF itself"));
        }
        if left.changes != Changes::Append {
            return Err(self.error(
                "a lookup join looks up each arriving row; join a stream of appended rows, not updates or a changelog",
            ));
        }
        self.filter_below(&mut left, &cond.left, ls)?;
        let names = stream_names(&j.schema);
        let (left_names, right_names) = names.split_at(ls.fields().len());
        self.rename(&mut left, left_names)?;
        let mut keys = Vec::new();
        for (l, r) in &cond.keys {
            let table_column = match r {
                Expr::Column(c) => rs.maybe_index_of_column(c).map(|i| rs.field(i).name().clone()),
                _ => None,
            };
            match (name_in(l, ls, left_names), table_column) {
                (Some(l), Some(r)) => keys.push((l, r)),
                _ => return Err(self.error(format!("cannot find the join columns of {l} = {r}"))),
            }
        }
        if keys.is_empty() {
            return Err(at_as_of(format!(
                "a lookup join reads '{}' by key: the ON condition needs an equality between a column of the stream \
                 and one of the table (o.customer_id = c.id)",
                def.name
            )));
        }
        let filter = conjunction(cond.right.iter().map(|e| resolve(e, rs, &schema)));
        let vars = |k: &str| self.sql.vars.get(k).cloned();
        let options = self.sql.connectors.lookup_options(def, connector, &vars)?;
        let table_keys: Vec<String> = keys.iter().map(|(_, r)| r.clone()).collect();
        let mut config = LookupConfig {
            table_keys: table_keys.clone(),
            left: left_join,
            filter: filter.clone(),
            names: right_names.to_vec(),
            ..LookupConfig::default()
        };
        lookup_cache(&options, &mut config).map_err(|e| {
            let at = e.key.as_deref().and_then(|k| def.option(k)).map_or_else(|| def.at.clone(), |(_, at)| at.clone());
            Error::At { at, message: e.message }
        })?;
        let lookup = connector.build(def, schema, &table_keys, &options).map_err(at_table)?;
        let cache = match (config.cache_rows, config.cache_ttl) {
            (0, _) => "no cache".to_owned(),
            (n, None) => format!("cache of {n} keys"),
            (n, Some(ttl)) => format!("cache of {n} keys for {} ms", ttl.as_millis()),
        };
        let key_text: Vec<String> = keys.iter().map(|(l, r)| format!("{l} = {}.{r}", def.name)).collect();
        self.lines.push(format!(
            "  {}lookup join with {} ({}) as of {} (processing time) on {}{}, {cache}",
            if left_join { "left " } else { "" },
            def.name,
            connector.describe(def, &options),
            as_of.time,
            key_text.join(", "),
            filter.map(|f| format!(", table rows where {f}")).unwrap_or_default(),
        ));
        let (lk, _): (Vec<&str>, Vec<&str>) = keys.iter().map(|(l, r)| (l.as_str(), r.as_str())).unzip();
        let mut stream = self.checked(left.stream.lookup_join(lookup, &lk, config))?;
        for e in cond.rest.iter().copied().chain(after) {
            let predicate = resolve(e, &j.schema, &stream.schema());
            self.lines.push(format!("  filter: {predicate}"));
            stream = self.checked(stream.filter(predicate))?;
        }
        Ok(Conv { stream, window: None, changes: Changes::Append })
    }
}
