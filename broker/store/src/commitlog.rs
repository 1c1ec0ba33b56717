//! The CommitLog: one append-only log of every topic's records, split into
//! fixed-size segment files named by their starting offset.
//!
//! This module owns segment files, the write position, the assignment of
//! queue offsets, flushing of segment data and the recovery scan. It does
//! not know about ConsumeQueues or the index: recovery hands every record it
//! finds to a callback, and the dispatcher follows [`CommitLog::committed`].
//!
//! Invariants:
//! - segments are contiguous: segment *k + 1* starts where segment *k* ends;
//! - a record never spans two segments; the rest of a full segment holds a
//!   blank marker, written only after the next segment exists;
//! - `committed` only moves forward, and only after the bytes below it are
//!   completely written, so a reader never sees a half-written record.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use rill_common::{Clock, TopicName};

use crate::StoredMessage;
use crate::error::{Error, Result};
use crate::mapped::{self, MappedFile, WriteWindow};
use crate::window::{WINDOW, WindowsAhead};

/// Single appends in a row, with none staged, after which they copy into
/// a mapped window again (see `Writer::unstaged_run`).
const REMAP_AFTER: u32 = 64;
use crate::record::{self, BLANK_MIN_LEN, DecodeError, Placement, Prepared, RECORD_MAGIC, RecordView, Slot};

/// Appends of at least this many bytes in one call go through `pwrite`
/// under async flush (see [`CommitLog::append_many`]).
pub const STAGE_MIN: usize = 32 * 1024;

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Physical offset of the record.
    pub physical_offset: u64,
    /// Encoded size in bytes.
    pub size: u32,
    /// Logical offset in its ConsumeQueue.
    pub queue_offset: u64,
    /// Store timestamp given to the record.
    pub store_timestamp: i64,
}

impl Appended {
    /// Offset one past the record: durable once the flushed offset reaches it.
    pub fn end(&self) -> u64 {
        self.physical_offset + u64::from(self.size)
    }
}

/// What the recovery scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Where the scan started.
    pub from: u64,
    /// The end of valid data: the new write position.
    pub end: u64,
    /// Records visited.
    pub records: u64,
    /// Offset of a torn record that was cut off, if any.
    pub truncated_at: Option<u64>,
}

struct Writer {
    active: Arc<MappedFile>,
    /// Where async-flush appends copy to (see [`WriteWindow`]).
    window: Option<WriteWindow>,
    /// Sync flush: records appended since the last flush, not yet in the file.
    staged: Vec<u8>,
    /// Log offset of `staged[0]`.
    staged_from: u64,
    /// Single appends since the last staged one. While appends are mostly
    /// staged (written with `pwrite`), a single one past the window is
    /// written with `pwrite` too: mapping and faulting in a new window for
    /// it would zero pages the next staged writes overwrite anyway.
    unstaged_run: u32,
    pos: u64,
    last_store_ts: i64,
    queue_offsets: HashMap<(TopicName, u32), u64>,
    poisoned: Option<(PathBuf, Arc<std::io::Error>)>,
}

/// The segmented append-only log.
pub(crate) struct CommitLog {
    dir: PathBuf,
    segment_size: u64,
    segments: RwLock<Vec<Arc<MappedFile>>>,
    writer: Mutex<Option<Writer>>,
    committed: AtomicU64,
    flushed: AtomicU64,
    /// The next write windows, mapped and faulted in by a background thread.
    ahead: WindowsAhead,
    /// Set when the writer moved to another window; cleared by [`CommitLog::take_window_request`].
    window_request: AtomicBool,
    clock: Arc<dyn Clock>,
    verify_crc: bool,
    /// Sync flush: stage records in memory and write each group with one
    /// `pwrite` before its `fdatasync`. Every such append waits for a flush
    /// anyway, and flushing pages dirtied through a mapping would cost a
    /// TLB shootdown per page. Async flush copies into a prefaulted write
    /// window instead, the cheapest append.
    write_through_fd: bool,
    /// Store time of each full segment's last record, by segment base.
    last_times: Mutex<HashMap<u64, i64>>,
}

impl std::fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog")
            .field("dir", &self.dir)
            .field("committed", &self.committed())
            .field("flushed", &self.flushed())
            .finish_non_exhaustive()
    }
}

