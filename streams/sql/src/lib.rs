//! SQL job files for Rill's streams: a `.sql` file of Flink-style
//! statements — `CREATE TABLE … WITH ('connector' = …)`, `CREATE VIEW`,
//! `SET`, `INSERT INTO … SELECT` with window table-valued functions
//! (`TUMBLE`, `HOP`, `CUMULATE`, `SESSION`) — planned with DataFusion and
//! rewritten onto the streaming operators of `rill-streams`, then run like
//! a job written with the DSL.
//!
//! What it owns: reading job files (statements, positions, DDL), the
//! catalog of tables and views, the connectors SQL can name, and the
//! rewrite of DataFusion's logical plans into dataflows. What it must not
//! touch: expression evaluation and aggregate functions (DataFusion's),
//! operators, state and checkpoints (`rill-streams`'), the broker
//! protocol (`rill-client`'s).
//!
//! Every error names the file, line and column it is about.
//!
//! ```
//! # fn main() -> Result<(), rill_sql::Error> {
//! let job = rill_sql::SqlJob::parse("job.sql".as_ref(), "
//!     CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
//!         WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
//!     ) WITH ('connector' = 'rocketmq', 'endpoints' = '127.0.0.1:8081',
//!             'topic' = 'bids', 'consumer-group' = 'bid-stats');
//!     CREATE TABLE out (auction BIGINT, bids BIGINT) WITH ('connector' = 'print');
//!     INSERT INTO out SELECT auction, COUNT(*)
//!     FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
//!     WHERE price > 10 GROUP BY auction, window_start, window_end;
//! ")?;
//! assert_eq!(job.tables().len(), 2);
//! # Ok(()) }
//! ```

mod connector;
mod datagen;
mod ddl;
mod job;
mod plan;
mod query;
mod script;
mod types;

pub use connector::{
    ConnectorKind, Connectors, LOOKUP_OPTIONS, LookupConnector, OptionError, OptionSpec, Options, SinkConnector,
    SourceConnector, closest, date_pattern, lookup_cache, opt, parse_size, substitute, validate,
};
pub use ddl::{Column, ColumnKind, TableDef};
pub use job::{SqlJob, parse_duration};
pub use script::Position;

/// Errors of SQL jobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A mistake in the job file, where it is.
    #[error("{at}: {message}")]
    At {
        /// Where.
        at: Position,
        /// What is wrong, with a hint where one helps.
        message: String,
    },
    /// The job file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The planned job failed while running.
    #[error(transparent)]
    Run(#[from] rill_streams::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
