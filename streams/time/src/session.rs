//! Windows that depend on a key's history: session windows (rows closer
//! than a gap share a window, and a row can join two sessions into one)
//! and count windows (every `size` rows of a key).

use std::collections::BTreeMap;

use crate::{Error, Window};

/// One key's session windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWindows {
    gap: i64,
    /// Open sessions: start → end.
    open: BTreeMap<i64, i64>,
}

/// What adding a row did to a key's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    /// The session the row now belongs to.
    pub window: Window,
    /// Earlier sessions folded into it (their state must be merged into
    /// the new window's); empty when the row started or extended nothing.
    pub merged: Vec<Window>,
}

impl SessionWindows {
    /// Sessions that close after `gap` ms without a row.
    pub fn new(gap: i64) -> Result<Self, Error> {
        if gap <= 0 {
            return Err(Error::Window(format!("session gap must be positive, got {gap} ms")));
        }
        Ok(Self { gap, open: BTreeMap::new() })
    }

    /// Adds a row at `ts`: a session `[ts, ts + gap)` joined with every open
    /// session it overlaps.
    pub fn add(&mut self, ts: i64) -> SessionChange {
        let mut start = ts;
        let mut end = ts.saturating_add(self.gap);
        // Sessions overlapping [start, end): starting before `end` and ending after `start`.
        let overlapping: Vec<Window> = self
            .open
            .range(..end)
            .rev()
            // Sessions are disjoint, so their ends fall with their starts:
            // the first one ending by `ts` and all before it do not overlap.
            .take_while(|(_, e)| **e > ts)
            .map(|(s, e)| Window::new(*s, *e))
            .collect();
        for w in &overlapping {
            start = start.min(w.start);
            end = end.max(w.end);
            self.open.remove(&w.start);
        }
        self.open.insert(start, end);
        let window = Window::new(start, end);
        let merged = overlapping.into_iter().filter(|w| *w != window).collect();
        SessionChange { window, merged }
    }

    /// Open sessions, earliest first.
    pub fn windows(&self) -> Vec<Window> {
        self.open.iter().map(|(s, e)| Window::new(*s, *e)).collect()
    }

    /// Forgets a session (its state was dropped); true if it was open.
    pub fn remove(&mut self, window: Window) -> bool {
        if self.open.get(&window.start) == Some(&window.end) {
            self.open.remove(&window.start);
            return true;
        }
        false
    }

    /// Puts back a session taken from [`SessionWindows::windows`] (a checkpoint).
    pub fn restore(&mut self, window: Window) {
        self.open.insert(window.start, window.end);
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Closes and returns the sessions that end at or before `watermark + 1`
    /// (no later row can reach them).
    pub fn close_until(&mut self, watermark: i64) -> Vec<Window> {
        let done: Vec<Window> = self
            .open
            .iter()
            .filter(|(_, e)| **e <= watermark.saturating_add(1))
            .map(|(s, e)| Window::new(*s, *e))
            .collect();
        for w in &done {
            self.open.remove(&w.start);
        }
        done
    }
}

/// One key's count windows: every `size` rows make a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountWindows {
    size: u64,
    seen: u64,
}

impl CountWindows {
    /// Windows of `size` rows.
    pub fn new(size: u64) -> Result<Self, Error> {
        if size == 0 {
            return Err(Error::Window("a count window needs at least one row".into()));
        }
        Ok(Self { size, seen: 0 })
    }

    /// Counts a row; returns the number of the window it completed, if it did.
    pub fn add(&mut self) -> Option<u64> {
        self.seen += 1;
        self.seen.is_multiple_of(self.size).then(|| self.seen / self.size - 1)
    }

    /// The number of the window the next row goes to.
    pub fn current(&self) -> u64 {
        self.seen / self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_between_two_sessions_joins_them() {
        let mut s = SessionWindows::new(10).unwrap();
        assert_eq!(s.add(0).window, Window::new(0, 10));
        assert_eq!(s.add(15).window, Window::new(15, 25));
        // 12 after the first row and 13 before the second: its own session.
        assert_eq!(s.add(40).window, Window::new(40, 50));
        let c = s.add(7);
        assert_eq!(c.window, Window::new(0, 25));
        assert_eq!(c.merged, vec![Window::new(15, 25), Window::new(0, 10)]);
        assert_eq!(s.windows(), vec![Window::new(0, 25), Window::new(40, 50)]);
        assert_eq!(s.close_until(23), vec![]);
        assert_eq!(s.close_until(24), vec![Window::new(0, 25)]);
        assert!(SessionWindows::new(0).is_err());
    }

    #[test]
    fn count_windows_close_every_n_rows() {
        let mut c = CountWindows::new(3).unwrap();
        let closed: Vec<Option<u64>> = (0..7).map(|_| c.add()).collect();
        assert_eq!(closed, [None, None, Some(0), None, None, Some(1), None]);
        assert_eq!(c.current(), 2);
        assert!(CountWindows::new(0).is_err());
    }
}
