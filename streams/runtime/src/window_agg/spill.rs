//! The window aggregate's groups past its memory budget, on disk.
//!
//! Memory holds the most recently used (key, window) groups. When their
//! cost passes the budget, the least recently used half moves into the
//! operator's [`SpillBook`] table in one write, each group as one entry:
//! the key is the window's end and start (order-preserving) then the group
//! key's row bytes, so the groups a watermark completes are one range of
//! the table; the value is the group's flags and accumulator state as one
//! row of Arrow's row format (the checkpoint's columns, the same state
//! DataFusion's partial aggregation hands over).
//!
//! A group a row needs again comes back into memory; its copy on disk is
//! stale from then on and is replaced when it spills again, or deleted
//! when the group goes. Whatever is in memory wins over disk. A window
//! that fired and has unfired late rows stays in memory until the next
//! watermark fires it (with early firing, every group with unfired rows
//! does), so every dirty group on disk is still ahead of the watermark: a
//! watermark reads back only the range it completes, a chunk at a time,
//! fires it and drops what is past the lateness.
//!
//! A count window's group (one open window per key, fired by its rows, not
//! by the watermark) goes after every time window, under the end and start
//! `i64::MAX`, its real bounds leading its value. Session windows'
//! per-key lists of open sessions are in a `KeyedState` of their own
//! (`sessions`), which spills by itself.

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::OwnedRow;
use rill_state::StateConfig;
use rill_time::Window;

use super::{Group, WindowAggregate, Windows};
use crate::Result;
use crate::spill::{SpillBook, after};

/// Memory a group costs beyond its key and accumulators: its map entries,
/// slot, window index entry and the accumulators' boxes.
const GROUP_OVERHEAD: usize = 192;

/// The spill side of the operator.
pub(super) struct Spilling {
    book: SpillBook,
    /// Disk was read for firing for every window ending before this.
    fired_below: i64,
}

impl Spilling {
    pub(super) fn new(config: StateConfig) -> Self {
        Self { book: SpillBook::new(config), fired_below: i64::MIN }
    }
}

