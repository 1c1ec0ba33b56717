//! From statements to a dataflow. DataFusion plans every query against
//! the declared tables (so names, types, functions and casts are its), then
//! each node of its logical plan becomes a step of the streaming DSL:
//! scans become topic sources, filters and projections stay DataFusion
//! expressions, and an aggregate over a window TVF becomes a keyed window
//! aggregate with DataFusion's accumulators. Tag predicates right above a
//! source are also pushed into its broker subscription.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column as DfColumn, DFSchema};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::tokenizer::Location;
use rill_streams::{Job, OP_COLUMN, RunnerConfig, Stream};

use crate::ddl::{ColumnKind, TableDef};
use crate::job::SqlJob;
use crate::query::{Query, WindowTvf};
use crate::{Error, Result};

mod aggregate;
mod joins;
mod patterns;
mod sources;

/// A planned job and its plan as text.
pub(crate) struct Planned {
    pub job: Job,
    pub explain: String,
}

/// A converted plan node: its stream, and the window TVF it still carries
/// (rows of a windowed table before their aggregate). The stream's columns
/// are the plan node's fields, in order (see [`stream_names`]).
struct Conv {
    stream: Stream,
    window: Option<WindowTvf>,
    /// What its rows are: appended, updates per key, or a changelog.
    changes: Changes,
}

/// What a stream's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changes {
    /// Rows only ever added.
    Append,
    /// Updates: a later row replaces the earlier one with the same key (a running aggregate's results).
    Upserts,
    /// A changelog: each row carries its kind (`+I`, `-U`, `+U`, `-D`) in a last `__op` column.
    Retractions,
}

struct Planner<'a> {
    sql: &'a SqlJob,
    ctx: SessionContext,
    job: Job,
    /// Source streams by table, made at their first scan.
    sources: HashMap<String, Stream>,
    /// Views' plans by name.
    views: HashMap<String, LogicalPlan>,
    /// Window TVFs by placeholder.
    windows: HashMap<String, WindowTvf>,
    /// Tables read FOR SYSTEM_TIME AS OF, by name.
    as_of: HashMap<String, crate::query::AsOf>,
    /// Tag sets to push down per source table (`None`: a scan without one).
    tags: HashMap<String, Vec<Option<BTreeSet<String>>>>,
    /// SQL92 conditions on properties to push down per source table (`None`: a scan without one).
    props: HashMap<String, Vec<Option<Vec<String>>>>,
    runner: Option<RunnerConfig>,
    /// Whether each connector source read so far is bounded.
    bounded: Vec<bool>,
    /// Rows for each target table, in the order INSERTs name them.
    targets: std::collections::BTreeMap<String, Vec<Stream>>,
    /// Whether the caller pushes every source table's rows (no connectors read).
    fed: bool,
    /// Where the statement being planned starts (for errors without a better place).
    at: Location,
    lines: Vec<String>,
}

/// Plans `sql` (see the module docs); with `fed`, every source table's rows
/// are pushed by the caller instead of read by its connector.
pub(crate) async fn plan(sql: &SqlJob, fed: bool) -> Result<Planned> {
    sql.check_settings()?;
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let mut p = Planner {
        sql,
        ctx: SessionContext::new_with_config(config),
        job: Job::new(),
        sources: HashMap::new(),
        views: HashMap::new(),
        windows: HashMap::new(),
        as_of: HashMap::new(),
        tags: HashMap::new(),
        props: HashMap::new(),
        runner: None,
        bounded: Vec::new(),
        targets: std::collections::BTreeMap::new(),
        fed,
        at: Location { line: 1, column: 1 },
        lines: Vec::new(),
    };
    if let Some(state) = sql.state_config()? {
        p.job.state(state);
    }
    for t in &sql.tables {
        let schema = p.table_schema(t)?;
        p.register(&t.name, schema)?;
    }
    for v in &sql.views {
        let plan = p.logical(&v.query).await?;
        p.register(&v.name, Arc::new(plan.schema().as_arrow().clone()))?;
        p.views.insert(v.name.clone(), plan);
    }
    let mut inserts = Vec::new();
    for ins in &sql.inserts {
        inserts.push((ins, p.logical(&ins.query).await?));
    }
    for plan in p.views.values().cloned().collect::<Vec<_>>().iter().chain(inserts.iter().map(|(_, p)| p)) {
        p.collect_tags(plan);
    }
    for (ins, plan) in &inserts {
        p.at = ins.query.at;
        p.lines.push(format!("INSERT INTO {} ({})", ins.target, sql.src.at(ins.query.at)));
        let conv = p.convert(plan)?;
        if conv.window.is_some() {
            return Err(p.error("rows of a window TVF need GROUP BY window_start, window_end (window aggregation)"));
        }
        p.sink(&ins.target, &ins.target_at, conv.stream, conv.changes)?;
    }
    p.sinks()?;
    let runner = match p.runner.take() {
        Some(r) => r,
        None => p.default_runner()?,
    };
    let mut explain = String::from("== Streaming plan ==\n");
    let mut text = p.lines.join("\n");
    for placeholder in p.windows.keys() {
        // Window columns read as the windowed table's, not the placeholder's.
        text = text.replace(&format!("{placeholder}."), "");
    }
    explain.push_str(&text);
    explain.push('\n');
    p.job.run_with(runner);
    Ok(Planned { job: p.job, explain })
}

