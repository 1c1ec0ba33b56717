//! The producer: sends messages, retrying transport failures with backoff.

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
        Ok(Self { conn, max_attempts })
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

    /// Sends several messages in one request; receipts come in the same order.
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<Vec<SendReceipt>> {
        let ns = self.conn.config.namespace.clone();
        let wire: Vec<v2::Message> = messages.iter().map(|m| m.to_wire(&ns, new_message_id())).collect();
        let mut backoff = Duration::from_millis(10);
        let mut attempt = 1;
        loop {
            let mut rpc = self.conn.rpc.clone();
            let request = self.conn.request(v2::SendMessageRequest { messages: wire.clone() });
            let result = match rpc.send_message(request).await {
                Err(source) => Err(Error::Rpc { rpc: "SendMessage", source }),
                Ok(reply) => {
                    let reply = reply.into_inner();
                    check("SendMessage", reply.status).and_then(|()| {
                        reply
                            .entries
                            .into_iter()
                            .map(|e| {
                                check("SendMessage", e.status)?;
                                Ok(SendReceipt { message_id: e.message_id, offset: e.offset })
                            })
                            .collect()
                    })
                }
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.max_attempts => {
                    tracing::warn!(attempt, error = %e, "send failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
