//! The persistent timer wheel behind delay messages, timer messages and
//! consumer retries.
//!
//! What it owns: files of small fixed-size timer entries below
//! `<data_dir>/timer/` and their checkpoint. An entry points at a message
//! parked in the CommitLog; it never holds the message itself. What it must
//! not touch: the CommitLog or any queue — the broker reads the parked
//! message and stores it on its real topic when the entry falls due.
//!
//! # Design: a hierarchy of fixed-delay levels
//!
//! Level `k` is a FIFO of entries that each wait exactly `base · 2^k`
//! (levels `0..=max_level`). An entry entering level `k` at time `t` is next
//! looked at ("hops") at `t + base · 2^k`; since entries enter a level in time
//! order with the same wait, every level is sorted by hop time and only its
//! head ever needs checking. When an entry hops and its due time is still
//! ahead by `r`, it moves to the largest level whose wait does not exceed
//! `r` (level 0 when `r < base`); once `r ≤ 0` it is returned as due. A
//! timer therefore hops about `log2(delay / base)` times, never fires early,
//! and fires at most `base` (plus the caller's polling interval) late.
//! Delays longer than the top level's wait simply hop on the top level again,
//! so there is no upper limit on delays other than the one the broker sets.
//!
//! Memory does not grow with the number of pending timers: each level keeps
//! its cursor, its end and a small read buffer; entries live in segment files
//! of [`SEGMENT_ENTRIES`] entries (`timer/<level>/<first index>`), deleted
//! once every entry in them has hopped on.
//!
//! # Durability
//!
//! [`TimerWheel::checkpoint`] first `fdatasync`s the level files written
//! since the last checkpoint, then atomically replaces `timer/checkpoint.json`
//! (cursor and end of every level, and the caller's `source` position). On
//! open, every level is cut back to its checkpointed end and read from its
//! checkpointed cursor. Work done after the last checkpoint is therefore done
//! again after a crash — an entry may fire twice, never zero times — provided
//! the caller checkpoints only what it has made durable itself (see
//! [`TimerWheel::checkpoint`]).

use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;
use crate::error::{Error, Result};

/// Entries per level segment file (32 bytes each: 2 MiB files).
pub const SEGMENT_ENTRIES: u64 = 64 * 1024;
/// Size of one stored entry.
const ENTRY_LEN: u64 = 32;
/// Entries read from a level file at once.
const READ_AHEAD: u64 = 512;

/// One pending timer: a message parked in the CommitLog and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerEntry {
    /// When the message must be delivered (ms since the epoch).
    pub due_ms: i64,
    /// CommitLog offset of the parked message.
    pub offset: u64,
    /// Record size of the parked message.
    pub size: u32,
    /// When the parked copy was stored (s since the epoch); the broker
    /// re-parks old copies before retention could delete them.
    pub parked_s: u32,
}

/// A stored entry: the timer plus when its level lets it go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    hop_ms: i64,
    entry: TimerEntry,
}

impl Slot {
    fn encode(&self) -> [u8; ENTRY_LEN as usize] {
        let mut b = [0u8; ENTRY_LEN as usize];
        b[0..8].copy_from_slice(&self.hop_ms.to_le_bytes());
        b[8..16].copy_from_slice(&self.entry.due_ms.to_le_bytes());
        b[16..24].copy_from_slice(&self.entry.offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.entry.size.to_le_bytes());
        b[28..32].copy_from_slice(&self.entry.parked_s.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Self {
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[i..i + 4]);
            u32::from_le_bytes(a)
        };
        Slot {
            hop_ms: u64_at(0) as i64,
            entry: TimerEntry { due_ms: u64_at(8) as i64, offset: u64_at(16), size: u32_at(24), parked_s: u32_at(28) },
        }
    }
}

/// What the checkpoint file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    /// The caller's position in its own input (e.g. a queue offset).
    source: u64,
    /// `[cursor, end, last_hop_ms]` per level.
    levels: Vec<[i64; 3]>,
}

