//! The Rust DSL: a job is built by chaining steps on streams, checked
//! against the schemas as it is built, and turned into a [`Dataflow`].
//!
//! ```
//! # fn main() -> rill_streams::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use datafusion::arrow::array::{Int64Array, RecordBatch};
//! use datafusion::arrow::datatypes::{DataType, Field, Schema};
//! use datafusion::prelude::{col, lit};
//! use rill_streams::dsl::{Job, Tumbling};
//! use rill_streams::{CollectSink, agg};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("auction", DataType::Int64, false),
//!     Field::new("price", DataType::Int64, false),
//!     Field::new("ts", DataType::Int64, false),
//! ]));
//! let results = CollectSink::new();
//! let job = Job::new();
//! job.source("bids", Arc::clone(&schema), "ts")
//!     .filter(col("price").gt(lit(10)))
//!     .key_by(&["auction"])
//!     .window(Tumbling::of(Duration::from_secs(10)))
//!     .aggregate(vec![agg::count("price").alias("bids"), agg::max("price")])
//!     .sink(results.clone());
//! let mut flow = job.build()?;
//! let batch = RecordBatch::try_new(schema, vec![
//!     Arc::new(Int64Array::from(vec![1, 1, 2])),
//!     Arc::new(Int64Array::from(vec![50, 5, 70])),
//!     Arc::new(Int64Array::from(vec![1_000, 2_000, 3_000])),
//! ])?;
//! flow.push("bids", batch)?;
//! flow.watermark("bids", 10_000)?; // fires [0 s, 10 s)
//! assert_eq!(results.rows(), 2); // auction 1 (one bid over 10) and auction 2
//! # Ok(()) }
//! ```
//!
//! Mistakes (a column that does not exist, a window on a stream without
//! event time) are remembered where they happen and reported by
//! [`Job::build`], naming the step; nothing runs half-built.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::Expr;
use rill_state::StateConfig;
use rill_time::WindowSpec;

mod joins;

use crate::changelog::{GroupAggregate, LastRow};
use crate::dataflow::{Dataflow, Kind, Node};
use crate::decode::DeadLetter;
use crate::dedup::Dedup;
use crate::operator::{MapBatches, Operator, Union};
use crate::rows::{FilterRows, Project};
use crate::runner::{RunReport, Runner, RunnerConfig, TopicInput};
use crate::sink::Sink;
use crate::source::SourceInput;
use crate::topn::{TopNWindows, WindowTopN};
use crate::window_agg::{Aggregate, WindowAggregate, WindowAggregateConfig, Windows};
use crate::{Error, Result};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Windows of a window step, checked when the job is built.
#[derive(Debug, Clone)]
pub struct WindowDef(std::result::Result<Windows, String>);

impl From<Windows> for WindowDef {
    fn from(w: Windows) -> Self {
        WindowDef(Ok(w))
    }
}

fn spec(r: std::result::Result<WindowSpec, rill_time::Error>) -> WindowDef {
    WindowDef(r.map(Windows::Time).map_err(|e| e.to_string()))
}

/// Fixed, non-overlapping windows.
#[derive(Debug, Clone, Copy)]
pub struct Tumbling;
impl Tumbling {
    /// Windows of `size`.
    pub fn of(size: Duration) -> WindowDef {
        spec(WindowSpec::tumbling(millis(size)))
    }
}

/// Overlapping windows of a size, one starting every slide.
#[derive(Debug, Clone, Copy)]
pub struct Hopping;
impl Hopping {
    /// Windows of `size` starting every `slide`.
    pub fn of(size: Duration, slide: Duration) -> WindowDef {
        spec(WindowSpec::hopping(millis(size), millis(slide)))
    }
}

/// Windows growing by a step from a fixed start up to a maximum size.
#[derive(Debug, Clone, Copy)]
pub struct Cumulate;
impl Cumulate {
    /// Windows growing by `step` up to `max`.
    pub fn of(max: Duration, step: Duration) -> WindowDef {
        spec(WindowSpec::cumulate(millis(max), millis(step)))
    }
}

/// One window over all of time (2^62 ms from the epoch): with
/// [`WindowedStream::early_fire`], a running aggregate per key.
#[derive(Debug, Clone, Copy)]
pub struct Global;
impl Global {
    /// The window.
    pub fn window() -> WindowDef {
        spec(WindowSpec::tumbling(1 << 62))
    }
}