/// An i64 as 8 bytes that sort as the numbers do.
fn sortable(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn unsortable(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// A group's key in the spill table: window end, window start, group key.
fn disk_key(key: &OwnedRow, window: Window) -> Vec<u8> {
    let row = key.row();
    let mut out = Vec::with_capacity(16 + row.as_ref().len());
    out.extend_from_slice(&sortable(window.end));
    out.extend_from_slice(&sortable(window.start));
    out.extend_from_slice(row.as_ref());
    out
}

fn window_of(disk: &[u8]) -> Window {
    Window::new(unsortable(&disk[8..16]), unsortable(&disk[..8]))
}

/// Where a count window's group lies in the spill table (after all time windows).
fn count_key(key: &OwnedRow) -> Vec<u8> {
    disk_key(key, Window::new(i64::MAX, i64::MAX))
}

fn group_cost(g: &Group) -> usize {
    2 * g.key.row().as_ref().len() + g.accumulators.iter().map(|a| a.size()).sum::<usize>() + GROUP_OVERHEAD
}

impl WindowAggregate {
    /// Keeps the windows' state within `config`'s memory budget, spilling
    /// the least recently used groups to disk beyond it (see `spill`'s docs).
    pub fn with_state(mut self, config: StateConfig) -> Self {
        if let Windows::Session { gap } = self.config.windows {
            self.sessions = Some(super::sessions::Sessions::new(gap, &config));
        }
        self.spill = Spilling::new(config);
        self
    }

    /// Memory the groups in memory cost, by the operator's accounting.
    pub fn memory_bytes(&self) -> usize {
        self.spill.book.bytes()
    }

    /// Groups on disk (a stale copy of a group back in memory counts until replaced).
    pub fn spilled_groups(&self) -> u64 {
        self.spill.book.on_disk()
    }

    /// How many times groups were spilled to disk.
    pub fn spills(&self) -> u64 {
        self.spill.book.spills()
    }

    /// Marks a group just used and brings its cost up to date.
    pub(super) fn touch(&mut self, slot: usize) {
        let Some(g) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
        let bytes = group_cost(g);
        g.used = self.spill.book.touch(g.bytes, bytes);
        g.bytes = bytes;
    }

    /// Frees a slot whose group is gone for good (and with it its disk copy).
    pub(super) fn free_slot(&mut self, slot: usize) -> Option<Group> {
        let g = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        let disk = g.on_disk.then(|| self.disk_key_of(&g));
        self.spill.book.release(g.bytes, disk);
        Some(g)
    }

    /// Deletes a group's disk copy (with the next write or read of the table).
    pub(super) fn forget_disk_copy(&mut self, slot: usize) {
        let Some(g) = self.slots.get(slot).and_then(Option::as_ref) else { return };
        if g.on_disk {
            let disk = self.disk_key_of(g);
            self.spill.book.release(0, Some(disk));
            if let Some(g) = self.slots[slot].as_mut() {
                g.on_disk = false;
            }
        }
    }

    fn counting_windows(&self) -> bool {
        matches!(self.config.windows, Windows::Count { .. })
    }

    /// A group's key in the spill table.
    fn disk_key_of(&self, g: &Group) -> Vec<u8> {
        if self.counting_windows() { count_key(&g.key) } else { disk_key(&g.key, g.window) }
    }

    /// The slot of `key`'s open count window brought back from disk, if it was spilled.
    pub(super) fn load_count(&mut self, key: &OwnedRow) -> Result<Option<usize>> {
        let disk = count_key(key);
        let Some(value) = self.spill.book.get(&disk)? else { return Ok(None) };
        Ok(self.load(&[(disk, value)])?.first().copied())
    }

    /// The slot of `key`'s group for `window`, brought back from disk if it
    /// was spilled; `None` if it has no state.
    pub(super) fn locate(&mut self, key: &OwnedRow, window: Window) -> Result<Option<usize>> {
        if let Some(slot) = self.groups.get(&(key.clone(), window)) {
            return Ok(Some(*slot));
        }
        let disk = disk_key(key, window);
        let Some(value) = self.spill.book.get(&disk)? else { return Ok(None) };
        Ok(self.load(&[(disk, value)])?.first().copied())
    }

    /// Brings spilled groups back into memory; returns their slots.
    fn load(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<usize>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.decode(entries)?;
        let slots = self.restore_rows(&batch, false)?;
        for slot in &slots {
            if let Some(g) = self.slots[*slot].as_mut() {
                g.on_disk = true;
            }
        }
        Ok(slots)
    }

    /// Spill table entries as rows of the checkpoint's state schema.
    fn decode(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<RecordBatch> {
        let codec = self.spill.book.codec()?;
        let (keys, values) = (self.rows.parser(), codec.parser());
        // A count window's bounds lead its value; a time window's are its key.
        let count = self.counting_windows();
        let bounds = |k: &[u8], v: &[u8]| -> [u8; 16] {
            let mut b = [0u8; 16];
            b.copy_from_slice(&(if count { v } else { k })[..16]);
            b
        };
        let skip = if count { 16 } else { 0 };
        let mut columns = self.rows.convert_rows(entries.iter().map(|(k, _)| keys.parse(&k[16..])))?;
        columns.truncate(self.key_indices.len());
        let starts: Int64Array = entries.iter().map(|(k, v)| unsortable(&bounds(k, v)[8..16])).collect();
        let ends: Int64Array = entries.iter().map(|(k, v)| unsortable(&bounds(k, v)[..8])).collect();
        columns.push(std::sync::Arc::new(starts));
        columns.push(std::sync::Arc::new(ends));
        columns.extend(codec.convert_rows(entries.iter().map(|(_, v)| values.parse(&v[skip..])))?);
        Ok(RecordBatch::try_new(self.state_schema()?, columns)?)
    }

    /// Whether the group a spill table key names is in memory.
    fn in_memory(&self, disk: &[u8]) -> bool {
        let key = self.rows.parser().parse(&disk[16..]).owned();
        if self.counting_windows() {
            return self.counting.contains_key(&key);
        }
        self.groups.contains_key(&(key, window_of(disk)))
    }

    /// Moves the least recently used groups to disk when memory is past
    /// the budget, until it is down to half. Dirty groups that the next
    /// watermark fires stay: a fired window with unfired late rows, and
    /// with early firing every dirty group (so results come out exactly
    /// when they would in memory).
    pub(super) fn make_room(&mut self) -> Result<()> {
        if !self.spill.book.over_budget() {
            return Ok(());
        }
        if self.spill.book.needs_codec() {
            let schema = self.state_schema()?;
            let types: Vec<DataType> =
                schema.fields()[self.key_indices.len() + 2..].iter().map(|f| f.data_type().clone()).collect();
            self.spill.book.set_codec(types)?;
            if !self.spill.book.over_budget() {
                return Ok(());
            }
        }
        let (watermark, early) = (self.watermark, self.config.early_fire);
        let slots: Vec<usize> = if self.counting_windows() {
            self.counting.values().copied().collect()
        } else {
            self.groups.values().copied().collect()
        };
        let candidates: Vec<(u64, usize, usize)> = slots
            .iter()
            .filter_map(|slot| {
                let g = self.slots[*slot].as_ref()?;
                let pinned = g.dirty && (early || g.window.end - 1 <= watermark);
                (!pinned).then_some((g.used, *slot, g.bytes))
            })
            .collect();
        let chosen = self.spill.book.choose(candidates);
        let Some(batch) = self.state_batch(&chosen)? else { return Ok(()) };
        let values = self.spill.book.codec()?.convert_columns(&batch.columns()[self.key_indices.len() + 2..])?;
        let mut puts = Vec::with_capacity(chosen.len());
        let mut freed = 0;
        for (i, slot) in chosen.iter().enumerate() {
            if let Some(g) = self.slots[*slot].as_ref() {
                let mut value = Vec::new();
                if self.counting_windows() {
                    value.extend_from_slice(&sortable(g.window.end));
                    value.extend_from_slice(&sortable(g.window.start));
                }
                value.extend_from_slice(values.row(i).as_ref());
                puts.push((self.disk_key_of(g), value));
                freed += g.bytes;
            }
        }
        // On failure nothing is lost: the groups stay in memory, over the budget.
        self.spill.book.spill(&puts, freed)?;
        for slot in chosen {
            if let Some(g) = self.slots[slot].take() {
                self.free.push(slot);
                self.by_end.remove(&(g.window.end, slot));
                self.counting.remove(&g.key);
                self.groups.remove(&(g.key, g.window));
            }
        }
        tracing::debug!(spilled = puts.len(), in_memory = self.groups.len(), "window state spilled to disk");
        Ok(())
    }

    /// Fires the spilled windows the watermark completed (their ends up to
    /// `watermark + 1`), a chunk at a time, and frees those past
    /// `drop_before`.
    pub(super) fn fire_spilled(&mut self, drop_before: i64, out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.counting_windows() {
            // Count windows fire by their rows, never by the watermark.
            return Ok(());
        }
        let through = self.watermark.saturating_add(1);
        let mut from = sortable(self.spill.fired_below).to_vec();
        let to = sortable(through.saturating_add(1));
        loop {
            let entries = self.spill.book.scan(&from, Some(&to))?;
            let Some((last, _)) = entries.last() else { break };
            from = after(last);
            let entries: Vec<_> = entries.into_iter().filter(|(k, _)| !self.in_memory(k)).collect();
            let slots = self.load(&entries)?;
            let ready: Vec<usize> =
                slots.iter().copied().filter(|s| self.slots[*s].as_ref().is_some_and(|g| g.dirty)).collect();
            out.extend(self.emit(&ready)?);
            for slot in slots {
                let Some(window) = self.slots[slot].as_ref().map(|g| g.window) else { continue };
                if window.end - 1 < drop_before {
                    self.by_end.remove(&(window.end, slot));
                    self.drop_group(slot)?;
                }
            }
            self.make_room()?;
        }
        self.spill.fired_below = through.saturating_add(1);
        Ok(())
    }

    /// Deletes the spilled windows past the allowed lateness (they fired
    /// before they spilled), with their sessions. Runs after the groups in
    /// memory past it were dropped, so all of that range goes.
    pub(super) fn drop_spilled(&mut self, drop_before: i64) -> Result<()> {
        if self.counting_windows() {
            return Ok(());
        }
        let to = sortable(drop_before.saturating_add(1));
        let mut from = Vec::new();
        loop {
            let entries = self.spill.book.scan(&from, Some(&to))?;
            let Some((last, _)) = entries.last() else { break };
            from = after(last);
            for (disk, _) in entries {
                if let Some(sessions) = self.sessions.as_mut() {
                    let key = self.rows.parser().parse(&disk[16..]).owned();
                    sessions.remove(&key, window_of(&disk))?;
                }
                self.spill.book.release(0, Some(disk));
            }
        }
        self.spill.book.flush_deletes()
    }

    /// Every spilled group not also in memory, as rows of the checkpoint's state schema.
    pub(super) fn spilled_state(&mut self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut from = Vec::new();
        loop {
            let entries = self.spill.book.scan(&from, None)?;
            let Some((last, _)) = entries.last() else { break };
            from = after(last);
            let entries: Vec<_> = entries.into_iter().filter(|(k, _)| !self.in_memory(k)).collect();
            if !entries.is_empty() {
                out.push(self.decode(&entries)?);
            }
        }
        Ok(out)
    }
}
