//! `rill bench …`: runs a benchmark, shows progress on stderr, prints a
//! table (or one JSON object with `--json`) on stdout.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use rill_bench::cdc::{CdcBenchOptions, CdcBenchReport};
use rill_bench::e2e::{E2eBenchOptions, E2eBenchReport};
use rill_bench::filter::{FilterBenchOptions, FilterBenchReport};
use rill_bench::nexmark::{NexmarkBenchOptions, NexmarkBenchReport};
use rill_bench::parquet::{ParquetBenchOptions, ParquetBenchReport};
use rill_bench::produce::{ProduceBenchOptions, ProduceBenchReport};
use rill_bench::state::{StateBenchOptions, StateBenchReport, StateOperator};
use rill_bench::store::{StoreBenchOptions, StoreBenchReport};
use rill_bench::tail::{TailBenchOptions, TailBenchReport};
use rill_bench::timer::{TimerBenchOptions, TimerBenchReport};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// CommitLog appends (async and sync flush, 1/4/16 writers) against raw disk writes.
    Store(StoreArgs),
    /// Acknowledged 1 KiB publishes to Rill (async and sync flush) against NATS JetStream.
    Produce(ProduceArgs),
    /// Produce → consume latency at a fixed rate, Rill against NATS JetStream.
    E2e(E2eArgs),
    /// Many delay messages pending at once: memory while they wait, lateness when due.
    Timer(TimerArgs),
    /// Bytes a consumer receives with a broker-side tag or SQL92 filter against none.
    Filter(FilterArgs),
    /// Nexmark queries on the streams runtime: events/s per core beside Flink's baseline.
    Nexmark(NexmarkArgs),
    /// Keyed state of millions of keys within a memory budget (spilling) against all in memory.
    State(StateArgs),
    /// MySQL/MariaDB change capture into the broker and the sinks out of it (MySQL, search index): rows/s beside their anchors.
    Cdc(CdcArgs),
    /// 200-byte log lines from a file to acknowledged broker messages through the file-tail source: MiB/s beside a plain read.
    Tail(TailArgs),
    /// JSON events into committed, partitioned Parquet through the lake sink: MB/s beside a plain Parquet writer.
    Parquet(ParquetArgs),
}

/// Options of `rill bench tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Scratch directory (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// MiB of lines to write and follow (at most 8,192).
    #[arg(long, default_value_t = 512)]
    mib: u64,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `rill bench parquet`.
#[derive(Debug, clap::Args)]
pub struct ParquetArgs {
    /// Scratch directory for the lake (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// MB of JSON events (at most 10,000).
    #[arg(long, default_value_t = 512)]
    mb: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 8192)]
    batch: usize,
    /// Events between checkpoints (files are closed and committed at each).
    #[arg(long, default_value_t = 1_000_000)]
    checkpoint_every: usize,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `rill bench cdc`.
#[derive(Debug, clap::Args)]
pub struct CdcArgs {
    /// Scratch directory (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Rows in the table for the snapshot, and changes for the binlog (at most 5,000,000).
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `rill bench state`.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// The step holding the state: dedup (every key remembered) or window
    /// (one group per key in a tumbling window).
    #[arg(long, value_enum, default_value_t = StateStep::Dedup)]
    operator: StateStep,
    /// Distinct keys (at most 100,000,000).
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    /// Memory budget of the spilling case, in MiB.
    #[arg(long, default_value_t = 64)]
    budget_mb: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 8192)]
    batch: usize,
    /// Upper bound on each case's feeding time, in seconds.
    #[arg(long, default_value_t = 300.0)]
    max_seconds: f64,
    /// Scratch directory for the spill file (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The stateful step `rill bench state` measures.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateStep {
    /// Deduplication remembering every key.
    Dedup,
    /// A keyed tumbling-window aggregate.
    Window,
}