impl CommitLog {
    /// Opens the segments in `dir`; call [`CommitLog::recover`] before use.
    pub fn open(
        dir: PathBuf,
        segment_size: u64,
        clock: Arc<dyn Clock>,
        verify_crc: bool,
        write_through_fd: bool,
    ) -> Result<Self> {
        mapped::ensure_dir(&dir)?;
        let files = mapped::list_files(&dir)?;
        let mut segments: Vec<Arc<MappedFile>> = Vec::with_capacity(files.len());
        for (base, path) in files {
            if let Some(prev) = segments.last()
                && prev.end() != base
            {
                return Err(Error::Corrupt {
                    path,
                    offset: base,
                    position: 0,
                    reason: format!("segment does not follow the previous one, which ends at {}", prev.end()),
                });
            }
            if base % segment_size != 0 {
                return Err(Error::Corrupt {
                    path,
                    offset: base,
                    position: 0,
                    reason: format!("segment name is not a multiple of segment_size {segment_size}"),
                });
            }
            segments.push(MappedFile::open(path, base, segment_size)?);
        }
        Ok(Self {
            dir,
            segment_size,
            segments: RwLock::new(segments),
            writer: Mutex::new(None),
            committed: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            ahead: WindowsAhead::default(),
            window_request: AtomicBool::new(false),
            clock,
            verify_crc,
            write_through_fd,
            last_times: Mutex::new(HashMap::new()),
        })
    }

    /// End of completely written data; readers may look below it.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// End of data known to be on disk.
    pub fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Maps and faults in the windows the writer will need next, and
    /// unmaps the ones it left, off the append path (background thread).
    pub fn prepare_windows(&self) {
        self.ahead.prepare();
    }

    /// Whether [`CommitLog::prepare_windows`] has work to do.
    pub fn windows_pending(&self) -> bool {
        self.ahead.work_pending()
    }

    /// Whether the window preparer should be woken now (clears the request).
    pub fn take_window_request(&self) -> bool {
        self.window_request.load(Ordering::Relaxed) && self.window_request.swap(false, Ordering::AcqRel)
    }

    /// Moves the writer's window to the one holding `w.pos` (prepared in
    /// the background if the preparer kept up), and asks for the ones after
    /// it to be prepared.
    fn advance_window(&self, w: &mut Writer) -> Result<()> {
        let in_seg = (w.pos - w.active.base()) as usize;
        let start = w.active.base() + (in_seg - in_seg % WINDOW) as u64;
        let window = match self.ahead.take(&w.active, start, w.window.take()) {
            Some(win) => win,
            None => w
                .active
                .write_window((start - w.active.base()) as usize, WINDOW)
                .map_err(Error::io("map", w.active.path()))?,
        };
        self.ahead.follow(&w.active, window.end());
        w.window = Some(window);
        self.window_request.store(true, Ordering::Release);
        Ok(())
    }

    /// Offset of the oldest retained byte.
    pub fn min_offset(&self) -> u64 {
        self.segments.read().first().map_or(0, |s| s.base())
    }

    /// A snapshot of the segment list.
    pub fn segments(&self) -> Vec<Arc<MappedFile>> {
        self.segments.read().clone()
    }

    fn segment_for(&self, offset: u64) -> Result<Arc<MappedFile>> {
        let segs = self.segments.read();
        let Some(first) = segs.first() else {
            return Err(Error::OffsetBeyondEnd { requested: offset, end: 0 });
        };
        if offset < first.base() {
            return Err(Error::OffsetMoved { requested: offset, min: first.base() });
        }
        let idx = ((offset - first.base()) / self.segment_size) as usize;
        segs.get(idx).cloned().ok_or(Error::OffsetBeyondEnd { requested: offset, end: self.committed() })
    }

