//! `rill bench …`: runs a benchmark, shows progress on stderr, prints a
//! table (or one JSON object with `--json`) on stdout.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use rill_bench::store::StoreBenchOptions;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// CommitLog appends (async and sync flush, 1/4/16 writers) against raw disk writes.
    Store(StoreArgs),
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
            if a.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.to_table());
            }
            Ok(())
        }
    }
}