/// Options of `rill bench nexmark`.
#[derive(Debug, clap::Args)]
pub struct NexmarkArgs {
    /// Queries to run, comma-separated (q0,q1,q2,q3,q4,q5,q7,q8,q11) [default: all].
    #[arg(long, value_delimiter = ',')]
    query: Option<Vec<String>>,
    /// Events per query (at most 100,000,000).
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Events per micro-batch.
    #[arg(long, default_value_t = 10_000)]
    chunk: u64,
    /// Largest event-time disorder of the generated input, in ms.
    #[arg(long, default_value_t = 0)]
    disorder: i64,
    /// Also run each query's SQL job file (examples/nexmark/qN.sql) and set its throughput beside the DSL's.
    #[arg(long)]
    sql: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `rill bench filter`.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Messages in the topic.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// One message in this many matches the filters (10 → 10 %).
    #[arg(long, default_value_t = 10)]
    one_in: u64,
}

/// Options of `rill bench timer`.
#[derive(Debug, clap::Args)]
pub struct TimerArgs {
    /// Scratch directory (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Delay messages to schedule (at most 5,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Seconds between the first and the last due time.
    #[arg(long, default_value_t = 20)]
    spread: u64,
    /// Seconds until the first due time (parking must be done by then).
    #[arg(long, default_value_t = 30)]
    lead: u64,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options every benchmark takes.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Scratch directory on the disk to measure (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

impl CommonArgs {
    /// A per-run scratch folder below `--dir`, if one was given.
    fn scratch(&self, bench: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("rill-bench-{bench}-{}", std::process::id())))
    }
}

/// Options of the benchmarks that compare with NATS JetStream.
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// NATS server with JetStream to compare with.
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats_url: String,
    /// Measure Rill only.
    #[arg(long)]
    skip_peer: bool,
}

impl PeerArgs {
    fn url(self) -> Option<String> {
        (!self.skip_peer).then_some(self.nats_url)
    }
}

/// Options of `rill bench e2e`.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    peer: PeerArgs,
    /// Messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// Options of `rill bench produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    peer: PeerArgs,
    /// Most messages per case.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Publishes in flight (each waits for its acknowledgement).
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Client connections the in-flight publishes are spread over.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Time limit per case in seconds.
    #[arg(long, default_value_t = 10.0)]
    max_seconds: f64,
}

/// Options of `rill bench store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Messages per async-flush case.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Maximum messages per sync-flush case (the time limit usually ends it first).
    #[arg(long, default_value_t = 1_000_000)]
    sync_messages: u64,
    /// Concurrent writers to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    writers: Vec<usize>,
    /// Time limit per case in seconds.
    #[arg(long, default_value_t = 5.0)]
    max_seconds: f64,
}

