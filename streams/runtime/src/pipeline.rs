//! The entry of the DSL for jobs on broker topics:
//! `Pipeline::from_topic(…)…filter(…)…key_by(…)…window(…)…aggregate(…)…sink(…)…run(…)`.
//!
//! ```no_run
//! # async fn f() -> rill_streams::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use datafusion::arrow::datatypes::{DataType, Field, Schema};
//! use datafusion::prelude::{col, lit};
//! use rill_client::{ClientConfig, FilterExpression, StartFrom};
//! use rill_streams::dsl::Tumbling;
//! use rill_streams::runner::{RunnerConfig, TopicInput};
//! use rill_streams::{Decoder, JsonFileSink, Pipeline, agg};
//! use rill_time::WatermarkConfig;
//!
//! let bids = Arc::new(Schema::new(vec![
//!     Field::new("auction", DataType::Int64, false),
//!     Field::new("price", DataType::Int64, false),
//!     Field::new("ts", DataType::Int64, false),
//! ]));
//! let mut config = RunnerConfig::new(ClientConfig::new("127.0.0.1:8081"), "bid-counts");
//! config.checkpoint_dir = Some("/var/lib/bid-counts/checkpoints".into());
//! let input = TopicInput {
//!     source: "bids".into(),
//!     topic: "bids".into(),
//!     event_time: "ts".into(),
//!     decoder: Decoder::new(bids, vec![])?,
//!     filter: FilterExpression::Tag("web || app".into()),
//!     watermarks: WatermarkConfig { max_out_of_orderness: 2_000, idle_timeout: Some(10_000) },
//!     start: StartFrom::Earliest,
//! };
//! let (_stop, stopped) = tokio::sync::watch::channel(false);
//! let report = Pipeline::from_topic(config, input)
//!     .filter(col("price").gt(lit(0)))
//!     .key_by(&["auction"])
//!     .window(Tumbling::of(Duration::from_secs(10)))
//!     .aggregate(vec![agg::count("price").alias("bids"), agg::max("price")])
//!     .sink(JsonFileSink::new("/var/lib/bid-counts/out")?)
//!     .run(stopped)
//!     .await?;
//! println!("{} messages, {} checkpoints", report.messages, report.checkpoints);
//! # Ok(()) }
//! ```

use crate::dsl::{Job, Stream};
use crate::runner::{RunReport, RunnerConfig, TopicInput};
use crate::{Error, Result};

/// Starts a job on broker topics (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Pipeline;

impl Pipeline {
    /// A job run by `config` whose first stream reads `input`; more topics
    /// join through [`Job::topic`].
    pub fn from_topic(config: RunnerConfig, input: TopicInput) -> Stream {
        let job = Job::new();
        job.run_with(config);
        job.topic(input)
    }
}

impl Pipeline {
    /// Runs `parallelism` instances of a job in this process, each built by
    /// `build(i)` and reading its own share of the queues (instance `i` of
    /// `n` is member `index × n + i` of `count × n`, see
    /// [`crate::Member`]), each on a task of its own. Instance `i` keeps its
    /// checkpoints in `instance-i` under the configured directory and serves
    /// its metrics on the configured port plus `i`. As with members, keyed
    /// results are whole when each key's messages go to one queue.
    pub async fn run_parallel(
        parallelism: u32,
        build: impl Fn(u32) -> Job,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Vec<RunReport>> {
        if parallelism == 0 {
            return Err(Error::Plan("parallelism must be at least 1".into()));
        }
        let mut tasks = Vec::new();
        for i in 0..parallelism {
            let job = build(i);
            let mut refused = None;
            job.runner_settings(|c| {
                match c.member.split(i, parallelism) {
                    Ok(m) => c.member = m,
                    Err(e) => refused = Some(e),
                }
                c.checkpoint_dir = c.checkpoint_dir.take().map(|d| d.join(format!("instance-{i}")));
                if let Some(a) = c.metrics_addr.as_mut() {
                    a.set_port(a.port().saturating_add(u16::try_from(i).unwrap_or(u16::MAX)));
                }
            })?;
            if let Some(e) = refused {
                return Err(e);
            }
            tasks.push(tokio::spawn(job.run(stop.clone())));
        }
        let mut reports = Vec::new();
        for t in tasks {
            reports.push(t.await.map_err(|e| Error::Source(format!("a job instance failed: {e}")))??);
        }
        Ok(reports)
    }
}
