//! Delay and timer messages: the loop that moves parked messages onto their
//! real topics when they fall due.
//!
//! A send with a future delivery time is stored on [`TIMER_TOPIC`] (see the
//! send path) with its real topic, queue and due time as properties. This
//! loop follows that topic's queue, schedules an entry per message on the
//! persistent [`TimerWheel`] (its position in the queue is the wheel's
//! checkpointed `source`), and when an entry falls due stores a copy on the
//! real topic. Parked copies older than `repark_after` are parked again so
//! that retention never deletes a pending timer's message.
//!
//! Durability: the wheel is checkpointed only after the CommitLog holding
//! the copies made so far is flushed, so a crash repeats deliveries since
//! the last checkpoint (at least once) and never loses one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rill_common::TopicName;
use rill_store::ReadStatus;
use rill_store::timer::{Fired, TimerEntry, TimerWheel};

use crate::park::{self, TIMER_TOPIC, props};
use crate::{Broker, Error};

/// Parked messages read per step.
const INGEST_BATCH: usize = 1024;
/// Due timers handled per step.
const FIRE_BATCH: usize = 4096;
/// How often the wheel is checkpointed while it changes.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Opens the broker's timer wheel below the store's data directory.
pub fn open_wheel(broker: &Broker) -> Result<TimerWheel, Error> {
    let cfg = &broker.config.timer;
    let base = (cfg.precision.as_millis() as i64).max(1);
    // The top level waits at most a quarter of `repark_after`, so an old
    // copy is noticed soon after it ages past that.
    let top = (cfg.repark_after.as_millis() as i64 / 4).max(base);
    let levels = (64 - (top / base).leading_zeros()).clamp(1, 40);
    Ok(TimerWheel::open(&broker.store.config().data_dir.join("timer"), base, levels)?)
}