/// One fixed-delay FIFO.
#[derive(Debug)]
struct Level {
    dir: PathBuf,
    wait_ms: i64,
    /// Index of the next entry to look at.
    cursor: u64,
    /// Index one past the last entry.
    end: u64,
    /// Entries `[cursor, cursor + ahead.len())`, read in advance.
    ahead: VecDeque<Slot>,
    /// Entries `[end - unwritten.len(), end)`, not yet written to a file.
    unwritten: Vec<Slot>,
    /// Latest hop time handed out, so hops stay sorted if the clock steps back.
    last_hop: i64,
    /// Open segment files by first index (read and write).
    files: Vec<(u64, File)>,
    /// Segments written since the last checkpoint.
    dirty: BTreeSet<u64>,
}

impl Level {
    fn segment_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}"))
    }

    fn file(&mut self, first: u64) -> Result<&File> {
        if let Some(i) = self.files.iter().position(|(f, _)| *f == first) {
            return Ok(&self.files[i].1);
        }
        let path = self.segment_path(first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        // Keep the tail's and the cursor's segments; older handles go.
        if self.files.len() >= 4 {
            self.files.remove(0);
        }
        self.files.push((first, file));
        Ok(&self.files[self.files.len() - 1].1)
    }

    fn push(&mut self, slot: Slot) {
        self.unwritten.push(slot);
        self.end += 1;
    }

    /// Writes buffered entries to their segment files.
    fn write_out(&mut self) -> Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let slots = std::mem::take(&mut self.unwritten);
        let mut index = self.end - slots.len() as u64;
        let mut rest = &slots[..];
        while !rest.is_empty() {
            let first = index - index % SEGMENT_ENTRIES;
            let room = (first + SEGMENT_ENTRIES - index) as usize;
            let (now, later) = rest.split_at(room.min(rest.len()));
            let bytes: Vec<u8> = now.iter().flat_map(|s| s.encode()).collect();
            let pos = (index - first) * ENTRY_LEN;
            let path = self.segment_path(first);
            self.file(first)?.write_all_at(&bytes, pos).map_err(Error::io("write", &path))?;
            self.dirty.insert(first);
            index += now.len() as u64;
            rest = later;
        }
        Ok(())
    }

    /// The entry at the cursor, reading ahead from the files.
    fn head(&mut self) -> Result<Option<Slot>> {
        if self.ahead.is_empty() && self.cursor < self.end {
            self.write_out()?;
            let first = self.cursor - self.cursor % SEGMENT_ENTRIES;
            let n = READ_AHEAD.min(self.end - self.cursor).min(first + SEGMENT_ENTRIES - self.cursor);
            let mut buf = vec![0u8; (n * ENTRY_LEN) as usize];
            let path = self.segment_path(first);
            let pos = (self.cursor - first) * ENTRY_LEN;
            self.file(first)?.read_exact_at(&mut buf, pos).map_err(Error::io("read", &path))?;
            self.ahead.extend(buf.chunks_exact(ENTRY_LEN as usize).map(Slot::decode));
        }
        Ok(self.ahead.front().copied())
    }

    fn advance(&mut self) {
        if self.ahead.pop_front().is_some() {
            self.cursor += 1;
        }
    }

    fn sync(&mut self) -> Result<()> {
        self.write_out()?;
        for first in std::mem::take(&mut self.dirty) {
            let path = self.segment_path(first);
            self.file(first)?.sync_data().map_err(Error::io("sync", &path))?;
        }
        Ok(())
    }

    /// Deletes segment files whose entries all lie below `cursor`.
    fn drop_below(&mut self, cursor: u64) -> Result<()> {
        let keep_from = cursor - cursor % SEGMENT_ENTRIES;
        for first in segment_starts(&self.dir)?.into_iter().filter(|f| *f < keep_from) {
            self.files.retain(|(f, _)| *f != first);
            let path = self.segment_path(first);
            std::fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        }
        Ok(())
    }
}

