//! Retries and dead letters: what happens to a message whose consumer did
//! not acknowledge it in time, or gave up on it.
//!
//! The revive pass takes expired in-flight messages out of flight and
//! stores a copy on the group's retry topic (`%RETRY%<group>_<topic>`,
//! popped with the topic) with its redelivery count, or — once the group's
//! attempts are used up — on `%DLQ%<group>` with its origin. Broadcast
//! groups never retry; FIFO groups redeliver in place (their receive does)
//! until their attempts run out. A copy is stored before the original
//! leaves flight, so a crash in between redelivers instead of losing.

use rill_common::TopicName;
use rill_proto::v2::Code;
use rill_store::{MessageToStore, StoredMessage, TopicConfig};

use crate::convert::Rejection;
use crate::park::{self, props};
use crate::pop::{Handle, InFlight, StateKey};
use crate::{Broker, parse_handle, stale};

/// Most messages one revive pass moves.
const REVIVE_BATCH: usize = 1024;

impl Broker {
    /// Moves expired in-flight messages to retry or dead-letter topics;
    /// returns how many left flight. Runs every `revive_interval`.
    pub async fn revive(&self) -> usize {
        let now = self.clock.now_millis();
        let taken = self.pop.take_expired(now, REVIVE_BATCH, |key, f| self.revives(key, f));
        if taken.is_empty() {
            return 0;
        }
        let mut copies = Vec::new();
        let mut done = Vec::new();
        let mut dropped = 0;
        for (key, offset, f) in taken {
            match self.moved_copy(&key, offset, f) {
                Ok(Some(copy)) => {
                    copies.push(copy);
                    done.push((key, offset, f));
                }
                // Broadcast, or deleted by retention: nothing to store.
                Ok(None) => {
                    self.finish_move(&key, offset, f);
                    dropped += 1;
                }
                Err(r) => {
                    tracing::error!(topic = %key.1, offset, error = %r.message, "cannot read an expired message; retrying later");
                    self.pop.abort_move(&key, offset, f.nonce, now);
                }
            }
        }
        let moved = done.len();
        match self.store_copies(copies).await {
            Ok(()) => {
                done.into_iter().for_each(|(key, offset, f)| self.finish_move(&key, offset, f));
                // The originals' offsets move past them now, so a crash
                // does not deliver a message again beside its retry copy.
                if let Err(e) = self.meta.flush_offsets() {
                    tracing::warn!(error = %e, "cannot save consumer offsets after moving expired messages");
                }
            }
            Err(r) => {
                tracing::error!(error = %r.message, "cannot store retry copies; the messages stay in flight");
                for (key, offset, f) in done {
                    self.pop.abort_move(&key, offset, f.nonce, now);
                }
                return dropped;
            }
        }
        moved + dropped
    }

    /// Whether the revive pass takes this expired message: all but those of
    /// FIFO groups with attempts left (those are redelivered in place).
    fn revives(&self, key: &StateKey, f: &InFlight) -> bool {
        let (group, broadcast) = owner_group(&key.0);
        if broadcast {
            return true;
        }
        let fifo = self.meta.group(group).is_some_and(|g| g.fifo);
        !fifo || f.attempt >= self.max_attempts(group)
    }

    /// Deliveries a group allows before a message becomes a dead letter.
    pub fn max_attempts(&self, group: &str) -> i32 {
        let retries = self.meta.group(group).map_or(self.config.max_retries, |g| g.max_retries);
        retries.saturating_add(1).min(i32::MAX as u32) as i32
    }

