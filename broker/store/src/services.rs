//! The store's background threads: the flusher (group commit), the
//! dispatcher (CommitLog → ConsumeQueues and index) and the housekeeper
//! (checkpoints and retention).
//!
//! They are plain OS threads rather than async tasks: their work is
//! blocking file I/O (`fdatasync`, page faults on mapped files), and the
//! store must not depend on any particular async runtime. Each thread exits
//! when `Inner::shutdown` is set; the dispatcher first drains what was
//! written.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::config::FlushConfig;
use crate::store::{FlushState, Inner};

/// A wake-up flag with a condition variable: `notify` is cheap when the
/// flag is already set, so appends can call it every time.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    /// Sets the flag and wakes the waiting thread.
    pub fn notify(&self) {
        let mut p = self.pending.lock();
        if !*p {
            *p = true;
            self.cv.notify_one();
        }
    }

    /// Waits until notified or `timeout` passes; clears and returns the flag.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut p = self.pending.lock();
        if !*p {
            self.cv.wait_for(&mut p, timeout);
        }
        std::mem::take(&mut *p)
    }
}

/// Starts the background threads.
pub(crate) fn start(inner: &Arc<Inner>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let spawn = |name: &str, f: fn(Arc<Inner>)| {
        let inner = Arc::clone(inner);
        std::thread::Builder::new().name(name.into()).spawn(move || f(inner))
    };
    Ok(vec![
        spawn("rill-store-flush", flusher)?,
        spawn("rill-store-dispatch", dispatcher)?,
        spawn("rill-store-housekeep", housekeeper)?,
    ])
}

/// Flushes the CommitLog: on demand in sync mode (every waiting append
/// shares the next `fdatasync`), periodically in async mode.
fn flusher(inner: Arc<Inner>) {
    let period = match inner.config.flush {
        FlushConfig::Async { interval_ms } => Duration::from_millis(interval_ms),
        FlushConfig::Sync {} => Duration::from_millis(50),
    };
    loop {
        let shutdown = inner.shutdown.load(Ordering::Acquire);
        if !shutdown {
            inner.flush_signal.wait(period);
        }
        match inner.log.flush() {
            Ok(flushed) => {
                inner.flush_tx.send_if_modified(|s| {
                    let moved = flushed > s.flushed;
                    s.flushed = s.flushed.max(flushed);
                    moved
                });
            }
            Err(e) => {
                let flushed = inner.log.flushed();
                inner.flush_tx.send_replace(FlushState { flushed, error: Some(Arc::new(e)) });
                // Poisoned: nothing more will be written; keep serving reads.
                if shutdown {
                    return;
                }
                std::thread::sleep(period);
            }
        }
        if shutdown {
            return;
        }
    }
}

/// Follows the CommitLog and writes queue and index entries.
fn dispatcher(inner: Arc<Inner>) {
    let mut next = inner.dispatched.load(Ordering::Acquire);
    loop {
        let shutdown = inner.shutdown.load(Ordering::Acquire);
        let committed = inner.log.committed();
        let mut failed = false;
        let mut since_publish = 0u32;
        while next < committed {
            let mut outcome = Ok(());
            match inner.log.visit(next, |v| outcome = inner.dispatch_record(v)) {
                Ok(after) if outcome.is_ok() => next = after,
                Ok(_) => {
                    if let Err(e) = outcome {
                        tracing::error!(offset = next, error = %e, "cannot dispatch record; will retry");
                    }
                    failed = true;
                    break;
                }
                Err(e) => {
                    tracing::error!(offset = next, error = %e, "cannot read record to dispatch; will retry");
                    failed = true;
                    break;
                }
            }
            since_publish += 1;
            if since_publish == 256 {
                publish(&inner, next);
                since_publish = 0;
            }
        }
        publish(&inner, next);
        if shutdown && (next >= committed || failed) {
            return;
        }
        let wait = if failed { Duration::from_secs(1) } else { Duration::from_millis(100) };
        inner.dispatch_signal.wait(wait);
    }
}

fn publish(inner: &Inner, next: u64) {
    inner.dispatched.store(next, Ordering::Release);
    inner.dispatch_tx.send_if_modified(|d| {
        let moved = next > *d;
        *d = next;
        moved
    });
}

/// Writes checkpoints and runs retention on their schedules.
fn housekeeper(inner: Arc<Inner>) {
    let cp_every = Duration::from_millis(inner.config.checkpoint_interval_ms);
    let ret_every = Duration::from_millis(inner.config.retention.check_interval_ms);
    let (mut next_cp, mut next_ret) = (Instant::now() + cp_every, Instant::now() + ret_every);
    while !inner.shutdown.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= next_cp {
            if let Err(e) = inner.write_checkpoint() {
                tracing::error!(error = %e, "cannot write checkpoint");
            }
            next_cp = now + cp_every;
        }
        if now >= next_ret {
            match inner.run_retention() {
                Ok(r) if !r.deleted.is_empty() => {
                    tracing::info!(deleted = r.deleted.len(), min_offset = r.min_offset, "retention deleted segments")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention failed"),
            }
            next_ret = now + ret_every;
        }
        std::thread::park_timeout(next_cp.min(next_ret).saturating_duration_since(Instant::now()));
    }
}
