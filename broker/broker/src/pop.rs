//! Pop consumption: which message each consumer group gets next, which are
//! in flight (invisible) until acknowledged, and receipt handles.
//!
//! Per (group, topic, queue) the broker keeps the next offset never handed
//! out and the in-flight offsets with their visibility deadlines. A receive
//! first hands out in-flight messages whose deadline passed (redelivery),
//! then new ones. An acknowledgement removes a message from flight; the
//! group's committed offset is the smallest offset still in flight (or the
//! next offset), persisted in the metadata store, so a restart resumes there
//! (at-least-once: in-flight messages are delivered again).
//!
//! When a message's deadline passes, the broker's revive pass takes it out
//! of flight and stores a copy on the group's retry topic (or its
//! dead-letter topic once attempts run out), so committed offsets move on
//! and the redelivery survives a restart; FIFO groups instead redeliver in
//! place. Messages of a retry topic are popped like any other queue.
//!
//! A receipt handle names the queue, the offset and a nonce that changes on
//! every delivery and visibility change, so a stale handle is refused.
//! This module keeps state only; reading messages is the caller's.
//!
//! Locking: a map lock is held only to find or create a queue's state;
//! each state has its own lock, held while a receive reads that queue, so
//! receives on different queues (and groups) run in parallel. A reset
//! retires the states it removes, and whoever still holds one looks again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

/// A message handed out and not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// When it becomes visible again (ms since the epoch).
    pub deadline: i64,
    /// Delivery count, 1 for the first.
    pub attempt: i32,
    /// Changes with every delivery; part of the receipt handle.
    pub nonce: u64,
    /// Hash of the message group for FIFO groups (0: none), which stays
    /// blocked while this message is in flight.
    pub group: u64,
    /// The message asked for tracing (its ack is recorded).
    pub traced: bool,
    /// The client set the deadline (ChangeInvisibleDuration): when it
    /// passes, the client has waited as long as it wanted before a retry.
    pub client_set: bool,
}

/// Consumption state of one group on one queue.
#[derive(Debug, Clone, Default)]
pub struct QueueState {
    /// The next offset never handed out.
    pub next: u64,
    /// Offsets in flight.
    pub inflight: BTreeMap<u64, InFlight>,
    /// FIFO groups: offsets read but held back (by message-group hash)
    /// because an earlier message of their group is in flight.
    pub held: BTreeMap<u64, u64>,
}

impl QueueState {
    /// The offset below which everything is acknowledged.
    pub fn committed(&self) -> u64 {
        let first_inflight = self.inflight.keys().next().copied().unwrap_or(self.next);
        let first_held = self.held.keys().next().copied().unwrap_or(self.next);
        first_inflight.min(first_held).min(self.next)
    }

    /// Message groups with a message in flight.
    pub fn busy_groups(&self) -> std::collections::HashSet<u64> {
        self.inflight.values().map(|f| f.group).filter(|g| *g != 0).collect()
    }
}

/// The hash a message group is tracked by (never 0).
pub fn group_hash(group: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    group.hash(&mut h);
    h.finish().max(1)
}

/// Queue id a receipt handle carries for a message from the group's retry
/// topic (whose single store queue is 0).
pub const RETRY_QUEUE: u32 = u32::MAX;

/// Deadline of a message being moved to a retry or dead-letter topic.
pub const MOVING: i64 = i64::MAX;

/// Key of a consumption state: group (or group@client for broadcast), topic, queue.
pub type StateKey = (String, String, u32);

/// One queue's state behind its own lock.
#[derive(Debug)]
struct Slot {
    state: QueueState,
    /// Removed from the map by a reset: holders must look the key up again.
    retired: bool,
}

/// All groups' pop state.
#[derive(Debug, Default)]
pub struct PopState {
    queues: RwLock<HashMap<StateKey, Arc<Mutex<Slot>>>>,
    nonce: AtomicU64,
}

/// A parsed receipt handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    /// Queue id.
    pub queue: u32,
    /// Queue offset of the message.
    pub offset: u64,
    /// Delivery nonce.
    pub nonce: u64,
}

impl Handle {
    /// The handle as sent to clients.
    pub fn encode(&self) -> String {
        format!("r1:{}:{}:{:x}", self.queue, self.offset, self.nonce)
    }

    /// Parses a handle made by [`Handle::encode`].
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.strip_prefix("r1:")?.split(':');
        let queue = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        let nonce = u64::from_str_radix(parts.next()?, 16).ok()?;
        parts.next().is_none().then_some(Self { queue, offset, nonce })
    }
}

/// Why an acknowledgement or visibility change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// The handle is not one of ours.
    Malformed,
    /// The message was acknowledged, redelivered or changed since.
    Stale,
}

