//! The producer: sends messages to the queues of a topic's route (every
//! broker serving it), retrying transport failures on another broker.
//!
//! Single sends are coalesced: each producer keeps at most
//! [`MAX_OUTSTANDING`] send requests on the wire, and messages sent while
//! those are busy go together in the next request (one `SendMessage` with
//! several entries, each acknowledged on its own). A lone send leaves at
//! once, so coalescing adds no delay when the producer is idle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rill_proto::v2;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::connection::{CommandHandler, Connection, endpoint_key};
use crate::message::new_message_id;
use crate::{ClientConfig, Error, Message, Result, SendReceipt, check};

/// Send requests a producer keeps on the wire at once.
pub const MAX_OUTSTANDING: usize = 2;
/// Most messages coalesced into one request.
const MAX_COALESCED: usize = 128;
/// Most body bytes coalesced into one request.
const MAX_COALESCED_BYTES: usize = 1 << 20;

/// A single send waiting to be coalesced into a request.
struct Pending {
    topic: String,
    wire: v2::Message,
    reply: oneshot::Sender<Result<SendReceipt>>,
}

/// Sends messages to a broker.
#[derive(Debug, Clone)]
pub struct Producer {
    core: Core,
    queue: mpsc::UnboundedSender<Pending>,
    /// Requests waiting for replies.
    waiters: Arc<crate::request::Waiters>,
}

/// What requests need: the connection, retry policy and queue rotation.
#[derive(Debug, Clone)]
struct Core {
    conn: Connection,
    max_attempts: u32,
    /// Round-robin position over the route's writable queues.
    next_queue: Arc<AtomicUsize>,
}

/// How a transaction should end, as a check-back answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionResolution {
    /// Deliver the message.
    Commit,
    /// Drop it.
    Rollback,
    /// Not known yet: the broker asks again later.
    Unknown,
}

/// A transactional message sent and not yet ended.
#[derive(Debug)]
#[must_use = "a transaction stays open (and is checked back) until committed or rolled back"]
pub struct Transaction {
    conn: Connection,
    topic: String,
    receipt: SendReceipt,
}

impl Transaction {
    /// What the broker answered to the half message.
    pub fn receipt(&self) -> &SendReceipt {
        &self.receipt
    }

    /// Delivers the message to consumers.
    pub async fn commit(self) -> Result<()> {
        self.end(v2::TransactionResolution::Commit).await
    }

    /// Drops the message.
    pub async fn rollback(self) -> Result<()> {
        self.end(v2::TransactionResolution::Rollback).await
    }

    async fn end(self, resolution: v2::TransactionResolution) -> Result<()> {
        let mut rpc = self.conn.broker_by_key(&self.receipt.broker)?;
        end_transaction(
            &self.conn,
            &mut rpc,
            &self.topic,
            &self.receipt.message_id,
            &self.receipt.transaction_id,
            resolution,
            v2::TransactionSource::SourceClient,
        )
        .await
    }
}

async fn end_transaction(
    conn: &Connection,
    rpc: &mut crate::connection::Rpc,
    topic: &str,
    message_id: &str,
    transaction_id: &str,
    resolution: v2::TransactionResolution,
    source: v2::TransactionSource,
) -> Result<()> {
    let req = v2::EndTransactionRequest {
        topic: Some(conn.resource(topic)),
        message_id: message_id.to_owned(),
        transaction_id: transaction_id.to_owned(),
        resolution: resolution as i32,
        source: source as i32,
        trace_context: String::new(),
    };
    let reply = rpc
        .end_transaction(conn.request(req))
        .await
        .map_err(|source| Error::Rpc { rpc: "EndTransaction", source })?
        .into_inner();
    check("EndTransaction", reply.status)
}

/// Answers a broker's check-back about an open transaction.
pub type TransactionChecker = Arc<
    dyn Fn(crate::ReceivedMessage) -> std::pin::Pin<Box<dyn std::future::Future<Output = TransactionResolution> + Send>>
        + Send
        + Sync,
>;

