//! Transactional messages: half messages, their resolution, and checking
//! back with producers about the ones left open.
//!
//! A TRANSACTION send is stored as a half message on [`HALF_TOPIC`] (with
//! its real topic and queue as properties), invisible to consumers, and
//! answered with the message id as transaction id. EndTransaction COMMIT
//! stores a copy on the real topic; ROLLBACK drops it; either way an op
//! record (the half's queue offset and the outcome) goes to [`OP_TOPIC`].
//! Halves still open after `check_after` are checked back with a producer
//! of their topic over its Telemetry stream (RecoverOrphanedTransaction)
//! every `check_interval`, at most `max_checks` times; then the half is
//! discarded, with a copy on [`DISCARD_TOPIC`] and a WARN record.
//!
//! Restart: open halves are rebuilt from the half topic (from a watermark
//! kept as the offset of [`WATERMARK_GROUP`]) minus those with an op record,
//! so a broker restart keeps pending transactions. Check counts start over.
//!
//! This module owns the transaction state and the producers' Telemetry
//! senders; the wire mapping stays in `service` and `convert`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rill_common::TopicName;
use rill_proto::v2::{self, Code};
use rill_store::{MessageToStore, StoredMessage};

use crate::convert::{self, Delivery, Rejection};
use crate::park::{self, props};
use crate::{Broker, Error};

/// Where half messages wait.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where resolutions are recorded.
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where halves go that were never resolved.
pub const DISCARD_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// Offset holder for the lowest half that may still be open.
pub const WATERMARK_GROUP: &str = "rill_transaction_checker";
/// Property marking a transactional message.
pub const TRAN_MSG: &str = "TRAN_MSG";

/// Transaction settings.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// Halves younger than this are not checked yet.
    pub check_after: Duration,
    /// Wait between checks of one half.
    pub check_interval: Duration,
    /// Checks before an open half is discarded.
    pub max_checks: u32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self { check_after: Duration::from_secs(6), check_interval: Duration::from_secs(30), max_checks: 15 }
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Deliver the message.
    Commit,
    /// Drop it.
    Rollback,
}

/// An open half message.
#[derive(Debug, Clone)]
struct Pending {
    /// Being resolved right now (stays listed so the watermark holds).
    resolving: bool,
    half_offset: u64,
    physical_offset: u64,
    topic: String,
    stored_ms: i64,
    checks: u32,
    last_check_ms: i64,
}

/// A producer's Telemetry stream, for check-backs.
#[derive(Debug, Clone)]
struct ProducerLink {
    topics: Vec<String>,
    tx: tokio::sync::mpsc::Sender<Result<v2::TelemetryCommand, tonic::Status>>,
}

/// Open transactions and the producers that can resolve them.
#[derive(Debug, Default)]
pub struct Transactions {
    pending: Mutex<HashMap<String, Pending>>,
    /// Sends with half messages between append and registration.
    storing: std::sync::atomic::AtomicUsize,
    producers: Mutex<HashMap<String, ProducerLink>>,
    turn: std::sync::atomic::AtomicUsize,
}

fn op_record(half_offset: u64, outcome: u8) -> Vec<u8> {
    let mut b = half_offset.to_be_bytes().to_vec();
    b.push(outcome);
    b
}

fn internal(e: impl std::fmt::Display) -> Rejection {
    Rejection::new(Code::InternalServerError, e.to_string())
}

fn topic_name(name: &str) -> Result<TopicName, Rejection> {
    TopicName::new(name).map_err(internal)
}

impl Broker {
    /// Turns a validated TRANSACTION message into its half message.
    pub(crate) fn make_half(&self, m: &mut MessageToStore) -> Result<(), Rejection> {
        let real = std::mem::replace(&mut m.topic, topic_name(HALF_TOPIC)?);
        m.properties.insert(props::REAL_TOPIC, real.as_str());
        m.properties.insert(props::REAL_QID, m.queue_id.to_string());
        m.properties.insert(TRAN_MSG, "true");
        m.queue_id = 0;
        Ok(())
    }

    /// Records a stored half message as open.
    pub(crate) fn half_stored(&self, m: &MessageToStore, at: &rill_store::Appended) {
        let Some(id) = m.properties.unique_id() else { return };
        let topic = m.properties.get(props::REAL_TOPIC).unwrap_or_default().to_owned();
        let p = Pending {
            resolving: false,
            half_offset: at.queue_offset,
            physical_offset: at.physical_offset,
            topic,
            stored_ms: at.store_timestamp,
            checks: 0,
            last_check_ms: 0,
        };
        self.txns.pending.lock().insert(id.to_owned(), p);
    }

    /// Open transactions (for operators and tests).
    pub fn open_transactions(&self) -> usize {
        self.txns.pending.lock().len()
    }

