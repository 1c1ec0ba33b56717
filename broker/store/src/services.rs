//! The store's background threads: the flusher (group commit), the
//! dispatcher (CommitLog → ConsumeQueues and index), the window preparer
//! (maps the CommitLog write windows the writer needs next and unmaps the
//! ones it left) and the housekeeper (checkpoints and retention).
//!
//! They are plain OS threads rather than async tasks: their work is
//! blocking file I/O (`fdatasync`, page faults on mapped files), and the
//! store must not depend on any particular async runtime. Each thread exits
//! when `Inner::shutdown` is set; the dispatcher first drains what was
//! written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::config::FlushConfig;
use crate::error::Error;
use crate::store::Inner;

/// Wakes a background thread that sleeps when it has nothing to do.
///
/// `notify` costs one fence and one load while the thread is awake, so
/// appends can call it every time; only a sleeping thread is woken through
/// the mutex and condition variable. The sleeper announces itself before it
/// re-checks its condition, and the notifier publishes its data before it
/// looks, so a wake-up is never lost (the classic store-fence-load pairing).
#[derive(Debug, Default)]
pub(crate) struct Signal {
    pending: Mutex<bool>,
    cv: Condvar,
    sleeping: AtomicBool,
}

impl Signal {
    /// Wakes the thread if it sleeps.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    /// Wakes the thread whether or not it sleeps (shutdown).
    pub fn wake(&self) {
        let mut p = self.pending.lock();
        *p = true;
        self.cv.notify_one();
    }

    /// Sleeps up to `timeout` unless woken or `idle` turns false.
    pub fn sleep_while(&self, timeout: Duration, idle: impl Fn() -> bool) {
        let mut p = self.pending.lock();
        self.sleeping.store(true, Ordering::SeqCst);
        if !*p && idle() {
            self.cv.wait_for(&mut p, timeout);
        }
        self.sleeping.store(false, Ordering::Relaxed);
        *p = false;
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
        spawn("rill-store-prefault", prefaulter)?,
    ])
}

