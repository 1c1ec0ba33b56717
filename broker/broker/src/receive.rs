//! Pop receives: which messages a receive gets (retry topic first, FIFO
//! message groups, tag and SQL92 filters, long polling), their receipt
//! handles, acknowledgements and visibility changes.
//!
//! It decides over the pop state (`pop`) and reads the store; it does not
//! move messages between topics (that is the revive pass in `retry`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rill_common::java_string_hash;
use rill_proto::v2::{self, Code};
use rill_store::ReadStatus;

use crate::convert::{self, Delivery, Rejection};
use crate::pop::{self, Handle, HandleError, PopState, QueueState};
use crate::{Broker, MAX_INVISIBLE, park, reply, trace};

/// Which messages a receive wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every message.
    All,
    /// Messages whose tag is one of these (`TagA || TagB`).
    Tags(Vec<String>),
    /// Messages whose properties satisfy a SQL92 expression.
    Sql(Arc<rill_filter::SqlFilter>),
}

impl Filter {
    /// Parses a tag expression (`*`, empty, or `A || B`).
    pub fn tags(expression: &str) -> Result<Self, Rejection> {
        let e = expression.trim();
        if e.is_empty() || e == "*" {
            return Ok(Filter::All);
        }
        let tags: Vec<String> = e.split("||").map(|t| t.trim().to_owned()).collect();
        if tags.iter().any(|t| t.is_empty() || t == "*") {
            return Err(Rejection::new(
                Code::IllegalFilterExpression,
                format!("tag expression {expression:?} has an empty tag; write tags as `TagA || TagB` or `*`"),
            ));
        }
        Ok(Filter::Tags(tags))
    }

    /// Parses a SQL92 expression over message properties.
    pub fn sql(expression: &str) -> Result<Self, Rejection> {
        rill_filter::SqlFilter::new(expression)
            .map(|f| Filter::Sql(Arc::new(f)))
            .map_err(|e| Rejection::new(Code::IllegalFilterExpression, e.to_string()))
    }

    pub(crate) fn hash_matches(&self, hash: u64) -> bool {
        match self {
            Filter::All | Filter::Sql(_) => true,
            Filter::Tags(tags) => tags.iter().any(|t| i64::from(java_string_hash(t)) as u64 == hash),
        }
    }

    pub(crate) fn matches(&self, m: &rill_store::StoredMessage) -> bool {
        match self {
            Filter::All => true,
            Filter::Tags(tags) => m.properties.tag().is_some_and(|t| tags.iter().any(|x| x == t)),
            // Properties by their names; the tag as `TAGS`, as RocketMQ has it.
            Filter::Sql(f) => f.matches(|k| m.properties.get(k)),
        }
    }
}

/// A pop receive.
#[derive(Debug, Clone)]
pub struct ReceiveRequest {
    /// Consumer group.
    pub group: String,
    /// The client asking (broadcast groups keep state per client).
    pub client_id: String,
    /// Topic.
    pub topic: String,
    /// Namespace to echo in returned messages.
    pub namespace: String,
    /// Queue the client named, if any (pop reads every queue, starting there).
    pub queue: Option<u32>,
    /// Tag filter.
    pub filter: Filter,
    /// Most messages to return.
    pub batch: usize,
    /// How long returned messages stay invisible.
    pub invisible: Duration,
    /// Longest to wait when nothing is available.
    pub long_polling: Duration,
}

impl Broker {
    fn state_key(&self, group: &str, client_id: &str, topic: &str, queue: u32) -> (String, String, u32) {
        let broadcast = self.meta.group(group).is_some_and(|g| g.broadcast);
        let owner = if broadcast { format!("{group}@{client_id}") } else { group.to_owned() };
        (owner, topic.to_owned(), queue)
    }