    /// The copy that replaces an expired message: on the retry topic, on
    /// the dead-letter topic, or none (broadcast groups never retry).
    fn moved_copy(&self, key: &StateKey, offset: u64, f: InFlight) -> Result<Option<MessageToStore>, Rejection> {
        let (group, broadcast) = owner_group(&key.0);
        if broadcast {
            return Ok(None);
        }
        let Some(m) = self.read_at(&key.1, key.2, offset)? else { return Ok(None) };
        let attempts = (m.reconsume_times as i32).saturating_add(f.attempt);
        if attempts >= self.max_attempts(group) {
            return self.dead_letter(group, &m, attempts).map(Some);
        }
        let origin = park::origin_topic(&m).to_owned();
        // A deadline the client set (a nack with its retry delay) has waited
        // already; an invisible time that ran out waits the retry delay now.
        let delay = if f.client_set { std::time::Duration::ZERO } else { self.retry_delay(attempts) };
        if crate::trace::traced(&m.properties) {
            let id = m.properties.unique_id().unwrap_or_default();
            let detail = format!("not acknowledged in time; redelivery in {:.1} s", delay.as_secs_f64());
            self.trace("Retry", id, &origin, group, "", attempts, detail);
        }
        let retry = self.system_topic(&park::retry_topic(group, &origin))?;
        let mut copy = park::copy(&m, retry, 0);
        copy.properties.insert(props::RETRY_TOPIC, origin);
        copy.reconsume_times = attempts.max(0) as u32;
        if !delay.is_zero() {
            // Through the timer: visible on the retry topic when the delay is over.
            let due = self.clock.now_millis().saturating_add(delay.as_millis() as i64);
            let timer = TopicName::new(park::TIMER_TOPIC)
                .map_err(|e| Rejection::new(Code::InternalServerError, e.to_string()))?;
            let real = std::mem::replace(&mut copy.topic, timer);
            copy.properties.insert(props::REAL_TOPIC, real.as_str());
            copy.properties.insert(props::REAL_QID, "0");
            copy.properties.insert(props::TIMER_DELIVER_MS, due.to_string());
        }
        Ok(Some(copy))
    }

    /// The wait before redelivery after `attempts` deliveries (the ladder's
    /// step for that attempt; its last step repeats).
    pub fn retry_delay(&self, attempts: i32) -> std::time::Duration {
        let ladder = &self.config.retry_delays;
        let i = usize::try_from(attempts.max(1) - 1).unwrap_or(0).min(ladder.len().saturating_sub(1));
        ladder.get(i).copied().unwrap_or_default()
    }

    /// A dead-letter copy of `m` for `group`, counted and logged.
    fn dead_letter(&self, group: &str, m: &StoredMessage, attempts: i32) -> Result<MessageToStore, Rejection> {
        let origin = park::origin_topic(m).to_owned();
        let dlq = self.system_topic(&park::dlq_topic(group))?;
        let mut copy = park::copy(m, dlq.clone(), 0);
        copy.properties.remove(props::RETRY_TOPIC);
        let id = m.properties.unique_id().unwrap_or_default().to_owned();
        tracing::warn!(group, topic = %origin, message_id = %id, attempts, "message moved to the dead-letter queue");
        if crate::trace::traced(&m.properties) {
            self.trace("DeadLetter", &id, &origin, group, "", attempts, format!("moved to {}", dlq.as_str()));
        }
        self.metrics.dead_lettered(&origin, group);
        copy.properties.insert(props::DLQ_ORIGIN_TOPIC, origin);
        copy.properties.insert(props::DLQ_ORIGIN_MESSAGE_ID, id);
        copy.reconsume_times = attempts.max(0) as u32;
        Ok(copy)
    }

    /// Moves the message a receipt handle names to the dead-letter queue at
    /// once (a client gave up on it: ForwardMessageToDeadLetterQueue).
    pub async fn forward_to_dlq(
        &self,
        group: &str,
        client_id: &str,
        topic: &str,
        receipt_handle: &str,
    ) -> Result<(), Rejection> {
        let handle: Handle = parse_handle(receipt_handle)?;
        let key = self.handle_key(group, client_id, topic, handle);
        let f = self.pop.take(&key, handle).map_err(stale)?;
        let now = self.clock.now_millis();
        let copy = match self.read_at(&key.1, key.2, handle.offset) {
            Ok(Some(m)) => {
                let attempts = (m.reconsume_times as i32).saturating_add(f.attempt);
                self.dead_letter(group, &m, attempts).map(Some)
            }
            Ok(None) => Ok(None),
            Err(r) => Err(r),
        };
        let stored = match copy {
            Ok(Some(c)) => self.store_copies(vec![c]).await,
            Ok(None) => Ok(()),
            Err(r) => Err(r),
        };
        match stored {
            Ok(()) => {
                self.finish_move(&key, handle.offset, f);
                Ok(())
            }
            Err(r) => {
                self.pop.abort_move(&key, handle.offset, f.nonce, now);
                Err(r)
            }
        }
    }

    /// Up to `max` dead letters of `group`, from queue offset `from`.
    pub fn dead_letters(&self, group: &str, from: u64, max: usize) -> Result<Vec<StoredMessage>, Rejection> {
        let read = self
            .store
            .read_queue(&park::dlq_topic(group), 0, from, max)
            .map_err(|e| Rejection::new(Code::InternalServerError, e.to_string()))?;
        Ok(read.messages)
    }

