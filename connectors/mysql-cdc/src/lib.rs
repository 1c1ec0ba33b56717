//! MySQL / MariaDB change data capture: a consistent snapshot of the
//! selected tables, then the row-based binlog from exactly the snapshot's
//! point, read as a replica; every row change becomes a [`ChangeEvent`]
//! with a Debezium-style envelope, keyed by the primary key.
//!
//! - [`CdcReader`] reads changes and tells the [`Position`] after them;
//!   reopening it at a stored position hands out every later change once
//!   (a position inside a transaction counts the rows already handed out).
//! - Table shapes come from the binlog's table maps, so rows written after
//!   an `ALTER TABLE` decode with the new columns; the server must run
//!   with `binlog_format=ROW`, `binlog_row_image=FULL` and
//!   `binlog_row_metadata=FULL` (checked at start, with a clear error).
//! - [`register`] adds the `mysql-cdc` connector to SQL job files: a table
//!   whose rows are the changes of one database table, as a changelog.
//! - [`LocalMariaDb`] starts a private MariaDB with the binlog on, for
//!   tests, benchmarks and examples.
//!
//! Value mapping: see [`value`]. A position taken during the snapshot
//! starts the snapshot over on reopening (its rows come again as reads).

mod binlog;
mod event;
mod position;
mod reader;
mod server;
mod shape;
mod snapshot;
mod source;
pub mod value;

use std::time::Duration;

pub use event::{ChangeEvent, Op, SourceInfo};
pub use position::Position;
pub use reader::CdcReader;
pub use server::{LocalMariaDb, available as mariadb_available};
pub use shape::TableShape;
pub use source::{CdcSource, MysqlCdcConnector, register};

/// Errors of change capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options, or the server's settings, are wrong.
    #[error("{0}")]
    Config(String),
    /// Reading the snapshot failed.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The binlog could not be read or decoded.
    #[error("binlog: {0}")]
    Binlog(String),
    /// The connection to the server was lost.
    #[error("connection lost: {0}")]
    Disconnected(String),
    /// A local server could not be started.
    #[error("local MariaDB: {0}")]
    Server(String),
}

impl From<mysql_async::Error> for Error {
    fn from(e: mysql_async::Error) -> Self {
        Error::Server(e.to_string())
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where reading begins when there is no stored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Startup {
    /// Snapshot the tables, then stream the binlog from the snapshot's point.
    #[default]
    Initial,
    /// Only the changes made from now on.
    Latest,
}

/// What to read and how.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    /// `mysql://user:password@host:port/database` (the user needs
    /// REPLICATION SLAVE, REPLICATION CLIENT and SELECT).
    pub url: String,
    /// The replica id this reader uses; unique among the server's replicas.
    pub server_id: u32,
    /// Databases read: a regular expression matched against the whole name.
    pub databases: String,
    /// Tables read: a regular expression matched against `table` or `db.table`.
    pub tables: String,
    /// Tables left out (same form), if any.
    pub exclude: Option<String>,
    /// Where to begin without a stored position.
    pub startup: Startup,
    /// Rows per snapshot chunk.
    pub fetch_size: usize,
    /// How long to keep reconnecting to a server that went away before failing.
    pub reconnect_for: Duration,
}

impl CdcConfig {
    /// Every table of `url`'s database, snapshot first.
    pub fn new(url: &str) -> Self {
        let database = url.rsplit_once('/').map(|(_, d)| d.split('?').next().unwrap_or_default()).unwrap_or_default();
        Self {
            url: url.to_owned(),
            server_id: 5400 + std::process::id() % 1000,
            databases: if database.is_empty() { ".*".to_owned() } else { regex::escape(database) },
            tables: ".*".to_owned(),
            exclude: None,
            startup: Startup::Initial,
            fetch_size: 8192,
            reconnect_for: Duration::from_secs(60),
        }
    }

    fn selection(&self) -> Result<Selection> {
        let anchored = |what: &str, re: &str| {
            regex::Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| Error::Config(format!("{what} '{re}' is not a regular expression: {e}")))
        };
        Ok(Selection {
            databases: anchored("databases", &self.databases)?,
            tables: anchored("tables", &self.tables)?,
            exclude: self.exclude.as_deref().map(|e| anchored("exclude", e)).transpose()?,
        })
    }
}

/// Which tables are read.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    databases: regex::Regex,
    tables: regex::Regex,
    exclude: Option<regex::Regex>,
}

/// Databases that are the server's own.
const SYSTEM: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

impl Selection {
    /// Whether `db.table` is read.
    pub(crate) fn selects(&self, db: &str, table: &str) -> bool {
        if SYSTEM.contains(&db) || !self.databases.is_match(db) {
            return false;
        }
        let qualified = format!("{db}.{table}");
        let named = |re: &regex::Regex| re.is_match(table) || re.is_match(&qualified);
        named(&self.tables) && !self.exclude.as_ref().is_some_and(named)
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_selected_by_name_or_qualified_name() {
        let mut c = CdcConfig::new("mysql://root@127.0.0.1:3306/shop");
        c.tables = "orders|shop\\.items_.*".into();
        c.exclude = Some("items_old".into());
        let s = c.selection().unwrap();
        assert!(s.selects("shop", "orders"));
        assert!(s.selects("shop", "items_2026"));
        assert!(!s.selects("shop", "items_old"));
        assert!(!s.selects("other", "orders"));
        assert!(!s.selects("mysql", "user"));
        c.tables = "(".into();
        assert!(c.selection().unwrap_err().to_string().contains("tables '('"));
    }
}