    /// Scans from `from` to the end of valid data, handing each record to
    /// `on_record`, cuts off a torn tail, and makes the log writable.
    ///
    /// An invalid record is a torn tail only when it lies past `durable`
    /// (the last offset known to have been flushed) and no valid record
    /// follows it; otherwise it is reported as corruption.
    pub fn recover(
        &self,
        from: u64,
        durable: u64,
        max_record: usize,
        mut on_record: impl FnMut(&RecordView<'_>) -> Result<()>,
    ) -> Result<ScanReport> {
        if self.segments.read().is_empty() {
            let first = MappedFile::create(&self.dir, 0, self.segment_size)?;
            mapped::sync_dir(&self.dir)?;
            self.segments.write().push(first);
        }
        let segs = self.segments();
        let min = segs[0].base();
        let mut pos = from.max(min);
        let mut report = ScanReport { from: pos, ..ScanReport::default() };
        let mut last_store_ts = 0i64;
        let mut idx = ((pos - min) / self.segment_size) as usize;
        if idx >= segs.len() {
            return Err(Error::Corrupt {
                path: self.dir.clone(),
                offset: pos,
                position: 0,
                reason: format!(
                    "checkpoint points past the last segment, which ends at {}",
                    segs[segs.len() - 1].end()
                ),
            });
        }
        loop {
            let seg = &segs[idx];
            let in_seg = (pos - seg.base()) as usize;
            let slot = record::decode(seg.tail(in_seg)).and_then(|slot| match slot {
                Slot::Record(v) => {
                    v.verify()?;
                    if v.physical_offset() != pos {
                        return Err(DecodeError(format!("record says it is at offset {}", v.physical_offset())));
                    }
                    Ok(Slot::Record(v))
                }
                other => Ok(other),
            });
            match slot {
                Ok(Slot::Record(v)) => {
                    on_record(&v)?;
                    last_store_ts = v.store_timestamp();
                    report.records += 1;
                    pos += v.size() as u64;
                }
                Ok(Slot::Blank { len, last_store_timestamp }) => {
                    self.last_times.lock().insert(seg.base(), last_store_timestamp);
                    pos += len as u64;
                    idx += 1;
                    if idx == segs.len() {
                        // The roll creates the next segment before writing
                        // the blank, so this only happens if it was removed.
                        let next = MappedFile::create(&self.dir, pos, self.segment_size)?;
                        self.segments.write().push(next);
                        break;
                    }
                }
                Ok(Slot::Empty) => break,
                Err(e) => {
                    if pos < durable || self.valid_data_follows(&segs, idx, in_seg, max_record) {
                        return Err(Error::Corrupt {
                            path: seg.path().to_path_buf(),
                            offset: pos,
                            position: in_seg as u64,
                            reason: format!("{e}; valid data follows, so this is not a torn tail"),
                        });
                    }
                    tracing::warn!(segment = %seg.path().display(), offset = pos, reason = %e, "cutting off torn tail");
                    zero_torn_tail(seg, in_seg, max_record);
                    report.truncated_at = Some(pos);
                    break;
                }
            }
        }
        // Anything after the segment holding the end is an empty leftover
        // of an interrupted roll (valid data there was ruled out above).
        let keep = ((pos - min) / self.segment_size) as usize + 1;
        let extra: Vec<_> = {
            let mut w = self.segments.write();
            if w.len() > keep { w.split_off(keep) } else { Vec::new() }
        };
        for seg in extra {
            tracing::info!(segment = %seg.path().display(), "removing empty segment after the end of the log");
            std::fs::remove_file(seg.path()).map_err(Error::io("remove", seg.path()))?;
        }
        let segs = self.segments();
        let active = Arc::clone(&segs[segs.len() - 1]);
        for seg in segs.iter().filter(|s| s.end() > report.from) {
            seg.sync().map_err(Error::io("sync", seg.path()))?;
        }
        report.end = pos;
        self.committed.store(pos, Ordering::Release);
        self.flushed.store(pos, Ordering::Release);
        *self.writer.lock() = Some(Writer {
            active,
            window: None,
            staged: Vec::new(),
            staged_from: pos,
            unstaged_run: REMAP_AFTER,
            pos,
            last_store_ts,
            queue_offsets: HashMap::new(),
            poisoned: None,
        });
        Ok(report)
    }

    /// Whether a valid record exists after an invalid one at `in_seg`.
    fn valid_data_follows(&self, segs: &[Arc<MappedFile>], idx: usize, in_seg: usize, max_record: usize) -> bool {
        for later in &segs[idx + 1..] {
            if let Ok(Slot::Record(v)) = record::decode(later.tail(0))
                && v.verify().is_ok()
            {
                return true;
            }
        }
        let seg = &segs[idx];
        let limit = (in_seg + max_record + BLANK_MIN_LEN).min(seg.len());
        let window = seg.bytes(in_seg, limit - in_seg);
        let magic = RECORD_MAGIC.to_be_bytes();
        (1..window.len().saturating_sub(8)).any(|i| {
            window[i + 4..i + 8] == magic
                && matches!(record::decode(seg.tail(in_seg + i)), Ok(Slot::Record(v))
                    if v.verify().is_ok() && v.physical_offset() == seg.base() + (in_seg + i) as u64)
        })
    }

    /// Sets each queue's next offset (after recovery rebuilt the queues).
    pub fn set_queue_offsets(&self, offsets: HashMap<(TopicName, u32), u64>) {
        if let Some(w) = self.writer.lock().as_mut() {
            w.queue_offsets = offsets;
        }
    }

    /// Appends one prepared record; returns once it is readable (not yet durable).
    pub fn append(&self, p: &Prepared) -> Result<Appended> {
        let mut guard = self.writer.lock();
        let w = guard.as_mut().ok_or(Error::Closed)?;
        if let Some((path, source)) = &w.poisoned {
            return Err(Error::Poisoned { path: path.clone(), source: Arc::clone(source) });
        }
        self.append_locked(w, p, self.write_through_fd)
    }

    /// Appends several records under one lock. With async flush, a call
    /// carrying at least [`STAGE_MIN`] bytes is staged and written with one
    /// `pwrite` (whole pages need no zero-fill, and one syscall covers the
    /// batch); smaller ones are copied into the mapping.
    pub fn append_many(&self, ps: &[Prepared]) -> Result<Vec<Appended>> {
        let mut guard = self.writer.lock();
        let w = guard.as_mut().ok_or(Error::Closed)?;
        if let Some((path, source)) = &w.poisoned {
            return Err(Error::Poisoned { path: path.clone(), source: Arc::clone(source) });
        }
        let bytes: usize = ps.iter().map(|p| p.size).sum();
        let stage = self.write_through_fd || bytes >= STAGE_MIN;
        let mut out = Vec::with_capacity(ps.len());
        for p in ps {
            out.push(self.append_locked(w, p, stage)?);
        }
        if stage && !self.write_through_fd {
            self.write_staged(w)?;
        }
        Ok(out)
    }

    /// One record, with the writer lock held; `stage` puts it in the
    /// staging buffer instead of the mapping (the caller writes that out).
    fn append_locked(&self, w: &mut Writer, p: &Prepared, stage: bool) -> Result<Appended> {
        let size = p.size as u64;
        if w.pos + size + BLANK_MIN_LEN as u64 > w.active.end() {
            self.roll(w)?;
        }
        let store_timestamp = self.clock.now_millis().max(w.last_store_ts);
        let queue_offset = w.queue_offsets.get(&(p.msg.topic.clone(), p.msg.queue_id)).copied().unwrap_or(0);
        let place = Placement { queue_offset, physical_offset: w.pos, store_timestamp };
        if stage {
            // Sync flush: stage the record; the flusher writes the whole
            // group with one `pwrite` right before its `fdatasync`, so a
            // group costs what one raw write plus flush costs. Readers see
            // the record once it is in the file (before it is acknowledged).
            if w.staged.is_empty() {
                w.staged_from = w.pos;
            }
            w.unstaged_run = 0;
            let at = w.staged.len();
            w.staged.resize(at + p.size, 0);
            record::encode_into(&mut w.staged[at..], p, place);
        } else {
            // Move on to the next window once the write position has left
            // the current one (unless staged appends are the rule now).
            let inside = w.window.as_ref().is_some_and(|win| win.covers(w.pos, 0) && w.pos < win.end());
            w.unstaged_run = w.unstaged_run.saturating_add(1);
            if !inside && w.unstaged_run >= REMAP_AFTER {
                self.advance_window(w)?;
            }
            match w.window.as_ref().filter(|win| win.covers(w.pos, p.size)) {
                Some(win) => {
                    // SAFETY: the region past `committed` is unpublished and
                    // we hold the writer lock, so nobody else touches it.
                    let dst = unsafe { win.region_mut(w.pos, p.size) };
                    record::encode_into(dst, p, place);
                }
                // A record straddling two windows, or past the window while
                // staged appends are the rule.
                None => {
                    let mut buf = vec![0u8; p.size];
                    record::encode_into(&mut buf, p, place);
                    let in_seg = (w.pos - w.active.base()) as usize;
                    w.active.write_at(in_seg, &buf).map_err(Error::io("write", w.active.path()))?;
                }
            }
        }
        let slot = w.queue_offsets.entry((p.msg.topic.clone(), p.msg.queue_id)).or_insert(0);
        *slot += u64::from(p.count);
        w.pos += size;
        w.last_store_ts = store_timestamp;
        if !stage {
            self.committed.store(w.pos, Ordering::Release);
        }
        Ok(Appended { physical_offset: place.physical_offset, size: p.size as u32, queue_offset, store_timestamp })
    }

    /// Writes staged records (sync flush) into the file and publishes them.
    /// A failed write poisons the log, like a failed flush.
    fn write_staged(&self, w: &mut Writer) -> Result<()> {
        if w.staged.is_empty() {
            return Ok(());
        }
        let in_seg = (w.staged_from - w.active.base()) as usize;
        if let Err(e) = w.active.write_at(in_seg, &w.staged) {
            let source = Arc::new(e);
            w.poisoned = Some((w.active.path().to_path_buf(), Arc::clone(&source)));
            return Err(Error::Poisoned { path: w.active.path().to_path_buf(), source });
        }
        w.staged.clear();
        w.staged_from = w.pos;
        self.committed.store(w.pos, Ordering::Release);
        Ok(())
    }

    /// Starts the next segment and fills the rest of the current one with a blank.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        let end = w.active.end();
        let next = MappedFile::create(&self.dir, end, self.segment_size)?;
        // The new file's directory entry must be durable before anything
        // acknowledged can live in it.
        if let Err(e) = mapped::sync_dir(&self.dir) {
            let _ = std::fs::remove_file(next.path());
            return Err(e);
        }
        if let Err(e) = self.write_staged(w) {
            let _ = std::fs::remove_file(next.path());
            return Err(e);
        }
        let in_seg = (w.pos - w.active.base()) as usize;
        let mut blank = vec![0u8; (end - w.pos) as usize];
        record::encode_blank(&mut blank, w.last_store_ts);
        // Unpublished region, writer lock held.
        if let Err(e) = w.active.write_at(in_seg, &blank) {
            let _ = std::fs::remove_file(next.path());
            return Err(Error::Io { op: "write", path: w.active.path().to_path_buf(), source: e });
        }
        self.ahead.retire(w.window.take());
        self.last_times.lock().insert(w.active.base(), w.last_store_ts);
        self.segments.write().push(Arc::clone(&next));
        w.active = next;
        w.pos = end;
        self.committed.store(end, Ordering::Release);
        tracing::debug!(segment = end, "rolled to a new CommitLog segment");
        Ok(())
    }

