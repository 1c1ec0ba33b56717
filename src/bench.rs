//! `rill bench …`: runs a benchmark, shows progress on stderr, prints a
//! table (or one JSON object with `--json`) on stdout.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use rill_bench::produce::ProduceBenchReport;
use rill_bench::store::{StoreBenchOptions, StoreBenchReport};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// CommitLog appends (async and sync flush, 1/4/16 writers) against raw disk writes.
    Store(StoreArgs),
    /// Acknowledged 1 KiB publishes to Rill (async and sync flush) against NATS JetStream.
    Produce(ProduceArgs),
    /// Produce → consume latency at a fixed rate, Rill against NATS JetStream.
    E2e(E2eArgs),
}

/// Options of `rill bench e2e`.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Scratch directory for the broker's data (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// NATS server with JetStream to compare with.
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats_url: String,
    /// Measure Rill only.
    #[arg(long)]
    skip_peer: bool,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `rill bench produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Scratch directory for the broker's data (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
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
    /// NATS server with JetStream to compare with.
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats_url: String,
    /// Measure Rill only.
    #[arg(long)]
    skip_peer: bool,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `rill bench store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Scratch directory on the disk to measure (removed afterwards) [default: a temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
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
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the chosen benchmark.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::E2e(a) => {
            let mut opts = rill_bench::e2e::E2eBenchOptions {
                rate: a.rate,
                seconds: a.seconds,
                message_size: a.size,
                nats_url: (!a.skip_peer).then_some(a.nats_url),
                ..Default::default()
            };
            if let Some(dir) = a.dir {
                opts.dir = dir.join(format!("rill-bench-e2e-{}", std::process::id()));
            }
            let report = rill_bench::e2e::run(&opts, &mut |step| eprintln!("[bench e2e] {step} …"))?;
            emit(&report, a.json, rill_bench::e2e::E2eBenchReport::to_table)
        }
        BenchCommand::Produce(a) => {
            let mut opts = rill_bench::produce::ProduceBenchOptions {
                message_size: a.size,
                messages: a.messages,
                in_flight: a.in_flight,
                producers: a.producers,
                max_seconds: a.max_seconds,
                nats_url: (!a.skip_peer).then_some(a.nats_url),
                ..Default::default()
            };
            if let Some(dir) = a.dir {
                opts.dir = dir.join(format!("rill-bench-produce-{}", std::process::id()));
            }
            let report = rill_bench::produce::run(&opts, &mut |step| eprintln!("[bench produce] {step} …"))?;
            emit(&report, a.json, ProduceBenchReport::to_table)
        }
        BenchCommand::Store(a) => {
            let mut opts = StoreBenchOptions {
                message_size: a.size,
                async_messages: a.messages,
                sync_messages: a.sync_messages,
                writers: a.writers,
                max_seconds: a.max_seconds,
                ..StoreBenchOptions::default()
            };
            if let Some(dir) = a.dir {
                opts.dir = dir.join(format!("rill-bench-store-{}", std::process::id()));
            }
            let report = rill_bench::store::run(&opts, &mut |step| eprintln!("[bench store] {step} …"))?;
            emit(&report, a.json, StoreBenchReport::to_table)
        }
    }
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