/// The stream's column names for the fields of a plan node: the plain
/// names, or `table.name` where two plain names would be the same.
fn stream_names(schema: &DFSchema) -> Vec<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for f in schema.fields() {
        *count.entry(f.name().as_str()).or_default() += 1;
    }
    schema
        .iter()
        .map(|(q, f)| match q {
            Some(q) if count.get(f.name().as_str()).is_some_and(|n| *n > 1) => format!("{q}.{}", f.name()),
            _ => f.name().clone(),
        })
        .collect()
}

/// `e`, written over a plan node's `input` fields, over the columns of
/// `stream` (the input converted): each column becomes the stream's column
/// at the same place. Columns `input` has but the stream does not yet
/// (a window TVF's `window_start` …) keep their plain names.
fn resolve(e: &Expr, input: &DFSchema, stream: &Schema) -> Expr {
    e.clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => {
                    let name = input
                        .maybe_index_of_column(&c)
                        .and_then(|i| stream.fields().get(i))
                        .map_or_else(|| c.name.clone(), |f| f.name().clone());
                    Transformed::yes(Expr::Column(DfColumn::new_unqualified(name)))
                }
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| e.clone())
}

/// `e` without the casts around it.
pub(super) fn uncast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => uncast(&c.expr),
        Expr::TryCast(c) => uncast(&c.expr),
        other => other,
    }
}

/// The declared table `name`, if it is one.
fn def_of<'a>(sql: &'a SqlJob, name: &str) -> Option<&'a TableDef> {
    sql.tables.iter().find(|t| t.name == name)
}

/// What a table's rows are: a changelog for the changelog formats and connectors.
fn changes_of(sql: &SqlJob, def: Option<&TableDef>) -> Changes {
    let changelog_connector = def
        .and_then(|d| d.option("connector"))
        .and_then(|(name, _)| sql.connectors.source_connector(name))
        .is_some_and(|c| c.changelog());
    match def.and_then(|d| d.option("format")) {
        Some(("debezium-json", _)) => Changes::Retractions,
        _ if changelog_connector => Changes::Retractions,
        _ => Changes::Append,
    }
}

fn col(name: &str) -> Expr {
    Expr::Column(DfColumn::new_unqualified(name))
}

