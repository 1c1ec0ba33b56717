//! The send path: validation, queue choice, parking delayed messages on the
//! timer topic, and storing a request's messages with one append call,
//! answering once they are visible.

use std::sync::atomic::Ordering;

use rill_common::{TopicName, java_string_hash};
use rill_proto::v2::{self, Code};

use crate::Broker;
use crate::convert::{self, Limits, Rejection};
use crate::park::{TIMER_TOPIC, props};

impl Broker {
    /// Stores one message; returns its message id and queue offset.
    pub async fn send(&self, msg: &v2::Message) -> Result<(String, i64), Rejection> {
        let mut results = self.send_batch(std::slice::from_ref(msg)).await;
        results.pop().unwrap_or_else(|| Err(Rejection::new(Code::InternalServerError, "no result for the message")))
    }

    /// Stores several messages: each is validated on its own, the valid ones
    /// are appended together, and the call answers once all of them are
    /// visible to consumers (a receive that follows finds them). One result
    /// per message, in order: its message id and queue offset, or why not.
    pub async fn send_batch(&self, msgs: &[v2::Message]) -> Vec<Result<(String, i64), Rejection>> {
        let mut results: Vec<Option<Result<(String, i64), Rejection>>> = vec![None; msgs.len()];
        let mut stored = Vec::with_capacity(msgs.len());
        let mut placed = Vec::with_capacity(msgs.len());
        // Half messages, kept to record them as open once stored.
        let mut halves = Vec::new();
        let mut parked = false;
        // Traced messages: where they are in `stored`, id, topic, note.
        let mut traced = Vec::new();
        let mut known = None;
        for (i, msg) in msgs.iter().enumerate() {
            if crate::reply::is_reply(msg) {
                // Straight to the waiting requester, not stored.
                results[i] = Some(self.route_reply(msg));
                continue;
            }
            match self.to_store(msg, &mut known) {
                Ok((m, id)) => {
                    if m.topic.as_str() == crate::txn::HALF_TOPIC {
                        halves.push((stored.len(), m.clone()));
                    }
                    parked |= m.topic.as_str() == TIMER_TOPIC;
                    if crate::trace::traced(&m.properties) {
                        let real = m.properties.get(props::REAL_TOPIC).unwrap_or(m.topic.as_str()).to_owned();
                        let note = if m.topic.as_str() == crate::txn::HALF_TOPIC {
                            "half message (transaction open)".to_owned()
                        } else if let Some(due) = m.properties.get(props::TIMER_DELIVER_MS) {
                            format!("delayed until {due} ms")
                        } else {
                            String::new()
                        };
                        traced.push((stored.len(), id.clone(), real, note));
                    }
                    stored.push(m);
                    placed.push((i, id));
                }
                Err(r) => results[i] = Some(Err(r)),
            }
        }
        if !halves.is_empty() {
            self.storing_halves();
        }
        if !stored.is_empty() {
            let internal = |e: rill_store::Error| {
                tracing::error!(error = %e, "cannot store message");
                Rejection::new(Code::InternalServerError, format!("cannot store the message: {e}"))
            };
            let appended = match self.store.append_batch(stored).await {
                Ok(a) => match a.last().map(|l| l.end()) {
                    Some(end) => self.store.wait_dispatched(end).await.map(|()| a).map_err(internal),
                    None => Ok(a),
                },
                Err(e) => Err(internal(e)),
            };
            match appended {
                Ok(appended) => {
                    for (k, half) in &halves {
                        if let Some(a) = appended.get(*k) {
                            self.half_stored(half, a);
                        }
                    }
                    for (k, id, topic, note) in &traced {
                        if let Some(a) = appended.get(*k) {
                            let mut detail =
                                format!("stored at log offset {}, queue offset {}", a.physical_offset, a.queue_offset);
                            if !note.is_empty() {
                                detail = format!("{detail}; {note}");
                            }
                            self.trace("Pub", id, topic, "", "", 0, detail);
                        }
                    }
                    for ((i, id), a) in placed.into_iter().zip(appended) {
                        results[i] = Some(Ok((id, a.queue_offset as i64)));
                    }
                }
                Err(r) => {
                    for (i, _) in placed {
                        results[i] = Some(Err(r.clone()));
                    }
                }
            }
        }
        if !halves.is_empty() {
            self.halves_stored();
        }
        if parked {
            // Stored and dispatched: the timer loop finds it on its queue.
            self.timer_wake.notify_one();
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Rejection::new(Code::InternalServerError, "message was not handled"))))
            .collect()
    }

    /// Validates a message and places it on a queue of its topic.
    /// `known` keeps the last topic looked up: a request's messages mostly share one.
    fn to_store(
        &self,
        msg: &v2::Message,
        known: &mut Option<(TopicName, rill_store::TopicConfig)>,
    ) -> Result<(rill_store::MessageToStore, String), Rejection> {
        let name = msg.topic.as_ref().map(|t| t.name.as_str()).unwrap_or_default();
        if known.as_ref().is_none_or(|(t, _)| t.as_str() != name) {
            *known = Some(self.topic(name)?);
        }
        let Some((topic, cfg)) = known.as_ref() else {
            return Err(Rejection::new(Code::InternalServerError, format!("topic '{name}' was not looked up")));
        };
        if cfg.write_queues == 0 || cfg.perm & rill_store::perm::WRITE == 0 {
            return Err(Rejection::new(Code::Forbidden, format!("topic '{name}' is not writable")));
        }
        let group = msg.system_properties.as_ref().and_then(|s| s.message_group.as_deref());
        let queue = match group {
            Some(g) => (java_string_hash(g) as u32) % cfg.write_queues,
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % cfg.write_queues,
        };
        let limits = Limits { max_body_size: self.config.max_body_size };
        let mut stored = convert::to_store(msg, topic, queue, self.config.store_host, limits)?;
        let id = stored.properties.unique_id().unwrap_or_default().to_owned();
        let sys = msg.system_properties.as_ref();
        if sys.is_some_and(|s| s.message_type == v2::MessageType::Transaction as i32) {
            self.make_half(&mut stored)?;
        } else if let Some(due) = sys.and_then(|s| s.delivery_timestamp.as_ref()) {
            self.park(&mut stored, due)?;
        }
        Ok((stored, id))
    }

    /// Parks a message with a delivery time on the timer topic, unless that
    /// time has come already.
    fn park(&self, m: &mut rill_store::MessageToStore, due: &prost_types::Timestamp) -> Result<(), Rejection> {
        let due_ms = rill_proto::time::timestamp_to_millis(due)
            .map_err(|e| Rejection::new(Code::IllegalDeliveryTime, format!("delivery timestamp: {e}")))?;
        let now = self.clock.now_millis();
        let max = self.config.timer.max_delay;
        if due_ms.saturating_sub(now) > max.as_millis() as i64 {
            return Err(Rejection::new(
                Code::IllegalDeliveryTime,
                format!(
                    "delivery time is {} s ahead; this broker accepts at most {} s (timer.max_delay)",
                    (due_ms - now) / 1000,
                    max.as_secs()
                ),
            ));
        }
        if due_ms <= now {
            return Ok(());
        }
        let real = std::mem::replace(
            &mut m.topic,
            TopicName::new(TIMER_TOPIC).map_err(|e| Rejection::new(Code::InternalServerError, e.to_string()))?,
        );
        m.properties.insert(props::REAL_TOPIC, real.as_str());
        m.properties.insert(props::REAL_QID, m.queue_id.to_string());
        m.properties.insert(props::TIMER_DELIVER_MS, due_ms.to_string());
        m.queue_id = 0;
        Ok(())
    }
}