/// Runs the chosen benchmark.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::E2e(a) => {
            let defaults = E2eBenchOptions::default();
            let opts = E2eBenchOptions {
                dir: a.common.scratch("e2e").unwrap_or(defaults.dir),
                rate: a.rate,
                seconds: a.seconds,
                message_size: a.common.size,
                nats_url: a.peer.url(),
            };
            let report = rill_bench::e2e::run(&opts, &mut progress("e2e"))?;
            emit(&report, a.common.json, E2eBenchReport::to_table)
        }
        BenchCommand::Produce(a) => {
            let defaults = ProduceBenchOptions::default();
            let opts = ProduceBenchOptions {
                dir: a.common.scratch("produce").unwrap_or(defaults.dir),
                message_size: a.common.size,
                messages: a.messages,
                in_flight: a.in_flight,
                producers: a.producers,
                max_seconds: a.max_seconds,
                nats_url: a.peer.url(),
            };
            let report = rill_bench::produce::run(&opts, &mut progress("produce"))?;
            emit(&report, a.common.json, ProduceBenchReport::to_table)
        }
        BenchCommand::Filter(a) => {
            let opts = FilterBenchOptions {
                dir: a
                    .common
                    .scratch("filter")
                    .unwrap_or_else(|| std::env::temp_dir().join(format!("rill-bench-filter-{}", std::process::id()))),
                messages: a.messages,
                message_size: a.common.size,
                one_in: a.one_in,
            };
            let report = rill_bench::filter::run(&opts, &mut progress("filter"))?;
            emit(&report, a.common.json, FilterBenchReport::to_table)
        }
        BenchCommand::Cdc(a) => {
            let scratch = format!("rill-bench-cdc-{}", std::process::id());
            let opts = CdcBenchOptions {
                dir: a.dir.map_or_else(|| std::env::temp_dir().join(&scratch), |d| d.join(&scratch)),
                rows: a.rows,
            };
            let report = rill_bench::cdc::run(&opts, &mut progress("cdc"))?;
            emit(&report, a.json, CdcBenchReport::to_table)
        }
        BenchCommand::Tail(a) => {
            let scratch = format!("rill-bench-tail-{}", std::process::id());
            let dir = a.dir.map_or_else(|| std::env::temp_dir().join(&scratch), |d| d.join(&scratch));
            let report = rill_bench::tail::run(&TailBenchOptions { dir, mib: a.mib }, &mut progress("tail"))?;
            emit(&report, a.json, TailBenchReport::to_table)
        }
        BenchCommand::Parquet(a) => {
            let scratch = format!("rill-bench-parquet-{}", std::process::id());
            let dir = a.dir.map_or_else(|| std::env::temp_dir().join(&scratch), |d| d.join(&scratch));
            let opts = ParquetBenchOptions { dir, mb: a.mb, batch: a.batch, checkpoint_every: a.checkpoint_every };
            let report = rill_bench::parquet::run(&opts, &mut progress("parquet"));
            emit(&report?, a.json, ParquetBenchReport::to_table)
        }
        BenchCommand::Timer(a) => {
            let scratch = a.dir.map(|d| d.join(format!("rill-bench-timer-{}", std::process::id())));
            let opts = TimerBenchOptions {
                dir: scratch
                    .unwrap_or_else(|| std::env::temp_dir().join(format!("rill-bench-timer-{}", std::process::id()))),
                count: a.count,
                message_size: a.size,
                spread_secs: a.spread,
                lead_secs: a.lead,
            };
            let report = rill_bench::timer::run(&opts, &mut progress("timer"))?;
            emit(&report, a.json, TimerBenchReport::to_table)
        }
        BenchCommand::Nexmark(a) => {
            let queries = match &a.query {
                Some(names) => names
                    .iter()
                    .map(|n| {
                        rill_nexmark::Query::parse(n).ok_or_else(|| {
                            let known: Vec<&str> = rill_nexmark::Query::ALL.iter().map(|q| q.name()).collect();
                            anyhow::anyhow!("--query {n}: no such query; implemented: {}", known.join(", "))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => rill_nexmark::Query::ALL.to_vec(),
            };
            let opts =
                NexmarkBenchOptions { queries, events: a.events, chunk: a.chunk, disorder: a.disorder, sql: a.sql };
            let report = rill_bench::nexmark::run(&opts, &mut progress("nexmark"))?;
            emit(&report, a.json, NexmarkBenchReport::to_table)
        }
        BenchCommand::State(a) => {
            let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
            let opts = StateBenchOptions {
                operator: match a.operator {
                    StateStep::Dedup => StateOperator::Dedup,
                    StateStep::Window => StateOperator::Window,
                },
                keys: a.keys,
                budget: a.budget_mb.saturating_mul(1 << 20),
                batch: a.batch,
                max_seconds: a.max_seconds,
                dir: base.join(format!("rill-bench-state-{}", std::process::id())),
            };
            let report = rill_bench::state::run(&opts, &mut progress("state"));
            let _ = std::fs::remove_dir_all(&opts.dir);
            emit(&report?, a.json, StateBenchReport::to_table)
        }
        BenchCommand::Store(a) => {
            let defaults = StoreBenchOptions::default();
            let opts = StoreBenchOptions {
                dir: a.common.scratch("store").unwrap_or(defaults.dir),
                message_size: a.common.size,
                async_messages: a.messages,
                sync_messages: a.sync_messages,
                writers: a.writers,
                max_seconds: a.max_seconds,
            };
            let report = rill_bench::store::run(&opts, &mut progress("store"))?;
            emit(&report, a.common.json, StoreBenchReport::to_table)
        }
    }
}

/// Prints each step of benchmark `name` on stderr.
fn progress(name: &'static str) -> impl FnMut(&str) {
    move |step| eprintln!("[bench {name}] {step} …")
}

/// Prints a report: one JSON object, or the table for people.
fn emit<R: serde::Serialize>(report: &R, json: bool, table: fn(&R) -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", table(report));
    }
    Ok(())
}
