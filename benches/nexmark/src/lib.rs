//! Nexmark on Rill's streams runtime: the event generator
//! ([`generator`]), the queries written in the Rust DSL with a batch SQL
//! twin for each ([`queries`]), a runner that feeds generated events
//! straight into a job, and the oracle that runs the SQL twin over the same
//! rows with DataFusion — so every query's streaming result can be checked
//! row for row.
//!
//! It owns the workload only; operators and their state are the runtime's.

pub mod broker;
pub mod generator;
pub mod queries;
pub mod sql;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use rill_streams::dsl::Job;
use rill_streams::{CollectSink, Dataflow};

pub use generator::{Chunk, Generator, GeneratorConfig, auction_schema, bid_schema, person_schema};
pub use queries::Query;

/// Errors of the Nexmark workload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The streams runtime failed.
    #[error(transparent)]
    Streams(#[from] rill_streams::Error),
    /// Arrow failed.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// The oracle's SQL failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The broker refused or failed a call.
    #[error("broker: {0}")]
    Broker(String),
    /// A query's SQL job file did not plan.
    #[error("{0}")]
    Sql(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a run of a query did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The results.
    pub rows: Vec<RecordBatch>,
    /// The result schema.
    pub schema: SchemaRef,
    /// Events generated and fed in.
    pub events: u64,
    /// Wall time of generating and processing.
    pub elapsed: Duration,
    /// Processing time of each chunk (push + watermark), sorted.
    pub chunk_latencies: Vec<Duration>,
    /// Largest state the job held (rows or keys, summed over operators).
    pub peak_state: usize,
    /// CPU time the job spent processing (pushes, watermarks, the end).
    pub process_cpu: Duration,
    /// CPU time spent generating the events.
    pub generate_cpu: Duration,
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// Feeds chunks of `config`'s events into a fresh job of `query`.
pub fn run(query: Query, config: GeneratorConfig) -> Result<Run> {
    let job = Job::new();
    let out = query.build(&job);
    let schema = out.schema();
    let sink = CollectSink::new();
    out.sink(sink.clone());
    drive(job.build()?, &sink, schema, config)
}

/// Feeds chunks of `config`'s events into `flow`, whose results `sink` collects.
pub(crate) fn drive(mut flow: Dataflow, sink: &CollectSink, schema: SchemaRef, config: GeneratorConfig) -> Result<Run> {
    let started = Instant::now();
    let mut events = 0u64;
    let mut latencies = Vec::new();
    let mut peak = 0usize;
    let (mut process_cpu, mut generate_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut generator = Generator::new(config);
    loop {
        let g = thread_cpu();
        let Some(chunk) = generator.next_chunk()? else { break };
        let (p, t) = (thread_cpu(), Instant::now());
        generate_cpu += p.saturating_sub(g);
        events += chunk.events() as u64;
        feed(&mut flow, &chunk)?;
        latencies.push(t.elapsed());
        process_cpu += thread_cpu().saturating_sub(p);
        peak = peak.max(flow.metrics().iter().map(|m| m.state).sum());
    }
    let p = thread_cpu();
    flow.finish()?;
    process_cpu += thread_cpu().saturating_sub(p);
    latencies.sort_unstable();
    Ok(Run {
        rows: sink.batches(),
        schema,
        events,
        elapsed: started.elapsed(),
        chunk_latencies: latencies,
        peak_state: peak,
        process_cpu,
        generate_cpu,
    })
}

/// Pushes one chunk into the sources `flow` has, then moves their event time.
pub fn feed(flow: &mut Dataflow, chunk: &Chunk) -> Result<()> {
    let sources: Vec<String> = flow.sources().into_iter().map(str::to_owned).collect();
    for s in &sources {
        let batch = match s.as_str() {
            "person" => &chunk.person,
            "auction" => &chunk.auction,
            _ => &chunk.bid,
        };
        if batch.num_rows() > 0 {
            flow.push(s, batch.clone())?;
        }
    }
    for s in &sources {
        flow.watermark(s, chunk.watermark)?;
    }
    Ok(())
}

/// Runs `query`'s SQL twin over every event of `config` as one batch.
pub fn oracle(query: Query, config: GeneratorConfig) -> Result<Vec<RecordBatch>> {
    let (mut person, mut auction, mut bid) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in Generator::new(config) {
        let chunk = chunk?;
        person.push(chunk.person);
        auction.push(chunk.auction);
        bid.push(chunk.bid);
    }
    let ctx = SessionContext::new();
    ctx.register_table("person", Arc::new(MemTable::try_new(person_schema(), vec![person])?))?;
    ctx.register_table("auction", Arc::new(MemTable::try_new(auction_schema(), vec![auction])?))?;
    ctx.register_table("bid", Arc::new(MemTable::try_new(bid_schema(), vec![bid])?))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    Ok(runtime.block_on(async { ctx.sql(query.oracle_sql()).await?.collect().await })?)
}

/// A query's result rows as sorted lines: [`canonical`], after keeping
/// only the latest row per key for queries whose results are upserts.
pub fn final_rows(query: Query, batches: &[RecordBatch]) -> Result<Vec<String>> {
    let Some(key) = query.upsert_key() else { return canonical(batches) };
    let mut latest = std::collections::HashMap::new();
    for b in batches {
        let lines = unsorted_lines(b)?;
        for line in lines {
            let cells: Vec<&str> = line.split('|').collect();
            let k: Vec<String> = key.iter().map(|i| cells.get(*i).copied().unwrap_or("").to_owned()).collect();
            latest.insert(k, line.clone());
        }
    }
    let mut lines: Vec<String> = latest.into_values().collect();
    lines.sort_unstable();
    Ok(lines)
}

/// Rows as sorted lines of text (timestamps as epoch ms), for comparing
/// results that may come in any order.
pub fn canonical(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for b in batches {
        lines.extend(unsorted_lines(b)?);
    }
    lines.sort_unstable();
    Ok(lines)
}

/// One batch's rows as lines, in order.
fn unsorted_lines(b: &RecordBatch) -> Result<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let columns = epoch_ms_columns(b)?;
    let formatters =
        columns.iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<Vec<_>, _>>()?;
    Ok((0..b.num_rows())
        .map(|row| formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join("|"))
        .collect())
}

/// A batch's columns with timestamps turned into epoch milliseconds (Int64).
pub(crate) fn epoch_ms_columns(b: &RecordBatch) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    b.columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Timestamp(..) => Ok(cast(c.as_ref(), &DataType::Int64)?),
            _ => Ok(Arc::clone(c)),
        })
        .collect()
}
