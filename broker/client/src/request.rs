//! Request–reply on top of the producer: [`Producer::request`] sends a
//! message and waits for the reply the broker routes straight back;
//! [`Producer::reply`] answers a request received by a consumer.
//!
//! A requester keeps one reply poller per broker it sent requests to (a
//! long-polling receive of its own mailbox there) and hands each reply to
//! the request waiting for its correlation id. Replies that arrive after
//! their request gave up are dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rill_proto::v2;
use tokio::sync::oneshot;

use crate::connection::Connection;
use crate::message::new_message_id;
use crate::{Error, Message, Producer, ReceivedMessage, Result, SendReceipt, check};

/// Topic replies go to (the broker keeps them in requesters' mailboxes).
pub const REPLY_TOPIC: &str = "RILL_REPLY_TOPIC";
const CORRELATION_ID: &str = "CORRELATION_ID";
const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
const MSG_TYPE: &str = "MSG_TYPE";
const TTL: &str = "TTL";

/// Requests waiting for replies, and the brokers polled for them.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    waiting: Mutex<HashMap<String, oneshot::Sender<ReceivedMessage>>>,
    polled: Mutex<HashSet<String>>,
}

impl Producer {
    /// Sends `message` as a request and waits up to `timeout` for its reply.
    pub async fn request(&self, message: Message, timeout: Duration) -> Result<ReceivedMessage> {
        let correlation_id = new_message_id();
        let client_id = self.conn().config.client_id.clone();
        let message = message
            .with_property(CORRELATION_ID, correlation_id.clone())
            .with_property(REPLY_TO_CLIENT, client_id)
            .with_property(MSG_TYPE, "request")
            .with_property(TTL, timeout.as_millis().to_string());
        let (tx, rx) = oneshot::channel();
        self.waiters().waiting.lock().map_err(poisoned)?.insert(correlation_id.clone(), tx);
        // One deadline for sending and waiting together.
        let deadline = tokio::time::Instant::now() + timeout;
        let sent = tokio::time::timeout_at(deadline, self.send(message)).await;
        let receipt = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.forget(&correlation_id);
                return Err(e);
            }
            Err(_) => {
                self.forget(&correlation_id);
                return Err(Error::RequestTimeout { correlation_id, timeout });
            }
        };
        self.poll_replies(&receipt.broker)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.forget(&correlation_id);
                Err(Error::RequestTimeout { correlation_id, timeout })
            }
        }
    }

    /// Answers `request` (received by a consumer) with `reply`: the broker
    /// that delivered the request routes it to the waiting requester. The
    /// reply's topic is ignored.
    pub async fn reply(&self, request: &ReceivedMessage, reply: Message) -> Result<SendReceipt> {
        let field = |k: &str| {
            request.properties.get(k).cloned().ok_or_else(|| {
                Error::Config(format!("message {} is not a request: it has no {k} property", request.message_id))
            })
        };
        let (correlation_id, client) = (field(CORRELATION_ID)?, field(REPLY_TO_CLIENT)?);
        let mut reply = Message { topic: REPLY_TOPIC.into(), ..reply }
            .with_property(CORRELATION_ID, correlation_id)
            .with_property(REPLY_TO_CLIENT, client)
            .with_property(MSG_TYPE, "reply");
        if let Some(ttl) = request.properties.get(TTL) {
            reply = reply.with_property(TTL, ttl.clone());
        }
        let conn = self.conn();
        let wire = reply.to_wire(&conn.config, new_message_id());
        let mut rpc = conn.broker_by_key(&request.broker)?;
        let answer = rpc
            .send_message(conn.request(v2::SendMessageRequest { messages: vec![wire] }))
            .await
            .map_err(|source| Error::Rpc { rpc: "SendMessage", source })?
            .into_inner();
        check("SendMessage", answer.status)?;
        let entry = answer.entries.into_iter().next().ok_or_else(|| Error::Broker {
            rpc: "SendMessage",
            code: 0,
            message: "no result for the reply".into(),
        })?;
        check("SendMessage", entry.status)?;
        Ok(SendReceipt {
            message_id: entry.message_id,
            offset: entry.offset,
            transaction_id: String::new(),
            broker: request.broker.clone(),
        })
    }

    fn forget(&self, correlation_id: &str) {
        if let Ok(mut w) = self.waiters().waiting.lock() {
            w.remove(correlation_id);
        }
    }

    /// Starts polling `broker` for this producer's replies, once.
    fn poll_replies(&self, broker: &str) -> Result<()> {
        if !self.waiters().polled.lock().map_err(poisoned)?.insert(broker.to_owned()) {
            return Ok(());
        }
        let (conn, waiters, broker) = (self.conn().clone(), Arc::downgrade(self.waiters()), broker.to_owned());
        tokio::spawn(async move { poll(conn, waiters, broker).await });
        Ok(())
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Config("the reply table lock is poisoned".into())
}

/// Receives replies from one broker for as long as the producer lives.
async fn poll(conn: Connection, waiters: Weak<Waiters>, broker: String) {
    let group = format!("%REPLY%{}", conn.config.client_id);
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(w) = waiters.upgrade() else { return };
        drop(w);
        let Ok(mut rpc) = conn.broker_by_key(&broker) else { return };
        let req = v2::ReceiveMessageRequest {
            group: Some(conn.resource(&group)),
            message_queue: Some(v2::MessageQueue {
                topic: Some(conn.resource(REPLY_TOPIC)),
                id: -1,
                ..Default::default()
            }),
            filter_expression: None,
            batch_size: 32,
            invisible_duration: Some(rill_proto::time::from_duration(Duration::from_secs(60))),
            auto_renew: false,
            long_polling_timeout: Some(rill_proto::time::from_duration(Duration::from_secs(20))),
            attempt_id: None,
        };
        let mut request = conn.request(req);
        request.set_timeout(Duration::from_secs(20) + conn.config.request_timeout);
        let mut stream = match rpc.receive_message(request).await {
            Ok(s) => s.into_inner(),
            Err(e) => {
                tracing::debug!(broker = %broker, error = %e, "reply poll failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        while let Ok(Some(item)) = stream.message().await {
            let Some(v2::receive_message_response::Content::Message(m)) = item.content else { continue };
            let reply = ReceivedMessage::from_wire(m, broker.clone());
            let Some(id) = reply.properties.get(CORRELATION_ID).cloned() else { continue };
            let Some(w) = waiters.upgrade() else { return };
            let waiter = w.waiting.lock().ok().and_then(|mut t| t.remove(&id));
            match waiter {
                Some(tx) => {
                    let _ = tx.send(reply);
                }
                None => tracing::debug!(correlation_id = %id, "reply for a request that gave up; dropped"),
            }
        }
    }
}
