//! The sink contract connectors implement, and two sinks every job can
//! use: a closure and an in-memory collector.
//!
//! A sink receives result batches between checkpoints. At a checkpoint
//! barrier it is asked to `prepare` (make what it wrote so far durable but
//! not yet visible, or verify an idempotent write landed); once the whole
//! checkpoint is stored it is told to `commit`. A sink that cannot take
//! rows returns an error; the runtime retries with backoff and then fails
//! the checkpoint — it never drops the rows.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;

use crate::Result;
use crate::decode::DeadLetter;

/// Where results go (see the module docs).
pub trait Sink: Send {
    /// Takes a batch of results.
    fn write(&mut self, batch: RecordBatch) -> Result<()>;
    /// Checkpoint `id` is being taken: everything written so far belongs to it.
    fn prepare(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }
    /// Checkpoint `id` is stored: what it covers may become visible.
    fn commit(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }
    /// The job restarts from checkpoint `last` (`None`: from scratch):
    /// finish what was prepared for it and earlier, discard anything later.
    fn recover(&mut self, _last: Option<u64>) -> Result<()> {
        Ok(())
    }
    /// Rows the sink refused since last asked (a document the index
    /// rejects), each with its reason: they become the job's dead letters.
    fn rejected(&mut self) -> Vec<DeadLetter> {
        Vec::new()
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        (**self).write(batch)
    }
    fn prepare(&mut self, id: u64) -> Result<()> {
        (**self).prepare(id)
    }
    fn commit(&mut self, id: u64) -> Result<()> {
        (**self).commit(id)
    }
    fn recover(&mut self, last: Option<u64>) -> Result<()> {
        (**self).recover(last)
    }
    fn rejected(&mut self) -> Vec<DeadLetter> {
        (**self).rejected()
    }
}

/// Wraps a sink that may refuse rows for a while (a database restarting):
/// refused batches are kept, in order, and offered again with each later
/// write; at a checkpoint they are retried with exponential backoff, and if
/// the sink still refuses them the checkpoint fails (the job stops and
/// restarts from the previous one) — rows are never dropped.
#[derive(Debug)]
pub struct RetryingSink<S> {
    inner: S,
    pending: std::collections::VecDeque<RecordBatch>,
    attempts: u32,
    backoff: std::time::Duration,
}

impl<S: Sink> RetryingSink<S> {
    /// Retries `inner` up to `attempts` times at a checkpoint, starting `backoff` apart.
    pub fn new(inner: S, attempts: u32, backoff: std::time::Duration) -> Self {
        Self { inner, pending: std::collections::VecDeque::new(), attempts, backoff }
    }

    /// Batches refused so far and not yet taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn drain(&mut self) -> Result<()> {
        while let Some(b) = self.pending.front() {
            self.inner.write(b.clone())?;
            self.pending.pop_front();
        }
        Ok(())
    }
}

impl<S: Sink> Sink for RetryingSink<S> {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.pending.push_back(batch);
        if let Err(e) = self.drain() {
            tracing::warn!(error = %e, pending = self.pending.len(), "the sink refused rows; keeping them to retry");
        }
        Ok(())
    }

    fn prepare(&mut self, id: u64) -> Result<()> {
        let mut wait = self.backoff;
        let mut last = None;
        for attempt in 0..=self.attempts {
            match self.drain() {
                Ok(()) => return self.inner.prepare(id),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, checkpoint = id, "the sink still refuses rows");
                    last = Some(e);
                }
            }
            if attempt < self.attempts {
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
        }
        Err(crate::Error::Sink(format!(
            "checkpoint {id} failed: {} batches not accepted after {} retries: {}",
            self.pending.len(),
            self.attempts,
            last.map_or_else(String::new, |e| e.to_string())
        )))
    }

    fn commit(&mut self, id: u64) -> Result<()> {
        self.inner.commit(id)
    }

    fn recover(&mut self, last: Option<u64>) -> Result<()> {
        self.pending.clear();
        self.inner.recover(last)
    }

    fn rejected(&mut self) -> Vec<DeadLetter> {
        self.inner.rejected()
    }
}

/// A closure as a sink (at-least-once: it sees rows as they come).
pub struct FnSink<F>(pub F);

impl<F> std::fmt::Debug for FnSink<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnSink")
    }
}

impl<F> Sink for FnSink<F>
where
    F: FnMut(RecordBatch) + Send,
{
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        (self.0)(batch);
        Ok(())
    }
}

/// Collects results in memory; clones share the rows (handy in tests and examples).
#[derive(Debug, Clone, Default)]
pub struct CollectSink {
    batches: Arc<Mutex<Vec<RecordBatch>>>,
}

impl CollectSink {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every batch collected so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Rows collected so far.
    pub fn rows(&self) -> usize {
        self.batches.lock().map(|b| b.iter().map(RecordBatch::num_rows).sum()).unwrap_or(0)
    }

    /// The collected rows as one batch of `schema`.
    pub fn concat(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        Ok(concat_batches(schema, &self.batches())?)
    }
}

impl Sink for CollectSink {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if let Ok(mut b) = self.batches.lock() {
            b.push(batch);
        }
        Ok(())
    }
}