impl Planner<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        self.sql.src.error(self.at, message)
    }

    /// A DataFusion error, at the place its diagnostic names.
    fn df_error(&self, e: DataFusionError) -> Error {
        let Some(d) = e.diagnostic() else {
            return self.error(e.strip_backtrace());
        };
        let mut message = d.message.clone();
        for h in &d.helps {
            message.push_str(&format!("; {}", h.message));
        }
        for n in &d.notes {
            message.push_str(&format!("; {}", n.message));
        }
        for placeholder in self.windows.keys() {
            // Window columns read as the windowed table's, not the placeholder's.
            message = message.replace(&format!("{placeholder}."), "");
        }
        let at = d.span.map_or(self.at, |s| Location { line: s.start.line, column: s.start.column });
        self.sql.src.error(at, message)
    }

    /// Fails at the current statement if the DSL refused the last step.
    fn checked(&self, stream: Stream) -> Result<Stream> {
        match self.job.mistake() {
            Some(m) => Err(self.error(m)),
            None => Ok(stream),
        }
    }

    fn register(&self, name: &str, schema: SchemaRef) -> Result<()> {
        let table = MemTable::try_new(schema, vec![vec![]]).map_err(|e| self.df_error(e))?;
        self.ctx.register_table(name, Arc::new(table)).map_err(|e| self.df_error(e))?;
        Ok(())
    }

    /// A table's columns as DataFusion and the streams see them.
    fn table_schema(&self, t: &TableDef) -> Result<SchemaRef> {
        let mut fields = Vec::new();
        for c in &t.columns {
            fields.push(match &c.kind {
                ColumnKind::Physical { data_type, nullable } => Field::new(&c.name, data_type.clone(), *nullable),
                ColumnKind::Metadata { data_type, .. } => Field::new(&c.name, data_type.clone(), true),
                ColumnKind::ProcTime => Field::new(&c.name, DataType::Timestamp(TimeUnit::Millisecond, None), false),
                ColumnKind::Computed { expr } => {
                    let plain = Schema::new(fields.clone());
                    let df = DFSchema::try_from(plain).map_err(|e| self.df_error(e))?;
                    let at = Location { line: c.at.line, column: c.at.column };
                    let e = self.ctx.state().create_logical_expr(expr, &df).map_err(|e| {
                        self.sql.src.error(at, format!("computed column '{}': {}", c.name, e.strip_backtrace()))
                    })?;
                    let data_type = e.to_field(&df).map_err(|e| self.df_error(e))?.1.data_type().clone();
                    Field::new(&c.name, data_type, true)
                }
            });
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// DataFusion's (analyzed) plan of a query, its window placeholders registered first.
    async fn logical(&mut self, q: &Query) -> Result<LogicalPlan> {
        self.at = q.at;
        for w in &q.windows {
            let source = self.ctx.table_provider(w.table.as_str()).await.map_err(|_| Error::At {
                at: w.at.clone(),
                message: format!("the window's table '{}' is not declared", w.table),
            })?;
            let mut fields: Vec<Field> = source.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            if !fields.iter().any(|f| *f.name() == w.time) {
                return Err(Error::At {
                    at: w.at.clone(),
                    message: format!("DESCRIPTOR({}): table '{}' has no such column", w.time, w.table),
                });
            }
            if let Some(def) = self.sql.tables.iter().find(|t| t.name == w.table) {
                let watermarked = def.watermark.as_ref().is_some_and(|(c, _)| *c == w.time);
                let proc_time = def.column(&w.time).is_some_and(|c| c.kind == ColumnKind::ProcTime);
                if !(watermarked || proc_time) {
                    return Err(Error::At {
                        at: w.at.clone(),
                        message: format!(
                            "DESCRIPTOR({}): '{}' is not a time attribute of '{}'; declare WATERMARK FOR {} AS {} - \
                             INTERVAL '5' SECOND in the table (or window on a PROCTIME() column)",
                            w.time, w.time, w.table, w.time, w.time
                        ),
                    });
                }
            }
            let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
            for name in ["window_start", "window_end", "window_time"] {
                fields.push(Field::new(name, ts.clone(), false));
            }
            self.register(&w.placeholder, Arc::new(Schema::new(fields)))?;
            self.windows.insert(w.placeholder.clone(), w.clone());
        }
        for a in &q.as_of {
            self.as_of.insert(a.table.clone(), a.clone());
        }
        let state = self.ctx.state();
        let plan = state.create_logical_plan(&q.text).await.map_err(|e| self.df_error(e))?;
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .map_err(|e| self.df_error(e))?;
        // Only the columns used above each node flow (joins keep less state); nothing else is rewritten.
        use datafusion::optimizer::OptimizerRule;
        let pruned = datafusion::optimizer::optimize_projections::OptimizeProjections::new()
            .rewrite(plan.clone(), &datafusion::optimizer::OptimizerContext::new());
        // Not where that drops a window TVF's time column, which DataFusion does not see used.
        // Nor for temporal joins or a state TTL, whose time columns it does not see either.
        let ttl = self.sql.setting("table.exec.state.ttl").is_some();
        Ok(match pruned {
            Ok(t) if q.as_of.is_empty() && !ttl && self.keeps_window_times(&t.data) => t.data,
            _ => plan,
        })
    }

    /// Whether every window TVF scan in `plan` still reads its time column.
    fn keeps_window_times(&self, plan: &LogicalPlan) -> bool {
        if let LogicalPlan::TableScan(s) = plan
            && let Some(w) = self.windows.get(s.table_name.table())
            && let Some(projection) = &s.projection
        {
            let schema = s.source.schema();
            return projection.iter().any(|i| *schema.field(*i).name() == w.time);
        }
        plan.inputs().into_iter().all(|p| self.keeps_window_times(p))
    }

    /// The table behind a window placeholder, or the name itself.
    fn scanned(&self, name: &str) -> String {
        self.windows.get(name).map_or_else(|| name.to_owned(), |w| w.table.clone())
    }

    fn convert(&mut self, plan: &LogicalPlan) -> Result<Conv> {
        match plan {
            LogicalPlan::TableScan(s) => {
                if !s.filters.is_empty() {
                    return Err(self.error("filters inside a scan are not supported"));
                }
                let name = s.table_name.table().to_owned();
                let mut conv = match self.windows.get(&name).cloned() {
                    Some(w) => {
                        let mut c = self.relation(&w.table)?;
                        c.window = Some(w);
                        c
                    }
                    None => self.relation(&name)?,
                };
                if let Some(projection) = &s.projection {
                    // A window TVF's columns come later, with its window step.
                    let schema = s.source.schema();
                    let have = conv.stream.schema();
                    let mut keep: Vec<Expr> = projection
                        .iter()
                        .map(|i| schema.field(*i).name())
                        .filter(|n| have.index_of(n).is_ok())
                        .map(|n| col(n))
                        .collect();
                    if conv.changes == Changes::Retractions {
                        keep.push(col(OP_COLUMN));
                    }
                    conv.stream = self.checked(conv.stream.select(keep))?;
                }
                Ok(conv)
            }
            LogicalPlan::Join(j) => self.join(j, None),
            LogicalPlan::SubqueryAlias(a) => self.convert(&a.input),
            LogicalPlan::Filter(f) => {
                if let Some(c) = self.rank_pattern(f)? {
                    return Ok(c);
                }
                if let LogicalPlan::Join(j) = f.input.as_ref() {
                    return self.join(j, Some(&f.predicate));
                }
                // Columns picked from a join (pruning puts them between): the condition is the join's.
                if let LogicalPlan::Projection(p) = f.input.as_ref()
                    && let LogicalPlan::Join(j) = p.input.as_ref()
                    && p.expr.iter().all(|e| matches!(e.clone().unalias(), Expr::Column(_)))
                {
                    let through = f
                        .predicate
                        .clone()
                        .transform(|e| {
                            Ok(match e {
                                Expr::Column(c) => match p.schema.maybe_index_of_column(&c) {
                                    Some(i) => Transformed::yes(p.expr[i].clone().unalias()),
                                    None => Transformed::no(Expr::Column(c)),
                                },
                                other => Transformed::no(other),
                            })
                        })
                        .map(|t| t.data)
                        .map_err(|e| self.df_error(e))?;
                    let joined = self.join(j, Some(&through))?;
                    return self.project(p, joined);
                }
                let c = self.convert(&f.input)?;
                if c.changes == Changes::Upserts {
                    return Err(self.error(
                        "filtering an updating result (a GROUP BY without a window) needs retractions: \
                         not supported yet; filter its input instead",
                    ));
                }
                let predicate = resolve(&f.predicate, f.input.schema(), &c.stream.schema());
                self.lines.push(format!("  filter: {predicate}"));
                let stream = self.checked(c.stream.filter(predicate))?;
                Ok(Conv { stream, window: c.window, changes: c.changes })
            }
            LogicalPlan::Projection(p) => {
                let c = self.convert(&p.input)?;
                self.project(p, c)
            }
            LogicalPlan::Aggregate(a) => self.window_aggregate(a),
            LogicalPlan::Union(u) => {
                let mut streams = Vec::new();
                let mut changes = Vec::new();
                for input in &u.inputs {
                    let c = self.convert(input)?;
                    if c.window.is_some() {
                        return Err(self.error("a UNION of window TVF rows is not supported; aggregate first"));
                    }
                    changes.push(c.changes);
                    streams.push(c.stream);
                }
                let first_kind = changes[0];
                if changes.iter().any(|c| *c != first_kind) {
                    return Err(self.error("a UNION of appended rows with updates or a changelog is not supported"));
                }
                let first = streams.remove(0);
                self.lines.push("  union".into());
                Ok(Conv { stream: self.checked(first.union(streams))?, window: None, changes: first_kind })
            }
            other => Err(self.error(format!(
                "{} is not supported in streaming SQL yet",
                other.display().to_string().split(':').next().unwrap_or("this operation")
            ))),
        }
    }

    /// `p`'s columns computed over `c`, its input converted.
    fn project(&mut self, p: &datafusion::logical_expr::Projection, c: Conv) -> Result<Conv> {
        if c.window.is_some() {
            return Err(
                self.error("a window TVF's rows can only be aggregated (GROUP BY window_start, window_end, …) for now")
            );
        }
        let input = c.stream.schema();
        let mut exprs: Vec<Expr> = p
            .expr
            .iter()
            .zip(stream_names(&p.schema))
            .map(|(e, name)| resolve(&e.clone().unalias(), p.input.schema(), &input).alias(name))
            .collect();
        if c.changes == Changes::Retractions {
            exprs.push(col(OP_COLUMN));
        }
        let shown: Vec<String> = exprs
            .iter()
            .map(|e| match e {
                Expr::Alias(a) if a.expr.schema_name().to_string() == a.name => a.expr.to_string(),
                other => other.to_string(),
            })
            .collect();
        self.lines.push(format!("  select: {}", shown.join(", ")));
        Ok(Conv { stream: self.checked(c.stream.select(exprs))?, window: None, changes: c.changes })
    }

    /// A table's or view's rows.
    fn relation(&mut self, name: &str) -> Result<Conv> {
        if let Some(plan) = self.views.get(name).cloned() {
            self.lines.push(format!("  view {name}:"));
            return self.convert(&plan);
        }
        if let Some(s) = self.sources.get(name) {
            self.lines.push(format!("  source {name} (read once, shared)"));
            let changes = changes_of(self.sql, def_of(self.sql, name));
            return Ok(Conv { stream: s.clone(), window: None, changes });
        }
        let def =
            self.sql.tables.iter().find(|t| t.name == name).ok_or_else(|| self.error(format!("no table '{name}'")))?;
        let stream = match def.option("connector") {
            _ if self.fed => self.fed_source(def)?,
            Some((name, _)) if self.sql.connectors.source_connector(name).is_some() => self.connector_source(def)?,
            _ => self.source(def)?,
        };
        self.sources.insert(name.to_owned(), stream.clone());
        Ok(Conv { stream, window: None, changes: changes_of(self.sql, Some(def)) })
    }

    /// Casts the rows to `target`'s columns (by position) and writes them to its sink.
    fn sink(
        &mut self,
        target: &str,
        target_at: &crate::script::Position,
        stream: Stream,
        changes: Changes,
    ) -> Result<()> {
        let at = |m: String| Error::At { at: target_at.clone(), message: m };
        let def = self
            .sql
            .tables
            .iter()
            .find(|t| t.name == target)
            .ok_or_else(|| at(format!("no table '{target}' to insert into")))?;
        let columns: Vec<(&str, &DataType)> = def
            .columns
            .iter()
            .filter_map(|c| match &c.kind {
                ColumnKind::Physical { data_type, .. } => Some((c.name.as_str(), data_type)),
                _ => None,
            })
            .collect();
        let schema = stream.schema();
        // A changelog's row kind goes along, after the table's columns.
        let kind = usize::from(changes == Changes::Retractions);
        let given = schema.fields().len() - kind;
        if columns.len() != given {
            let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
            return Err(at(format!(
                "{target} takes {} column{} ({}); the query gives {}",
                columns.len(),
                if columns.len() == 1 { "" } else { "s" },
                names.join(", "),
                given
            )));
        }
        let mut exprs = Vec::new();
        for ((name, data_type), field) in columns.iter().zip(schema.fields()) {
            if !can_cast_types(field.data_type(), data_type) {
                return Err(at(format!(
                    "column {name} of {target} is {data_type}; the query gives {} ({}), which does not convert",
                    field.data_type(),
                    field.name()
                )));
            }
            exprs.push(datafusion::logical_expr::cast(col(field.name()), (*data_type).clone()).alias(*name));
        }
        if kind == 1 {
            exprs.push(col(OP_COLUMN));
        }
        let connector = def.option("connector").map_or("", |o| o.0);
        self.lines.push(format!("  sink {target}: {connector}"));
        let same = columns
            .iter()
            .zip(schema.fields())
            .all(|((name, data_type), f)| f.name() == name && f.data_type() == *data_type);
        let stream = if same { stream } else { self.checked(stream.select(exprs))? };
        self.targets.entry(target.to_owned()).or_default().push(stream);
        Ok(())
    }

    /// One sink per target table, taking the rows of every INSERT into it.
    fn sinks(&mut self) -> Result<()> {
        let vars = |k: &str| self.sql.vars.get(k).cloned();
        for (target, mut streams) in std::mem::take(&mut self.targets) {
            let Some(def) = self.sql.tables.iter().find(|t| t.name == target) else { continue };
            let sink = self.sql.connectors.sink(def, &vars)?;
            let first = streams.remove(0);
            let all = if streams.is_empty() { first } else { self.checked(first.union(streams))? };
            all.sink(sink);
        }
        match self.job.mistake() {
            Some(m) => Err(self.error(m)),
            None => Ok(()),
        }
    }
}