/// Runs the timer loop until the broker stops serving; after a failure
/// (logged at once) it starts again from the wheel's last checkpoint.
pub async fn supervise(broker: Arc<Broker>) -> Result<(), Error> {
    let mut stopping = broker.stopping();
    loop {
        match run(Arc::clone(&broker)).await {
            Ok(()) => return Ok(()),
            Err(e) => tracing::error!(error = %e, "the timer loop failed; restarting it from its last checkpoint"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopping.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Runs the timer loop until the broker stops serving.
pub async fn run(broker: Arc<Broker>) -> Result<(), Error> {
    let wheel = open_wheel(&broker)?;
    tracing::info!(pending = wheel.pending(), "timer wheel open");
    let mut t = Timers { broker, wheel: Arc::new(Mutex::new(wheel)), unsent: Vec::new(), dirty: false };
    // Woken when a message is parked (not on every stored message: that
    // would run this loop thousands of times a second under load).
    let parked = Arc::clone(&t.broker.timer_wake);
    let mut stopping = t.broker.stopping();
    let mut source = t.wheel.lock().source();
    let mut last_checkpoint = Instant::now();
    loop {
        let stop = *stopping.borrow_and_update();
        let busy = t.step(&mut source).await?;
        if (t.dirty && last_checkpoint.elapsed() >= CHECKPOINT_EVERY) || stop {
            t.checkpoint(source).await?;
            last_checkpoint = Instant::now();
        }
        if stop {
            return Ok(());
        }
        if busy {
            tokio::task::yield_now().await;
            continue;
        }
        let now = t.broker.clock.now_millis();
        let precision = t.broker.config.timer.precision;
        let next = t.wheel.lock().next_hop()?;
        let wait = match next {
            Some(at) => {
                Duration::from_millis((at - now).clamp(1, 1000) as u64).min(precision.max(Duration::from_millis(1)))
            }
            None => Duration::from_secs(1),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = parked.notified() => {}
            _ = stopping.changed() => {}
        }
    }
}

struct Timers {
    broker: Arc<Broker>,
    /// Shared with the blocking thread that checkpoints it.
    wheel: Arc<Mutex<TimerWheel>>,
    /// Copies whose store failed, tried again before anything else.
    unsent: Vec<rill_store::MessageToStore>,
    /// Something changed since the last checkpoint.
    dirty: bool,
}

impl Timers {
    /// Ingests newly parked messages and delivers due ones; true when there
    /// may be more to do at once.
    async fn step(&mut self, source: &mut u64) -> Result<bool, Error> {
        let broker = Arc::clone(&self.broker);
        let now = broker.clock.now_millis();
        let mut copies = std::mem::take(&mut self.unsent);
        let read = broker.store.read_queue(TIMER_TOPIC, 0, *source, INGEST_BATCH)?;
        let ingested = read.messages.len();
        for m in &read.messages {
            let entry = TimerEntry {
                due_ms: park::due_ms(m).unwrap_or(now),
                offset: m.physical_offset,
                size: m.record_size,
                parked_s: (m.store_timestamp / 1000).clamp(0, i64::from(u32::MAX)) as u32,
            };
            if entry.due_ms <= now {
                copies.extend(self.unpark(m));
            } else {
                self.wheel.lock().schedule(entry, now);
            }
        }
        if matches!(read.status, ReadStatus::Found | ReadStatus::OffsetMoved | ReadStatus::OffsetOverflow) {
            *source = read.next_offset.max(*source);
        }
        let repark_ms = broker.config.timer.repark_after.as_millis() as i64;
        let park_before = ((now - repark_ms) / 1000).clamp(0, i64::from(u32::MAX)) as u32;
        let fired = self.wheel.lock().poll(now, park_before, FIRE_BATCH)?;
        let (mut delivered, mut lost) = (0u64, 0u64);
        for f in &fired {
            let (Fired::Due(e) | Fired::Repark(e)) = *f;
            let m = match broker.store.read(e.offset) {
                Ok(m) => m,
                Err(err) => {
                    lost += 1;
                    tracing::error!(offset = e.offset, due_ms = e.due_ms, error = %err, "a delayed message's parked copy is gone");
                    continue;
                }
            };
            match f {
                Fired::Due(_) => {
                    if let Some(c) = self.unpark(&m) {
                        delivered += 1;
                        copies.push(c);
                    }
                }
                Fired::Repark(_) => {
                    let topic = TopicName::new(TIMER_TOPIC).map_err(rill_store::Error::from)?;
                    copies.push(park::copy(&m, topic, 0));
                }
            }
        }
        let moved = !copies.is_empty();
        if moved && let Err(r) = broker.store_copies(copies.clone()).await {
            tracing::error!(error = %r.message, n = copies.len(), "cannot store due delayed messages; retrying");
            self.unsent = copies;
        }
        if ingested > 0 || !fired.is_empty() || moved {
            self.dirty = true;
        }
        broker.metrics.timers(delivered, lost, self.wheel.lock().pending());
        Ok(ingested == INGEST_BATCH || fired.len() == FIRE_BATCH)
    }

    /// The copy of a parked message for its real topic, if that still exists.
    fn unpark(&self, m: &rill_store::StoredMessage) -> Option<rill_store::MessageToStore> {
        let real = m.properties.get(props::REAL_TOPIC)?;
        let queues = match self.broker.meta.topic(real) {
            Some(cfg) => cfg.write_queues.max(1),
            None => {
                tracing::warn!(topic = real, "dropping a delayed message: its topic no longer exists");
                return None;
            }
        };
        let queue = m.properties.get(props::REAL_QID).and_then(|q| q.parse::<u32>().ok()).unwrap_or(0) % queues;
        let topic = TopicName::new(real).ok()?;
        let mut copy = park::copy(m, topic, queue);
        copy.properties.remove(props::REAL_TOPIC);
        copy.properties.remove(props::REAL_QID);
        if real.starts_with(park::RETRY_PREFIX) {
            // A retry waited its delay; it is not a delay message.
            copy.properties.remove(props::TIMER_DELIVER_MS);
        }
        Some(copy)
    }

    /// Flushes the CommitLog (the copies made so far), then checkpoints the
    /// wheel at `source` on a blocking thread.
    async fn checkpoint(&mut self, source: u64) -> Result<(), Error> {
        if !self.unsent.is_empty() {
            return Ok(());
        }
        let store = self.broker.store.clone();
        let wheel = Arc::clone(&self.wheel);
        let result =
            tokio::task::spawn_blocking(move || store.flush_now().and_then(|_| wheel.lock().checkpoint(source)))
                .await
                .map_err(|e| Error::Task(format!("timer checkpoint: {e}")))?;
        result?;
        self.dirty = false;
        Ok(())
    }
}
