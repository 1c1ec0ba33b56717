//! MySQL / MariaDB connectors for Rill: a sink, and tables lookup joins
//! read by key ([`MysqlLookup`]). The `mysql` sink writes rows as
//! upserts by primary key (`INSERT … ON DUPLICATE KEY UPDATE`) and, for a
//! changelog (rows with a `__op` kind), deletes (`-D`); `-U` rows are
//! skipped, as the `+U` after them carries the new row.
//!
//! Rows are buffered with only the last change per key kept, and written
//! in one transaction when a checkpoint is taken (or when the buffer
//! fills). Writes are idempotent, so a job that restarts from its last
//! checkpoint and writes the same changes again leaves the same table:
//! exactly-once results without two-phase commit.
//!
//! A write that fails on a transient error (the connection broke — a server
//! restarting —, a deadlock, a lock wait timeout) is tried again with
//! doubling waits (`sink.max-retries`, default 8); the transaction it was
//! in rolled back, so nothing is written twice.
//!
//! The sink talks to the database from a thread of its own (the sink
//! contract is synchronous); it owns nothing else. In SQL:
//!
//! ```sql
//! CREATE TABLE per_category (category STRING, orders BIGINT, PRIMARY KEY (category) NOT ENFORCED)
//! WITH ('connector' = 'mysql', 'url' = 'mysql://root@127.0.0.1:3306/test', 'table-name' = 'per_category');
//! ```
//!
//! The same connector makes a table a lookup join reads, as it is when
//! each row arrives (with an optional cache):
//!
//! ```sql
//! CREATE TABLE customers (id BIGINT, name STRING, PRIMARY KEY (id) NOT ENFORCED)
//! WITH ('connector' = 'mysql', 'url' = 'mysql://root@127.0.0.1:3306/test', 'table-name' = 'customers',
//!       'lookup.cache' = 'PARTIAL', 'lookup.partial-cache.max-rows' = '10000',
//!       'lookup.partial-cache.expire-after-write' = '1 min');
//! INSERT INTO enriched SELECT o.id, c.name
//! FROM orders AS o JOIN customers FOR SYSTEM_TIME AS OF o.proc_time AS c ON o.customer_id = c.id;
//! ```

mod convert;
mod lookup;
mod sql;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use mysql_async::Value;
use rill_streams::{OP_COLUMN, Sink};

pub use lookup::MysqlLookup;
pub use sql::{MysqlConnector, register};

/// Errors of the MySQL connectors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options are wrong.
    #[error("{0}")]
    Config(String),
    /// The database refused or failed a statement.
    #[error("mysql: {0}")]
    Database(String),
    /// A value has no MySQL form.
    #[error("{0}")]
    Value(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and how the sink writes.
#[derive(Debug, Clone)]
pub struct MysqlSinkConfig {
    /// `mysql://user:password@host:port/database`.
    pub url: String,
    /// The table written.
    pub table: String,
    /// Its primary key columns.
    pub key: Vec<String>,
    /// Changes kept before writing without waiting for a checkpoint.
    pub max_buffered: usize,
    /// Create the table from the rows' schema when it does not exist.
    pub auto_create: bool,
    /// Tries again after a transient failure (a broken connection, a deadlock), with doubling waits.
    pub max_retries: u32,
    /// The first wait before another try.
    pub backoff: std::time::Duration,
    /// Tries again so far (shared with the sink's thread).
    pub retries: Arc<std::sync::atomic::AtomicU64>,
}

impl MysqlSinkConfig {
    /// Writing to `table` (key `key`) at `url`: 10,000 changes buffered, 8 retries from 100 ms.
    pub fn new(url: &str, table: &str, key: Vec<String>) -> Self {
        Self {
            url: url.to_owned(),
            table: table.to_owned(),
            key,
            max_buffered: 10_000,
            auto_create: false,
            max_retries: 8,
            backoff: std::time::Duration::from_millis(100),
            retries: Arc::default(),
        }
    }
}

/// The last change of one key.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Insert or replace the row (every column).
    Upsert(Vec<Value>),
    /// Delete the row with these key values.
    Delete(Vec<Value>),
}

enum Command {
    Write { columns: Vec<(String, String)>, changes: Vec<Change>, done: mpsc::Sender<Result<()>> },
}

/// The sink (see the crate docs).
pub struct MysqlSink {
    config: Arc<MysqlSinkConfig>,
    /// Column names and their MySQL types, from the first batch.
    columns: Option<Vec<(String, String)>>,
    key_indices: Vec<usize>,
    buffered: HashMap<String, Change>,
    worker: mpsc::Sender<Command>,
}

