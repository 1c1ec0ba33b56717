//! The broker's Prometheus metrics: counters updated on the hot paths and
//! gauges read from the store when scraped. Serving them over HTTP is the
//! binary's job; this module only counts and renders the text format.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the broker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sent: Family<Labels, Counter>,
    send_failures: Family<Labels, Counter>,
    delivered: Family<Labels, Counter>,
    acked: Family<Labels, Counter>,
    dead_letters: Family<Labels, Counter>,
    timers_fired: Counter,
    timers_lost: Counter,
    timers_pending: Gauge,
    commitlog_max: Gauge,
    commitlog_min: Gauge,
    topics: Gauge,
    long_polls: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rill");
        let sent = Family::<Labels, Counter>::default();
        let send_failures = Family::<Labels, Counter>::default();
        let delivered = Family::<Labels, Counter>::default();
        let acked = Family::<Labels, Counter>::default();
        let dead_letters = Family::<Labels, Counter>::default();
        let (timers_fired, timers_lost, timers_pending) = (Counter::default(), Counter::default(), Gauge::default());
        let (commitlog_max, commitlog_min, topics, long_polls) =
            (Gauge::default(), Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("messages_sent", "Messages stored, by topic", sent.clone());
        registry.register("send_failures", "Sends refused or failed, by protocol code", send_failures.clone());
        registry.register("messages_delivered", "Messages handed to consumers, by topic and group", delivered.clone());
        registry.register("messages_acked", "Messages acknowledged, by topic and group", acked.clone());
        registry.register(
            "dead_letters",
            "Messages moved to a dead-letter queue, by topic and group",
            dead_letters.clone(),
        );
        registry.register("timers_fired", "Delayed messages delivered to their topic", timers_fired.clone());
        registry.register("timers_lost", "Delayed messages whose parked copy was gone when due", timers_lost.clone());
        registry.register("timers_pending", "Delayed messages waiting for their time", timers_pending.clone());
        registry.register("commitlog_max_offset", "End of the CommitLog in bytes", commitlog_max.clone());
        registry.register("commitlog_min_offset", "Oldest retained CommitLog byte", commitlog_min.clone());
        registry.register("topics", "Topics configured on this broker", topics.clone());
        registry.register("long_polls_waiting", "Receives parked in a long poll", long_polls.clone());
        Self {
            registry,
            sent,
            send_failures,
            delivered,
            acked,
            dead_letters,
            timers_fired,
            timers_lost,
            timers_pending,
            commitlog_max,
            commitlog_min,
            topics,
            long_polls,
        }
    }
}

impl Metrics {
    /// Counts `n` stored messages of `topic`.
    pub fn sent(&self, topic: &str, n: u64) {
        self.sent.get_or_create(&vec![("topic", topic.to_owned())]).inc_by(n);
    }

    /// Counts a refused or failed send.
    pub fn send_failed(&self, code: &str) {
        self.send_failures.get_or_create(&vec![("code", code.to_owned())]).inc();
    }

    /// Counts messages delivered to a group.
    pub fn delivered(&self, topic: &str, group: &str, n: usize) {
        self.delivered.get_or_create(&vec![("topic", topic.to_owned()), ("group", group.to_owned())]).inc_by(n as u64);
    }

    /// Counts `n` acknowledgements.
    pub fn acked(&self, topic: &str, group: &str, n: u64) {
        self.acked.get_or_create(&vec![("topic", topic.to_owned()), ("group", group.to_owned())]).inc_by(n);
    }

    /// Counts a message moved to `group`'s dead-letter queue.
    pub fn dead_lettered(&self, topic: &str, group: &str) {
        self.dead_letters.get_or_create(&vec![("topic", topic.to_owned()), ("group", group.to_owned())]).inc();
    }

    /// Counts fired timers and ones whose message was gone.
    pub fn timers(&self, fired: u64, lost: u64, pending: u64) {
        self.timers_fired.inc_by(fired);
        self.timers_lost.inc_by(lost);
        self.timers_pending.set(pending as i64);
    }

    /// Timers waiting now.
    pub fn timers_pending(&self) -> u64 {
        self.timers_pending.get().max(0) as u64
    }

    /// Timers fired since start.
    pub fn timers_fired(&self) -> u64 {
        self.timers_fired.get()
    }

    /// The Prometheus text format, with gauges taken from `broker` now.
    pub fn render(&self, broker: &crate::Broker) -> String {
        let state = broker.store().state();
        self.commitlog_max.set(state.committed as i64);
        self.commitlog_min.set(state.min_offset as i64);
        self.topics.set(broker.meta().topics().len() as i64);
        self.long_polls.set(broker.waiting_receives() as i64);
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
