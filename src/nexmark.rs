//! `rill nexmark`: the Nexmark workload through a broker — write generated
//! events to topics, and run a query on them with checkpoints and an
//! exactly-once file output (stop it any time; it resumes where its last
//! checkpoint left off).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use rill_client::ClientConfig;
use rill_nexmark::broker::BrokerRun;
use rill_nexmark::{GeneratorConfig, Query};

/// The Nexmark commands.
#[derive(Debug, Subcommand)]
pub enum NexmarkCommand {
    /// Write generated persons, auctions and bids as JSON to three topics.
    Produce(ProduceArgs),
    /// Run a query on those topics with checkpoints, writing results to JSON-lines files.
    Run(RunArgs),
}

/// Options both commands share.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The broker's gRPC address.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "HOST:PORT")]
    server: String,
    /// Topic name prefix: topics are <prefix>person, <prefix>auction, <prefix>bid.
    #[arg(long, default_value = "nexmark-")]
    prefix: String,
    /// Largest event-time disorder of the events, in ms.
    #[arg(long, default_value_t = 0)]
    disorder: i64,
}

/// Options of `rill nexmark produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    /// Events to write.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events per second of event time.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Options of `rill nexmark run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// The query (q0, q1, q2, q3, q5, q7, q8, q11).
    #[arg(long)]
    query: String,
    /// Consumer group the offsets are reported under.
    #[arg(long, default_value = "nexmark")]
    group: String,
    /// Checkpoint directory.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: PathBuf,
    /// Output directory (part-*.jsonl files appear as checkpoints complete).
    #[arg(long, value_name = "DIR")]
    output_dir: PathBuf,
    /// Milliseconds between checkpoints.
    #[arg(long, default_value_t = 2_000)]
    checkpoint_interval_ms: u64,
    /// The topics are complete: stop after reading them to the end, firing every open window.
    #[arg(long)]
    until_caught_up: bool,
}

/// Runs a Nexmark command.
pub fn run(cmd: NexmarkCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start runtime")?;
    runtime.block_on(async {
        match cmd {
            NexmarkCommand::Produce(a) => {
                let config = GeneratorConfig {
                    events: a.events,
                    rate: a.rate,
                    seed: a.seed,
                    disorder: a.common.disorder,
                    ..GeneratorConfig::default()
                };
                let sent = rill_nexmark::broker::produce(ClientConfig::new(&a.common.server), &a.common.prefix, config)
                    .await
                    .with_context(|| format!("writing events to {}", a.common.server))?;
                println!("{sent} events written to {}{{person,auction,bid}}", a.common.prefix);
                Ok(())
            }
            NexmarkCommand::Run(a) => {
                let query = Query::parse(&a.query).with_context(|| {
                    let known: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
                    format!("--query {}: no such query; implemented: {}", a.query, known.join(", "))
                })?;
                let settings = BrokerRun {
                    client: ClientConfig::new(&a.common.server),
                    group: a.group,
                    prefix: a.common.prefix,
                    checkpoints: a.checkpoint_dir,
                    output: a.output_dir,
                    interval: Duration::from_millis(a.checkpoint_interval_ms),
                    disorder: a.common.disorder,
                    until_caught_up: a.until_caught_up,
                };
                let (stop, stopped) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        tracing::info!("stopping after a last checkpoint");
                        stop.send_replace(true);
                    }
                });
                let report = rill_nexmark::broker::run(query, settings, stopped).await?;
                println!(
                    "{}: {} messages read, {} checkpoints{}",
                    query.name(),
                    report.messages,
                    report.checkpoints,
                    report.restored_from.map_or(String::new(), |c| format!(", resumed from checkpoint {c}"))
                );
                Ok(())
            }
        }
    })
}
