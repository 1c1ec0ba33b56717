//! The source contract connectors implement (a file tail, HTTP ingest,
//! MQTT, a database's change log): rows of a declared schema, and a
//! position that checkpoints store with the job's state. The runner polls
//! each source in a task of its own and hands its rows to the job's loop
//! as it does a topic's; on a restart the source continues from the
//! position of the checkpoint the job restored, so with a two-phase sink
//! the output is exactly-once.
//!
//! It owns the contract only; what a position means is the source's.

use std::future::Future;
use std::pin::Pin;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use rill_time::WatermarkConfig;

use crate::Result;

/// What [`Source::poll`] returns: rows, or `None` when there are none yet.
pub type Polled<'a> = Pin<Box<dyn Future<Output = Result<Option<RecordBatch>>> + Send + 'a>>;

/// Rows from outside the broker (see the module docs).
pub trait Source: Send {
    /// The schema of its rows (the job source's).
    fn schema(&self) -> SchemaRef;
    /// Begins after `position` (a checkpoint's) or, without one, where the
    /// source is configured to begin.
    fn start(&mut self, position: Option<&str>) -> Result<()>;
    /// The next rows, waiting a short while at most; `None` if none came.
    fn poll(&mut self) -> Polled<'_>;
    /// Where the rows returned so far end: what a checkpoint stores.
    fn position(&self) -> String;
    /// Whether no rows will ever come again (a bounded source read to its end).
    fn finished(&self) -> bool {
        false
    }
    /// A checkpoint covering everything up to `position` is stored: the
    /// source may now let go of it upstream (acknowledge, delete, commit).
    fn committed(&mut self, _position: &str) -> Result<()> {
        Ok(())
    }
}

/// A source feeding one of the job's sources.
pub struct SourceInput {
    /// The job's source it feeds.
    pub source: String,
    /// The rows' event-time column.
    pub event_time: String,
    /// Event-time progress of its rows.
    pub watermarks: WatermarkConfig,
    /// The source.
    pub inner: Box<dyn Source>,
}

impl std::fmt::Debug for SourceInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceInput")
            .field("source", &self.source)
            .field("event_time", &self.event_time)
            .finish_non_exhaustive()
    }
}

/// Batches from memory, one per poll, then finished; its position is the
/// number of batches handed out. For tests, examples and replays.
#[derive(Debug, Clone)]
pub struct VecSource {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    next: usize,
}

impl VecSource {
    /// A source of `batches` (each of `schema`).
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self { schema, batches, next: 0 }
    }
}

impl Source for VecSource {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    fn start(&mut self, position: Option<&str>) -> Result<()> {
        self.next = match position {
            None => 0,
            Some(p) => p.parse().map_err(|_| crate::Error::Source(format!("position '{p}' is not a batch number")))?,
        };
        Ok(())
    }

    fn poll(&mut self) -> Polled<'_> {
        let batch = self.batches.get(self.next).cloned();
        if batch.is_some() {
            self.next += 1;
        }
        Box::pin(async move { Ok(batch) })
    }

    fn position(&self) -> String {
        self.next.to_string()
    }

    fn finished(&self) -> bool {
        self.next >= self.batches.len()
    }
}