/// Per-key windows that close after a gap without rows.
#[derive(Debug, Clone, Copy)]
pub struct Session;
impl Session {
    /// Sessions closing after `gap` of silence.
    pub fn with_gap(gap: Duration) -> WindowDef {
        WindowDef(Ok(Windows::Session { gap: millis(gap) }))
    }
}

/// Per-key windows of a number of rows.
#[derive(Debug, Clone, Copy)]
pub struct Count;
impl Count {
    /// Windows of `rows` rows each (see [`Windows::Count`]).
    pub fn of(rows: u64) -> WindowDef {
        WindowDef(Ok(Windows::Count { size: rows }))
    }
}

struct Builder {
    nodes: Vec<Node>,
    error: Option<Error>,
    late: Option<Box<dyn Sink>>,
    runner: Option<RunnerConfig>,
    inputs: Vec<TopicInput>,
    connectors: Vec<SourceInput>,
    dead: Option<Box<dyn FnMut(DeadLetter) + Send>>,
    state: StateConfig,
}

/// A job being built (see the module docs).
#[derive(Clone)]
pub struct Job {
    inner: Arc<Mutex<Builder>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Default for Job {
    fn default() -> Self {
        Self::new()
    }
}

impl Job {
    /// An empty job.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Builder {
                nodes: Vec::new(),
                error: None,
                late: None,
                runner: None,
                inputs: Vec::new(),
                connectors: Vec::new(),
                dead: None,
                state: StateConfig::default(),
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Builder) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// A named input of rows of `schema` whose event time is in `time`
    /// (Int64 ms or a ms timestamp). Batches are pushed into it by name.
    pub fn source(&self, name: &str, schema: SchemaRef, time: &str) -> Stream {
        let s = self.add(name, Kind::Source, Some(Arc::clone(&schema)), Vec::new());
        self.with(|b| b.nodes[s].time = Some(time.to_owned()));
        let stream = Stream { job: self.clone(), node: s, schema: Arc::clone(&schema), time: Some(time.to_owned()) };
        if schema.index_of(time).is_err() {
            return stream.fail(format!("source '{name}': event-time column '{time}' is not in its schema"));
        }
        stream
    }

    /// A source reading a broker topic (the job then runs with [`Job::run`]).
    pub fn topic(&self, input: TopicInput) -> Stream {
        let stream = self.source(&input.source, input.decoder.schema(), &input.event_time);
        self.with(|b| b.inputs.push(input));
        stream
    }

    /// A source a connector feeds (the job then runs with [`Job::run`]);
    /// its position is checkpointed with the job.
    pub fn connector(&self, input: SourceInput) -> Stream {
        let stream = self.source(&input.source, input.inner.schema(), &input.event_time);
        self.with(|b| b.connectors.push(input));
        stream
    }

    /// How [`Job::run`] reads the topics and checkpoints.
    pub fn run_with(&self, config: RunnerConfig) {
        self.with(|b| b.runner = Some(config));
    }

    /// Changes the runner settings given with [`Job::run_with`].
    pub(crate) fn runner_settings(&self, f: impl FnOnce(&mut RunnerConfig)) -> Result<()> {
        self.with(|b| match b.runner.as_mut() {
            Some(c) => {
                f(c);
                Ok(())
            }
            None => Err(Error::Plan("the job has no runner settings (Job::run_with)".into())),
        })
    }

    /// The first mistake made building the job so far, if any (what
    /// [`Job::build`] would report).
    pub fn mistake(&self) -> Option<String> {
        self.with(|b| b.error.as_ref().map(ToString::to_string))
    }

    /// Where messages that do not decode and rows sinks refuse go (logged at WARN without one).
    pub fn dead_letters(&self, out: impl FnMut(DeadLetter) + Send + 'static) {
        self.with(|b| b.dead = Some(Box::new(out)));
    }

