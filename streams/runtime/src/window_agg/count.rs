//! Count windows of the window aggregate: per key, an open window that
//! takes rows in arrival order until it holds `size` of them, then fires
//! and makes room for the next. Event time only spans the window's rows;
//! watermarks neither fire nor drop count windows. Past the state budget
//! a key's open window spills like any group (see `spill`).

use datafusion::arrow::row::{OwnedRow, Row};
use rill_time::Window;

use super::WindowAggregate;
use crate::Result;

impl WindowAggregate {
    /// The slot of `key`'s open count window after counting a row at `ts`
    /// into it (a new window when the last one completed).
    pub(super) fn add_to_count(&mut self, key: Row<'_>, ts: i64, size: u64) -> Result<usize> {
        let owned = key.owned();
        let slot = match self.counting.get(&owned).copied() {
            Some(slot) => slot,
            None => match self.load_count(&owned)? {
                Some(slot) => slot,
                None => {
                    let slot = self.new_slot(owned.clone(), Window::new(ts, ts.saturating_add(1)))?;
                    self.counting.insert(owned, slot);
                    slot
                }
            },
        };
        if let Some(g) = self.slots[slot].as_mut() {
            g.rows += 1;
            g.window = Window::new(g.window.start.min(ts), g.window.end.max(ts.saturating_add(1)));
            if g.rows == size {
                // Complete: the key's next row opens a new window.
                let key = g.key.clone();
                self.counting.remove(&key);
                // Its disk copy goes now, before that row could find it.
                self.forget_disk_copy(slot);
            }
        }
        Ok(slot)
    }

    /// Frees the slots of fired count windows.
    pub(super) fn release(&mut self, slots: &[usize]) {
        for slot in slots {
            self.free_slot(*slot);
        }
    }

    /// Puts a checkpointed count window back as its key's open window.
    pub(super) fn restore_count(&mut self, key: OwnedRow, window: Window, rows: u64) -> Result<usize> {
        let slot = self.new_slot(key.clone(), window)?;
        if let Some(g) = self.slots[slot].as_mut() {
            g.rows = rows;
        }
        self.counting.insert(key, slot);
        Ok(slot)
    }
}