impl Producer {
    /// Connects and announces this producer to the broker.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        Self::connect_with(config, Vec::new(), None).await
    }

    /// Connects a producer that sends transactional messages to `topics`;
    /// `checker` answers the broker when a transaction stays open (the
    /// producer crashed between send and commit, say).
    pub async fn connect_transactional<F, Fut>(config: ClientConfig, topics: &[&str], checker: F) -> Result<Self>
    where
        F: Fn(crate::ReceivedMessage) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = TransactionResolution> + Send + 'static,
    {
        let checker: TransactionChecker = Arc::new(move |m| Box::pin(checker(m)));
        Self::connect_with(config, topics.iter().map(|t| (*t).to_owned()).collect(), Some(checker)).await
    }

    async fn connect_with(
        config: ClientConfig,
        topics: Vec<String>,
        checker: Option<TransactionChecker>,
    ) -> Result<Self> {
        let conn = Connection::open(config)?;
        let publishing =
            v2::Publishing { topics: topics.iter().map(|t| conn.resource(t)).collect(), ..Default::default() };
        let settings = v2::Settings {
            client_type: Some(v2::ClientType::Producer as i32),
            access_point: Some(conn.access_point.clone()),
            request_timeout: Some(rill_proto::time::from_duration(conn.config.request_timeout)),
            pub_sub: Some(v2::settings::PubSub::Publishing(publishing)),
            user_agent: Some(Connection::user_agent()),
            ..Default::default()
        };
        let handler = checker.map(|c| check_back_handler(conn.clone(), c));
        let answered = conn.announce_with(settings.clone(), handler.clone()).await?;
        if let Some(handler) = handler {
            // Every broker that may hold this producer's half messages must
            // be able to ask it about them.
            let home = endpoint_key(&conn.access_point);
            for topic in &topics {
                let route = conn.route(topic).await?;
                for q in route.iter() {
                    let Some(endpoints) = q.broker.as_ref().and_then(|b| b.endpoints.as_ref()) else { continue };
                    conn.broker(endpoints)?;
                    let key = endpoint_key(endpoints);
                    let known = conn.telemetry_to(&key);
                    if key != home && !known {
                        conn.announce_at(&key, settings.clone(), Some(Arc::clone(&handler))).await?;
                    }
                }
            }
        }
        let max_attempts = answered.backoff_policy.map_or(3, |p| p.max_attempts.max(1) as u32);
        let core = Core { conn, max_attempts, next_queue: Arc::default() };
        let (queue, pending) = mpsc::unbounded_channel();
        // Ends when the last clone of the producer (the last sender) is gone.
        tokio::spawn(coalesce(core.clone(), pending));
        Ok(Self { core, queue, waiters: Arc::default() })
    }

    /// Sends one message; resolves when the broker stored it.
    pub async fn send(&self, message: Message) -> Result<SendReceipt> {
        let topic = message.topic.clone();
        let wire = message.into_wire_as(&self.core.conn.config, new_message_id(), false);
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { topic, wire, reply })
            .map_err(|_| Error::Config("the producer's send loop has stopped".into()))?;
        answer.await.map_err(|_| Error::Config("the producer's send loop dropped a message".into()))?
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.core.conn
    }

    pub(crate) fn waiters(&self) -> &Arc<crate::request::Waiters> {
        &self.waiters
    }

    /// Sends a transactional (half) message: consumers see it only after
    /// [`Transaction::commit`].
    pub async fn send_transactional(&self, message: Message) -> Result<Transaction> {
        let wire = message.to_wire_as(&self.core.conn.config, new_message_id(), true);
        let mut results = self.core.request(&message.topic, &mut vec![wire]).await?;
        let receipt = results.pop().unwrap_or_else(|| Err(Error::Config("no result for the message".into())))?;
        Ok(Transaction { conn: self.core.conn.clone(), topic: message.topic, receipt })
    }

    /// Sends without waiting: the returned task resolves with the receipt.
    pub fn send_async(&self, message: Message) -> tokio::task::JoinHandle<Result<SendReceipt>> {
        let this = self.clone();
        tokio::spawn(async move { this.send(message).await })
    }

    /// Sends several messages of one topic in one request; receipts come
    /// in the same order, or the first failure. The request goes to the
    /// next writable queue of the topic's route (round robin over every
    /// broker); a failed attempt is retried on a queue of another broker
    /// when the route has one.
    ///
    /// Plain messages (no delay, one message group or none) go packed into
    /// one message when the broker stores packed batches and
    /// [`ClientConfig::pack_batches`] is on: one record on the broker,
    /// delivered to consumers one by one, each with its own id and offset.
    pub async fn send_batch(&self, messages: impl AsRef<[Message]>) -> Result<Vec<SendReceipt>> {
        let mut batch = self.prepare(messages.as_ref().to_vec())?;
        self.send_prepared(&mut batch).await
    }

    /// Turns `messages` (all of one topic) into the form they travel in,
    /// once, taking their fields: [`Producer::send_prepared`] sends them,
    /// as often as it takes, under the same message ids.
    pub fn prepare(&self, messages: Vec<Message>) -> Result<Prepared> {
        let topic = one_topic(&messages)?;
        let config = &self.core.conn.config;
        if self.core.conn.packs()
            && let Some((wire, ids)) = crate::pack::pack(&messages, config)
        {
            return Ok(Prepared { topic, wire: vec![wire], packed: Some(ids) });
        }
        let wire = messages.into_iter().map(|m| m.into_wire_as(config, new_message_id(), false)).collect();
        Ok(Prepared { topic, wire, packed: None })
    }

    /// Sends prepared messages in one request, as [`Producer::send_batch`]
    /// does; after a failure they can be sent again.
    pub async fn send_prepared(&self, batch: &mut Prepared) -> Result<Vec<SendReceipt>> {
        let results = self.core.request(&batch.topic, &mut batch.wire).await?;
        match &batch.packed {
            Some(ids) => unpacked_receipts(results, ids),
            None => results.into_iter().collect(),
        }
    }
}

