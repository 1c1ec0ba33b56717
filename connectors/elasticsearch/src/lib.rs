//! The Elasticsearch / OpenSearch sink. Rows become `_bulk` actions: an
//! `index` of the row as a JSON document, or — for a changelog's `-D` rows
//! — a `delete`; the document id is the primary key's values joined by a
//! delimiter (no key: the server picks ids, and a replay may index a row
//! twice). The index is a name or a pattern (`logs-{ts|yyyy.MM.dd}`, see
//! [`IndexPattern`]).
//!
//! Actions are sent from a thread of the sink's own in requests bounded by
//! count and bytes, at the latest after the flush interval, and always
//! before a checkpoint completes: with ids from the key, writes are
//! idempotent, so a job restarting from its last checkpoint leaves the
//! same documents — exactly-once results. Documents the server refuses
//! (a mapping conflict) become the job's dead letters with its reason;
//! overload and server errors are retried with backoff. In SQL:
//!
//! ```sql
//! CREATE TABLE orders_index (id BIGINT, customer STRING, total DECIMAL(10, 2), PRIMARY KEY (id) NOT ENFORCED)
//! WITH ('connector' = 'elasticsearch', 'hosts' = 'http://127.0.0.1:9200', 'index' = 'orders');
//! ```

mod bulk;
mod document;
pub mod server;
mod sql;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use rill_streams::{DeadLetter, Sink};

pub use document::IndexPattern;
pub use sql::{ElasticsearchConnector, register};

/// Errors of the Elasticsearch sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options are wrong.
    #[error("{0}")]
    Config(String),
    /// The server refused or failed a request.
    #[error("elasticsearch: {0}")]
    Server(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and how the sink writes.
#[derive(Debug, Clone)]
pub struct ElasticsearchConfig {
    /// The sink's name in dead letters and logs (the SQL table's).
    pub name: String,
    /// `http(s)://host:port` of each node; a failed request moves to the next.
    pub hosts: Vec<String>,
    /// Where rows go.
    pub index: IndexPattern,
    /// Primary key columns (the document id); empty: ids from the server.
    pub key: Vec<String>,
    /// Between the key's values in a document id.
    pub key_delimiter: String,
    /// Actions per request at most.
    pub max_actions: usize,
    /// Bytes per request at most (one action may exceed it on its own).
    pub max_bytes: usize,
    /// How long an action may wait for its request.
    pub flush_interval: Duration,
    /// Retries of a failed request or refused-for-now items.
    pub max_retries: u32,
    /// First wait between retries (doubling after each).
    pub backoff: Duration,
    /// Basic authentication.
    pub username: Option<String>,
    /// Basic authentication's password.
    pub password: Option<String>,
    /// A PEM file of the CA to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure: bool,
    /// `refresh` of each bulk request (`true`, `wait_for`), when given.
    pub refresh: Option<String>,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl ElasticsearchConfig {
    /// A configuration with the defaults: 1000 actions or 5 MiB per request, 1 s, 8 retries from 100 ms.
    pub fn new(name: &str, hosts: Vec<String>, index: IndexPattern, key: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            hosts,
            index,
            key,
            key_delimiter: "_".into(),
            max_actions: 1000,
            max_bytes: 5 << 20,
            flush_interval: Duration::from_secs(1),
            max_retries: 8,
            backoff: Duration::from_millis(100),
            username: None,
            password: None,
            ca_file: None,
            insecure: false,
            refresh: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The sink (see the crate docs).
pub struct ElasticsearchSink {
    encoder: document::Encoder,
    commands: mpsc::SyncSender<bulk::Command>,
    shared: Arc<bulk::Shared>,
}

impl std::fmt::Debug for ElasticsearchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSink").field("index", &self.encoder.index).finish_non_exhaustive()
    }
}

impl ElasticsearchSink {
    /// A sink writing as `config` says; nothing connects until the first request.
    pub fn new(config: ElasticsearchConfig) -> Result<Self> {
        if config.hosts.is_empty() {
            return Err(Error::Config("'hosts' names no server".into()));
        }
        for h in &config.hosts {
            if !(h.starts_with("http://") || h.starts_with("https://")) {
                return Err(Error::Config(format!("host '{h}' must start with http:// or https://")));
            }
        }
        // Mistakes in TLS options show now, not at the first write.
        bulk::client(&config)?;
        let encoder = document::Encoder {
            index: config.index.clone(),
            key: config.key.clone(),
            delimiter: config.key_delimiter.clone(),
        };
        // A few batches in flight: a slow server holds the job back instead of filling memory.
        let (commands, received) = mpsc::sync_channel(16);
        let shared = Arc::new(bulk::Shared::default());
        let for_thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("es-sink-{}", config.name))
            .spawn(move || bulk::serve(&config, &received, &for_thread))
            .map_err(|e| Error::Config(format!("cannot start the sink's thread: {e}")))?;
        Ok(Self { encoder, commands, shared })
    }

    /// Documents acknowledged by the server so far (indexed or deleted).
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    fn stopped() -> Error {
        Error::Server("the sink's connection thread has stopped".into())
    }

    /// Sends everything buffered and waits for the server's answer.
    pub fn flush(&mut self) -> Result<()> {
        let (done, answer) = mpsc::channel();
        self.commands.send(bulk::Command::Flush(done)).map_err(|_| Self::stopped())?;
        answer.recv().map_err(|_| Self::stopped())?
    }
}

/// An HTTP client builder with rustls' crypto provider in place (ring, the
/// one built in; installing it twice is harmless).
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

fn sink_error(e: Error) -> rill_streams::Error {
    rill_streams::Error::Sink(e.to_string())
}

impl Sink for ElasticsearchSink {
    fn write(&mut self, batch: RecordBatch) -> rill_streams::Result<()> {
        let actions = self.encoder.encode(&batch, chrono::Utc::now().timestamp_millis()).map_err(sink_error)?;
        self.commands.send(bulk::Command::Actions(actions)).map_err(|_| sink_error(Self::stopped()))
    }

    fn prepare(&mut self, _id: u64) -> rill_streams::Result<()> {
        self.flush().map_err(sink_error)
    }

    fn rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut *self.shared.rejected.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hosts: &[&str]) -> ElasticsearchConfig {
        let index = IndexPattern::parse("t", &["id"]).expect("a fixed index");
        ElasticsearchConfig::new("t", hosts.iter().map(|h| (*h).to_owned()).collect(), index, vec!["id".into()])
    }

    #[test]
    fn mistakes_in_hosts_and_tls_options_show_at_once() {
        let e = ElasticsearchSink::new(config(&[])).unwrap_err().to_string();
        assert!(e.contains("'hosts' names no server"), "{e}");
        let e = ElasticsearchSink::new(config(&["127.0.0.1:9200"])).unwrap_err().to_string();
        assert!(e.contains("host '127.0.0.1:9200' must start with http:// or https://"), "{e}");
        let mut c = config(&["https://127.0.0.1:9200"]);
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let e = ElasticsearchSink::new(c).unwrap_err().to_string();
        assert!(e.contains("'tls.ca-file' /nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("rill-es-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").expect("a scratch file");
        let mut c = config(&["https://127.0.0.1:9200"]);
        c.ca_file = Some(dir.clone());
        let e = ElasticsearchSink::new(c).map(|_| ()).unwrap_err().to_string();
        let _ = std::fs::remove_file(&dir);
        assert!(e.contains("'tls.ca-file'"), "{e}");
    }
}