/// What [`TimerWheel::poll`] hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// The timer is due: deliver the message.
    Due(TimerEntry),
    /// Not due yet, but its parked copy was stored before the `park_before`
    /// given to `poll`: park a fresh copy and schedule that instead.
    Repark(TimerEntry),
}

/// The persistent timer wheel (see the module docs).
#[derive(Debug)]
pub struct TimerWheel {
    dir: PathBuf,
    levels: Vec<Level>,
    source: u64,
    /// Pending entries, kept exact across opens via the level bounds.
    pending: u64,
}

impl TimerWheel {
    /// Opens (or creates) the wheel in `dir` with level 0 waiting `base_ms`
    /// and `levels` levels, cutting every level back to the last checkpoint.
    pub fn open(dir: &Path, base_ms: i64, levels: u32) -> Result<Self> {
        if base_ms <= 0 || levels == 0 || levels > 40 {
            return Err(Error::InvalidConfig {
                field: "timer",
                reason: format!("base {base_ms} ms and {levels} levels: need base > 0 and 1..=40 levels"),
            });
        }
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        let saved = load(&dir.join("checkpoint.json"))?;
        let mut out = Vec::with_capacity(levels as usize);
        let mut pending = 0;
        for k in 0..levels {
            let ldir = dir.join(format!("{k:02}"));
            std::fs::create_dir_all(&ldir).map_err(Error::io("create", &ldir))?;
            let [cursor, end, last_hop] = saved.levels.get(k as usize).copied().unwrap_or([0, 0, 0]);
            let (cursor, end) = (cursor.max(0) as u64, end.max(0) as u64);
            if cursor > end {
                return Err(Error::Corrupt {
                    path: dir.join("checkpoint.json"),
                    offset: cursor,
                    position: 0,
                    reason: format!("level {k} cursor {cursor} is past its end {end}"),
                });
            }
            cut_back(&ldir, end)?;
            let mut level = Level {
                dir: ldir,
                wait_ms: base_ms.saturating_mul(1i64 << k),
                cursor,
                end,
                ahead: VecDeque::new(),
                unwritten: Vec::new(),
                last_hop,
                files: Vec::new(),
                dirty: BTreeSet::new(),
            };
            level.drop_below(cursor)?;
            pending += end - cursor;
            out.push(level);
        }
        Ok(Self { dir: dir.to_path_buf(), levels: out, source: saved.source, pending })
    }

    /// The caller's input position saved by the last checkpoint.
    pub fn source(&self) -> u64 {
        self.source
    }

