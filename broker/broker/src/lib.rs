//! Rill's broker: the RocketMQ 5 gRPC service (`apache.rocketmq.v2`) over
//! the storage engine, so the official RocketMQ clients work unchanged.
//!
//! Layout:
//! - [`Broker`] (this file): topics, pop receives, acks — the
//!   protocol-independent operations, testable without a network; the send
//!   path in `send.rs`;
//! - [`cluster`]: registration with the name server, routes across brokers;
//! - [`metrics`]: Prometheus counters and gauges;
//! - [`service`]: the tonic `MessagingService` that maps RPCs onto them;
//! - [`convert`]: wire ⇄ stored messages and their validation;
//! - [`pop`]: in-flight messages, visibility deadlines, receipt handles;
//! - [`settings`]: the Settings answered on the Telemetry stream.
//!
//! It does not own the storage format (rill-store) or the wire schema
//! (rill-proto).

pub mod admin;
pub mod cluster;
pub mod convert;
pub mod members;
pub mod metrics;
pub mod pop;
mod send;
pub mod service;
pub mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rill_common::{Clock, SystemClock, TopicName, java_string_hash};
use rill_proto::v2::{self, Code};
use rill_store::{MetaStore, ReadStatus, Store, TopicConfig};

use crate::convert::{Delivery, Rejection};
use crate::pop::{Handle, HandleError, PopState, QueueState};

/// Shortest invisible duration accepted.
pub const MIN_INVISIBLE: Duration = Duration::from_secs(1);
/// Longest invisible duration accepted (RocketMQ's 12 hours).
pub const MAX_INVISIBLE: Duration = Duration::from_secs(12 * 3600);

/// Errors of the broker crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine failed.
    #[error(transparent)]
    Store(#[from] rill_store::Error),
    /// The gRPC server failed.
    #[error("gRPC server on {addr}: {source}")]
    Transport {
        /// Where it listened.
        addr: SocketAddr,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Name reported in routes and to the name server.
    pub broker_name: String,
    /// Cluster the broker registers in.
    pub cluster_name: String,
    /// Create topics on first use (standalone default).
    pub auto_create_topics: bool,
    /// Queues of an auto-created topic.
    pub default_queues: u32,
    /// Largest message body.
    pub max_body_size: usize,
    /// Upper bound on a receive's long polling.
    pub max_long_polling: Duration,
    /// Invisible duration when a client sends none.
    pub default_invisible: Duration,
    /// Redeliveries before the dead-letter queue (announced to clients).
    pub max_retries: u32,
    /// Address recorded as the store host of messages.
    pub store_host: SocketAddr,
    /// A client silent for longer than this leaves its groups.
    pub client_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_name: "rill-broker-0".into(),
            cluster_name: "DefaultCluster".into(),
            auto_create_topics: true,
            default_queues: 8,
            max_body_size: 4 * 1024 * 1024,
            max_long_polling: Duration::from_secs(30),
            default_invisible: Duration::from_secs(60),
            max_retries: 16,
            store_host: SocketAddr::from(([127, 0, 0, 1], 8081)),
            client_timeout: Duration::from_secs(120),
        }
    }
}

