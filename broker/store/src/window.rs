//! Write windows prepared ahead of the CommitLog writer (async flush).
//!
//! Appends copy into a separately mapped window of the active segment (see
//! [`WriteWindow`]). Mapping a window and faulting its pages in costs about
//! a millisecond, and sometimes much more while the kernel writes back or
//! reclaims; a writer that had to wait for it would stall every few
//! megabytes. So a background thread keeps up to [`AHEAD`] windows mapped
//! and faulted in past the writer's, and unmaps the windows the writer left
//! (unmapping flushes TLBs on every CPU the process ran on).
//!
//! This module owns that queue and nothing else: it never writes records,
//! never decides where the writer is (the writer tells it), and never
//! touches the whole-segment mappings readers use.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::mapped::{MappedFile, WriteWindow};

/// Size of the writable window appends copy into.
pub(crate) const WINDOW: usize = 4 << 20;
/// Windows kept ready past the writer's.
const AHEAD: usize = 3;

/// The queue of windows ready for the writer, filled by a background thread.
#[derive(Debug, Default)]
pub(crate) struct WindowsAhead {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Mapped and faulted in, in log order, each starting where the one
    /// before it ends; the first starts where the writer's window ends.
    ready: VecDeque<WriteWindow>,
    /// The writer's segment and where its window ends (none before the
    /// first async append, and never under sync flush).
    follow: Option<(Arc<MappedFile>, u64)>,
    /// Windows nobody will write to any more, to unmap off the append path.
    retired: Vec<WriteWindow>,
}

impl State {
    /// Start of the next window to prepare, if one is due.
    fn next_due(&self) -> Option<(Arc<MappedFile>, u64)> {
        let (seg, writer_end) = self.follow.as_ref()?;
        let next = self.ready.back().map_or(*writer_end, WriteWindow::end);
        (self.ready.len() < AHEAD && next < seg.end()).then(|| (Arc::clone(seg), next))
    }
}

impl WindowsAhead {
    /// Takes the ready window of `seg` starting at `start`, if there is one,
    /// and hands `old` (the writer's previous window) over for unmapping.
    /// Ready windows before `start` or of another segment are dropped.
    pub fn take(&self, seg: &MappedFile, start: u64, old: Option<WriteWindow>) -> Option<WriteWindow> {
        let mut s = self.state.lock();
        s.retired.extend(old);
        while let Some(front) = s.ready.front() {
            if front.segment() == seg.base() && front.start() >= start {
                break;
            }
            if let Some(stale) = s.ready.pop_front() {
                s.retired.push(stale);
            }
        }
        if s.ready.front().is_some_and(|w| w.start() == start) { s.ready.pop_front() } else { None }
    }

    /// Records that the writer now writes into `seg` up to `window_end`, so
    /// that the windows after it are prepared.
    pub fn follow(&self, seg: &Arc<MappedFile>, window_end: u64) {
        let mut s = self.state.lock();
        let moved = s.follow.as_ref().is_none_or(|(f, _)| f.base() != seg.base());
        if moved {
            let stale: Vec<_> = s.ready.drain(..).collect();
            s.retired.extend(stale);
        }
        s.follow = Some((Arc::clone(seg), window_end));
    }

    /// Hands a window nobody writes to any more over for unmapping.
    pub fn retire(&self, old: Option<WriteWindow>) {
        if let Some(w) = old {
            self.state.lock().retired.push(w);
        }
    }

    /// Whether [`WindowsAhead::prepare`] has anything to do.
    pub fn work_pending(&self) -> bool {
        let s = self.state.lock();
        !s.retired.is_empty() || s.next_due().is_some()
    }

    /// Unmaps retired windows and prepares windows until [`AHEAD`] are
    /// ready (called by a background thread; the mapping happens without
    /// the lock, so the writer never waits for it).
    pub fn prepare(&self) {
        loop {
            let (retired, due) = {
                let mut s = self.state.lock();
                (std::mem::take(&mut s.retired), s.next_due())
            };
            drop(retired);
            let Some((seg, start)) = due else { return };
            let win = match seg.write_window((start - seg.base()) as usize, WINDOW) {
                Ok(win) => win,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot prepare a CommitLog window; appends will map it");
                    return;
                }
            };
            let mut s = self.state.lock();
            // The writer may have moved on (or to another segment) meanwhile.
            if s.next_due().is_some_and(|(now_seg, now_start)| now_seg.base() == seg.base() && now_start == start) {
                s.ready.push_back(win);
            } else {
                s.retired.push(win);
            }
        }
    }

    /// Windows ready now (for tests).
    #[cfg(test)]
    fn ready_starts(&self) -> Vec<u64> {
        self.state.lock().ready.iter().map(WriteWindow::start).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(dir: &std::path::Path, base: u64, size: u64) -> Arc<MappedFile> {
        MappedFile::create(dir, base, size).expect("create segment")
    }

    #[test]
    fn keeps_windows_ready_past_the_writer_and_hands_them_over_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = segment(dir.path(), 0, 8 * WINDOW as u64);
        let ahead = WindowsAhead::default();
        assert!(!ahead.work_pending(), "nothing to do before the writer says where it is");
        ahead.follow(&seg, WINDOW as u64);
        assert!(ahead.work_pending());
        ahead.prepare();
        let w = WINDOW as u64;
        assert_eq!(ahead.ready_starts(), vec![w, 2 * w, 3 * w]);
        assert!(!ahead.work_pending(), "three ready is enough");

        let next = ahead.take(&seg, w, None).expect("the next window is ready");
        assert_eq!((next.start(), next.end()), (w, 2 * w));
        ahead.follow(&seg, next.end());
        ahead.prepare();
        assert_eq!(ahead.ready_starts(), vec![2 * w, 3 * w, 4 * w]);

        // The writer skipped ahead (a pwrite past its window): older ready
        // windows are dropped, the matching one is handed over.
        let skip = ahead.take(&seg, 3 * w, Some(next)).expect("window 3 is ready");
        assert_eq!(skip.start(), 3 * w);
        assert!(ahead.work_pending(), "the old windows wait to be unmapped");
        ahead.follow(&seg, skip.end());
        ahead.prepare();
        assert_eq!(ahead.ready_starts(), vec![4 * w, 5 * w, 6 * w]);
    }

    #[test]
    fn stops_at_the_segment_end_and_starts_over_in_the_next_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = WINDOW as u64;
        let first = segment(dir.path(), 0, 2 * w);
        let ahead = WindowsAhead::default();
        ahead.follow(&first, w);
        ahead.prepare();
        assert_eq!(ahead.ready_starts(), vec![w], "only one window fits before the segment ends");

        let second = segment(dir.path(), 2 * w, 2 * w);
        assert!(ahead.take(&second, 2 * w, None).is_none(), "nothing was prepared in the new segment");
        ahead.follow(&second, 3 * w);
        assert!(ahead.ready_starts().is_empty(), "windows of the old segment are dropped");
        ahead.prepare();
        assert_eq!(ahead.ready_starts(), vec![3 * w]);
    }
}