    /// Builds the job and runs it on its topics until `stop` turns true.
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) -> Result<RunReport> {
        let (config, inputs, connectors, dead) = self.with(|b| {
            (b.runner.take(), std::mem::take(&mut b.inputs), std::mem::take(&mut b.connectors), b.dead.take())
        });
        let config = config.ok_or_else(|| Error::Plan("the job has no runner settings (Job::run_with)".into()))?;
        let flow = self.build()?;
        let mut runner = Runner::new(config, inputs);
        for c in connectors {
            runner = runner.source(c);
        }
        if let Some(dead) = dead {
            runner = runner.dead_letters(dead);
        }
        runner.run(flow, stop).await
    }

    /// Memory budget and spill directory for the keyed state of each step
    /// added after this call (dedup keys, the last row per key, window and
    /// running aggregates' groups, top-N candidates, window join rows); the
    /// default is 256 MiB per step under the system's temporary directory.
    pub fn state(&self, config: StateConfig) {
        self.with(|b| b.state = config);
    }

    /// Where rows behind the watermark go (logged at WARN without one).
    pub fn late_rows(&self, sink: impl Sink + 'static) {
        self.with(|b| b.late = Some(Box::new(sink)));
    }

    fn add(&self, name: &str, kind: Kind, schema: Option<SchemaRef>, inputs: Vec<usize>) -> usize {
        self.with(|b| {
            let id = b.nodes.len();
            for (port, i) in inputs.iter().enumerate() {
                if let Some(n) = b.nodes.get_mut(*i) {
                    n.outputs.push((id, port));
                }
            }
            b.nodes.push(Node { name: name.to_owned(), kind, schema, time: None, inputs, outputs: Vec::new() });
            id
        })
    }

    /// The job as a runnable dataflow, or the first mistake made building it.
    pub fn build(self) -> Result<Dataflow> {
        let (nodes, late) = self.with(|b| -> Result<_> {
            if let Some(e) = b.error.take() {
                return Err(e);
            }
            Ok((std::mem::take(&mut b.nodes), b.late.take()))
        })?;
        if nodes.is_empty() {
            return Err(Error::Plan("the job has no source".into()));
        }
        Ok(Dataflow::new(nodes, late))
    }
}

/// A stream of rows with a schema and, where known, an event-time column.
#[derive(Clone)]
pub struct Stream {
    job: Job,
    node: usize,
    schema: SchemaRef,
    time: Option<String>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("node", &self.node).field("time", &self.time).finish_non_exhaustive()
    }
}

impl Stream {
    /// The job's state settings for a stateful step added now (see [`Job::state`]).
    fn state_config(&self) -> StateConfig {
        self.job.with(|b| b.state.clone())
    }

