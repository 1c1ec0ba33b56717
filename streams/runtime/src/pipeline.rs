//! A pipeline from a broker topic to a sink: receive → decode → event-time
//! watermarks per queue → window aggregation → sink, acknowledging the
//! messages once their rows are in the operator (at-least-once; checkpoints
//! that make results exactly-once come later).
//!
//! ```no_run
//! # async fn f() -> rill_streams::Result<()> {
//! use std::sync::Arc;
//! use datafusion::arrow::datatypes::{DataType, Field, Schema};
//! use datafusion::functions_aggregate::count::count_udaf;
//! use rill_streams::{Aggregate, JsonDecoder, Pipeline, WindowAggregateConfig};
//! use rill_time::{WatermarkConfig, WindowSpec};
//!
//! let bids = Arc::new(Schema::new(vec![
//!     Field::new("auction", DataType::Int64, false),
//!     Field::new("ts", DataType::Int64, false),
//! ]));
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let report = Pipeline::from_topic(rill_client::ClientConfig::new("127.0.0.1:8081"), "bids", "bid-counts")
//!     .decode(JsonDecoder::new(bids, vec![])?)
//!     .watermarks(WatermarkConfig { max_out_of_orderness: 2_000, idle_timeout: Some(10_000) })
//!     .window(WindowAggregateConfig {
//!         time_column: "ts".into(),
//!         keys: vec!["auction".into()],
//!         windows: WindowSpec::tumbling(10_000)?.into(),
//!         aggregates: vec![Aggregate { function: count_udaf(), column: "auction".into(), name: "bids".into() }],
//!         allowed_lateness: 0,
//!     })
//!     .sink(|batch| println!("{} window results", batch.num_rows()))
//!     .run(stopped)
//!     .await?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use rill_client::{ClientConfig, FilterExpression, SimpleConsumer};
use rill_time::{WatermarkConfig, Watermarks};

use crate::decode::{DeadLetter, JsonDecoder, SourceRecord};
use crate::rows::{FilterRows, Project};
use crate::window_agg::{WindowAggregate, WindowAggregateConfig, event_times};
use crate::{Error, Result};
use datafusion::logical_expr::Expr;

/// A pipeline being put together (see the module docs).
pub struct Pipeline {
    client: ClientConfig,
    topic: String,
    group: String,
    filter: FilterExpression,
    decoder: Option<JsonDecoder>,
    watermarks: WatermarkConfig,
    window: Option<WindowAggregateConfig>,
    /// Row filters (DataFusion predicates), applied in order after decoding.
    row_filters: Vec<Expr>,
    /// A projection after the filters: (expression, output name).
    projection: Option<Vec<(Expr, String)>>,
    sink: Option<Box<dyn FnMut(RecordBatch) + Send>>,
    dead: Option<Box<dyn FnMut(DeadLetter) + Send>>,
    late: Option<Box<dyn FnMut(RecordBatch) + Send>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("topic", &self.topic).field("group", &self.group).finish_non_exhaustive()
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages received.
    pub messages: u64,
    /// Rows that reached the window operator.
    pub rows: u64,
    /// Messages that did not decode (sent to the dead-letter output).
    pub dead: u64,
    /// Rows too late for their windows (sent to the late-row output).
    pub late: u64,
    /// Window results handed to the sink.
    pub results: u64,
}

impl Pipeline {
    /// Reads `topic` as consumer group `group`.
    pub fn from_topic(client: ClientConfig, topic: &str, group: &str) -> Self {
        Self {
            client,
            topic: topic.to_owned(),
            group: group.to_owned(),
            filter: FilterExpression::all(),
            decoder: None,
            watermarks: WatermarkConfig { max_out_of_orderness: 0, idle_timeout: None },
            window: None,
            row_filters: Vec::new(),
            projection: None,
            sink: None,
            dead: None,
            late: None,
        }
    }

    /// Filters on the broker (tag expression or SQL92).
    pub fn filter(mut self, filter: FilterExpression) -> Self {
        self.filter = filter;
        self
    }

    /// How message bodies become rows.
    pub fn decode(mut self, decoder: JsonDecoder) -> Self {
        self.decoder = Some(decoder);
        self
    }

    /// Keeps only rows for which `predicate` (a DataFusion expression) is true.
    pub fn filter_rows(mut self, predicate: Expr) -> Self {
        self.row_filters.push(predicate);
        self
    }

    /// Replaces the rows by these computed columns (after the filters).
    pub fn select(mut self, columns: Vec<(Expr, &str)>) -> Self {
        self.projection = Some(columns.into_iter().map(|(e, n)| (e, n.to_owned())).collect());
        self
    }

    /// How event time advances (per queue of the topic).
    pub fn watermarks(mut self, config: WatermarkConfig) -> Self {
        self.watermarks = config;
        self
    }

    /// The windowed aggregation.
    pub fn window(mut self, config: WindowAggregateConfig) -> Self {
        self.window = Some(config);
        self
    }

