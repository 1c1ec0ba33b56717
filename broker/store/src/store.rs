//! The [`Store`] facade: opening with recovery, appends with their
//! durability point, reads by offset, queue, time, key and id, retention
//! and clean close.
//!
//! It wires the CommitLog, the ConsumeQueues, the key index and the
//! checkpoint together; the background threads that move them forward live
//! in [`crate::services`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use rill_common::{Clock, SystemClock};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::checkpoint::{Checkpoint, CheckpointFile};
use crate::commitlog::{Appended, CommitLog, ScanReport};
use crate::config::StoreConfig;
use crate::consume_queue::{ConsumeQueues, CqEntry};
use crate::error::{Error, Result};
use crate::index::{self, KeyIndex};
use crate::record::{self, MessageToStore, Prepared, StoredMessage};
use crate::retention::{DiskUsage, RetentionReport, StatvfsDisk};
use crate::services::{self, Signal};
use crate::unpack;

/// Outcome of a read from a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadStatus {
    /// Messages were found (possibly fewer than asked, or none if all were filtered out).
    Found,
    /// The offset is the queue's end: nothing new yet.
    NoNewMessages,
    /// The offset was deleted by retention; resume from `min_offset`.
    OffsetMoved,
    /// The offset lies beyond the queue's end; resume from `max_offset`.
    OffsetOverflow,
    /// The queue has never received a message.
    NoSuchQueue,
}

/// Messages read from a queue, with where to continue.
#[derive(Debug, Clone)]
pub struct QueueRead {
    /// What happened.
    pub status: ReadStatus,
    /// The messages, in queue order.
    pub messages: Vec<StoredMessage>,
    /// The offset to read next.
    pub next_offset: u64,
    /// The queue's smallest available offset.
    pub min_offset: u64,
    /// One past the queue's last offset.
    pub max_offset: u64,
}

/// How the last open went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryInfo {
    /// The previous run did not close cleanly.
    pub unclean_shutdown: bool,
    /// Where the replay started.
    pub replayed_from: u64,
    /// Records replayed into queues and index.
    pub records_replayed: u64,
    /// Offset where a torn record was cut off.
    pub truncated_at: Option<u64>,
}

/// Bounds of one queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueueState {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// Smallest available offset.
    pub min_offset: u64,
    /// One past the last offset.
    pub max_offset: u64,
}

/// A summary of the store for people and scripts.
#[derive(Debug, Clone, Serialize)]
pub struct StoreState {
    /// Root directory.
    pub data_dir: PathBuf,
    /// Whether appends wait for fdatasync.
    pub sync_flush: bool,
    /// Oldest retained CommitLog offset.
    pub min_offset: u64,
    /// End of written data.
    pub committed: u64,
    /// End of flushed data.
    pub flushed: u64,
    /// End of data visible in queues.
    pub dispatched: u64,
    /// CommitLog segment files.
    pub segments: usize,
    /// Every queue's bounds, sorted.
    pub queues: Vec<QueueState>,
    /// Index files.
    pub index_files: usize,
    /// What the last open found.
    pub recovery: RecoveryInfo,
}

/// Why the log stopped accepting writes after a failed flush.
pub(crate) type FlushFailure = (PathBuf, Arc<std::io::Error>);

/// State shared with the background threads.
#[derive(Debug)]
pub(crate) struct Inner {
    pub config: StoreConfig,
    pub clock: Arc<dyn Clock>,
    pub disk: Arc<dyn DiskUsage>,
    pub log: CommitLog,
    pub queues: ConsumeQueues,
    pub index: KeyIndex,
    pub checkpoint: CheckpointFile,
    pub dispatched: AtomicU64,
    pub dispatch_tx: watch::Sender<u64>,
    /// Appends waiting until the dispatcher passes their offset, by offset.
    /// Each is woken exactly once (a `watch` would wake all of them at every
    /// step of the dispatcher).
    pub dispatch_waiters: Mutex<std::collections::BTreeMap<u64, Vec<tokio::sync::oneshot::Sender<()>>>>,
    /// Wakes appends waiting for a flush; see [`Store::wait_flushed`].
    pub flush_done: Notify,
    /// Set by the flusher before it wakes one waiter, which then wakes the rest.
    pub flush_relay: AtomicBool,
    /// Set when a flush failed; waiting appends report it.
    pub flush_failure: Mutex<Option<FlushFailure>>,
    pub flush_signal: Signal,
    /// Appends that have asked to wait for a flush, ever (for group commit).
    pub flush_arrivals: AtomicU64,
    /// The arrival count at which the flusher wants to be woken.
    pub flush_wake_at: AtomicU64,
    pub dispatch_signal: Signal,
    pub prefault_signal: Signal,
    pub shutdown: AtomicBool,
    /// Set once the background threads have exited.
    pub stopped: AtomicBool,
    pub retention_lock: Mutex<()>,
    pub recovery: RecoveryInfo,
}

