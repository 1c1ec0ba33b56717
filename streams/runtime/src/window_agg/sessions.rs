//! Each key's open session windows, for session window aggregates, kept
//! in a [`KeyedState`] so that they too stay within the memory budget:
//! the key's row bytes map to its sessions as (start, end) pairs of
//! big-endian i64s. A key without open sessions has no entry.

use datafusion::arrow::row::OwnedRow;
use rill_state::{KeyedState, MIN_BUDGET, StateConfig};
use rill_time::{SessionWindows, Window};

use crate::{Error, Result};

/// The open sessions of every key.
pub(super) struct Sessions {
    gap: i64,
    state: KeyedState,
    buf: Vec<u8>,
}

impl Sessions {
    /// Sessions closing after `gap` ms without a row, in a quarter of `config`'s budget.
    pub(super) fn new(gap: i64, config: &StateConfig) -> Self {
        let quarter = StateConfig {
            memory_budget: (config.memory_budget / 4).max(MIN_BUDGET),
            spill_dir: config.spill_dir.clone(),
        };
        Self { gap, state: KeyedState::new(quarter), buf: Vec::new() }
    }

    /// `key`'s open sessions (none open: an empty set).
    pub(super) fn get(&mut self, key: &OwnedRow) -> Result<SessionWindows> {
        let mut sessions = SessionWindows::new(self.gap)?;
        let Some(bytes) = self.state.get(key.row().as_ref(), i64::MIN)? else { return Ok(sessions) };
        if bytes.len() % 16 != 0 {
            return Err(Error::Plan("a key's stored sessions are cut short".into()));
        }
        for pair in bytes.chunks_exact(16) {
            let (start, end) = pair.split_at(8);
            let number = |b: &[u8]| b.try_into().map(i64::from_be_bytes);
            match (number(start), number(end)) {
                (Ok(start), Ok(end)) => sessions.restore(Window::new(start, end)),
                _ => return Err(Error::Plan("a key's stored sessions are cut short".into())),
            }
        }
        Ok(sessions)
    }

    /// Stores `key`'s sessions (forgetting the key when none is open).
    pub(super) fn put(&mut self, key: &OwnedRow, sessions: &SessionWindows) -> Result<()> {
        if sessions.is_empty() {
            return Ok(self.state.remove(key.row().as_ref())?);
        }
        self.buf.clear();
        for w in sessions.windows() {
            self.buf.extend_from_slice(&w.start.to_be_bytes());
            self.buf.extend_from_slice(&w.end.to_be_bytes());
        }
        Ok(self.state.put(key.row().as_ref(), &self.buf, i64::MAX)?)
    }

    /// Closes `window` of `key` (its state was dropped).
    pub(super) fn remove(&mut self, key: &OwnedRow, window: Window) -> Result<()> {
        let mut sessions = self.get(key)?;
        if sessions.remove(window) {
            self.put(key, &sessions)?;
        }
        Ok(())
    }

    /// Opens `window` of `key` again (from a checkpoint).
    pub(super) fn restore(&mut self, key: &OwnedRow, window: Window) -> Result<()> {
        let mut sessions = self.get(key)?;
        sessions.restore(window);
        self.put(key, &sessions)
    }
}
