//! Message trace: for messages sent with tracing on (property `TRACE_ON`),
//! the broker records each step of their life — Pub (stored), SubBefore
//! (delivered to a group's client), SubAfter (acknowledged), Retry,
//! DeadLetter, EndTransaction — as JSON records on [`TRACE_TOPIC`], keyed
//! by message id so `rill admin trace <id>` finds them through the index.
//!
//! Records are written by one background writer in batches; tracing never
//! slows or fails the message path (a full queue drops records, counted).

use serde::{Deserialize, Serialize};

use rill_common::TopicName;
use rill_store::record::keys;
use rill_store::{MessageToStore, Properties};

use crate::Broker;

/// Where trace records go.
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// Property that turns tracing on for a message (RocketMQ's name).
pub const TRACE_ON: &str = "TRACE_ON";
/// Records waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

/// One step in a message's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// `Pub`, `SubBefore`, `SubAfter`, `Retry`, `DeadLetter`, `EndTransaction`.
    pub event: String,
    /// When (ms since the epoch).
    pub time_ms: i64,
    /// The message's id.
    pub message_id: String,
    /// Its topic.
    pub topic: String,
    /// The broker that saw it.
    pub broker: String,
    /// Consumer group, for consumption events.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Client id, for consumption events.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// Delivery attempt, for consumption events.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: i32,
    /// Anything else (queue and offset, outcome, resolution).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Order of recording on its broker (orders events of the same millisecond).
    #[serde(default)]
    pub seq: u64,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Whether a message's properties ask for tracing.
pub fn traced(p: &Properties) -> bool {
    p.get(TRACE_ON).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The sending half of the trace writer.
#[derive(Debug)]
pub struct Tracer {
    tx: tokio::sync::mpsc::Sender<TraceEvent>,
    rx: parking_lot::Mutex<Option<tokio::sync::mpsc::Receiver<TraceEvent>>>,
    dropped: std::sync::atomic::AtomicU64,
    seq: std::sync::atomic::AtomicU64,
}

impl Default for Tracer {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        Self { tx, rx: parking_lot::Mutex::new(Some(rx)), dropped: Default::default(), seq: Default::default() }
    }
}

impl Broker {
    /// Records a trace event (for a traced message).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn trace(
        &self,
        event: &str,
        message_id: &str,
        topic: &str,
        group: &str,
        client: &str,
        attempt: i32,
        detail: String,
    ) {
        let e = TraceEvent {
            event: event.to_owned(),
            time_ms: self.clock.now_millis(),
            message_id: message_id.to_owned(),
            topic: topic.to_owned(),
            broker: self.config.broker_name.clone(),
            group: group.to_owned(),
            client: client.to_owned(),
            attempt,
            detail,
            seq: self.tracer.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        if self.tracer.tx.try_send(e).is_err() {
            self.tracer.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The recorded life of a message, oldest first.
    pub fn message_trace(&self, message_id: &str) -> Result<Vec<TraceEvent>, rill_store::Error> {
        let found = self.store.query_by_key(TRACE_TOPIC, message_id, 0, i64::MAX, 10_000)?;
        let mut events: Vec<TraceEvent> = found
            .iter()
            .filter_map(|m| serde_json::from_slice::<TraceEvent>(&m.body).ok())
            .filter(|e| e.message_id == message_id)
            .collect();
        events.sort_by_key(|e| (e.time_ms, e.seq));
        Ok(events)
    }

    /// Trace records dropped because the writer fell behind.
    pub fn trace_dropped(&self) -> u64 {
        self.tracer.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Writes queued trace records in batches until the broker stops serving.
pub(crate) async fn run(broker: std::sync::Arc<Broker>) {
    let Some(mut rx) = broker.tracer.rx.lock().take() else { return };
    let Ok(topic) = TopicName::new(TRACE_TOPIC) else { return };
    let mut stopping = broker.stopping();
    loop {
        let first = tokio::select! {
            e = rx.recv() => e,
            _ = stopping.wait_for(|s| *s) => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        write(&broker, &topic, batch).await;
    }
    // Whatever is queued at shutdown still goes out.
    let mut rest = Vec::new();
    while let Ok(e) = rx.try_recv() {
        rest.push(e);
    }
    if !rest.is_empty() {
        write(&broker, &topic, rest).await;
    }
    // Let a later start take the receiver again (tests restart in process).
    *broker.tracer.rx.lock() = Some(rx);
}

async fn write(broker: &Broker, topic: &TopicName, batch: Vec<TraceEvent>) {
    let msgs: Vec<MessageToStore> = batch
        .iter()
        .filter_map(|e| {
            let body = serde_json::to_vec(e).ok()?;
            let props = Properties::new().with(keys::KEYS, e.message_id.clone());
            Some(MessageToStore::new(topic.clone(), 0, body).with_properties(props))
        })
        .collect();
    if let Err(r) = broker.store_copies(msgs).await {
        tracing::warn!(error = %r.message, n = batch.len(), "cannot store trace records");
    }
}
