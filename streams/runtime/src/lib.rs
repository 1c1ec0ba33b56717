//! Rill's streaming runtime: data moves as Arrow `RecordBatch`
//! micro-batches through operators; expressions and aggregate functions are
//! DataFusion's, the streaming parts (windows, watermarks, state) are ours
//! (event-time arithmetic in `rill-time`).
//!
//! Built so far: JSON message bodies into a declared Arrow schema with
//! metadata columns and dead letters ([`decode::JsonDecoder`]), keyed
//! event-time window aggregation ([`window_agg::WindowAggregate`]) and a
//! first [`pipeline::Pipeline`] from a broker topic to a sink. Sources, state with checkpoints, the
//! DSL and the other operators are to come.

pub mod decode;
pub mod dedup;
pub mod pipeline;
pub mod rows;
pub mod window_agg;

pub use decode::{DeadLetter, Decoded, JsonDecoder, Metadata, SourceRecord};
pub use dedup::Dedup;
pub use pipeline::{Pipeline, RunReport};
pub use rows::{FilterRows, Project};
pub use window_agg::{Aggregate, WindowAggregate, WindowAggregateConfig, Windows};

/// Errors of the streaming runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipeline does not fit its input (a missing column, a wrong type).
    #[error("invalid pipeline: {0}")]
    Plan(String),
    /// Arrow failed on a batch.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A DataFusion function failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The broker source failed.
    #[error("broker source: {0}")]
    Source(String),
    /// Window or watermark settings were refused.
    #[error(transparent)]
    Time(#[from] rill_time::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
