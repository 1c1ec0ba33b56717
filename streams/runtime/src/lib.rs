//! Rill's streaming runtime: data moves as Arrow `RecordBatch`
//! micro-batches through operators; expressions and aggregate functions are
//! DataFusion's, the streaming parts (windows, watermarks, state) are ours
//! (event-time arithmetic in `rill-time`).
//!
//! A job is written with the DSL ([`dsl::Job`], [`dsl::Stream`]) and runs
//! as a [`dataflow::Dataflow`] of [`operator::Operator`]s: row filters and
//! projections, closures, unions, dedup, keyed event-time window
//! aggregation, top-N per window, interval / regular / window / temporal
//! joins, lookup joins against external tables, and
//! [`sink::Sink`]s. JSON message bodies become rows of a declared schema
//! with metadata columns and dead letters ([`decode::Decoder`]); a
//! [`pipeline::Pipeline`] runs a window aggregation from a broker topic.
//! State is checkpointed together with source offsets ([`checkpoint`]).

mod buffers;
pub mod changelog;
pub mod checkpoint;
pub mod dataflow;
pub mod decode;
pub mod dedup;
pub mod dsl;
pub mod file_sink;
pub mod join;
pub mod lookup;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod rows;
pub mod runner;
pub mod sink;
pub mod source;
mod spill;
pub mod temporal;
pub mod topn;
pub mod window_agg;

pub use changelog::{GroupAggregate, LastRow, OP_COLUMN};
pub use checkpoint::{Checkpoint, CheckpointStore};
pub use dataflow::{Dataflow, NodeMetrics, Snapshot};
pub use decode::{DeadLetter, Decoded, Decoder, Format, Metadata, Origin, SourceRecord};
pub use dedup::Dedup;
pub use dsl::{Job, Stream};
pub use file_sink::JsonFileSink;
pub use lookup::{Lookup, LookupConfig, LookupJoin};
pub use operator::{Operator, Output};
pub use pipeline::Pipeline;
pub use rill_state::StateConfig;
pub use rows::{FilterRows, Project};
pub use runner::{DeadLetterPolicy, JobStatus, Member, RunReport, Runner, RunnerConfig, TopicInput};
pub use sink::{CollectSink, FnSink, RetryingSink, Sink};
pub use source::{Polled, Source, SourceInput, VecSource};
pub use temporal::TemporalJoin;
pub use window_agg::{Aggregate, WindowAggregate, WindowAggregateConfig, Windows, agg};

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
    /// A checkpoint could not be written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A sink refused rows (after its retries).
    #[error("sink: {0}")]
    Sink(String),
    /// Window or watermark settings were refused.
    #[error(transparent)]
    Time(#[from] rill_time::Error),
    /// A lookup in an external table failed (after its retries).
    #[error("lookup: {0}")]
    Lookup(String),
    /// Keyed state could not be kept (its spill file failed).
    #[error(transparent)]
    State(#[from] rill_state::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