    /// Where window results go.
    pub fn sink(mut self, sink: impl FnMut(RecordBatch) + Send + 'static) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Where undecodable messages go (logged at WARN without one).
    pub fn dead_letters(mut self, out: impl FnMut(DeadLetter) + Send + 'static) -> Self {
        self.dead = Some(Box::new(out));
        self
    }

    /// Where rows too late for their windows go (logged at WARN without one).
    pub fn late_rows(mut self, out: impl FnMut(RecordBatch) + Send + 'static) -> Self {
        self.late = Some(Box::new(out));
        self
    }

    /// Runs until `stop` turns true; then emits every open window (the input
    /// is taken as complete) and reports.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) -> Result<RunReport> {
        let decoder = self.decoder.take().ok_or_else(|| Error::Plan("the pipeline has no decoder".into()))?;
        let window = self.window.take().ok_or_else(|| Error::Plan("the pipeline has no window".into()))?;
        let mut sink = self.sink.take().ok_or_else(|| Error::Plan("the pipeline has no sink".into()))?;
        let mut dead_out = self.dead.take();
        let mut late_out = self.late.take();
        let mut schema = decoder.schema();
        let filters = self.row_filters.iter().map(|e| FilterRows::new(e, &schema)).collect::<Result<Vec<_>>>()?;
        let project = match &self.projection {
            Some(cols) => {
                let named: Vec<(Expr, &str)> = cols.iter().map(|(e, n)| (e.clone(), n.as_str())).collect();
                let p = Project::new(&named, &schema)?;
                schema = p.schema();
                Some(p)
            }
            None => None,
        };
        let mut operator = WindowAggregate::new(schema, window)?;
        let subscriptions: HashMap<String, FilterExpression> = [(self.topic.clone(), self.filter.clone())].into();
        let consumer = SimpleConsumer::connect(self.client.clone(), &self.group, subscriptions, Duration::from_secs(1))
            .await
            .map_err(|e| Error::Source(e.to_string()))?;
        let started = Instant::now();
        let now = || started.elapsed().as_millis() as i64;
        // One watermark input per queue of the topic, all known up front: a
        // queue not read yet must hold event time back. Queues that show up
        // later (a new broker) are added when they do.
        let mut inputs: HashMap<(String, i32), usize> = HashMap::new();
        let mut marks = Watermarks::new(self.watermarks, 0, 0)?;
        for q in consumer.queues(&self.topic).await.map_err(|e| Error::Source(e.to_string()))? {
            let i = marks.add_input(now());
            inputs.insert(q, i);
        }
        let mut report = RunReport::default();
        loop {
            let received = tokio::select! {
                r = consumer.receive(256, Duration::from_secs(60)) => r.map_err(|e| Error::Source(e.to_string()))?,
                _ = stop.wait_for(|s| *s) => break,
            };
            report.messages += received.len() as u64;
            let mut by_queue: BTreeMap<(String, i32), Vec<SourceRecord>> = BTreeMap::new();
            for m in &received {
                by_queue.entry((m.broker.clone(), m.queue_id)).or_default().push(SourceRecord {
                    topic: m.topic.clone(),
                    queue: u32::try_from(m.queue_id).unwrap_or(0),
                    offset: u64::try_from(m.queue_offset).unwrap_or(0),
                    tag: m.tag.clone(),
                    store_time: m.store_timestamp,
                    body: m.body.clone(),
                });
            }
            for (queue, records) in by_queue {
                let decoded = decoder.decode(&records)?;
                report.dead += decoded.dead.len() as u64;
                for d in decoded.dead {
                    match dead_out.as_mut() {
                        Some(out) => out(d),
                        None => {
                            tracing::warn!(topic = %d.topic, queue = d.queue, offset = d.offset, reason = %d.reason, "message does not fit the schema")
                        }
                    }
                }
                let input = match inputs.get(&queue) {
                    Some(i) => *i,
                    None => {
                        let i = marks.add_input(now());
                        inputs.insert(queue.clone(), i);
                        i
                    }
                };
                let mut rows = decoded.batch;
                for f in &filters {
                    rows = f.apply(&rows)?;
                }
                if let Some(p) = &project {
                    rows = p.apply(&rows)?;
                }
                let times = event_times(rows.column(operator.time_index()))?;
                for ts in times.into_iter().flatten() {
                    marks.observe(input, ts, now());
                }
                report.rows += rows.num_rows() as u64;
                if let Some(late) = operator.process(&rows)?.late {
                    report.late += late.num_rows() as u64;
                    match late_out.as_mut() {
                        Some(out) => out(late),
                        None => tracing::warn!(rows = late.num_rows(), queue = queue.1, "rows behind the watermark"),
                    }
                }
            }
            if let Some(w) = marks.advance(now())
                && let Some(b) = operator.advance(w)?
            {
                report.results += b.num_rows() as u64;
                sink(b);
            }
            for m in &received {
                consumer.ack(m).await.map_err(|e| Error::Source(e.to_string()))?;
            }
        }
        if let Some(b) = operator.finish()? {
            report.results += b.num_rows() as u64;
            sink(b);
        }
        Ok(report)
    }
}