impl PopState {
    /// A state whose nonces start at `seed` (use the clock, so handles from
    /// before a restart never match).
    pub fn new(seed: u64) -> Self {
        Self { queues: RwLock::new(HashMap::new()), nonce: AtomicU64::new(seed) }
    }

    fn next_nonce(&self) -> u64 {
        self.nonce.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` on the state of `key` under that queue's lock, creating the
    /// state with `init` (the committed offset to start from) when it is new.
    pub fn with<R>(&self, key: &StateKey, init: impl Fn() -> u64, f: impl FnOnce(&mut QueueState) -> R) -> R {
        loop {
            let existing = self.queues.read().get(key).cloned();
            let slot = existing.unwrap_or_else(|| {
                let mut queues = self.queues.write();
                let slot = queues.entry(key.clone()).or_insert_with(|| {
                    let state = QueueState { next: init(), ..QueueState::default() };
                    Arc::new(Mutex::new(Slot { state, retired: false }))
                });
                Arc::clone(slot)
            });
            let mut slot = slot.lock();
            if !slot.retired {
                return f(&mut slot.state);
            }
        }
    }

    /// Runs `f` on the state of `key` if the broker has one (acks and
    /// visibility changes never create state: a handle from before a
    /// restart must not move where the group reads from).
    pub fn with_existing<R>(&self, key: &StateKey, f: impl FnOnce(&mut QueueState) -> R) -> Option<R> {
        let slot = self.queues.read().get(key).cloned()?;
        let mut slot = slot.lock();
        if slot.retired { None } else { Some(f(&mut slot.state)) }
    }

    /// Marks `offset` (of message group `group`, 0 for none) in flight
    /// until `deadline`; returns its handle and attempt.
    pub fn deliver(
        &self,
        state: &mut QueueState,
        queue: u32,
        offset: u64,
        deadline: i64,
        group: u64,
        traced: bool,
    ) -> (Handle, i32) {
        let nonce = self.next_nonce();
        let attempt = state.inflight.get(&offset).map_or(1, |f| f.attempt + 1);
        state.inflight.insert(offset, InFlight { deadline, attempt, nonce, group, traced, client_set: false });
        (Handle { queue, offset, nonce }, attempt)
    }

    /// In-flight offsets whose deadline passed, oldest first, at most `max`.
    pub fn expired(state: &QueueState, now: i64, max: usize) -> Vec<u64> {
        state.inflight.iter().filter(|(_, f)| f.deadline <= now).map(|(o, _)| *o).take(max).collect()
    }

    /// Acknowledges the message a handle names; returns the new committed
    /// offset and what was in flight.
    pub fn ack(state: &mut QueueState, handle: Handle) -> Result<(u64, InFlight), HandleError> {
        match state.inflight.get(&handle.offset) {
            Some(f) if f.nonce == handle.nonce => {
                let f = *f;
                state.inflight.remove(&handle.offset);
                Ok((state.committed(), f))
            }
            _ => Err(HandleError::Stale),
        }
    }

    /// Takes up to `max` in-flight messages whose deadline passed and that
    /// `select` picks, over every state: each is marked as being moved (no
    /// receive redelivers it, its old handle goes stale) until
    /// [`PopState::finish_move`] or [`PopState::abort_move`].
    pub fn take_expired(
        &self,
        now: i64,
        max: usize,
        select: impl Fn(&StateKey, &InFlight) -> bool,
    ) -> Vec<(StateKey, u64, InFlight)> {
        let slots: Vec<(StateKey, Arc<Mutex<Slot>>)> =
            self.queues.read().iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect();
        let mut out = Vec::new();
        for (key, slot) in slots {
            let mut slot = slot.lock();
            if slot.retired {
                continue;
            }
            for (offset, f) in slot.state.inflight.iter_mut() {
                if out.len() >= max {
                    return out;
                }
                if f.deadline <= now && select(&key, f) {
                    f.deadline = MOVING;
                    f.nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
                    out.push((key.clone(), *offset, *f));
                }
            }
        }
        out
    }

    /// Removes a message taken by [`PopState::take_expired`] once its copy
    /// is stored; returns the state's new committed offset.
    pub fn finish_move(&self, key: &StateKey, offset: u64, nonce: u64) -> Option<u64> {
        self.with_existing(key, |s| match s.inflight.get(&offset) {
            Some(f) if f.nonce == nonce => {
                s.inflight.remove(&offset);
                Some(s.committed())
            }
            _ => None,
        })
        .flatten()
    }

    /// Puts a message whose move failed back, due again at `now`.
    pub fn abort_move(&self, key: &StateKey, offset: u64, nonce: u64, now: i64) {
        self.with_existing(key, |s| {
            if let Some(f) = s.inflight.get_mut(&offset)
                && f.nonce == nonce
            {
                f.deadline = now;
            }
        });
    }

    /// Marks the message a handle names as being moved (to the dead-letter
    /// queue at a client's request); returns its in-flight record.
    pub fn take(&self, key: &StateKey, handle: Handle) -> Result<InFlight, HandleError> {
        self.with_existing(key, |s| match s.inflight.get_mut(&handle.offset) {
            Some(f) if f.nonce == handle.nonce && f.deadline != MOVING => {
                f.deadline = MOVING;
                f.nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
                Ok(*f)
            }
            _ => Err(HandleError::Stale),
        })
        .unwrap_or(Err(HandleError::Stale))
    }

    /// Moves a message's visibility deadline; returns the new handle.
    pub fn change(&self, state: &mut QueueState, handle: Handle, deadline: i64) -> Result<Handle, HandleError> {
        match state.inflight.get_mut(&handle.offset) {
            Some(f) if f.nonce == handle.nonce && f.deadline != MOVING => {
                f.nonce = self.next_nonce();
                f.deadline = deadline;
                f.client_set = true;
                Ok(Handle { nonce: f.nonce, ..handle })
            }
            _ => Err(HandleError::Stale),
        }
    }

    /// Forgets a group's state (all of it, or one topic, or one queue) and
    /// runs `commit` — which writes the new offsets — under the same lock,
    /// so no receive can slip in between and write back an older offset.
    /// Broadcast members' state (`group@client`) goes too.
    pub fn reset<R>(&self, group: &str, topic: Option<&str>, queue: Option<u32>, commit: impl FnOnce() -> R) -> R {
        let member_prefix = format!("{group}@");
        self.retire(
            |(g, t, q)| {
                let same_group = g == group || g.starts_with(&member_prefix);
                same_group && topic.is_none_or(|x| x == t) && queue.is_none_or(|x| x == *q)
            },
            commit,
        )
    }

    /// Forgets the state a broadcast member (`group@client`) kept, once it left.
    pub fn forget_member(&self, group: &str, client_id: &str) {
        let owner = format!("{group}@{client_id}");
        self.retire(|(g, _, _)| *g == owner, || ());
    }

    /// Removes and retires every state whose key matches, then runs
    /// `commit` while no receive can reach them: a receive still holding
    /// one finishes first (its lock is taken here) and sees it retired after.
    fn retire<R>(&self, matches: impl Fn(&StateKey) -> bool, commit: impl FnOnce() -> R) -> R {
        let mut queues = self.queues.write();
        let keys: Vec<StateKey> = queues.keys().filter(|k| matches(k)).cloned().collect();
        for key in keys {
            if let Some(slot) = queues.remove(&key) {
                slot.lock().retired = true;
            }
        }
        commit()
    }

    /// How many queue states are kept (for tests and operators).
    pub fn len(&self) -> usize {
        self.queues.read().len()
    }

    /// Whether no state is kept.
    pub fn is_empty(&self) -> bool {
        self.queues.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_reject_garbage() {
        let h = Handle { queue: 3, offset: 42, nonce: 0xdead };
        assert_eq!(Handle::parse(&h.encode()), Some(h));
        for bad in ["", "r1:", "r1:x:1:2", "r1:1:2", "r1:1:2:3:4", "r2:1:2:3"] {
            assert_eq!(Handle::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn acks_commit_the_lowest_open_offset_and_stale_handles_fail() {
        let pop = PopState::new(1);
        let key = ("g".to_owned(), "t".to_owned(), 0);
        pop.with(
            &key,
            || 10,
            |s| {
                let (h10, a) = pop.deliver(s, 0, 10, 100, 0, false);
                assert_eq!(a, 1);
                let (h11, _) = pop.deliver(s, 0, 11, 100, 0, false);
                s.next = 12;
                assert_eq!(s.committed(), 10);
                assert_eq!(PopState::ack(s, h11).map(|a| a.0), Ok(10));
                assert_eq!(PopState::ack(s, h11), Err(HandleError::Stale), "acked twice");
                // Redelivery after expiry invalidates the old handle.
                assert_eq!(PopState::expired(s, 100, 10), vec![10]);
                let (h10b, attempt) = pop.deliver(s, 0, 10, 200, 0, false);
                assert_eq!(attempt, 2);
                assert_eq!(PopState::ack(s, h10), Err(HandleError::Stale));
                let moved = pop.change(s, h10b, 300).unwrap();
                assert_eq!(PopState::ack(s, h10b), Err(HandleError::Stale));
                assert_eq!(PopState::ack(s, moved).map(|a| a.0), Ok(12));
            },
        );
    }
}