/// Which messages a receive wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every message.
    All,
    /// Messages whose tag is one of these (`TagA || TagB`).
    Tags(Vec<String>),
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

    fn hash_matches(&self, hash: u64) -> bool {
        match self {
            Filter::All => true,
            Filter::Tags(tags) => tags.iter().any(|t| i64::from(java_string_hash(t)) as u64 == hash),
        }
    }

    fn matches(&self, tag: Option<&str>) -> bool {
        match self {
            Filter::All => true,
            Filter::Tags(tags) => tag.is_some_and(|t| tags.iter().any(|x| x == t)),
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

/// The protocol-independent broker.
#[derive(Debug)]
pub struct Broker {
    store: Store,
    meta: MetaStore,
    config: BrokerConfig,
    pop: PopState,
    round_robin: AtomicU32,
    clock: Arc<dyn Clock>,
    /// Receives currently parked in a long poll.
    waiting: std::sync::atomic::AtomicUsize,
    /// Set when the server stops: long polls return, telemetry streams end.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Clients by group.
    members: members::Members,
    /// The name server link (none in a single-broker setup).
    cluster: cluster::Link,
    /// Counters for Prometheus.
    metrics: metrics::Metrics,
}

impl Broker {
    /// A broker over an open store and metadata.
    pub fn new(store: Store, meta: MetaStore, config: BrokerConfig) -> Arc<Self> {
        Self::with_clock(store, meta, config, Arc::new(SystemClock))
    }

    /// [`Broker::new`] with an injected clock (visibility deadlines, membership).
    pub fn with_clock(store: Store, meta: MetaStore, config: BrokerConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        let seed = (clock.now_millis() as u64) << 16;
        Arc::new(Self {
            store,
            meta,
            config,
            pop: PopState::new(seed),
            round_robin: AtomicU32::new(0),
            clock,
            waiting: std::sync::atomic::AtomicUsize::new(0),
            stopping: tokio::sync::watch::channel(false).0,
            members: members::Members::default(),
            cluster: cluster::Link::default(),
            metrics: metrics::Metrics::default(),
        })
    }

    /// Records that a client of `group` is alive.
    pub fn client_seen(&self, group: &str, client_id: &str, client_type: &str) {
        self.members.seen(group, client_id, client_type, self.clock.now_millis());
    }

    /// Forgets a client that terminated (and its broadcast state).
    pub fn client_left(&self, group: &str, client_id: &str) {
        self.members.left(group, client_id);
        self.pop.forget_member(group, client_id);
    }

    /// Drops clients silent for longer than the client timeout, with the
    /// state a broadcast member kept; returns how many left (call periodically).
    pub fn expire_members(&self) -> usize {
        let gone = self.members.expire(self.clock.now_millis(), self.config.client_timeout.as_millis() as i64);
        for (group, client_id) in &gone {
            tracing::info!(group = %group, client = %client_id, "consumer silent for too long; no longer a member");
            self.pop.forget_member(group, client_id);
        }
        gone.len()
    }

    /// Queue states the pop bookkeeping keeps (one per group, topic and queue;
    /// per member for broadcast groups).
    pub fn pop_states(&self) -> usize {
        self.pop.len()
    }

    /// The live members of a group.
    pub fn group_members(&self, group: &str) -> Vec<members::Member> {
        self.members.of_group(group, self.clock.now_millis(), self.config.client_timeout.as_millis() as i64)
    }

    /// Ends long polls and telemetry streams so that a graceful shutdown
    /// does not wait for clients that never hang up.
    pub fn stop_serving(&self) {
        self.stopping.send_replace(true);
    }

    /// A receiver that turns `true` when the broker stops serving.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Receives currently waiting in a long poll (a gauge for operators and tests).
    pub fn waiting_receives(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The broker's metrics.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The storage engine.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metadata store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The topic's configuration, created first if allowed.
    pub fn topic(&self, name: &str) -> Result<(TopicName, TopicConfig), Rejection> {
        let topic = TopicName::new(name).map_err(|e| Rejection::new(Code::IllegalTopic, e.to_string()))?;
        if let Some(cfg) = self.meta.topic(name) {
            return Ok((topic, cfg));
        }
        if !self.config.auto_create_topics || name.starts_with('%') {
            return Err(Rejection::new(
                Code::TopicNotFound,
                format!("topic '{name}' does not exist; create it with `rill admin topic create`"),
            ));
        }
        let cfg = TopicConfig::new(name, self.config.default_queues);
        self.meta
            .put_topic(cfg.clone())
            .map_err(|e| Rejection::new(Code::InternalServerError, format!("cannot create topic '{name}': {e}")))?;
        tracing::info!(topic = name, queues = cfg.write_queues, "created topic on first use");
        self.topics_changed();
        Ok((topic, cfg))
    }

    fn state_key(&self, group: &str, client_id: &str, topic: &str, queue: u32) -> (String, String, u32) {
        let broadcast = self.meta.group(group).is_some_and(|g| g.broadcast);
        let owner = if broadcast { format!("{group}@{client_id}") } else { group.to_owned() };
        (owner, topic.to_owned(), queue)
    }

    /// Receives up to `batch` messages, waiting up to the long-polling time.
    pub async fn receive(&self, req: &ReceiveRequest) -> Result<Vec<v2::Message>, Rejection> {
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
        if queues == 0 {
            return Ok(Vec::new());
        }
        let start = req.queue.unwrap_or_else(|| self.round_robin.fetch_add(1, Ordering::Relaxed)) % queues;
        let now = self.clock.now_millis();
        let deadline = self.deadline(req.invisible)?;
        for i in 0..queues {
            if out.len() >= req.batch {
                break;
            }
            let q = (start + i) % queues;
            let key = self.state_key(&req.group, &req.client_id, &req.topic, q);
            let init = || {
                let min = self.store.queue_bounds(&req.topic, q).map_or(0, |b| b.0);
                self.meta.offset(&req.group, &req.topic, q).map_or(min, |o| o.max(min))
            };
            let clustering = key.0 == req.group;
            self.pop.with(&key, init, |state| {
                self.pop_queue(req, q, state, now, deadline, &mut out)?;
                // Committed under the pop lock, so a concurrent reset or ack
                // cannot be overwritten by an older value.
                let committed = state.committed();
                if clustering && self.meta.offset(&req.group, &req.topic, q) != Some(committed) {
                    self.meta.commit_offset(&req.group, &req.topic, q, committed);
                }
                Ok::<_, Rejection>(())
            })?;
        }
        Ok(out.into_iter().map(|(m, handle, attempt)| self.delivered(&m, req, handle, attempt)).collect())
    }

    fn pop_queue(
        &self,
        req: &ReceiveRequest,
        q: u32,
        state: &mut QueueState,
        now: i64,
        deadline: i64,
        out: &mut Vec<Picked>,
    ) -> Result<(), Rejection> {
        let internal = |e: rill_store::Error| Rejection::new(Code::InternalServerError, e.to_string());
        for offset in PopState::expired(state, now, req.batch - out.len()) {
            let read = self.store.read_queue(&req.topic, q, offset, 1).map_err(internal)?;
            match read.messages.into_iter().next() {
                Some(m) if req.filter.matches(m.properties.tag()) => {
                    let (handle, attempt) = self.pop.deliver(state, q, offset, deadline);
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
        while out.len() < req.batch {
            let want = req.batch - out.len();
            let filter = &req.filter;
            let read = self
                .store
                .read_queue_filtered(&req.topic, q, state.next, want, 1024, |e| filter.hash_matches(e.tag_hash))
                .map_err(internal)?;
            match read.status {
                ReadStatus::Found => {}
                ReadStatus::OffsetMoved | ReadStatus::OffsetOverflow => {
                    state.next = read.next_offset;
                    continue;
                }
                ReadStatus::NoNewMessages | ReadStatus::NoSuchQueue => break,
            }
            let scanned_to = read.next_offset;
            for m in read.messages {
                if req.filter.matches(m.properties.tag()) {
                    let (handle, attempt) = self.pop.deliver(state, q, m.queue_offset, deadline);
                    out.push((m, handle, attempt));
                }
            }
            state.next = scanned_to;
            if scanned_to >= read.max_offset {
                break;
            }
        }
        Ok(())
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
            delivery_attempt: attempt,
        };
        convert::from_store(m, &req.namespace, delivery)
    }

    /// Acknowledges a received message.
    pub fn ack(&self, group: &str, client_id: &str, topic: &str, receipt_handle: &str) -> Result<(), Rejection> {
        let handle = parse_handle(receipt_handle)?;
        let key = self.state_key(group, client_id, topic, handle.queue);
        let clustering = key.0 == group;
        self.pop
            .with_existing(&key, |s| {
                let committed = PopState::ack(s, handle)?;
                if clustering {
                    self.meta.commit_offset(group, topic, handle.queue, committed);
                }
                Ok(())
            })
            .unwrap_or(Err(HandleError::Stale))
            .map_err(stale)
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
        let key = self.state_key(group, client_id, topic, handle.queue);
        let deadline = self.deadline(invisible)?;
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

    /// The visibility deadline for `invisible` from now, refusing durations
    /// outside 1 s – 12 h.
    fn deadline(&self, invisible: Duration) -> Result<i64, Rejection> {
        if invisible < MIN_INVISIBLE || invisible > MAX_INVISIBLE {
            return Err(Rejection::new(
                Code::IllegalInvisibleTime,
                format!("invisible duration {invisible:?} is outside {MIN_INVISIBLE:?}..={MAX_INVISIBLE:?}"),
            ));
        }
        Ok(self.clock.now_millis().saturating_add(invisible.as_millis() as i64))
    }

    /// Writes consumer offsets that changed (call periodically and at shutdown).
    pub fn persist_offsets(&self) -> Result<(), rill_store::Error> {
        self.meta.flush_offsets().map(|_| ())
    }
}

/// A message chosen for delivery, with its receipt handle and attempt.
type Picked = (rill_store::StoredMessage, Handle, i32);

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

fn parse_handle(s: &str) -> Result<Handle, Rejection> {
    Handle::parse(s).ok_or_else(|| stale(HandleError::Malformed))
}

fn stale(e: HandleError) -> Rejection {
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
        assert!(f.matches(Some("TagA")) && !f.matches(Some("TagB")) && !f.matches(None));
        assert!(f.hash_matches(i64::from(java_string_hash("TagA")) as u64));
    }
}
