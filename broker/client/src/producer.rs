//! The producer: sends messages to the queues of a topic's route (every
//! broker serving it), retrying transport failures on another broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rill_proto::v2;

use crate::connection::Connection;
use crate::message::new_message_id;
use crate::{ClientConfig, Error, Message, Result, SendReceipt, check};

/// Sends messages to a broker.
#[derive(Debug, Clone)]
pub struct Producer {
    conn: Connection,
    max_attempts: u32,
    /// Round-robin position over the route's writable queues.
    next_queue: Arc<AtomicUsize>,
}

impl Producer {
    /// Connects and announces this producer to the broker.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let conn = Connection::open(config)?;
        let settings = v2::Settings {
            client_type: Some(v2::ClientType::Producer as i32),
            access_point: Some(conn.access_point.clone()),
            request_timeout: Some(rill_proto::time::from_duration(conn.config.request_timeout)),
            pub_sub: Some(v2::settings::PubSub::Publishing(v2::Publishing::default())),
            user_agent: Some(Connection::user_agent()),
            ..Default::default()
        };
        let answered = conn.announce(settings).await?;
        let max_attempts = answered.backoff_policy.map_or(3, |p| p.max_attempts.max(1) as u32);
        Ok(Self { conn, max_attempts, next_queue: Arc::default() })
    }

    /// Sends one message; resolves when the broker stored it.
    pub async fn send(&self, message: Message) -> Result<SendReceipt> {
        let mut receipts = self.send_batch(vec![message]).await?;
        receipts.pop().ok_or_else(|| Error::Broker { rpc: "SendMessage", code: 0, message: "empty reply".into() })
    }

    /// Sends without waiting: the returned task resolves with the receipt.
    pub fn send_async(&self, message: Message) -> tokio::task::JoinHandle<Result<SendReceipt>> {
        let this = self.clone();
        tokio::spawn(async move { this.send(message).await })
    }

    /// Sends several messages of one topic in one request; receipts come
    /// in the same order. The request goes to the next writable queue of
    /// the topic's route (round robin over every broker); a failed attempt
    /// is retried on a queue of another broker when the route has one.
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<Vec<SendReceipt>> {
        let Some(topic) = messages.first().map(|m| m.topic.clone()) else {
            return Err(Error::Config("a send needs at least one message".into()));
        };
        if let Some(other) = messages.iter().find(|m| m.topic != topic) {
            return Err(Error::Config(format!(
                "a batch goes to one topic; '{}' and '{}' are mixed",
                topic, other.topic
            )));
        }
        let ns = self.conn.config.namespace.clone();
        let mut wire: Vec<v2::Message> = messages.iter().map(|m| m.to_wire(&ns, new_message_id())).collect();
        let mut backoff = Duration::from_millis(10);
        let mut attempt = 1;
        let mut last_broker: Option<String> = None;
        loop {
            let result = match self.pick_queue(&topic, last_broker.as_deref()).await {
                Ok(queue) => {
                    for m in &mut wire {
                        if let Some(sys) = m.system_properties.as_mut() {
                            sys.queue_id = queue.id;
                        }
                    }
                    last_broker = queue.broker.as_ref().map(|b| b.name.clone());
                    self.send_to(&queue, wire.clone()).await
                }
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.max_attempts => {
                    tracing::warn!(attempt, error = %e, "send failed; retrying");
                    self.conn.forget_route(&topic);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The next writable queue of `topic`, avoiding `avoid` (a broker name) if another broker has one.
    async fn pick_queue(&self, topic: &str, avoid: Option<&str>) -> Result<v2::MessageQueue> {
        let route = self.conn.route(topic).await?;
        let writable: Vec<&v2::MessageQueue> = route
            .iter()
            .filter(|q| [v2::Permission::Write as i32, v2::Permission::ReadWrite as i32].contains(&q.permission))
            .collect();
        if writable.is_empty() {
            return Err(Error::Broker {
                rpc: "SendMessage",
                code: v2::Code::Forbidden as i32,
                message: format!("topic '{topic}' has no writable queue"),
            });
        }
        let start = self.next_queue.fetch_add(1, Ordering::Relaxed);
        let broker_of = |q: &v2::MessageQueue| q.broker.as_ref().map(|b| b.name.clone());
        let chosen = (0..writable.len())
            .map(|i| writable[(start + i) % writable.len()])
            .find(|q| avoid.is_none() || broker_of(q).as_deref() != avoid)
            .unwrap_or(writable[start % writable.len()]);
        Ok(chosen.clone())
    }

    async fn send_to(&self, queue: &v2::MessageQueue, messages: Vec<v2::Message>) -> Result<Vec<SendReceipt>> {
        let endpoints = queue.broker.as_ref().and_then(|b| b.endpoints.as_ref());
        let mut rpc = match endpoints {
            Some(e) => self.conn.broker(e)?,
            None => self.conn.rpc.clone(),
        };
        let request = self.conn.request(v2::SendMessageRequest { messages });
        let reply = rpc.send_message(request).await.map_err(|source| Error::Rpc { rpc: "SendMessage", source })?;
        let reply = reply.into_inner();
        check("SendMessage", reply.status)?;
        reply
            .entries
            .into_iter()
            .map(|e| {
                check("SendMessage", e.status)?;
                Ok(SendReceipt { message_id: e.message_id, offset: e.offset })
            })
            .collect()
    }
}
