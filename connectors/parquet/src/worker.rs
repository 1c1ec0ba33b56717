//! The sink's writer thread. The sink contract is synchronous, so without
//! it a job would decode a batch, then split and encode it, then decode
//! the next: one core taking turns. Here writes are queued (a few batches
//! at most, so memory stays bounded and a slow disk slows the job) and
//! done by the thread while the job goes on; checkpoint steps (prepare,
//! commit, recover) wait for the queue to drain and answer with their
//! result. A write that fails is reported by the next call, and prepare
//! fails with it, so no checkpoint covers rows that were not written.
//!
//! It owns the thread and its queue; what a write does is [`Files`]'.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::arrow::array::RecordBatch;

use crate::{Error, Files, Result};

/// Batches queued at most before a write waits.
const QUEUED: usize = 4;

type Reply = mpsc::Sender<Result<()>>;

/// What the thread is asked to do, in order.
enum Job {
    Write(RecordBatch),
    Prepare(u64, Reply),
    Commit(u64, Reply),
    Recover(Option<u64>, Reply),
}

/// The first failed write's reason since the last recovery.
type Failure = Arc<Mutex<Option<String>>>;

/// The thread and its queue (see the module docs).
pub(crate) struct Worker {
    jobs: Option<SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    failed: Failure,
}

fn stopped() -> Error {
    Error::Write("the sink's writer thread has stopped".into())
}

impl Worker {
    /// Starts the thread that writes `files`.
    pub(crate) fn start(files: Files) -> Result<Self> {
        let (jobs, queue) = mpsc::sync_channel(QUEUED);
        let failed: Failure = Arc::default();
        let seen = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("parquet-sink".into())
            .spawn(move || run(files, &queue, &seen))
            .map_err(|e| Error::Io(format!("cannot start the sink's writer thread: {e}")))?;
        Ok(Self { jobs: Some(jobs), thread: Some(thread), failed })
    }

    /// A failed write's error, if one failed.
    fn check(&self) -> Result<()> {
        match self.failed.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(reason) => Err(Error::Write(reason.clone())),
            None => Ok(()),
        }
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())
    }

    /// Queues `batch` (waits while the queue is full).
    pub(crate) fn write(&self, batch: RecordBatch) -> Result<()> {
        self.check()?;
        self.send(Job::Write(batch))
    }

    fn call(&self, job: impl FnOnce(Reply) -> Job) -> Result<()> {
        let (reply, answer) = mpsc::channel();
        self.send(job(reply))?;
        answer.recv().map_err(|_| stopped())?
    }

    /// Every queued write done, then [`Files::prepare`].
    pub(crate) fn prepare(&self, id: u64) -> Result<()> {
        self.call(|r| Job::Prepare(id, r))
    }

    /// [`Files::commit`], after what is queued.
    pub(crate) fn commit(&self, id: u64) -> Result<()> {
        self.call(|r| Job::Commit(id, r))
    }

    /// [`Files::recover`], after what is queued; earlier failures are forgotten.
    pub(crate) fn recover(&self, last: Option<u64>) -> Result<()> {
        self.call(|r| Job::Recover(last, r))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: jobs in order until the sink is dropped.
fn run(mut files: Files, queue: &Receiver<Job>, failed: &Failure) {
    let failure = || failed.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for job in queue {
        match job {
            Job::Write(batch) => {
                if failure().is_some() {
                    continue;
                }
                if let Err(e) = files.take(batch) {
                    *failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                }
            }
            Job::Prepare(id, reply) => {
                let done = match failure() {
                    Some(reason) => Err(Error::Write(reason)),
                    None => files.prepare(id),
                };
                let _ = reply.send(done);
            }
            Job::Commit(id, reply) => {
                let _ = reply.send(files.commit(id));
            }
            Job::Recover(last, reply) => {
                *failed.lock().unwrap_or_else(PoisonError::into_inner) = None;
                let _ = reply.send(files.recover(last));
            }
        }
    }
}