impl std::fmt::Debug for MysqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlSink")
            .field("table", &self.config.table)
            .field("buffered", &self.buffered.len())
            .finish_non_exhaustive()
    }
}

impl MysqlSink {
    /// A sink writing to `config.table`; nothing connects until the first write.
    pub fn new(config: MysqlSinkConfig) -> Result<Self> {
        if config.key.is_empty() {
            return Err(Error::Config(format!(
                "the mysql sink writes upserts by key: table '{}' needs a primary key",
                config.table
            )));
        }
        mysql_async::Opts::from_url(&config.url)
            .map_err(|e| Error::Config(format!("'{}' is not a MySQL URL: {e}", sql::redact(&config.url))))?;
        let config = Arc::new(config);
        let (worker, commands) = mpsc::channel();
        let for_thread = Arc::clone(&config);
        std::thread::Builder::new()
            .name(format!("mysql-sink-{}", config.table))
            .spawn(move || sql::serve(&for_thread, &commands))
            .map_err(|e| Error::Config(format!("cannot start the sink's thread: {e}")))?;
        Ok(Self { config, columns: None, key_indices: Vec::new(), buffered: HashMap::new(), worker })
    }

    fn learn(&mut self, schema: &SchemaRef) -> Result<()> {
        if self.columns.is_some() {
            return Ok(());
        }
        let mut columns = Vec::new();
        for f in schema.fields().iter().filter(|f| f.name() != OP_COLUMN) {
            let is_key = self.config.key.contains(f.name());
            columns.push((f.name().clone(), convert::mysql_type(f.data_type(), is_key)?));
        }
        self.key_indices = self
            .config
            .key
            .iter()
            .map(|k| {
                columns.iter().position(|(c, _)| c == k).ok_or_else(|| {
                    Error::Config(format!("key column '{k}' is not among the rows' columns of '{}'", self.config.table))
                })
            })
            .collect::<Result<_>>()?;
        self.columns = Some(columns);
        Ok(())
    }

    fn take(&mut self, batch: &RecordBatch) -> Result<()> {
        self.learn(&batch.schema())?;
        let op = batch.schema().index_of(OP_COLUMN).ok().map(|i| batch.column(i).as_string::<i32>().clone());
        let data: Vec<usize> =
            batch.schema().fields().iter().enumerate().filter(|(_, f)| f.name() != OP_COLUMN).map(|(i, _)| i).collect();
        for row in 0..batch.num_rows() {
            let kind = op.as_ref().map(|o| o.value(row));
            if kind == Some(rill_streams::changelog::UPDATE_BEFORE) {
                continue;
            }
            let values = data.iter().map(|c| convert::value(batch.column(*c), row)).collect::<Result<Vec<Value>>>()?;
            let key: Vec<Value> = self.key_indices.iter().map(|i| values[*i].clone()).collect();
            let id = format!("{key:?}");
            let change = if kind == Some(rill_streams::changelog::DELETE) {
                Change::Delete(key)
            } else {
                Change::Upsert(values)
            };
            self.buffered.insert(id, change);
        }
        Ok(())
    }

    /// Tries again after transient failures so far.
    pub fn retries(&self) -> u64 {
        self.config.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes the buffered changes in one transaction.
    fn flush(&mut self) -> Result<()> {
        let Some(columns) = self.columns.clone() else { return Ok(()) };
        if self.buffered.is_empty() {
            return Ok(());
        }
        let changes: Vec<Change> = self.buffered.values().cloned().collect();
        let (done, result) = mpsc::channel();
        self.worker
            .send(Command::Write { columns, changes, done })
            .map_err(|_| Error::Database("the sink's connection thread has stopped".into()))?;
        result.recv().map_err(|_| Error::Database("the sink's connection thread has stopped".into()))??;
        self.buffered.clear();
        Ok(())
    }
}

fn sink_error(e: Error) -> rill_streams::Error {
    rill_streams::Error::Sink(e.to_string())
}

impl Sink for MysqlSink {
    fn write(&mut self, batch: RecordBatch) -> rill_streams::Result<()> {
        self.take(&batch).map_err(sink_error)?;
        if self.buffered.len() >= self.config.max_buffered { self.flush().map_err(sink_error) } else { Ok(()) }
    }

    fn prepare(&mut self, _id: u64) -> rill_streams::Result<()> {
        self.flush().map_err(sink_error)
    }
}