    /// Flushes everything committed so far; returns the new flushed offset.
    ///
    /// A failure poisons the log: later appends fail until it is reopened,
    /// because the kernel may have dropped the dirty pages it could not write.
    pub fn flush(&self) -> Result<u64> {
        if self.write_through_fd
            && let Some(w) = self.writer.lock().as_mut()
        {
            self.write_staged(w)?;
        }
        let target = self.committed();
        let from = self.flushed();
        if target <= from {
            return Ok(from);
        }
        let dirty: Vec<_> =
            self.segments.read().iter().filter(|s| s.end() > from && s.base() < target).cloned().collect();
        for seg in dirty {
            let lo = from.max(seg.base());
            let hi = target.min(seg.end());
            let synced = if self.write_through_fd {
                seg.sync()
            } else {
                seg.sync_range((lo - seg.base()) as usize, (hi - lo) as usize)
            };
            if let Err(e) = synced {
                let source = Arc::new(e);
                if let Some(w) = self.writer.lock().as_mut() {
                    w.poisoned = Some((seg.path().to_path_buf(), Arc::clone(&source)));
                }
                tracing::error!(segment = %seg.path().display(), error = %source, "flush failed; store is now read-only");
                return Err(Error::Poisoned { path: seg.path().to_path_buf(), source });
            }
        }
        self.flushed.fetch_max(target, Ordering::AcqRel);
        Ok(target)
    }

