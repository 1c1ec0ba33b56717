//! `rill`: one command for the broker, streams and connectors.
//!
//! This binary only parses the command line and configuration, sets up
//! logging, and hands over to the library crates.

/// mimalloc: many small, short-lived allocations on many threads (gRPC
/// frames, messages) are much cheaper than with glibc's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod bench;
mod config;
mod connect;
mod metrics;
mod nexmark;
mod produce;
mod run;
mod server;
mod tls;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Rill: a RocketMQ-compatible message broker with a stream-processing and
/// data-integration runtime.
#[derive(Debug, Parser)]
#[command(name = "rill", version, about, long_about = None)]
struct Cli {
    /// Log level or filter (error, warn, info, debug, trace, or a RUST_LOG-style filter).
    #[arg(long, global = true, env = "RILL_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a name server and a broker in one process on an embedded data directory.
    Standalone(ServerArgs),
    /// Run a broker that registers its topics with a name server.
    Broker(ServerArgs),
    /// Run a name server: brokers register with it, routes span them.
    Namesrv(ServerArgs),
    /// Measure Rill against the limits of this machine and its peers.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Manage a running broker: topics, groups, offsets, messages, cluster.
    Admin(admin::AdminArgs),
    /// The Nexmark workload through a broker: produce events, run a query with checkpoints.
    #[command(subcommand)]
    Nexmark(nexmark::NexmarkCommand),
    /// Run a SQL job file (CREATE TABLE … WITH, INSERT INTO … SELECT, window TVFs).
    Run(run::RunArgs),
    /// Send the lines of a file (or standard input) to a topic, one message per line.
    Produce(produce::ProduceArgs),
    /// Run the connectors of a YAML file (sources → topics, topics → sinks) with a REST API.
    Connect(connect::ConnectArgs),
}

/// When appends are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FlushMode {
    /// After the write reaches the page cache; flushed in the background.
    Async,
    /// After fdatasync (group commit).
    Sync,
}

/// Options shared by the server commands.
#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Configuration file (TOML); RILL__SECTION__KEY variables and flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [default: <user data dir>/rill].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When appends are acknowledged.
    #[arg(long, value_enum)]
    flush: Option<FlushMode>,
    /// Where the RocketMQ 5 gRPC service listens [default: 127.0.0.1:8081].
    #[arg(long, value_name = "HOST:PORT")]
    grpc_addr: Option<String>,
    /// The name server: where `namesrv` and `standalone` serve it, where `broker` registers [default: 127.0.0.1:9876].
    #[arg(long, value_name = "HOST:PORT")]
    namesrv_addr: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// This broker's name in routes [default: broker-a].
    #[arg(long, value_name = "NAME")]
    broker_name: Option<String>,
    /// Serve gRPC over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Print the server's state as one JSON line instead of a summary.
    #[arg(long)]
    json: bool,
}

impl ServerArgs {
    fn load_config(&self) -> Result<config::RillConfig> {
        let mut overrides = Vec::new();
        if let Some(dir) = &self.data_dir {
            overrides.push(("store.data_dir", toml::Value::String(dir.display().to_string())));
        }
        let text = [
            ("broker.grpc_addr", self.grpc_addr.clone()),
            ("namesrv.addr", self.namesrv_addr.clone()),
            ("broker.metrics_addr", self.metrics_addr.clone()),
            ("broker.broker_name", self.broker_name.clone()),
            ("broker.tls_cert", self.tls_cert.as_ref().map(|p| p.display().to_string())),
            ("broker.tls_key", self.tls_key.as_ref().map(|p| p.display().to_string())),
        ];
        for (key, value) in text {
            if let Some(v) = value {
                overrides.push((key, toml::Value::String(v)));
            }
        }
        if let Some(mode) = self.flush {
            let mode = if mode == FlushMode::Sync { "sync" } else { "async" };
            let mut t = toml::Table::new();
            t.insert("mode".into(), toml::Value::String(mode.into()));
            overrides.push(("store.flush", toml::Value::Table(t)));
        }
        config::load(self.config.as_deref(), std::env::vars(), &overrides)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause that an
/// outer message already quotes.
fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log_level)
        .map_err(|e| anyhow::anyhow!("--log-level {:?} is not a valid level or filter: {e}", cli.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Standalone(args) => server::run(&args.load_config()?, server::Role::Standalone, args.json),
        Command::Broker(args) => server::run(&args.load_config()?, server::Role::Broker, args.json),
        Command::Namesrv(args) => server::run(&args.load_config()?, server::Role::NameServer, args.json),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Admin(args) => admin::run(args),
        Command::Nexmark(cmd) => nexmark::run(cmd),
        Command::Run(args) => run::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Connect(args) => connect::run(args),
    }
}