    /// The schema of its rows.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn fail(self, message: String) -> Stream {
        self.job.with(|b| {
            if b.error.is_none() {
                b.error = Some(Error::Plan(message));
            }
        });
        self
    }

    fn then(self, step: &str, built: Result<Box<dyn Operator>>, inputs: Vec<usize>, time: Option<String>) -> Stream {
        match built {
            Ok(op) => {
                let schema = op.schema();
                let time = time.filter(|t| schema.index_of(t).is_ok());
                let node = self.job.add(step, Kind::Operator(op), Some(Arc::clone(&schema)), inputs);
                Stream { job: self.job, node, schema, time }
            }
            Err(e) => {
                let n = self.job.with(|b| b.nodes.len());
                self.fail(format!("step {n} ({step}): {e}"))
            }
        }
    }

    fn op(self, step: &str, built: Result<Box<dyn Operator>>) -> Stream {
        let (inputs, time) = (vec![self.node], self.time.clone());
        self.then(step, built, inputs, time)
    }

    /// Keeps the rows for which `predicate` holds.
    pub fn filter(self, predicate: Expr) -> Stream {
        let built = FilterRows::new(&predicate, &self.schema).map(|f| Box::new(f) as Box<dyn Operator>);
        self.op("filter", built)
    }

    /// Computes new columns, named by their aliases (`col("p").alias("price")`).
    /// The event-time column stays known if a column keeps its name or is renamed.
    pub fn select(self, columns: Vec<Expr>) -> Stream {
        let named: Vec<(Expr, String)> = columns
            .into_iter()
            .map(|e| {
                let name = e.schema_name().to_string();
                (e, name)
            })
            .collect();
        // The event time follows its column through a rename (`ts AS opened`).
        let renamed = self.time.as_deref().and_then(|t| {
            named.iter().find_map(|(e, n)| {
                let inner = if let Expr::Alias(a) = e { a.expr.as_ref() } else { e };
                matches!(inner, Expr::Column(c) if c.name == t && n != t).then(|| n.clone())
            })
        });
        let kept = self.time.as_deref().is_some_and(|t| named.iter().any(|(_, n)| n == t));
        let time = if kept { self.time.clone() } else { renamed };
        let pairs: Vec<(Expr, &str)> = named.iter().map(|(e, n)| (e.clone(), n.as_str())).collect();
        let built = Project::new(&pairs, &self.schema).map(|p| Box::new(p) as Box<dyn Operator>);
        let inputs = vec![self.node];
        self.then("select", built, inputs, time)
    }

    /// The event-time column, if the rows have one.
    pub fn event_time(&self) -> Option<&str> {
        self.time.as_deref()
    }

    /// Transforms each batch with `f`, whose results have `schema` (a map,
    /// or a flat map: any number of rows may come out).
    pub fn map_batches(
        self,
        schema: SchemaRef,
        f: impl FnMut(RecordBatch) -> Result<RecordBatch> + Send + 'static,
    ) -> Stream {
        self.op("map", Ok(Box::new(MapBatches::new(schema, f))))
    }

    /// Names the event-time column of the rows from here on.
    pub fn with_event_time(mut self, column: &str) -> Stream {
        if self.schema.index_of(column).is_err() {
            return self.fail(format!("event-time column '{column}' is not in the stream"));
        }
        self.time = Some(column.to_owned());
        self
    }

    fn time(&self, step: &str) -> Result<String> {
        self.time.clone().ok_or_else(|| Error::Plan(format!("{step} needs event time, and this stream has none")))
    }

    /// Drops rows whose `keys` repeat a kept row within `within` of event time.
    pub fn dedup(self, keys: &[&str], within: Duration) -> Stream {
        let built = self
            .time("dedup")
            .and_then(|t| Dedup::new(&self.schema, keys, &t, millis(within)))
            .map(|d| Box::new(d.with_state(self.state_config())) as Box<dyn Operator>);
        self.op("dedup", built)
    }

    /// The latest row per `keys` by event time, as a changelog (`+I`, then
    /// `-U`/`+U` whenever a later row replaces it); a key is forgotten
    /// `ttl` of event time after its row.
    pub fn keep_last(self, keys: &[&str], ttl: Duration) -> Stream {
        let built = self
            .time("keeping the last row")
            .and_then(|t| LastRow::new(Arc::clone(&self.schema), keys, &t, millis(ttl)))
            .map(|l| Box::new(l.with_state(self.state_config())) as Box<dyn Operator>);
        self.op("keep_last", built)
    }

    /// The rows of this stream and of `others` (same column names and
    /// types; a column is nullable when it is in any of them) as one stream.
    pub fn union(self, others: Vec<Stream>) -> Stream {
        let same = |o: &Stream| {
            o.schema.fields().len() == self.schema.fields().len()
                && o.schema
                    .fields()
                    .iter()
                    .zip(self.schema.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
        };
        if !others.iter().all(same) {
            return self.fail("union: every stream must have the same columns".into());
        }
        let fields: Vec<datafusion::arrow::datatypes::Field> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let nullable = f.is_nullable() || others.iter().any(|o| o.schema.field(i).is_nullable());
                f.as_ref().clone().with_nullable(nullable)
            })
            .collect();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let mut inputs = vec![self.node];
        inputs.extend(others.iter().map(|o| o.node));
        let built: Result<Box<dyn Operator>> = Ok(Box::new(Union::new(schema)));
        let time = self.time.clone();
        self.then("union", built, inputs, time)
    }

    /// Groups rows by `keys` for a window step.
    pub fn key_by(self, keys: &[&str]) -> KeyedStream {
        KeyedStream { stream: self, keys: keys.iter().map(|k| (*k).to_owned()).collect() }
    }

    /// All rows together (no key) in `windows`.
    pub fn window_all(self, windows: WindowDef) -> WindowedStream {
        KeyedStream { stream: self, keys: Vec::new() }.window(windows)
    }

    /// The rows ranked 1..=`n` by `order_by` (descending, ties share a
    /// rank) within each window and value of `keys`; the rows must carry
    /// `window_start` and `window_end` (the result of a window aggregate).
    pub fn top_n_per_window(self, n: usize, order_by: &str, keys: &[&str]) -> Stream {
        self.ranked_top_n_per_window(n, order_by, keys, None)
    }

    /// [`Stream::top_n_per_window`], with each row's rank (UInt64) in a last column `rank`, if named.
    pub fn ranked_top_n_per_window(self, n: usize, order_by: &str, keys: &[&str], rank: Option<&str>) -> Stream {
        let built = (|| {
            let index = |c: &str| {
                self.schema.index_of(c).map_err(|_| Error::Plan(format!("top-N needs a '{c}' column (window results)")))
            };
            let windows = TopNWindows::Columns { start: index("window_start")?, end: index("window_end")? };
            let state = self.state_config();
            let op = WindowTopN::new(Arc::clone(&self.schema), keys, order_by, n, windows)?.with_state(state);
            let op = match rank {
                Some(name) => op.with_rank(name)?,
                None => op,
            };
            Ok(Box::new(op) as Box<dyn Operator>)
        })();
        self.op("top_n", built)
    }

    /// Sends the rows to `sink`; the job is returned to build or run it.
    pub fn sink(self, sink: impl Sink + 'static) -> Job {
        self.job.add("sink", Kind::Sink(Box::new(sink)), None, vec![self.node]);
        self.job
    }
}