    /// Reads and checks the record at `offset`.
    pub fn read(&self, offset: u64) -> Result<StoredMessage> {
        let end = self.committed();
        if offset >= end {
            return Err(Error::OffsetBeyondEnd { requested: offset, end });
        }
        let seg = self.segment_for(offset)?;
        let in_seg = (offset - seg.base()) as usize;
        let visible = (end.min(seg.end()) - offset) as usize;
        let corrupt =
            |reason: String| Error::Corrupt { path: seg.path().to_path_buf(), offset, position: in_seg as u64, reason };
        match record::decode(seg.bytes(in_seg, visible)) {
            Ok(Slot::Record(v)) => {
                if self.verify_crc {
                    v.verify().map_err(|e| corrupt(e.0))?;
                }
                let body = seg.slice(in_seg + v.body.start, v.body.len());
                v.to_message(body).map_err(|e| corrupt(e.0))
            }
            Ok(_) => Err(corrupt("no record starts at this offset".into())),
            Err(e) => Err(corrupt(e.0)),
        }
    }

    /// Calls `f` with the slot at `offset` (for the dispatcher, which only
    /// visits offsets below `committed`). Returns the offset of the next slot.
    pub fn visit(&self, offset: u64, f: impl FnOnce(&RecordView<'_>)) -> Result<u64> {
        let seg = self.segment_for(offset)?;
        let in_seg = (offset - seg.base()) as usize;
        let visible = (self.committed().min(seg.end()) - offset) as usize;
        match record::decode(seg.bytes(in_seg, visible)) {
            Ok(Slot::Record(v)) => {
                f(&v);
                Ok(offset + v.size() as u64)
            }
            Ok(Slot::Blank { len, .. }) => Ok(offset + len as u64),
            Ok(Slot::Empty) | Err(_) => Err(Error::Corrupt {
                path: seg.path().to_path_buf(),
                offset,
                position: in_seg as u64,
                reason: "dispatcher found no record below the committed offset".into(),
            }),
        }
    }

    /// Store time of the newest record of every full segment except the
    /// active one, oldest segment first, as `(segment, time)`.
    pub fn full_segment_times(&self) -> Vec<(Arc<MappedFile>, i64)> {
        let segs = self.segments();
        let mut out = Vec::new();
        for seg in segs.iter().take(segs.len().saturating_sub(1)) {
            let known = self.last_times.lock().get(&seg.base()).copied();
            let ts = match known {
                Some(ts) => ts,
                None => {
                    let ts = last_time_by_walking(seg);
                    self.last_times.lock().insert(seg.base(), ts);
                    ts
                }
            };
            out.push((Arc::clone(seg), ts));
        }
        out
    }

    /// Deletes the oldest segment unless it is the active one; returns the
    /// new minimum offset.
    pub fn delete_oldest(&self) -> Result<Option<u64>> {
        let removed = {
            let mut segs = self.segments.write();
            if segs.len() < 2 {
                return Ok(None);
            }
            segs.remove(0)
        };
        self.last_times.lock().remove(&removed.base());
        std::fs::remove_file(removed.path()).map_err(Error::io("delete", removed.path()))?;
        mapped::sync_dir(&self.dir)?;
        tracing::info!(segment = %removed.path().display(), "deleted CommitLog segment");
        Ok(Some(removed.end()))
    }

    /// Stops accepting appends (staged records are written out first, so
    /// the final flush covers them).
    pub fn close(&self) {
        let mut guard = self.writer.lock();
        if let Some(w) = guard.as_mut()
            && let Err(e) = self.write_staged(w)
        {
            tracing::error!(error = %e, "cannot write the last staged records");
        }
        guard.take();
    }
}

/// Finds a full segment's blank marker and returns the time stored in it.
fn last_time_by_walking(seg: &MappedFile) -> i64 {
    let mut pos = 0usize;
    let mut last = 0i64;
    while pos < seg.len() {
        match record::decode(seg.tail(pos)) {
            Ok(Slot::Record(v)) => {
                last = v.store_timestamp();
                pos += v.size();
            }
            Ok(Slot::Blank { last_store_timestamp, .. }) => return last_store_timestamp,
            _ => break,
        }
    }
    last
}

/// Zeroes a torn record so that later scans see the end of the log there.
fn zero_torn_tail(seg: &MappedFile, in_seg: usize, max_record: usize) {
    let limit = (in_seg + max_record + BLANK_MIN_LEN).min(seg.len());
    let window = seg.bytes(in_seg, limit - in_seg);
    let dirty = window.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    // SAFETY: recovery runs before the log is shared with any reader or writer.
    unsafe { seg.region_mut(in_seg, dirty) }.fill(0);
}