    /// Ends a transaction: COMMIT delivers the message, ROLLBACK drops it.
    pub async fn end_transaction(&self, transaction_id: &str, resolution: Resolution) -> Result<(), Rejection> {
        let claimed = self.txns.pending.lock().get_mut(transaction_id).filter(|p| !p.resolving).map(|p| {
            p.resolving = true;
            p.clone()
        });
        let Some(p) = claimed else {
            return Err(Rejection::new(
                Code::InvalidTransactionId,
                format!("no open transaction '{transaction_id}': it was resolved, discarded or never started here"),
            ));
        };
        let outcome = match resolution {
            Resolution::Commit => b'c',
            Resolution::Rollback => b'r',
        };
        let result = self.resolve(&p, outcome).await;
        if result.is_ok()
            && let Ok(half) = self.store.read(p.physical_offset)
            && crate::trace::traced(&half.properties)
        {
            let how = if outcome == b'c' { "COMMIT" } else { "ROLLBACK" };
            self.trace("EndTransaction", transaction_id, &p.topic, "", "", 0, how.into());
        }
        let mut pending = self.txns.pending.lock();
        if result.is_ok() {
            pending.remove(transaction_id);
        } else if let Some(q) = pending.get_mut(transaction_id) {
            // Not recorded: still open, checked back later.
            q.resolving = false;
        }
        result
    }

    /// Stores the outcome (and, on commit, the message) of a half.
    async fn resolve(&self, p: &Pending, outcome: u8) -> Result<(), Rejection> {
        let mut out = Vec::new();
        if outcome != b'r' {
            let half = self.store.read(p.physical_offset).map_err(internal)?;
            let target = if outcome == b'c' { self.committed_copy(&half)? } else { self.discarded_copy(&half)? };
            out.extend(target);
        }
        out.push(MessageToStore::new(topic_name(OP_TOPIC)?, 0, op_record(p.half_offset, outcome)));
        self.store_copies(out).await
    }

    fn committed_copy(&self, half: &StoredMessage) -> Result<Option<MessageToStore>, Rejection> {
        let real = half.properties.get(props::REAL_TOPIC).unwrap_or_default();
        let Some(cfg) = self.meta.topic(real) else {
            tracing::warn!(topic = real, "committed transaction for a topic that no longer exists; dropped");
            return Ok(None);
        };
        let queue = half.properties.get(props::REAL_QID).and_then(|q| q.parse::<u32>().ok()).unwrap_or(0)
            % cfg.write_queues.max(1);
        let mut copy = park::copy(half, topic_name(real)?, queue);
        copy.properties.remove(props::REAL_TOPIC);
        copy.properties.remove(props::REAL_QID);
        Ok(Some(copy))
    }

    fn discarded_copy(&self, half: &StoredMessage) -> Result<Option<MessageToStore>, Rejection> {
        self.system_topic(DISCARD_TOPIC)?;
        Ok(Some(park::copy(half, topic_name(DISCARD_TOPIC)?, 0)))
    }

    /// Remembers a producer's Telemetry stream for check-backs.
    pub fn producer_connected(
        &self,
        client_id: &str,
        topics: Vec<String>,
        tx: tokio::sync::mpsc::Sender<Result<v2::TelemetryCommand, tonic::Status>>,
    ) {
        self.txns.producers.lock().insert(client_id.to_owned(), ProducerLink { topics, tx });
    }

    /// Forgets a producer whose Telemetry stream ended.
    pub fn producer_gone(&self, client_id: &str) {
        self.txns.producers.lock().remove(client_id);
    }

    /// A producer stream for `topic`: one that publishes it, else any.
    fn checker_for(&self, topic: &str) -> Option<ProducerLink> {
        let producers = self.txns.producers.lock();
        let mut links: Vec<&ProducerLink> =
            producers.values().filter(|p| p.topics.iter().any(|t| t == topic)).collect();
        if links.is_empty() {
            links = producers.values().collect();
        }
        if links.is_empty() {
            return None;
        }
        let i = self.txns.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % links.len();
        Some(links[i].clone())
    }