/// The storage engine of one broker. Cheap to clone; clones share the store.
#[derive(Debug, Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

/// Owns the background threads; the last clone of a [`Store`] to go stops them.
#[derive(Debug)]
struct Handle {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Without close() the abort marker stays and the next open recovers.
        self.stop();
    }
}

impl Handle {
    /// Refuses further appends and joins the background threads (the
    /// dispatcher first drains what was written).
    fn stop(&self) {
        let inner = &self.inner;
        inner.log.close();
        inner.shutdown.store(true, Ordering::Release);
        inner.flush_signal.wake();
        inner.dispatch_signal.wake();
        inner.prefault_signal.wake();
        for t in self.threads.lock().drain(..) {
            t.thread().unpark();
            if t.join().is_err() {
                tracing::error!("a store thread panicked");
            }
        }
        inner.stopped.store(true, Ordering::Release);
        inner.flush_done.notify_waiters();
        // Whoever still waits for dispatch will not get it now.
        inner.dispatch_waiters.lock().clear();
    }
}

impl Inner {
    /// Whether the background threads have exited (no flush will come).
    pub(crate) fn threads_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Tells waiting appends that the flushed offset moved (or a flush failed).
    pub(crate) fn flush_progressed(&self) {
        self.flush_relay.store(true, Ordering::Release);
        self.flush_done.notify_one();
    }

    /// Flushes queues and index, then records progress in the checkpoint.
    pub(crate) fn write_checkpoint(&self) -> Result<()> {
        let dispatched = self.dispatched.load(Ordering::Acquire);
        for (_, q) in self.queues.all() {
            q.flush()?;
        }
        self.index.flush()?;
        let log_flushed = self.log.flushed();
        let cp =
            Checkpoint { log_flushed, dispatched: dispatched.min(log_flushed), written_at: self.clock.now_millis() };
        self.checkpoint.store(&cp)
    }
}

impl Store {
    /// Opens (creating if needed) the store, recovering from an unclean stop.
    pub fn open(config: StoreConfig) -> Result<Self> {
        Self::open_with(config, Arc::new(SystemClock), Arc::new(StatvfsDisk))
    }

    /// [`Store::open`] with an injected clock and disk-usage probe.
    pub fn open_with(config: StoreConfig, clock: Arc<dyn Clock>, disk: Arc<dyn DiskUsage>) -> Result<Self> {
        config.validate()?;
        let root = config.data_dir.clone();
        crate::mapped::ensure_dir(&root)?;
        let checkpoint = CheckpointFile::new(&root);
        let unclean = checkpoint.was_unclean();
        let cp = checkpoint.load()?;
        let log = CommitLog::open(
            root.join("commitlog"),
            config.segment_size,
            Arc::clone(&clock),
            config.verify_crc_on_read,
            config.flush.is_sync(),
        )?;
        let queues = ConsumeQueues::open(root.join("consumequeue"), config.consume_queue_entries_per_file)?;
        let index = KeyIndex::open(root.join("index"), config.index.slots, config.index.max_entries)?;
        let (dispatch_tx, _) = watch::channel(0);
        let mut inner = Inner {
            config,
            clock,
            disk,
            log,
            queues,
            index,
            checkpoint,
            dispatched: AtomicU64::new(0),
            dispatch_tx,
            dispatch_waiters: Mutex::new(std::collections::BTreeMap::new()),
            flush_done: Notify::new(),
            flush_relay: AtomicBool::new(false),
            flush_failure: Mutex::new(None),
            flush_signal: Signal::default(),
            flush_arrivals: AtomicU64::new(0),
            flush_wake_at: AtomicU64::new(1),
            dispatch_signal: Signal::default(),
            prefault_signal: Signal::default(),
            shutdown: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            retention_lock: Mutex::new(()),
            recovery: RecoveryInfo::default(),
        };
        let report = recover(&inner, cp)?;
        if unclean {
            tracing::warn!(
                from = report.from,
                end = report.end,
                replayed = report.records,
                truncated_at = ?report.truncated_at,
                "recovered after an unclean shutdown"
            );
        }
        inner.recovery = RecoveryInfo {
            unclean_shutdown: unclean,
            replayed_from: report.from,
            records_replayed: report.records,
            truncated_at: report.truncated_at,
        };
        inner.dispatched.store(report.end, Ordering::Release);
        inner.dispatch_tx.send_replace(report.end);
        inner.write_checkpoint()?;
        inner.checkpoint.mark_open()?;
        let inner = Arc::new(inner);
        let threads = services::start(&inner).map_err(Error::io("start threads for", &inner.config.data_dir))?;
        Ok(Self { handle: Arc::new(Handle { inner, threads: Mutex::new(threads) }) })
    }

