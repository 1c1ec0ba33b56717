//! Rill's broker: the RocketMQ 5 gRPC service (`apache.rocketmq.v2`) over
//! the storage engine, so the official RocketMQ clients work unchanged.
//!
//! Layout:
//! - [`Broker`] (this file): configuration, topics, members, background
//!   tasks — with the protocol-independent operations in their own files:
//!   pop receives, acks and visibility changes in `receive.rs`, the send
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
mod receive;
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
use std::time::Duration;

use rill_common::{Clock, SystemClock, TopicName};
use rill_proto::v2::Code;
use rill_store::{MetaStore, Store, TopicConfig};

use crate::convert::Rejection;
use crate::pop::PopState;
pub use crate::receive::{Filter, ReceiveRequest};
pub(crate) use crate::receive::{parse_handle, stale};

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