    /// Timers scheduled and not yet fired (entries on some level).
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The longest single wait (the top level's).
    pub fn top_wait_ms(&self) -> i64 {
        self.levels.last().map_or(0, |l| l.wait_ms)
    }

    /// Schedules `entry`; one that is already due goes on level 0 and comes
    /// back from the next poll after level 0's wait (callers deliver those
    /// at once instead).
    pub fn schedule(&mut self, entry: TimerEntry, now_ms: i64) {
        let left = entry.due_ms.saturating_sub(now_ms);
        let k = self.level_for(left);
        let level = &mut self.levels[k];
        let hop_ms = now_ms.saturating_add(level.wait_ms).max(level.last_hop);
        level.last_hop = hop_ms;
        level.push(Slot { hop_ms, entry });
        self.pending += 1;
    }

    /// The level for a timer `left_ms` from due: the largest whose wait fits.
    fn level_for(&self, left_ms: i64) -> usize {
        let base = self.levels[0].wait_ms;
        if left_ms < base.saturating_mul(2) {
            return 0;
        }
        let k = (63 - (left_ms / base).leading_zeros()) as usize;
        k.min(self.levels.len() - 1)
    }

    /// Hops every entry whose level wait is over (as of `now_ms`) and
    /// returns up to `max` timers that fell due, plus timers whose parked
    /// copy is older than `park_before_s` (s since the epoch) — those leave
    /// the wheel and the caller schedules a fresh copy.
    pub fn poll(&mut self, now_ms: i64, park_before_s: u32, max: usize) -> Result<Vec<Fired>> {
        let mut out = Vec::new();
        let mut moves = Vec::new();
        for k in 0..self.levels.len() {
            while out.len() < max {
                let level = &mut self.levels[k];
                let Some(slot) = level.head()? else { break };
                if slot.hop_ms > now_ms {
                    break;
                }
                level.advance();
                let e = slot.entry;
                if e.due_ms <= now_ms {
                    self.pending -= 1;
                    out.push(Fired::Due(e));
                } else if e.parked_s < park_before_s {
                    self.pending -= 1;
                    out.push(Fired::Repark(e));
                } else {
                    moves.push(e);
                }
            }
        }
        for e in moves {
            self.pending -= 1;
            self.schedule(e, now_ms);
        }
        Ok(out)
    }

    /// When the earliest level head hops (ms since the epoch), if any.
    pub fn next_hop(&mut self) -> Result<Option<i64>> {
        let mut next: Option<i64> = None;
        for level in &mut self.levels {
            if let Some(s) = level.head()? {
                next = Some(next.map_or(s.hop_ms, |n| n.min(s.hop_ms)));
            }
        }
        Ok(next)
    }

    /// Makes everything so far durable and records `source`, the caller's
    /// input position. Call it only once the effects of every timer polled
    /// so far (delivered or re-parked messages) are durable themselves, and
    /// once every input below `source` has been scheduled.
    pub fn checkpoint(&mut self, source: u64) -> Result<()> {
        for level in &mut self.levels {
            level.sync()?;
        }
        let saved =
            Saved { source, levels: self.levels.iter().map(|l| [l.cursor as i64, l.end as i64, l.last_hop]).collect() };
        let bytes = serde_json::to_vec(&saved).map_err(|e| Error::Metadata { path: self.dir.clone(), source: e })?;
        write_atomically(&self.dir.join("checkpoint.json"), &bytes)?;
        self.source = source;
        for level in &mut self.levels {
            let cursor = level.cursor;
            level.drop_below(cursor)?;
        }
        Ok(())
    }
}

fn load(path: &Path) -> Result<Saved> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| Error::Metadata { path: path.to_path_buf(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(Error::Io { op: "read", path: path.to_path_buf(), source: e }),
    }
}

/// First indexes of the segment files in a level directory.
fn segment_starts(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let item = item.map_err(Error::io("list", dir))?;
        if let Some(first) = item.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            out.push(first);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Removes what a level wrote past `end` (work after the last checkpoint).
fn cut_back(dir: &Path, end: u64) -> Result<()> {
    for first in segment_starts(dir)? {
        let path = dir.join(format!("{first:020}"));
        if first >= end {
            std::fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        } else if first + SEGMENT_ENTRIES > end {
            let f = OpenOptions::new().write(true).open(&path).map_err(Error::io("open", &path))?;
            f.set_len((end - first) * ENTRY_LEN).map_err(Error::io("truncate", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(due_ms: i64, offset: u64) -> TimerEntry {
        TimerEntry { due_ms, offset, size: 100, parked_s: 1 }
    }

    /// Polls every `step` ms until `until`, returning (fire time, entry).
    fn run(w: &mut TimerWheel, from: i64, until: i64, step: i64) -> Vec<(i64, TimerEntry)> {
        let mut fired = Vec::new();
        let mut now = from;
        while now <= until {
            for f in w.poll(now, 0, usize::MAX).unwrap() {
                match f {
                    Fired::Due(e) => fired.push((now, e)),
                    Fired::Repark(_) => panic!("nothing is old enough to re-park"),
                }
            }
            now += step;
        }
        fired
    }

    #[test]
    fn timers_fire_in_time_never_early_and_the_wheel_empties() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TimerWheel::open(dir.path(), 100, 10).unwrap();
        let dues = [150, 1_000, 1_001, 5_000, 60_000, 3_600_000, 250];
        for (i, d) in dues.iter().enumerate() {
            w.schedule(entry(*d, i as u64), 0);
        }
        assert_eq!(w.pending(), dues.len() as u64);
        let fired = run(&mut w, 0, 3_700_000, 10);
        assert_eq!(fired.len(), dues.len());
        for (at, e) in &fired {
            assert!(*at >= e.due_ms, "{e:?} fired early at {at}");
            assert!(*at <= e.due_ms + 110, "{e:?} fired late at {at}");
        }
        assert_eq!(w.pending(), 0);
        assert_eq!(w.next_hop().unwrap(), None);
    }

    #[test]
    fn a_restart_resumes_from_the_checkpoint_and_redoes_later_work() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut w = TimerWheel::open(dir.path(), 100, 8).unwrap();
            for i in 0..1000u64 {
                w.schedule(entry(1_000 + i as i64 * 37, i), 0);
            }
            w.checkpoint(1000).unwrap();
            // Fired after the checkpoint: must come back after the "crash".
            let early = run(&mut w, 0, 5_000, 50);
            assert!(!early.is_empty());
            w.schedule(entry(9_999_999, 5000), 5_000); // never checkpointed: gone
        }
        let mut w = TimerWheel::open(dir.path(), 100, 8).unwrap();
        assert_eq!(w.source(), 1000);
        assert_eq!(w.pending(), 1000);
        let fired = run(&mut w, 0, 40_000, 50);
        let mut offsets: Vec<u64> = fired.iter().map(|(_, e)| e.offset).collect();
        offsets.sort_unstable();
        assert_eq!(offsets, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn long_delays_hop_on_the_top_level_and_old_copies_are_handed_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TimerWheel::open(dir.path(), 1_000, 3).unwrap(); // top level waits 4 s
        w.schedule(TimerEntry { due_ms: 60_000, offset: 7, size: 1, parked_s: 0 }, 0);
        let mut now = 0;
        let mut seen = Vec::new();
        while seen.is_empty() && now < 100_000 {
            now += 500;
            // Copies older than 30 s are handed back.
            seen = w.poll(now, (now / 1000 - 30).max(0) as u32, 10).unwrap();
        }
        // Parked at second 0; the first hop after second 31 hands it back.
        assert!(matches!(seen[..], [Fired::Repark(e)] if e.offset == 7), "{seen:?}");
        assert!((30_000..=35_000).contains(&now), "re-parked at {now}");
    }

    #[test]
    fn segment_files_are_reclaimed_once_passed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TimerWheel::open(dir.path(), 100, 1).unwrap();
        let n = SEGMENT_ENTRIES * 2 + 10;
        for i in 0..n {
            w.schedule(entry(50, i), 0);
        }
        w.checkpoint(0).unwrap();
        assert_eq!(segment_starts(&dir.path().join("00")).unwrap().len(), 3);
        let fired = w.poll(100, 0, usize::MAX).unwrap();
        assert_eq!(fired.len() as u64, n);
        w.checkpoint(0).unwrap();
        assert_eq!(segment_starts(&dir.path().join("00")).unwrap(), vec![SEGMENT_ENTRIES * 2]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn every_timer_fires_once_within_the_bound(dues in proptest::collection::vec(0i64..200_000, 1..200)) {
            let dir = tempfile::tempdir().unwrap();
            let mut w = TimerWheel::open(dir.path(), 50, 12).unwrap();
            for (i, d) in dues.iter().enumerate() {
                w.schedule(entry(*d, i as u64), 0);
            }
            let fired = run(&mut w, 0, 210_000, 25);
            prop_assert_eq!(fired.len(), dues.len());
            for (at, e) in fired {
                prop_assert!(at >= e.due_ms && at <= e.due_ms.max(0) + 50 + 25 + 25, "{:?} at {}", e, at);
            }
        }
    }
}