/// Flushes the CommitLog: on demand in sync mode (every waiting append
/// shares the next `fdatasync`), periodically in async mode.
fn flusher(inner: Arc<Inner>) {
    let sync = inner.config.flush.is_sync();
    let period = match inner.config.flush {
        FlushConfig::Async { interval_ms } => Duration::from_millis(interval_ms),
        FlushConfig::Sync {} => Duration::from_millis(50),
    };
    let mut batch = GroupCommit::default();
    loop {
        let shutdown = inner.shutdown.load(Ordering::Acquire);
        let gather_began = Instant::now();
        if !shutdown {
            if sync {
                batch.gather(&inner, period);
            } else {
                inner.flush_signal.sleep_while(period, || !inner.shutdown.load(Ordering::Acquire));
            }
        }
        batch.start(&inner);
        let began = Instant::now();
        match inner.log.flush() {
            Ok(flushed) => {
                batch.last_flush = began.elapsed();
                inner.flush_progressed();
                if sync {
                    // Newly durable records may now be dispatched.
                    inner.dispatch_signal.notify();
                }
                tracing::trace!(
                    waiters = batch.last_batch,
                    micros = batch.last_flush.as_micros() as u64,
                    gathered_micros = (began - gather_began).as_micros() as u64,
                    flushed,
                    "flushed"
                );
            }
            Err(e) => {
                if let Error::Poisoned { path, source } = &e {
                    *inner.flush_failure.lock() = Some((path.clone(), Arc::clone(source)));
                }
                tracing::error!(error = %e, "CommitLog flush failed");
                inner.flush_progressed();
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

/// Group-commit pacing, in the spirit of PostgreSQL's `commit_delay`.
///
/// Appends that wait for a flush count themselves in `flush_arrivals` and
/// wake the flusher only once the count reaches `flush_wake_at`. After a
/// flush the flusher first waits for one arrival; then, if the last flush
/// covered several waiters, for as many again (they come back as a burst),
/// bounded by half the last flush's duration. The burst then shares one
/// `fdatasync` instead of being split over two.
#[derive(Debug, Default)]
struct GroupCommit {
    /// Arrivals counted when the current flush started.
    started_at: u64,
    /// Waiters the last flush covered.
    last_batch: u64,
    /// How long the last flush took.
    last_flush: Duration,
}

impl GroupCommit {
    fn gather(&self, inner: &Inner, period: Duration) {
        let stop = || inner.shutdown.load(Ordering::Acquire);
        if self.last_batch >= 2 {
            // A burst is expected within microseconds: watching for it costs
            // less than a sleep and a wake-up on each side.
            let until = self.started_at + self.last_batch;
            let spin_until = Instant::now() + Duration::from_micros(100).min(self.last_flush / 2);
            while inner.flush_arrivals.load(Ordering::SeqCst) < until && Instant::now() < spin_until && !stop() {
                std::thread::yield_now();
            }
        }
        self.wait_for_arrivals(inner, self.started_at + 1, period, stop);
        if self.last_batch >= 2 {
            let budget = (self.last_flush / 2).min(Duration::from_millis(2));
            self.wait_for_arrivals(inner, self.started_at + self.last_batch, budget, stop);
        }
        inner.flush_wake_at.store(u64::MAX, Ordering::SeqCst);
    }

    fn wait_for_arrivals(&self, inner: &Inner, until: u64, budget: Duration, stop: impl Fn() -> bool) {
        if inner.flush_arrivals.load(Ordering::SeqCst) >= until {
            return;
        }
        inner.flush_wake_at.store(until, Ordering::SeqCst);
        let deadline = Instant::now() + budget;
        loop {
            let now = Instant::now();
            if inner.flush_arrivals.load(Ordering::SeqCst) >= until || now >= deadline || stop() {
                return;
            }
            inner
                .flush_signal
                .sleep_while(deadline - now, || inner.flush_arrivals.load(Ordering::SeqCst) < until && !stop());
        }
    }

    fn start(&mut self, inner: &Inner) {
        let now = inner.flush_arrivals.load(Ordering::SeqCst);
        self.last_batch = now - self.started_at;
        self.started_at = now;
    }
}

/// Follows the CommitLog and writes queue and index entries.
fn dispatcher(inner: Arc<Inner>) {
    let mut next = inner.dispatched.load(Ordering::Acquire);
    let mut last = None;
    // Under sync flush, consumers see a record only once it is on disk: a
    // record lost to a power cut must not have been consumed and acknowledged.
    let sync = inner.config.flush.is_sync();
    let visible = || if sync { inner.log.flushed() } else { inner.log.committed() };
    loop {
        let shutdown = inner.shutdown.load(Ordering::Acquire);
        let committed = visible();
        let mut failed = false;
        let mut since_publish = 0u32;
        while next < committed {
            let mut outcome = Ok(());
            match inner.log.visit(next, |v| outcome = inner.dispatch_record(v, &mut last)) {
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
        if failed {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        // Under sync flush the next group is microseconds away: look again
        // briefly before paying for a sleep and a wake-up (on a virtual
        // machine, waking an idle CPU alone costs tens of µs). Under async
        // flush appends never wait for the dispatcher, and spinning would
        // only take a core from the threads that serve clients.
        let spin_until = Instant::now() + if sync { Duration::from_micros(250) } else { Duration::ZERO };
        while visible() <= next && Instant::now() < spin_until && !inner.shutdown.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        inner
            .dispatch_signal
            .sleep_while(Duration::from_millis(100), || visible() <= next && !inner.shutdown.load(Ordering::Acquire));
    }
}

fn publish(inner: &Inner, next: u64) {
    inner.dispatched.store(next, Ordering::Release);
    let ready = {
        let mut waiters = inner.dispatch_waiters.lock();
        let later = waiters.split_off(&(next + 1));
        std::mem::replace(&mut *waiters, later)
    };
    for tx in ready.into_values().flatten() {
        let _ = tx.send(());
    }
    inner.dispatch_tx.send_if_modified(|d| {
        let moved = next > *d;
        *d = next;
        moved
    });
}

/// Maps and faults in the CommitLog window the writer needs next, so that
/// an append is a plain `memcpy` instead of a page fault every few messages.
fn prefaulter(inner: Arc<Inner>) {
    while !inner.shutdown.load(Ordering::Acquire) {
        inner.log.prepare_windows();
        // The condition is checked after the thread announced its sleep, so
        // a request made meanwhile is not lost.
        inner.prefault_signal.sleep_while(Duration::from_millis(100), || {
            !inner.shutdown.load(Ordering::Acquire) && !inner.log.windows_pending()
        });
    }
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