/// The receipts of packed messages from the one answer to the message
/// that carried them: each took the next offset from there on.
fn unpacked_receipts(results: Vec<Result<SendReceipt>>, ids: &[String]) -> Result<Vec<SendReceipt>> {
    let first = results.into_iter().next().unwrap_or_else(|| Err(Error::Config("no result for the batch".into())))?;
    Ok(ids
        .iter()
        .enumerate()
        .map(|(i, id)| SendReceipt { message_id: id.clone(), offset: first.offset + i as i64, ..first.clone() })
        .collect())
}

/// The topic every one of `messages` goes to; an error if there are none or they differ.
fn one_topic(messages: &[Message]) -> Result<String> {
    let Some(topic) = messages.first().map(|m| m.topic.clone()) else {
        return Err(Error::Config("a send needs at least one message".into()));
    };
    if let Some(other) = messages.iter().find(|m| m.topic != topic) {
        return Err(Error::Config(format!("a batch goes to one topic; '{}' and '{}' are mixed", topic, other.topic)));
    }
    Ok(topic)
}

/// Messages of one topic in the form they travel in ([`Producer::prepare`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    topic: String,
    wire: Vec<v2::Message>,
    /// When packed (`wire` is one message): the packed messages' ids.
    packed: Option<Vec<String>>,
}

impl Prepared {
    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.packed.as_ref().map_or(self.wire.len(), Vec::len)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it goes as one packed message.
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }
}

/// Turns check-back commands into checker calls and EndTransaction answers.
fn check_back_handler(conn: Connection, checker: TransactionChecker) -> CommandHandler {
    Arc::new(move |broker: &str, cmd: v2::TelemetryCommand| {
        let Some(v2::telemetry_command::Command::RecoverOrphanedTransactionCommand(c)) = cmd.command else { return };
        let Some(message) = c.message else { return };
        let (conn, checker, broker) = (conn.clone(), Arc::clone(&checker), broker.to_owned());
        tokio::spawn(async move {
            let received = crate::ReceivedMessage::from_wire(message, broker.clone());
            let (topic, id) = (received.topic.clone(), received.message_id.clone());
            let resolution = match checker(received).await {
                TransactionResolution::Commit => v2::TransactionResolution::Commit,
                TransactionResolution::Rollback => v2::TransactionResolution::Rollback,
                TransactionResolution::Unknown => return,
            };
            // The answer goes to the broker that asked (it holds the half).
            let Ok(mut rpc) = conn.broker_by_key(&broker) else { return };
            let source = v2::TransactionSource::SourceServerCheck;
            if let Err(e) = end_transaction(&conn, &mut rpc, &topic, &id, &c.transaction_id, resolution, source).await {
                tracing::warn!(transaction = %c.transaction_id, error = %e, "cannot answer a transaction check-back");
            }
        });
    })
}