    /// One round of check-backs: asks producers about halves due for a
    /// check and discards those out of checks. Returns checks sent.
    pub async fn check_transactions(&self) -> usize {
        let cfg = &self.config.transactions;
        let now = self.clock.now_millis();
        let (after, every) = (cfg.check_after.as_millis() as i64, cfg.check_interval.as_millis() as i64);
        let due: Vec<(String, Pending)> = {
            let pending = self.txns.pending.lock();
            pending
                .iter()
                .filter(|(_, p)| !p.resolving && now - p.stored_ms >= after && now - p.last_check_ms >= every)
                .map(|(id, p)| (id.clone(), p.clone()))
                .collect()
        };
        let mut sent = 0;
        for (id, p) in due {
            if p.checks >= cfg.max_checks {
                let claimed =
                    self.txns.pending.lock().get_mut(&id).filter(|q| !q.resolving).map(|q| q.resolving = true);
                if claimed.is_some() {
                    tracing::warn!(transaction = %id, topic = %p.topic, checks = p.checks, "transaction never resolved; discarded to {DISCARD_TOPIC}");
                    let result = self.resolve(&p, b'd').await;
                    let mut pending = self.txns.pending.lock();
                    match result {
                        Ok(()) => {
                            pending.remove(&id);
                        }
                        Err(r) => {
                            tracing::error!(transaction = %id, error = %r.message, "cannot record the discarded transaction; keeping it open");
                            if let Some(q) = pending.get_mut(&id) {
                                q.resolving = false;
                            }
                        }
                    }
                }
                continue;
            }
            let Some(link) = self.checker_for(&p.topic) else {
                tracing::debug!(transaction = %id, topic = %p.topic, "no producer connected to check back with");
                continue;
            };
            let half = match self.store.read(p.physical_offset) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(transaction = %id, error = %e, "cannot read a half message");
                    continue;
                }
            };
            let mut message = convert::from_store(&half, "", Delivery::default());
            if let Some(t) = message.topic.as_mut() {
                t.name = p.topic.clone();
            }
            let cmd = v2::TelemetryCommand {
                status: Some(rill_proto::status::ok()),
                command: Some(v2::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                    v2::RecoverOrphanedTransactionCommand { message: Some(message), transaction_id: id.clone() },
                )),
            };
            // Only a check that reached a producer counts towards the limit.
            if link.tx.try_send(Ok(cmd)).is_ok() {
                if let Some(q) = self.txns.pending.lock().get_mut(&id) {
                    q.checks += 1;
                    q.last_check_ms = now;
                }
                sent += 1;
            }
        }
        sent
    }

    /// Rebuilds the open transactions from the half and op topics (at start).
    pub fn recover_transactions(&self) -> Result<usize, Error> {
        let mut resolved = HashSet::new();
        let mut from = self.store.queue_bounds(OP_TOPIC, 0).map_or(0, |b| b.0);
        loop {
            let read = self.store.read_queue(OP_TOPIC, 0, from, 1024)?;
            let Some(last) = read.messages.last() else { break };
            from = last.queue_offset + 1;
            for m in &read.messages {
                if m.body.len() >= 8 {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&m.body[..8]);
                    resolved.insert(u64::from_be_bytes(b));
                }
            }
        }
        let min = self.store.queue_bounds(HALF_TOPIC, 0).map_or(0, |b| b.0);
        let mut from = self.meta.offset(WATERMARK_GROUP, HALF_TOPIC, 0).map_or(min, |w| w.max(min));
        let mut pending = self.txns.pending.lock();
        loop {
            let read = self.store.read_queue(HALF_TOPIC, 0, from, 1024)?;
            let Some(last) = read.messages.last() else { break };
            from = last.queue_offset + 1;
            for m in read.messages.iter().filter(|m| !resolved.contains(&m.queue_offset)) {
                let Some(id) = m.properties.unique_id() else { continue };
                pending.insert(
                    id.to_owned(),
                    Pending {
                        resolving: false,
                        half_offset: m.queue_offset,
                        physical_offset: m.physical_offset,
                        topic: m.properties.get(props::REAL_TOPIC).unwrap_or_default().to_owned(),
                        stored_ms: m.store_timestamp,
                        checks: 0,
                        last_check_ms: 0,
                    },
                );
            }
        }
        if !pending.is_empty() {
            tracing::info!(open = pending.len(), "open transactions recovered");
        }
        Ok(pending.len())
    }

    /// Marks a send with half messages as under way (until [`Broker::halves_stored`]).
    pub(crate) fn storing_halves(&self) {
        self.txns.storing.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Ends what [`Broker::storing_halves`] began.
    pub(crate) fn halves_stored(&self) {
        self.txns.storing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the watermark to the lowest open half (or past the last one
    /// when none is open and no send is still registering halves).
    fn advance_watermark(&self) {
        // Read before the open set: a half stored after this is above `end`.
        let end = self.store.queue_bounds(HALF_TOPIC, 0).map(|b| b.1);
        let busy = self.txns.storing.load(std::sync::atomic::Ordering::SeqCst) > 0;
        let low = self.txns.pending.lock().values().map(|p| p.half_offset).min();
        let w = match (low, busy) {
            (Some(l), _) => Some(l),
            (None, false) => end,
            (None, true) => None,
        };
        if let Some(w) = w
            && self.meta.offset(WATERMARK_GROUP, HALF_TOPIC, 0) != Some(w)
        {
            self.meta.commit_offset(WATERMARK_GROUP, HALF_TOPIC, 0, w);
        }
    }
}

/// Runs check-back rounds until the broker stops serving.
pub(crate) async fn run(broker: Arc<Broker>) {
    let mut stopping = broker.stopping();
    let every =
        (broker.config.transactions.check_interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => {}
        }
        if *stopping.borrow() {
            return;
        }
        broker.check_transactions().await;
        broker.advance_watermark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_records_carry_the_half_offset_first() {
        let r = op_record(0x0102_0304_0506_0708, b'c');
        assert_eq!(r, [1, 2, 3, 4, 5, 6, 7, 8, b'c']);
    }
}