/// A stream grouped by key columns.
#[derive(Debug, Clone)]
pub struct KeyedStream {
    stream: Stream,
    keys: Vec<String>,
}

impl KeyedStream {
    /// Per-key windows.
    pub fn window(self, windows: WindowDef) -> WindowedStream {
        WindowedStream { keyed: self, windows, allowed_lateness: 0, early_fire: false }
    }

    /// A running aggregate per key over a changelog (rows with a row kind
    /// in `__op`): results are the keys and aggregates, as a changelog.
    pub fn aggregate_changes(self, aggregates: Vec<Aggregate>) -> Stream {
        let stream = self.stream;
        let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
        let state = stream.state_config();
        let built = GroupAggregate::new(stream.schema(), &keys, &aggregates)
            .map(|g| Box::new(g.with_state(state)) as Box<dyn Operator>);
        stream.op("changelog_aggregate", built)
    }
}

/// Keyed windows waiting for what to compute.
#[derive(Debug, Clone)]
pub struct WindowedStream {
    keyed: KeyedStream,
    windows: WindowDef,
    allowed_lateness: i64,
    early_fire: bool,
}

impl WindowedStream {
    /// Emit updated results whenever event time moves, not only when a
    /// window completes (an upsert stream: the latest row per key and
    /// window counts). With [`Global`] windows this is a running aggregate.
    pub fn early_fire(mut self) -> Self {
        self.early_fire = true;
        self
    }

    /// Late rows within `lateness` after a window fired update it (it fires again).
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = millis(lateness);
        self
    }

    /// One row per key and window: the keys, `window_start`, `window_end`,
    /// `window_time` (the results' event time from here on) and the aggregates.
    pub fn aggregate(self, aggregates: Vec<Aggregate>) -> Stream {
        let stream = self.keyed.stream;
        let built = (|| {
            let windows = self.windows.0.map_err(Error::Plan)?;
            let config = WindowAggregateConfig {
                time_column: stream.time("a window")?,
                keys: self.keyed.keys,
                windows,
                aggregates,
                allowed_lateness: self.allowed_lateness,
                early_fire: self.early_fire,
            };
            let state = stream.state_config();
            Ok(Box::new(WindowAggregate::new(stream.schema(), config)?.with_state(state)) as Box<dyn Operator>)
        })();
        let inputs = vec![stream.node];
        stream.then("window", built, inputs, Some("window_time".into()))
    }

    /// The rows ranked 1..=`n` by `order_by` (descending, ties share a rank)
    /// per key and window, with `window_start` and `window_end` added.
    pub fn top_n(self, n: usize, order_by: &str) -> Stream {
        self.ranked_top_n(n, order_by, None)
    }

    /// [`WindowedStream::top_n`], with each row's rank (UInt64) in a last column `rank`, if named.
    pub fn ranked_top_n(self, n: usize, order_by: &str, rank: Option<&str>) -> Stream {
        let stream = self.keyed.stream;
        let keys: Vec<&str> = self.keyed.keys.iter().map(String::as_str).collect();
        let built = (|| {
            let spec = match self.windows.0.map_err(Error::Plan)? {
                Windows::Time(spec) => spec,
                _ => return Err(Error::Plan("top-N takes time windows, not sessions or counts".into())),
            };
            let t = stream.time("top-N")?;
            let time = stream.schema.index_of(&t)?;
            let windows = TopNWindows::Assign { spec, time };
            let state = stream.state_config();
            let op = WindowTopN::new(stream.schema(), &keys, order_by, n, windows)?.with_state(state);
            let op = match rank {
                Some(name) => op.with_rank(name)?,
                None => op,
            };
            Ok(Box::new(op) as Box<dyn Operator>)
        })();
        stream.op("top_n", built)
    }
}