    /// Receives up to `batch` messages, waiting up to the long-polling time.
    pub async fn receive(&self, req: &ReceiveRequest) -> Result<Vec<v2::Message>, Rejection> {
        if let Some(client) = req.group.strip_prefix(reply::REPLY_GROUP_PREFIX) {
            return Ok(self.receive_replies(client, req.long_polling, req.batch).await);
        }
        let (_, cfg) = self.topic(&req.topic)?;
        rill_common::GroupName::new(&req.group)
            .map_err(|e| Rejection::new(Code::IllegalConsumerGroup, e.to_string()))?;
        self.client_seen(&req.group, &req.client_id, "");
        let deadline = Instant::now() + req.long_polling.min(self.config.max_long_polling);
        let mut dispatched = self.store.dispatch_watch();
        let mut stopping = self.stopping();
        loop {
            dispatched.borrow_and_update();
            let got = self.try_receive(req, cfg.read_queues)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !got.is_empty() || left.is_zero() || *stopping.borrow_and_update() {
                return Ok(got);
            }
            // New messages wake us at once; expired invisibility is noticed within a second.
            let _parked = Parked::new(&self.waiting);
            tokio::select! {
                _ = tokio::time::timeout(left.min(Duration::from_secs(1)), dispatched.changed()) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    fn try_receive(&self, req: &ReceiveRequest, queues: u32) -> Result<Vec<v2::Message>, Rejection> {
        // Messages are picked under the pop lock; their wire form (MD5 of
        // every body) is built after it is released.
        let mut out: Vec<Picked> = Vec::new();
        let now = self.clock.now_millis();
        let deadline = self.deadline(req.invisible)?;
        let group = self.meta.group(&req.group);
        let broadcast = group.as_ref().is_some_and(|g| g.broadcast);
        let fifo = group.as_ref().is_some_and(|g| g.fifo);
        // Retries first: there are few, and a busy topic must not starve them.
        if !broadcast {
            let retry = park::retry_topic(&req.group, &req.topic);
            if self.store.queue_bounds(&retry, 0).is_some() {
                let key = (req.group.clone(), retry, 0);
                self.pop_source(req, &key, pop::RETRY_QUEUE, fifo, now, deadline, &mut out)?;
            }
        }
        if queues == 0 {
            return Ok(self.wire(req, out));
        }
        let start = req.queue.unwrap_or_else(|| self.round_robin.fetch_add(1, Ordering::Relaxed)) % queues;
        for i in 0..queues {
            if out.len() >= req.batch {
                break;
            }
            let q = (start + i) % queues;
            let key = self.state_key(&req.group, &req.client_id, &req.topic, q);
            self.pop_source(req, &key, q, fifo, now, deadline, &mut out)?;
        }
        Ok(self.wire(req, out))
    }

    /// Pops from one store queue (`key` names it) into `out`; `handle_queue`
    /// is the queue id its receipt handles carry.
    #[allow(clippy::too_many_arguments)]
    fn pop_source(
        &self,
        req: &ReceiveRequest,
        key: &pop::StateKey,
        handle_queue: u32,
        fifo: bool,
        now: i64,
        deadline: i64,
        out: &mut Vec<Picked>,
    ) -> Result<(), Rejection> {
        let (owner, topic, q) = key;
        let init = || {
            let min = self.store.queue_bounds(topic, *q).map_or(0, |b| b.0);
            self.meta.offset(&req.group, topic, *q).map_or(min, |o| o.max(min))
        };
        let clustering = *owner == req.group;
        self.pop.with(key, init, |state| {
            let src = Source { topic, queue: *q, handle_queue, fifo };
            self.pop_queue(req, &src, state, now, deadline, out)?;
            // Committed under the pop lock, so a concurrent reset or ack
            // cannot be overwritten by an older value.
            let committed = state.committed();
            if clustering && self.meta.offset(&req.group, topic, *q) != Some(committed) {
                self.meta.commit_offset(&req.group, topic, *q, committed);
            }
            Ok::<_, Rejection>(())
        })
    }

    fn pop_queue(
        &self,
        req: &ReceiveRequest,
        src: &Source<'_>,
        state: &mut QueueState,
        now: i64,
        deadline: i64,
        out: &mut Vec<Picked>,
    ) -> Result<(), Rejection> {
        let internal = |e: rill_store::Error| Rejection::new(Code::InternalServerError, e.to_string());
        let (topic, q) = (src.topic, src.queue);
        // FIFO groups retry in place; the others' expired messages are
        // moved to the retry topic by the revive pass.
        let expired = if src.fifo { PopState::expired(state, now, req.batch - out.len()) } else { Vec::new() };
        let max_attempts = if src.fifo { self.max_attempts(&req.group) } else { i32::MAX };
        for offset in expired {
            // Out of attempts: the revive pass makes it a dead letter.
            if state.inflight.get(&offset).is_some_and(|f| f.attempt >= max_attempts) {
                continue;
            }
            let read = self.store.read_queue(topic, q, offset, 1).map_err(internal)?;
            match read.messages.into_iter().next() {
                Some(m) if req.filter.matches(&m) => {
                    let group = state.inflight.get(&offset).map_or(0, |f| f.group);
                    let traced = trace::traced(&m.properties);
                    let (handle, attempt) = self.pop.deliver(state, src.handle_queue, offset, deadline, group, traced);
                    out.push((m, handle, attempt));
                }
                // Not for this receiver's filter: it stays due for a member
                // whose subscription wants it.
                Some(_) => {}
                // Deleted by retention: nothing left to deliver.
                None => {
                    state.inflight.remove(&offset);
                }
            }
        }
        // FIFO: one message per message group in flight; later messages of
        // a busy group wait (held) while other groups go on.
        let mut busy = if src.fifo { state.busy_groups() } else { Default::default() };
        if src.fifo {
            let ready: Vec<(u64, u64)> =
                state.held.iter().filter(|(_, g)| !busy.contains(*g)).map(|(o, g)| (*o, *g)).collect();
            for (offset, group) in ready {
                if out.len() >= req.batch || busy.contains(&group) {
                    continue;
                }
                state.held.remove(&offset);
                if let Some(m) =
                    self.store.read_queue(topic, q, offset, 1).map_err(internal)?.messages.into_iter().next()
                {
                    busy.insert(group);
                    let traced = trace::traced(&m.properties);
                    let (handle, attempt) = self.pop.deliver(state, src.handle_queue, offset, deadline, group, traced);
                    out.push((m, handle, attempt));
                }
            }
        }
        while out.len() < req.batch && state.held.len() < MAX_HELD {
            let want = req.batch - out.len();
            let filter = &req.filter;
            let read = self
                .store
                .read_queue_filtered(topic, q, state.next, want, 1024, |e| filter.hash_matches(e.tag_hash))
                .map_err(internal)?;
            match read.status {
                ReadStatus::Found => {}
                ReadStatus::OffsetMoved | ReadStatus::OffsetOverflow => {
                    state.next = read.next_offset;
                    continue;
                }
                ReadStatus::NoNewMessages | ReadStatus::NoSuchQueue => break,
            }
            let mut scanned_to = read.next_offset;
            for m in read.messages {
                if !req.filter.matches(&m) {
                    continue;
                }
                if out.len() >= req.batch {
                    // Read ahead of what fits: leave it for the next receive.
                    scanned_to = scanned_to.min(m.queue_offset);
                    break;
                }
                let group = match m.properties.get(convert::MESSAGE_GROUP) {
                    Some(g) if src.fifo => pop::group_hash(g),
                    _ => 0,
                };
                if group != 0 && !busy.insert(group) {
                    state.held.insert(m.queue_offset, group);
                    continue;
                }
                let traced = trace::traced(&m.properties);
                let (handle, attempt) =
                    self.pop.deliver(state, src.handle_queue, m.queue_offset, deadline, group, traced);
                out.push((m, handle, attempt));
            }
            state.next = scanned_to;
            if scanned_to >= read.max_offset {
                break;
            }
        }
        Ok(())
    }

    /// The wire form of picked messages.
    fn wire(&self, req: &ReceiveRequest, picked: Vec<Picked>) -> Vec<v2::Message> {
        picked.into_iter().map(|(m, handle, attempt)| self.delivered(&m, req, handle, attempt)).collect()
    }

    fn delivered(
        &self,
        m: &rill_store::StoredMessage,
        req: &ReceiveRequest,
        handle: Handle,
        attempt: i32,
    ) -> v2::Message {
        let delivery = Delivery {
            receipt_handle: Some(handle.encode()),
            invisible_duration: Some(req.invisible),
            // Earlier attempts of a retry copy count too.
            delivery_attempt: attempt.saturating_add(m.reconsume_times as i32),
        };
        let attempt = delivery.delivery_attempt;
        if trace::traced(&m.properties) {
            let id = m.properties.unique_id().unwrap_or_default();
            let detail = format!("queue {} offset {}", m.queue_id, m.queue_offset);
            self.trace("SubBefore", id, &req.topic, &req.group, &req.client_id, attempt, detail);
        }
        let mut out = convert::from_store(m, &req.namespace, delivery);
        if handle.queue == pop::RETRY_QUEUE
            && let Some(t) = out.topic.as_mut()
        {
            // A retry copy reaches the consumer as a message of the topic it subscribed to.
            t.name = req.topic.clone();
        }
        out
    }

    /// The pop state a receipt handle of `group` for `topic` belongs to.
    pub(crate) fn handle_key(&self, group: &str, client_id: &str, topic: &str, handle: Handle) -> pop::StateKey {
        if handle.queue == pop::RETRY_QUEUE {
            (group.to_owned(), park::retry_topic(group, topic), 0)
        } else {
            self.state_key(group, client_id, topic, handle.queue)
        }
    }

    /// Acknowledges a received message.
    pub fn ack(&self, group: &str, client_id: &str, topic: &str, receipt_handle: &str) -> Result<(), Rejection> {
        let handle = parse_handle(receipt_handle)?;
        let key = self.handle_key(group, client_id, topic, handle);
        let clustering = key.0 == group;
        let acked = self
            .pop
            .with_existing(&key, |s| {
                let (committed, f) = PopState::ack(s, handle)?;
                if clustering {
                    self.meta.commit_offset(group, &key.1, key.2, committed);
                }
                Ok(f)
            })
            .unwrap_or(Err(HandleError::Stale))
            .map_err(stale)?;
        if acked.traced
            && let Ok(Some(m)) = self.read_at(&key.1, key.2, handle.offset)
        {
            let id = m.properties.unique_id().unwrap_or_default();
            self.trace("SubAfter", id, topic, group, client_id, acked.attempt, "acknowledged".into());
        }
        Ok(())
    }

    /// Extends (or shortens) how long a received message stays invisible.
    pub fn change_invisible(
        &self,
        group: &str,
        client_id: &str,
        topic: &str,
        receipt_handle: &str,
        invisible: Duration,
    ) -> Result<String, Rejection> {
        let handle = parse_handle(receipt_handle)?;
        let key = self.handle_key(group, client_id, topic, handle);
        let deadline = self.deadline_within(invisible, Duration::ZERO)?;
        let moved = self
            .pop
            .with_existing(&key, |s| self.pop.change(s, handle, deadline))
            .unwrap_or(Err(HandleError::Stale))
            .map_err(stale)?;
        Ok(moved.encode())
    }

    /// Resets a group's offsets: drops its in-memory pop state (for one
    /// topic, or one queue of it) and runs `commit` to write the new offsets,
    /// atomically with respect to receives and acks.
    pub fn reset_group<R>(
        &self,
        group: &str,
        topic: Option<&str>,
        queue: Option<u32>,
        commit: impl FnOnce() -> R,
    ) -> R {
        self.pop.reset(group, topic, queue, commit)
    }

    /// The visibility deadline of a receive: `invisible` from now, refusing
    /// durations outside the configured minimum (10 s) – 12 h.
    fn deadline(&self, invisible: Duration) -> Result<i64, Rejection> {
        self.deadline_within(invisible, self.config.min_invisible)
    }

    /// The deadline `invisible` from now, refusing durations outside `min` – 12 h
    /// (a visibility change may be shorter than a receive: a nack waits its
    /// retry delay).
    fn deadline_within(&self, invisible: Duration, min: Duration) -> Result<i64, Rejection> {
        if invisible < min || invisible > MAX_INVISIBLE {
            return Err(Rejection::new(
                Code::IllegalInvisibleTime,
                format!("invisible duration {invisible:?} is outside {min:?}..={MAX_INVISIBLE:?}"),
            ));
        }
        Ok(self.clock.now_millis().saturating_add(invisible.as_millis() as i64))
    }
}

/// Most messages a FIFO group's queue holds back behind busy message
/// groups before it stops reading ahead (bounded memory: 16 bytes each).
const MAX_HELD: usize = 64 * 1024;

/// A message chosen for delivery, with its receipt handle and attempt.
type Picked = (rill_store::StoredMessage, Handle, i32);

/// The store queue a receive pops from.
struct Source<'a> {
    topic: &'a str,
    queue: u32,
    /// Queue id its receipt handles carry ([`pop::RETRY_QUEUE`] for retries).
    handle_queue: u32,
    /// The group redelivers in place.
    fifo: bool,
}

/// Counts a parked receive for as long as it lives (also when the client
/// goes away and the receive is dropped mid-wait).
struct Parked<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Parked<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn parse_handle(s: &str) -> Result<Handle, Rejection> {
    Handle::parse(s).ok_or_else(|| stale(HandleError::Malformed))
}

pub(crate) fn stale(e: HandleError) -> Rejection {
    let why = match e {
        HandleError::Malformed => "the receipt handle was not issued by this broker",
        HandleError::Stale => "the receipt handle is stale: the message was acknowledged, redelivered or changed since",
    };
    Rejection::new(Code::InvalidReceiptHandle, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions_parse() {
        assert_eq!(Filter::tags("*").unwrap(), Filter::All);
        assert_eq!(Filter::tags("").unwrap(), Filter::All);
        assert_eq!(Filter::tags("A || B").unwrap(), Filter::Tags(vec!["A".into(), "B".into()]));
        assert_eq!(Filter::tags("A || ").unwrap_err().code, Code::IllegalFilterExpression);
        let f = Filter::tags("TagA").unwrap();
        assert!(f.hash_matches(i64::from(java_string_hash("TagA")) as u64));
        assert!(!f.hash_matches(i64::from(java_string_hash("TagB")) as u64));
        let e = Filter::sql("region = ").unwrap_err();
        assert_eq!(e.code, Code::IllegalFilterExpression);
        assert!(e.message.contains("column 10"), "{}", e.message);
    }
}