/// Gathers single sends into requests, at most [`MAX_OUTSTANDING`] at once.
async fn coalesce(core: Core, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    while let Some(first) = pending.recv().await {
        // Waiting for a free slot is what lets later sends join this request.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut bytes = first.wire.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_COALESCED && bytes < MAX_COALESCED_BYTES {
            match pending.try_recv() {
                Ok(p) => {
                    bytes += p.wire.body.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        // One request holds messages a broker (or a RocketMQ proxy) takes
        // as one batch: same topic, same type, same message group.
        let mut by_kind: HashMap<(String, i32, Option<String>), Vec<Pending>> = HashMap::new();
        for p in batch {
            let sys = p.wire.system_properties.as_ref();
            let kind = (p.topic.clone(), sys.map_or(0, |s| s.message_type), sys.and_then(|s| s.message_group.clone()));
            by_kind.entry(kind).or_default().push(p);
        }
        let slot = Arc::new(slot);
        for ((topic, _, _), group) in by_kind {
            let (core, slot) = (core.clone(), Arc::clone(&slot));
            tokio::spawn(async move {
                let _slot = slot;
                let (mut wire, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|p| (p.wire, p.reply)).unzip();
                // Plain messages go packed when the broker stores packed batches.
                let packed = if core.conn.packs() { crate::pack::pack(&wire, &core.conn.config) } else { None };
                let outcome = match packed {
                    Some((packed, ids)) => {
                        match core.request(&topic, &mut vec![packed]).await.and_then(|r| unpacked_receipts(r, &ids)) {
                            Ok(receipts) => Ok(receipts.into_iter().map(Ok).collect()),
                            // The broker refused the batch for what a message holds: sent
                            // one by one, only that message fails.
                            Err(e) if e.code().is_some() && !e.is_retryable() => core.request(&topic, &mut wire).await,
                            Err(e) => Err(e),
                        }
                    }
                    None => core.request(&topic, &mut wire).await,
                };
                crate::answer_each(replies, outcome);
            });
        }
    }
}

impl Core {
    /// Sends one request with `wire` (all of `topic`), retrying failures of
    /// the whole request; one result per message.
    async fn request(&self, topic: &str, wire: &mut Vec<v2::Message>) -> Result<Vec<Result<SendReceipt>>> {
        let mut backoff = Duration::from_millis(10);
        let mut attempt = 1;
        let mut last_broker: Option<String> = None;
        loop {
            let result = match self.pick_queue(topic, last_broker.as_deref()).await {
                Ok(queue) => {
                    for m in wire.iter_mut() {
                        if let Some(sys) = m.system_properties.as_mut() {
                            sys.queue_id = queue.id;
                        }
                    }
                    last_broker = queue.broker.as_ref().map(|b| b.name.clone());
                    // Encoded once per attempt, from the messages themselves (no copy of them).
                    let request = v2::SendMessageRequest { messages: std::mem::take(wire) };
                    let encoded = bytes::Bytes::from(prost::Message::encode_to_vec(&request));
                    *wire = request.messages;
                    self.send_to(&queue, encoded, wire.len()).await
                }
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.max_attempts => {
                    tracing::warn!(attempt, error = %e, "send failed; retrying");
                    self.conn.forget_route(topic);
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

    /// One `SendMessage` call; per-entry results when the broker gives them.
    async fn send_to(
        &self,
        queue: &v2::MessageQueue,
        encoded: bytes::Bytes,
        n: usize,
    ) -> Result<Vec<Result<SendReceipt>>> {
        let endpoints = queue.broker.as_ref().and_then(|b| b.endpoints.as_ref());
        let broker_key = endpoint_key(endpoints.unwrap_or(&self.conn.access_point));
        let mut rpc = match endpoints {
            Some(e) => self.conn.broker(e)?,
            None => self.conn.rpc.clone(),
        };
        let request = self.conn.request(encoded);
        let reply = rpc.send_encoded(request).await.map_err(|source| Error::Rpc { rpc: "SendMessage", source })?;
        let reply = reply.into_inner();
        if reply.entries.len() != n {
            check("SendMessage", reply.status)?;
            return Err(Error::Broker {
                rpc: "SendMessage",
                code: 0,
                message: format!("the broker answered {} entries for {n} messages", reply.entries.len()),
            });
        }
        Ok(reply
            .entries
            .into_iter()
            .map(|e| {
                check("SendMessage", e.status)?;
                Ok(SendReceipt {
                    message_id: e.message_id,
                    offset: e.offset,
                    transaction_id: e.transaction_id,
                    broker: broker_key.clone(),
                })
            })
            .collect())
    }
}