    /// Puts dead letters of `group` back on the topics they came from (all,
    /// or those whose message id is in `ids`), as fresh messages with a new
    /// attempt count; returns how many were resent.
    pub async fn resend_dead_letters(&self, group: &str, ids: &[String]) -> Result<usize, Rejection> {
        let mut resent = 0;
        let mut from = 0;
        loop {
            let batch = self.dead_letters(group, from, 256)?;
            let Some(last) = batch.last() else { break };
            from = last.queue_offset + 1;
            let mut copies = Vec::new();
            for m in batch {
                let id =
                    m.properties.get(props::DLQ_ORIGIN_MESSAGE_ID).or(m.properties.unique_id()).unwrap_or_default();
                if !ids.is_empty() && !ids.iter().any(|i| i == id) {
                    continue;
                }
                let origin = park::origin_topic(&m).to_owned();
                let (topic, cfg) = self.topic(&origin)?;
                let queues = cfg.write_queues.max(1);
                // A message group keeps its queue, so its order holds.
                let queue = match m.properties.get(crate::convert::MESSAGE_GROUP) {
                    Some(g) => (rill_common::java_string_hash(g) as u32) % queues,
                    None => self.round_robin.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % queues,
                };
                let mut copy = park::copy(&m, topic, queue);
                copy.properties.remove(props::DLQ_ORIGIN_TOPIC);
                copy.properties.remove(props::DLQ_ORIGIN_MESSAGE_ID);
                copy.reconsume_times = 0;
                copies.push(copy);
            }
            resent += copies.len();
            self.store_copies(copies).await?;
        }
        tracing::info!(group, resent, "dead letters put back on their topics");
        Ok(resent)
    }

    /// Takes a moved message out of flight and commits the group's offset.
    fn finish_move(&self, key: &StateKey, offset: u64, f: InFlight) {
        let (group, broadcast) = owner_group(&key.0);
        if let Some(committed) = self.pop.finish_move(key, offset, f.nonce)
            && !broadcast
        {
            self.meta.commit_offset(group, &key.1, key.2, committed);
        }
    }

    /// The message at a queue offset, or none if retention deleted it.
    pub(crate) fn read_at(&self, topic: &str, queue: u32, offset: u64) -> Result<Option<StoredMessage>, Rejection> {
        let read = self
            .store
            .read_queue(topic, queue, offset, 1)
            .map_err(|e| Rejection::new(Code::InternalServerError, e.to_string()))?;
        Ok(read.messages.into_iter().find(|m| m.queue_offset == offset))
    }

    /// Stores copies and waits until consumers can see them.
    pub(crate) async fn store_copies(&self, copies: Vec<MessageToStore>) -> Result<(), Rejection> {
        if copies.is_empty() {
            return Ok(());
        }
        let internal = |e: rill_store::Error| Rejection::new(Code::InternalServerError, e.to_string());
        let parked = copies.iter().any(|c| c.topic.as_str() == park::TIMER_TOPIC);
        let appended = self.store.append_batch(copies).await.map_err(internal)?;
        if let Some(end) = appended.last().map(|a| a.end()) {
            self.store.wait_dispatched(end).await.map_err(internal)?;
        }
        if parked {
            self.timer_wake.notify_one();
        }
        Ok(())
    }

    /// A broker-owned topic (retry, dead letters), created with one queue
    /// on first use whatever the auto-create setting.
    pub(crate) fn system_topic(&self, name: &str) -> Result<TopicName, Rejection> {
        let topic = TopicName::new(name).map_err(|e| Rejection::new(Code::IllegalTopic, e.to_string()))?;
        if self.meta.topic(name).is_none() {
            self.meta
                .put_topic(TopicConfig::new(name, 1))
                .map_err(|e| Rejection::new(Code::InternalServerError, format!("cannot create topic '{name}': {e}")))?;
            tracing::info!(topic = name, "created system topic");
        }
        Ok(topic)
    }
}

/// Runs the revive pass every `revive_interval` until the broker stops serving.
pub(crate) async fn run(broker: std::sync::Arc<Broker>) {
    let mut stopping = broker.stopping();
    let mut tick = tokio::time::interval(broker.config.revive_interval.max(std::time::Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => {}
        }
        if *stopping.borrow() {
            return;
        }
        // A full pass may leave more behind: go again at once.
        while broker.revive().await >= REVIVE_BATCH {}
    }
}

/// The group of a pop state owner (`group`, or `group@client` for a
/// broadcast member) and whether it is a broadcast member.
fn owner_group(owner: &str) -> (&str, bool) {
    match owner.split_once('@') {
        Some((group, _)) => (group, true),
        None => (owner, false),
    }
}