    /// The configuration in force.
    pub fn config(&self) -> &StoreConfig {
        &self.handle.inner.config
    }

    /// Appends a message. Resolves once it is durable as configured: in the
    /// page cache (async flush) or on disk (sync flush, group commit).
    pub async fn append(&self, msg: MessageToStore) -> Result<Appended> {
        let inner = &self.handle.inner;
        let prepared = Prepared::new(msg, inner.config.max_message_size as usize)?;
        let appended = inner.log.append(&prepared)?;
        self.after_append();
        if inner.config.flush.is_sync() {
            self.wait_flushed(appended.end()).await?;
        }
        Ok(appended)
    }

    /// Appends several messages; resolves when all of them are durable.
    pub async fn append_batch(&self, msgs: Vec<MessageToStore>) -> Result<Vec<Appended>> {
        let inner = &self.handle.inner;
        let max = inner.config.max_message_size as usize;
        let prepared = msgs.into_iter().map(|m| Prepared::new(m, max)).collect::<Result<Vec<_>>>()?;
        let out = inner.log.append_many(&prepared)?;
        self.after_append();
        if let (true, Some(last)) = (inner.config.flush.is_sync(), out.last()) {
            self.wait_flushed(last.end()).await?;
        }
        Ok(out)
    }

    /// Wakes the threads that follow the write position.
    fn after_append(&self) {
        let inner = &self.handle.inner;
        inner.dispatch_signal.notify();
        if inner.log.take_window_request() {
            inner.prefault_signal.notify();
        }
    }

    /// Waits until the flushed offset reaches `end`.
    ///
    /// The flusher wakes a single waiter from its own thread; that waiter,
    /// running on the async runtime, wakes all the others. Waking each task
    /// from the flusher's thread would cost a cross-thread wake-up per
    /// waiting append, and those add up to more than the `fdatasync`.
    async fn wait_flushed(&self, end: u64) -> Result<()> {
        let inner = &self.handle.inner;
        let arrived = inner.flush_arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        if arrived >= inner.flush_wake_at.load(Ordering::SeqCst) {
            inner.flush_signal.notify();
        }
        loop {
            let notified = inner.flush_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if inner.log.flushed() >= end {
                return Ok(());
            }
            if let Some((path, source)) = inner.flush_failure.lock().clone() {
                return Err(Error::Poisoned { path, source });
            }
            if inner.shutdown.load(Ordering::Acquire) && inner.log.flushed() < end && inner.threads_stopped() {
                return Err(Error::Closed);
            }
            notified.await;
            if inner.flush_relay.swap(false, Ordering::AcqRel) {
                inner.flush_done.notify_waiters();
            }
        }
    }

