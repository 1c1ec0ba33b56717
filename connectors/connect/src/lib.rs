//! Rill's connect runtime: `rill connect connectors.yaml` runs source
//! connectors (records → broker topics) and sink connectors (topics → a
//! database, a search index…) declared in a YAML file, with per-record
//! transforms, dead-letter topics and a REST API to list, pause, resume,
//! restart, change and delete them while they run.
//!
//! - [`config`]: the file, checked with file, line, column and YAML path.
//! - [`Runtime`]: the running connectors and their status.
//! - Sources: a [`RecordSource`] per connector (`mysql-cdc`, `file-tail`,
//!   `http`, `mqtt`); positions are stored ([`Offsets`]) only after the
//!   broker acknowledged the records, so a restart never skips one and
//!   resends at most the last batch; then the source may acknowledge
//!   upstream (answer HTTP requests, ack MQTT messages).
//! - The record sources are SQL table sources too ([`RecordTable`]).
//! - Sinks: the SQL job runtime's sink connectors, fed by a job the
//!   runtime writes (topic tables of the declared columns → the sink), so
//!   a connector written once serves SQL, YAML and Rust; offsets commit
//!   with the sink's checkpoint.
//! - [`rest`]: the HTTP API and its OpenAPI description.

mod cdc;
pub mod config;
mod http;
mod lanes;
mod mqtt;
mod offsets;
pub mod rest;
mod runtime;
mod sink;
mod source;
mod table;
mod tail;
pub mod transform;

pub use cdc::CdcConnector;
pub use config::{ConnectFile, ConnectorConfig};
pub use http::HttpConnector;
pub use mqtt::MqttConnector;
pub use offsets::Offsets;
pub use runtime::{Control, Runtime, Status, connectors};
pub use source::{Pending, Record, RecordSource, RecordSourceConnector, Sources};
pub use table::{RecordTable, TableConnector};
pub use tail::TailConnector;

/// Errors of the connect runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file or a connector's configuration is wrong.
    #[error("{0}")]
    Config(String),
    /// Offsets could not be read or stored.
    #[error("offsets: {0}")]
    Io(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
