//! Consumers: [`SimpleConsumer`] (the application receives, acknowledges
//! and extends invisibility itself) and [`PushConsumer`] (a listener is
//! called for each message; `Ok` acknowledges, an error or a panic leaves the
//! message to be redelivered after its invisible time).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rill_proto::v2;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;

use crate::connection::Connection;
use crate::{ClientConfig, Error, ReceivedMessage, Result, check};

/// Which messages of a topic a consumer wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterExpression {
    /// Tag expression: `*`, `TagA`, `TagA || TagB`.
    Tag(String),
    /// SQL92 over message properties.
    Sql(String),
}

impl FilterExpression {
    /// Every message.
    pub fn all() -> Self {
        FilterExpression::Tag("*".into())
    }

    fn to_wire(&self) -> v2::FilterExpression {
        match self {
            FilterExpression::Tag(e) => {
                v2::FilterExpression { r#type: v2::FilterType::Tag as i32, expression: e.clone() }
            }
            FilterExpression::Sql(e) => {
                v2::FilterExpression { r#type: v2::FilterType::Sql as i32, expression: e.clone() }
            }
        }
    }
}

/// What a push listener returns when it could not process a message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConsumeError(pub String);

#[derive(Debug, Clone)]
struct Core {
    conn: Connection,
    group: String,
    subscriptions: Arc<HashMap<String, FilterExpression>>,
    long_polling: Duration,
}

impl Core {
    async fn connect(
        config: ClientConfig,
        group: &str,
        subscriptions: HashMap<String, FilterExpression>,
        client_type: v2::ClientType,
        long_polling: Duration,
    ) -> Result<Self> {
        let conn = Connection::open(config)?;
        let subscription = v2::Subscription {
            group: Some(conn.resource(group)),
            subscriptions: subscriptions
                .iter()
                .map(|(t, f)| v2::SubscriptionEntry { topic: Some(conn.resource(t)), expression: Some(f.to_wire()) })
                .collect(),
            long_polling_timeout: Some(rill_proto::time::from_duration(long_polling)),
            ..Default::default()
        };
        let settings = v2::Settings {
            client_type: Some(client_type as i32),
            access_point: Some(conn.access_point.clone()),
            request_timeout: Some(rill_proto::time::from_duration(conn.config.request_timeout)),
            pub_sub: Some(v2::settings::PubSub::Subscription(subscription)),
            user_agent: Some(Connection::user_agent()),
            ..Default::default()
        };
        conn.announce(settings).await?;
        Ok(Self { conn, group: group.to_owned(), subscriptions: Arc::new(subscriptions), long_polling })
    }

    async fn receive(&self, topic: &str, max: usize, invisible: Duration) -> Result<Vec<ReceivedMessage>> {
        let filter = self.subscriptions.get(topic).cloned().unwrap_or_else(FilterExpression::all);
        let req = v2::ReceiveMessageRequest {
            group: Some(self.conn.resource(&self.group)),
            message_queue: Some(v2::MessageQueue {
                topic: Some(self.conn.resource(topic)),
                id: -1,
                ..Default::default()
            }),
            filter_expression: Some(filter.to_wire()),
            batch_size: i32::try_from(max).unwrap_or(i32::MAX),
            invisible_duration: Some(rill_proto::time::from_duration(invisible)),
            auto_renew: false,
            long_polling_timeout: Some(rill_proto::time::from_duration(self.long_polling)),
            attempt_id: None,
        };
        let mut request = self.conn.request(req);
        // The broker may hold the call for the whole long-polling time.
        request.set_timeout(self.long_polling + self.conn.config.request_timeout);
        let mut rpc = self.conn.rpc.clone();
        let mut stream = rpc
            .receive_message(request)
            .await
            .map_err(|source| Error::Rpc { rpc: "ReceiveMessage", source })?
            .into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let item = item.map_err(|source| Error::Rpc { rpc: "ReceiveMessage", source })?;
            match item.content {
                Some(v2::receive_message_response::Content::Status(s)) => {
                    if s.code == v2::Code::MessageNotFound as i32 {
                        return Ok(Vec::new());
                    }
                    check("ReceiveMessage", Some(s))?;
                }
                Some(v2::receive_message_response::Content::Message(m)) => out.push(ReceivedMessage::from_wire(m)),
                _ => {}
            }
        }
        Ok(out)
    }

    async fn ack(&self, message: &ReceivedMessage) -> Result<()> {
        let req = v2::AckMessageRequest {
            group: Some(self.conn.resource(&self.group)),
            topic: Some(self.conn.resource(&message.topic)),
            entries: vec![v2::AckMessageEntry {
                message_id: message.message_id.clone(),
                receipt_handle: message.receipt_handle.clone(),
                lite_topic: None,
            }],
        };
        let mut rpc = self.conn.rpc.clone();
        let reply =
            rpc.ack_message(self.conn.request(req)).await.map_err(|source| Error::Rpc { rpc: "AckMessage", source })?;
        let reply = reply.into_inner();
        check("AckMessage", reply.status)?;
        reply.entries.into_iter().try_for_each(|e| check("AckMessage", e.status))
    }

    async fn change_invisible(&self, message: &mut ReceivedMessage, invisible: Duration) -> Result<()> {
        let req = v2::ChangeInvisibleDurationRequest {
            group: Some(self.conn.resource(&self.group)),
            topic: Some(self.conn.resource(&message.topic)),
            receipt_handle: message.receipt_handle.clone(),
            invisible_duration: Some(rill_proto::time::from_duration(invisible)),
            message_id: message.message_id.clone(),
            lite_topic: None,
            suspend: None,
        };
        let mut rpc = self.conn.rpc.clone();
        let reply = rpc
            .change_invisible_duration(self.conn.request(req))
            .await
            .map_err(|source| Error::Rpc { rpc: "ChangeInvisibleDuration", source })?
            .into_inner();
        check("ChangeInvisibleDuration", reply.status)?;
        message.receipt_handle = reply.receipt_handle;
        Ok(())
    }
}

/// A consumer that receives and acknowledges explicitly.
#[derive(Debug, Clone)]
pub struct SimpleConsumer {
    core: Core,
}

impl SimpleConsumer {
    /// Connects as `group`, subscribed to `subscriptions` (topic → filter).
    /// A receive waits at most `await_duration` for messages.
    pub async fn connect(
        config: ClientConfig,
        group: &str,
        subscriptions: HashMap<String, FilterExpression>,
        await_duration: Duration,
    ) -> Result<Self> {
        if subscriptions.is_empty() {
            return Err(Error::Config("a consumer needs at least one subscription".into()));
        }
        let core = Core::connect(config, group, subscriptions, v2::ClientType::SimpleConsumer, await_duration).await?;
        Ok(Self { core })
    }

