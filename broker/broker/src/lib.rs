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
//! - [`pop`]: in-flight messages, visibility deadlines, receipt handles,
//!   FIFO message groups;
//! - `retry.rs`: the revive pass — retry topics and dead letters;
//! - [`park`]: copies moved between topics (timer, retry, DLQ) and their
//!   properties;
//! - [`timer`]: delay and timer messages over the store's timer wheel;
//! - [`txn`]: transactional half messages and check-backs;
//! - [`reply`]: request–reply mailboxes;
//! - [`trace`]: message trace records;
//! - [`settings`]: the Settings answered on the Telemetry stream.
//!
//! It does not own the storage format (rill-store) or the wire schema
//! (rill-proto).

pub mod admin;
pub mod cluster;
pub mod convert;
pub mod members;
pub mod metrics;
pub mod park;
pub mod pop;
pub mod reply;
mod retry;
mod send;
pub mod service;
pub mod settings;
pub mod timer;
pub mod trace;
pub mod txn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rill_common::{Clock, SystemClock, TopicName, java_string_hash};
use rill_proto::v2::{self, Code};
use rill_store::{MetaStore, ReadStatus, Store, TopicConfig};

use crate::convert::{Delivery, Rejection};
use crate::pop::{Handle, HandleError, PopState, QueueState};

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
    /// A background task (timers, revive) failed.
    #[error("background task failed: {0}")]
    Task(String),
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
    /// Retry delays announced to consumers, one per retry (RocketMQ's
    /// levels 3–18: 10 s … 2 h); push consumers wait these before retrying.
    pub retry_delays: Vec<Duration>,
    /// Shortest invisible duration a receive may ask for.
    pub min_invisible: Duration,
    /// How often expired in-flight messages are moved to retry or DLQ.
    pub revive_interval: Duration,
    /// Timer settings (delay messages, timer messages).
    pub timer: TimerConfig,
    /// Transaction check-back settings.
    pub transactions: txn::TxnConfig,
}

/// Settings of the persistent timer.
#[derive(Debug, Clone)]
pub struct TimerConfig {
    /// Latest delivery time accepted, counted from the send.
    pub max_delay: Duration,
    /// Timer resolution: a timer fires at most this much (plus a tick) late.
    pub precision: Duration,
    /// Parked copies older than this are parked again, so retention never
    /// deletes a pending timer's message (keep it well below retention).
    pub repark_after: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            max_delay: Duration::from_secs(40 * 24 * 3600),
            precision: Duration::from_millis(100),
            repark_after: Duration::from_secs(24 * 3600),
        }
    }
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
            retry_delays: settings::CONSUMER_RETRY_DELAYS.iter().map(|s| Duration::from_secs(*s)).collect(),
            min_invisible: Duration::from_secs(10),
            revive_interval: Duration::from_secs(1),
            timer: TimerConfig::default(),
            transactions: txn::TxnConfig::default(),
        }
    }
}

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
    /// Open transactions and producers to check back with.
    txns: txn::Transactions,
    /// Replies waiting for their requesters.
    replies: reply::Replies,
    /// Trace records on their way to the trace topic.
    tracer: trace::Tracer,
    /// Wakes the timer loop when a message was parked on the timer topic.
    timer_wake: Arc<tokio::sync::Notify>,
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
            txns: txn::Transactions::default(),
            replies: reply::Replies::default(),
            tracer: trace::Tracer::default(),
            timer_wake: Arc::default(),
        })
    }

    /// Starts what a serving broker runs in the background: the timer loop
    /// (delay messages), the revive pass (retries, dead letters) and
    /// transaction check-backs (after rebuilding the open transactions).
    /// They stop when the broker stops serving.
    pub fn start_background(self: &Arc<Self>) -> Background {
        if let Err(e) = self.recover_transactions() {
            tracing::error!(error = %e, "cannot rebuild the open transactions; they are not checked back until a restart");
        }
        let timers = tokio::spawn(timer::supervise(Arc::clone(self)));
        let revive = tokio::spawn(retry::run(Arc::clone(self)));
        let txns = tokio::spawn(txn::run(Arc::clone(self)));
        let tracer = tokio::spawn(trace::run(Arc::clone(self)));
        Background { timers, revive, txns, tracer }
    }

    /// Records that a client of `group` is alive.
    pub fn client_seen(&self, group: &str, client_id: &str, client_type: &str) {
        self.members.seen(group, client_id, client_type, self.clock.now_millis());
    }

    /// Records what a client of `group` subscribed to (topic → filter text).
    pub fn client_subscribed(
        &self,
        group: &str,
        client_id: &str,
        subscriptions: std::collections::BTreeMap<String, String>,
    ) {
        self.members.subscribed(group, client_id, subscriptions);
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
    fn handle_key(&self, group: &str, client_id: &str, topic: &str, handle: Handle) -> pop::StateKey {
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

    /// Writes consumer offsets that changed (call periodically and at shutdown).
    pub fn persist_offsets(&self) -> Result<(), rill_store::Error> {
        self.meta.flush_offsets().map(|_| ())
    }
}

/// The broker's background tasks (see [`Broker::start_background`]).
#[derive(Debug)]
pub struct Background {
    timers: tokio::task::JoinHandle<Result<()>>,
    revive: tokio::task::JoinHandle<()>,
    txns: tokio::task::JoinHandle<()>,
    tracer: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Waits for both to end (call after [`Broker::stop_serving`]); a timer
    /// failure is logged.
    pub async fn finish(self) {
        match self.timers.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the timer loop failed; delayed messages wait until a restart"),
            Err(e) => tracing::error!(error = %e, "the timer loop panicked"),
        }
        if let Err(e) = self.revive.await {
            tracing::error!(error = %e, "the revive pass panicked");
        }
        if let Err(e) = self.txns.await {
            tracing::error!(error = %e, "the transaction checker panicked");
        }
        if let Err(e) = self.tracer.await {
            tracing::error!(error = %e, "the trace writer panicked");
        }
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
        assert!(f.hash_matches(i64::from(java_string_hash("TagA")) as u64));
        assert!(!f.hash_matches(i64::from(java_string_hash("TagB")) as u64));
        let e = Filter::sql("region = ").unwrap_err();
        assert_eq!(e.code, Code::IllegalFilterExpression);
        assert!(e.message.contains("column 10"), "{}", e.message);
    }
}
