//! Rill's benchmark harness.
//!
//! Each benchmark measures Rill and, in the same run on the same machine, an
//! anchor to compare with (the raw limits of the disk, a peer system), and
//! reports figures with their ratio to that anchor. Absolute numbers vary
//! between machines and runs; ratios taken in one run are what the targets
//! in `benches/RESULTS.md` are stated in.
//!
//! This crate holds workloads and reporting only; the `rill bench …`
//! commands of the `rill` binary call into it. Every run is bounded both in
//! message count and in time.

pub mod cdc;
pub mod e2e;
pub mod filter;
pub mod local;
pub mod nexmark;
pub mod parquet;
pub mod produce;
pub mod report;
pub mod state;
pub mod store;
pub mod tail;
pub mod timer;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store under test failed.
    #[error(transparent)]
    Store(#[from] rill_store::Error),
    /// An I/O operation of the harness itself failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file concerned.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The options make no sense.
    #[error("invalid benchmark option {option}: {reason}")]
    Options {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
    /// A streams workload failed.
    #[error("workload: {0}")]
    Workload(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of Rill's client during a run.
pub(crate) fn client_error(e: rill_client::Error) -> Error {
    Error::Options { option: "rill", reason: e.to_string() }
}

/// A failure of the NATS peer during a run.
pub(crate) fn peer_error(url: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Options {
        option: "--nats-url",
        reason: format!("NATS JetStream at {url}: {e} (use --skip-peer to run without it)"),
    }
}