    /// Receives up to `max` messages of `topic`, invisible to others for `invisible`.
    pub async fn receive_from(&self, topic: &str, max: usize, invisible: Duration) -> Result<Vec<ReceivedMessage>> {
        self.core.receive(topic, max, invisible).await
    }

    /// Receives from the first subscribed topic that has messages.
    pub async fn receive(&self, max: usize, invisible: Duration) -> Result<Vec<ReceivedMessage>> {
        let mut topics: Vec<&String> = self.core.subscriptions.keys().collect();
        topics.sort();
        for topic in topics {
            let got = self.core.receive(topic, max, invisible).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
        Ok(Vec::new())
    }

    /// Acknowledges a message: it will not be delivered again.
    pub async fn ack(&self, message: &ReceivedMessage) -> Result<()> {
        self.core.ack(message).await
    }

    /// Changes how long a message stays invisible; updates its receipt handle.
    pub async fn change_invisible_duration(&self, message: &mut ReceivedMessage, invisible: Duration) -> Result<()> {
        self.core.change_invisible(message, invisible).await
    }
}

/// A consumer that calls a listener for every message.
#[derive(Debug)]
pub struct PushConsumer {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl PushConsumer {
    /// Connects as `group` and starts calling `listener` with at most
    /// `concurrency` messages in progress. `Ok` acknowledges the message;
    /// `Err` or a panic leaves it to come back after `invisible`.
    pub async fn start<F, Fut>(
        config: ClientConfig,
        group: &str,
        subscriptions: HashMap<String, FilterExpression>,
        concurrency: usize,
        invisible: Duration,
        listener: F,
    ) -> Result<Self>
    where
        F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConsumeError>> + Send + 'static,
    {
        if subscriptions.is_empty() {
            return Err(Error::Config("a consumer needs at least one subscription".into()));
        }
        let core =
            Core::connect(config, group, subscriptions, v2::ClientType::PushConsumer, Duration::from_secs(20)).await?;
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let listener = Arc::new(listener);
        let tasks = core
            .subscriptions
            .keys()
            .map(|topic| {
                let (core, topic, permits, listener) =
                    (core.clone(), topic.clone(), Arc::clone(&permits), Arc::clone(&listener));
                tokio::spawn(async move { pump(core, topic, permits, invisible, listener).await })
            })
            .collect();
        Ok(Self { tasks })
    }

    /// Stops receiving (messages in progress finish or come back later).
    pub fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for PushConsumer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Receives from one topic forever, handing messages to the listener.
async fn pump<F, Fut>(core: Core, topic: String, permits: Arc<Semaphore>, invisible: Duration, listener: Arc<F>)
where
    F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ConsumeError>> + Send + 'static,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        // Only ask for as many messages as can be processed now: take the
        // permits first (one, waiting; more if free), shared by every topic.
        let Ok(first) = Arc::clone(&permits).acquire_owned().await else { return };
        let mut held = vec![first];
        while held.len() < 32 {
            match Arc::clone(&permits).try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let messages = match core.receive(&topic, held.len(), invisible).await {
            Ok(m) => {
                backoff = Duration::from_millis(100);
                m
            }
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "receive failed; retrying");
                drop(held);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        for message in messages {
            let Some(permit) = held.pop() else {
                tracing::error!(topic = %topic, "the broker returned more messages than asked for");
                break;
            };
            let (core, listener) = (core.clone(), Arc::clone(&listener));
            tokio::spawn(async move {
                let _permit = permit;
                let id = message.message_id.clone();
                // A panicking listener must not take the consumer down.
                let outcome = tokio::spawn((listener)(message.clone())).await;
                match outcome {
                    Ok(Ok(())) => {
                        if let Err(e) = core.ack(&message).await {
                            tracing::warn!(message_id = %id, error = %e, "ack failed; the message will come back");
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::info!(message_id = %id, error = %e, "listener failed; the message will be redelivered")
                    }
                    Err(e) => {
                        tracing::error!(message_id = %id, error = %e, "listener panicked; the message will be redelivered")
                    }
                }
            });
        }
    }
}