    /// Waits until queues and index include everything below `offset`.
    pub async fn wait_dispatched(&self, offset: u64) -> Result<()> {
        let inner = &self.handle.inner;
        if inner.dispatched.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut waiters = inner.dispatch_waiters.lock();
            // Checked under the lock the dispatcher takes after moving the
            // offset, so the wake-up cannot be missed.
            if inner.dispatched.load(Ordering::Acquire) >= offset {
                return Ok(());
            }
            if inner.threads_stopped() {
                return Err(Error::Closed);
            }
            waiters.entry(offset).or_default().push(tx);
        }
        rx.await.map_err(|_| Error::Closed)
    }

    /// A receiver of the dispatched offset, for long-polling consumers.
    pub fn dispatch_watch(&self) -> watch::Receiver<u64> {
        self.handle.inner.dispatch_tx.subscribe()
    }

    /// Reads the record at a CommitLog offset (a packed record as it is
    /// stored: its body packs the messages, see [`rill_common::packed`]).
    pub fn read(&self, physical_offset: u64) -> Result<StoredMessage> {
        self.handle.inner.log.read(physical_offset)
    }

    /// Reads up to `max` messages from a queue starting at `offset`.
    pub fn read_queue(&self, topic: &str, queue_id: u32, offset: u64, max: usize) -> Result<QueueRead> {
        self.read_queue_filtered(topic, queue_id, offset, max, max, |_| true)
    }

    /// Like [`Store::read_queue`], keeping only entries `keep` accepts (for
    /// tag filtering by hash) and looking at no more than `max_scan` entries.
    pub fn read_queue_filtered(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
        max: usize,
        max_scan: usize,
        keep: impl Fn(&CqEntry) -> bool,
    ) -> Result<QueueRead> {
        let inner = &self.handle.inner;
        let Some(q) = inner.queues.get(topic, queue_id) else {
            return Ok(QueueRead {
                status: ReadStatus::NoSuchQueue,
                messages: Vec::new(),
                next_offset: 0,
                min_offset: 0,
                max_offset: 0,
            });
        };
        let (min, max_off) = (q.min_offset(), q.max_offset());
        let mut out = QueueRead {
            status: ReadStatus::Found,
            messages: Vec::new(),
            next_offset: offset,
            min_offset: min,
            max_offset: max_off,
        };
        if offset < min {
            out.status = ReadStatus::OffsetMoved;
            out.next_offset = min;
            return Ok(out);
        }
        if offset > max_off {
            out.status = ReadStatus::OffsetOverflow;
            out.next_offset = max_off;
            return Ok(out);
        }
        if offset == max_off {
            out.status = ReadStatus::NoNewMessages;
            return Ok(out);
        }
        let mut next = offset;
        // The packed record read last: its next messages come from it
        // without reading and checking the whole record again.
        let mut packed: Option<StoredMessage> = None;
        while next < max_off && out.messages.len() < max && ((next - offset) as usize) < max_scan {
            let Some(entry) = q.get(next) else { break };
            if keep(&entry) {
                if let Some(record) = packed.as_ref().filter(|r| r.physical_offset == entry.physical_offset) {
                    out.messages.push(unpack::packed_at(record, next)?);
                    next += 1;
                    continue;
                }
                match inner.log.read(entry.physical_offset) {
                    Ok(m) if unpack::is_packed(&m) => {
                        out.messages.push(unpack::packed_at(&m, next)?);
                        packed = Some(m);
                    }
                    Ok(m) => out.messages.push(m),
                    Err(Error::OffsetMoved { .. }) => {
                        // Retention ran between the bounds check and the read.
                        out.status = ReadStatus::OffsetMoved;
                        out.messages.clear();
                        out.next_offset = q.min_offset();
                        out.min_offset = q.min_offset();
                        return Ok(out);
                    }
                    Err(e) => return Err(e),
                }
            }
            next += 1;
        }
        out.next_offset = next;
        Ok(out)
    }

    /// `(min, max)` logical offsets of a queue, if it exists.
    pub fn queue_bounds(&self, topic: &str, queue_id: u32) -> Option<(u64, u64)> {
        self.handle.inner.queues.get(topic, queue_id).map(|q| (q.min_offset(), q.max_offset()))
    }

    /// The first offset of a queue stored at or after `timestamp` (ms).
    pub fn offset_for_time(&self, topic: &str, queue_id: u32, timestamp: i64) -> Option<u64> {
        let inner = &self.handle.inner;
        let q = inner.queues.get(topic, queue_id)?;
        Some(q.offset_by_time(timestamp, |phy| inner.log.read(phy).ok().map(|m| m.store_timestamp)))
    }

    /// Messages of `topic` carrying business key `key`, stored in `[begin, end]` (ms), newest first.
    pub fn query_by_key(&self, topic: &str, key: &str, begin: i64, end: i64, max: usize) -> Result<Vec<StoredMessage>> {
        let inner = &self.handle.inner;
        let candidates = inner.index.lookup(&index::topic_key(topic, key), begin, end, max.saturating_mul(2));
        let mut out = Vec::new();
        for offset in candidates {
            match inner.log.read(offset) {
                Ok(m) if m.topic.as_str() != topic || !(begin..=end).contains(&m.store_timestamp) => {}
                Ok(m) if unpack::is_packed(&m) => {
                    let has_key = |keys: Option<&str>| {
                        keys.is_some_and(|ks| ks.split(record::keys::KEY_SEPARATOR).any(|k| k == key))
                    };
                    out.extend(unpack::messages_where(&m, |e| has_key(e.property(record::keys::KEYS)))?);
                }
                Ok(m) if m.properties.keys().any(|k| k == key) => out.push(m),
                Ok(_) | Err(Error::OffsetMoved { .. }) => {}
                Err(e) => return Err(e),
            }
            if out.len() >= max {
                out.truncate(max);
                break;
            }
        }
        Ok(out)
    }

    /// The message with unique id `id`, if it is still retained.
    pub fn message_by_id(&self, id: &str) -> Result<Option<StoredMessage>> {
        let inner = &self.handle.inner;
        for offset in inner.index.lookup(&index::id_key(id), i64::MIN, i64::MAX, 16) {
            match inner.log.read(offset) {
                Ok(m) if unpack::is_packed(&m) => {
                    let found = unpack::messages_where(&m, |e| e.property(record::keys::UNIQ_KEY) == Some(id))?;
                    if let Some(m) = found.into_iter().next() {
                        return Ok(Some(m));
                    }
                }
                Ok(m) if m.properties.unique_id() == Some(id) => return Ok(Some(m)),
                Ok(_) | Err(Error::OffsetMoved { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Flushes everything appended so far to disk now (whatever the flush
    /// mode); returns the flushed offset. Blocking: call it off the async runtime.
    pub fn flush_now(&self) -> Result<u64> {
        self.handle.inner.log.flush()
    }

    /// Runs one retention pass now.
    pub fn run_retention(&self) -> Result<RetentionReport> {
        self.handle.inner.run_retention()
    }

    /// Current bounds, progress and queues.
    pub fn state(&self) -> StoreState {
        let i = &self.handle.inner;
        let mut queues: Vec<QueueState> = i
            .queues
            .all()
            .into_iter()
            .map(|((t, q), cq)| QueueState {
                topic: t.to_string(),
                queue_id: q,
                min_offset: cq.min_offset(),
                max_offset: cq.max_offset(),
            })
            .collect();
        queues.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
        StoreState {
            data_dir: i.config.data_dir.clone(),
            sync_flush: i.config.flush.is_sync(),
            min_offset: i.log.min_offset(),
            committed: i.log.committed(),
            flushed: i.log.flushed(),
            dispatched: i.dispatched.load(Ordering::Acquire),
            segments: i.log.segments().len(),
            queues,
            index_files: i.index.file_count(),
            recovery: i.recovery.clone(),
        }
    }

    /// Stops appends, drains the dispatcher, flushes everything, writes the
    /// checkpoint and marks the stop as clean. Other clones become unusable.
    pub fn close(&self) -> Result<()> {
        let inner = &self.handle.inner;
        self.handle.stop();
        inner.log.flush()?;
        inner.write_checkpoint()?;
        inner.checkpoint.mark_clean()?;
        tracing::info!(data_dir = %inner.config.data_dir.display(), end = inner.log.committed(), "store closed cleanly");
        Ok(())
    }
}

/// Replays the CommitLog into queues and index from the checkpoint.
fn recover(inner: &Inner, cp: Checkpoint) -> Result<ScanReport> {
    let max_record = inner.config.max_message_size as usize;
    // Queue and index entries below the checkpoint are on disk; replay the rest.
    let mut last = None;
    let report =
        inner.log.recover(cp.dispatched, cp.log_flushed, max_record, |v| inner.dispatch_record(v, &mut last))?;
    let mut next_offsets = HashMap::new();
    let log_min = inner.log.min_offset();
    for (key, q) in inner.queues.all() {
        q.truncate_to_log_end(report.end);
        q.drop_below(log_min)?;
        next_offsets.insert(key, q.max_offset());
    }
    inner.index.drop_below(log_min)?;
    inner.log.set_queue_offsets(next_offsets);
    Ok(report)
}
