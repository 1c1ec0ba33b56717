//! Consumers: [`SimpleConsumer`] (the application receives, acknowledges
//! and extends invisibility itself) and [`PushConsumer`] (a listener is
//! called for each message; `Ok` acknowledges, an error or a panic leaves the
//! message to be redelivered after its invisible time).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_proto::v2;
use rill_proto::v2::messaging_service_client::MessagingServiceClient;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::acker::Acker;
use crate::connection::{Connection, endpoint_key};
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

    pub(crate) fn to_wire(&self) -> v2::FilterExpression {
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
    client_type: v2::ClientType,
    /// Round-robin position over the brokers of a route.
    turn: Arc<AtomicUsize>,
    /// When each broker last heard this client's heartbeat.
    beats: Arc<Mutex<HashMap<String, Instant>>>,
    /// Gathers acknowledgements into few requests.
    acker: Acker,
    /// The broker's retry schedule for this group.
    retry: Arc<RetryPolicy>,
}

/// When a failed message is tried again, as the broker announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries before the message goes to the dead-letter queue.
    pub max_attempts: i32,
    /// Wait after failed attempt `n` (1-based; the last repeats).
    pub delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// RocketMQ's: 16 retries, 10 s … 2 h.
    fn default() -> Self {
        const SECS: [u64; 16] = [10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200];
        Self { max_attempts: 17, delays: SECS.iter().map(|s| Duration::from_secs(*s)).collect() }
    }
}

impl RetryPolicy {
    /// The policy in a broker's Settings answer (the default when it sent none).
    fn from_settings(s: &v2::Settings) -> Self {
        let Some(p) = &s.backoff_policy else { return Self::default() };
        let delays: Vec<Duration> = match &p.strategy {
            Some(v2::retry_policy::Strategy::CustomizedBackoff(b)) => {
                b.next.iter().filter_map(|d| rill_proto::time::to_duration(d).ok()).collect()
            }
            Some(v2::retry_policy::Strategy::ExponentialBackoff(e)) => {
                let (initial, max) = (
                    e.initial.as_ref().and_then(|d| rill_proto::time::to_duration(d).ok()).unwrap_or_default(),
                    e.max.as_ref().and_then(|d| rill_proto::time::to_duration(d).ok()).unwrap_or_default(),
                );
                let factor = if e.multiplier > 1.0 { f64::from(e.multiplier) } else { 2.0 };
                (0..p.max_attempts.clamp(1, 64))
                    .map(|i| initial.mul_f64(factor.powi(i)).min(max.max(initial)))
                    .collect()
            }
            None => Vec::new(),
        };
        if delays.is_empty() {
            return Self::default();
        }
        Self { max_attempts: p.max_attempts.max(1), delays }
    }

    /// How long to wait after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: i32) -> Duration {
        let i = usize::try_from(attempt.max(1) - 1).unwrap_or(0).min(self.delays.len().saturating_sub(1));
        self.delays.get(i).copied().unwrap_or(Duration::from_secs(10))
    }
}

/// How often a consumer tells each broker it reads from that it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// One broker's share of a topic: where to send receives for it.
#[derive(Debug, Clone)]
struct Source {
    /// The broker's queue with id -1: pop from all of its queues.
    queue: v2::MessageQueue,
    endpoints: v2::Endpoints,
    /// [`endpoint_key`] of `endpoints`.
    key: String,
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
        let answered = conn.announce(settings).await?;
        let retry = Arc::new(RetryPolicy::from_settings(&answered));
        let acker = Acker::start(conn.clone(), group.to_owned());
        Ok(Self {
            conn,
            group: group.to_owned(),
            subscriptions: Arc::new(subscriptions),
            long_polling,
            client_type,
            turn: Arc::default(),
            beats: Arc::default(),
            acker,
            retry,
        })
    }

    /// The readable brokers of `topic`'s route, one [`Source`] each.
    async fn sources(&self, topic: &str) -> Result<Vec<Source>> {
        let route = self.conn.route(topic).await?;
        let mut out: Vec<Source> = Vec::new();
        for q in route.iter() {
            if ![v2::Permission::Read as i32, v2::Permission::ReadWrite as i32].contains(&q.permission) {
                continue;
            }
            let endpoints =
                q.broker.as_ref().and_then(|b| b.endpoints.clone()).unwrap_or_else(|| self.conn.access_point.clone());
            let key = endpoint_key(&endpoints);
            if !out.iter().any(|s| s.key == key) {
                out.push(Source { queue: v2::MessageQueue { id: -1, ..q.clone() }, endpoints, key });
            }
        }
        Ok(out)
    }

    /// Receives from the next broker of `topic`'s route, in turn.
    async fn receive(&self, topic: &str, max: usize, invisible: Duration) -> Result<Vec<ReceivedMessage>> {
        let sources = self.sources(topic).await?;
        if sources.is_empty() {
            return Err(Error::Broker {
                rpc: "ReceiveMessage",
                code: v2::Code::Forbidden as i32,
                message: format!("topic '{topic}' has no readable queue"),
            });
        }
        let source = &sources[self.turn.fetch_add(1, Ordering::Relaxed) % sources.len()];
        self.receive_from(topic, source, max, invisible).await
    }

    /// Tells the broker of `source` that this client is alive, at most every few seconds.
    fn heartbeat(&self, source: &Source, rpc: &MessagingServiceClient<Channel>) {
        let due = self.beats.lock().map(|mut b| {
            let due = b.get(&source.key).is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY);
            if due {
                b.insert(source.key.clone(), Instant::now());
            }
            due
        });
        let Ok(true) = due else { return };
        let (mut rpc, key) = (rpc.clone(), source.key.clone());
        let req = self.conn.request(v2::HeartbeatRequest {
            group: Some(self.conn.resource(&self.group)),
            client_type: self.client_type as i32,
        });
        tokio::spawn(async move {
            if let Err(e) = rpc.heartbeat(req).await {
                tracing::debug!(broker = %key, error = %e, "heartbeat failed");
            }
        });
    }

    async fn receive_from(
        &self,
        topic: &str,
        source: &Source,
        max: usize,
        invisible: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        let mut rpc = self.conn.broker(&source.endpoints)?;
        self.heartbeat(source, &rpc);
        let filter = self.subscriptions.get(topic).cloned().unwrap_or_else(FilterExpression::all);
        let req = v2::ReceiveMessageRequest {
            group: Some(self.conn.resource(&self.group)),
            message_queue: Some(source.queue.clone()),
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
                Some(v2::receive_message_response::Content::Message(m)) => {
                    out.push(ReceivedMessage::from_wire(m, source.key.clone()));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    async fn ack(&self, message: &ReceivedMessage) -> Result<()> {
        let entry = v2::AckMessageEntry {
            message_id: message.message_id.clone(),
            receipt_handle: message.receipt_handle.clone(),
            lite_topic: None,
        };
        // Receipt handles are the delivering broker's own: the ack goes there.
        self.acker.ack(&message.broker, &message.topic, entry).await
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
        let mut rpc = self.conn.broker_by_key(&message.broker)?;
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

impl Core {
    /// Gives a message back after a failure: tried again after the retry
    /// delay for its attempt, or sent to the dead-letter queue once its
    /// attempts are used up.
    async fn nack(&self, message: &mut ReceivedMessage) -> Result<()> {
        if message.delivery_attempt >= self.retry.max_attempts {
            return self.forward_to_dlq(message).await;
        }
        let wait = self.retry.delay(message.delivery_attempt);
        self.change_invisible(message, wait).await
    }

    async fn forward_to_dlq(&self, message: &ReceivedMessage) -> Result<()> {
        let req = v2::ForwardMessageToDeadLetterQueueRequest {
            group: Some(self.conn.resource(&self.group)),
            topic: Some(self.conn.resource(&message.topic)),
            receipt_handle: message.receipt_handle.clone(),
            message_id: message.message_id.clone(),
            delivery_attempt: message.delivery_attempt,
            max_delivery_attempts: self.retry.max_attempts,
            lite_topic: None,
        };
        let mut rpc = self.conn.broker_by_key(&message.broker)?;
        let reply = rpc
            .forward_message_to_dead_letter_queue(self.conn.request(req))
            .await
            .map_err(|source| Error::Rpc { rpc: "ForwardMessageToDeadLetterQueue", source })?
            .into_inner();
        check("ForwardMessageToDeadLetterQueue", reply.status)
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

    /// Gives a message back after a failure: it comes again after the
    /// broker's retry delay for its attempt, or goes to the dead-letter
    /// queue when it has had all its attempts.
    pub async fn nack(&self, message: &mut ReceivedMessage) -> Result<()> {
        self.core.nack(message).await
    }

    /// Moves a message to the group's dead-letter queue now.
    pub async fn forward_to_dead_letter_queue(&self, message: &ReceivedMessage) -> Result<()> {
        self.core.forward_to_dlq(message).await
    }

    /// The retry schedule the broker announced for this group.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.core.retry
    }

    /// Every readable queue of `topic`, as (broker key, queue id) — the
    /// `broker` and `queue_id` that received messages carry.
    pub async fn queues(&self, topic: &str) -> Result<Vec<(String, i32)>> {
        let route = self.core.conn.route(topic).await?;
        Ok(route
            .iter()
            .filter(|q| [v2::Permission::Read as i32, v2::Permission::ReadWrite as i32].contains(&q.permission))
            .map(|q| {
                let endpoints =
                    q.broker.as_ref().and_then(|b| b.endpoints.as_ref()).unwrap_or(&self.core.conn.access_point);
                (endpoint_key(endpoints), q.id)
            })
            .collect())
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
    /// `Err` or a panic retries it after the broker's retry delay for its
    /// attempt, and moves it to the dead-letter queue after the last one.
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
                tokio::spawn(async move { supervise(core, topic, permits, invisible, listener).await })
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

/// How often a push consumer looks for brokers that joined a topic's route.
const ROUTE_REFRESH: Duration = Duration::from_secs(30);

/// Keeps one pump per broker of `topic`'s route; the pumps end with it.
async fn supervise<F, Fut>(core: Core, topic: String, permits: Arc<Semaphore>, invisible: Duration, listener: Arc<F>)
where
    F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ConsumeError>> + Send + 'static,
{
    // Pumps by broker; a JoinSet aborts them all when this task ends.
    let mut pumps = tokio::task::JoinSet::new();
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let wait = match core.sources(&topic).await {
            Ok(sources) => {
                // A broker that left the route: its messages are no longer ours to take.
                running.retain(|key, pump| {
                    let keep = sources.iter().any(|s| &s.key == key);
                    if !keep {
                        tracing::info!(topic = %topic, broker = %key, "broker left the route; stopped consuming from it");
                        pump.abort();
                    }
                    keep
                });
                for source in sources {
                    if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(source.key.clone()) {
                        tracing::debug!(topic = %topic, broker = %slot.key(), "consuming from broker");
                        let (core, topic, permits, listener) =
                            (core.clone(), topic.clone(), Arc::clone(&permits), Arc::clone(&listener));
                        slot.insert(pumps.spawn(pump(core, topic, source, permits, invisible, listener)));
                    }
                }
                // Reap finished (aborted) pumps.
                while pumps.try_join_next().is_some() {}
                backoff = Duration::from_millis(100);
                ROUTE_REFRESH
            }
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "cannot get the topic's route; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Nacks a message the listener failed; if even that fails, the message
/// comes back after its invisible duration.
async fn give_back(core: &Core, mut message: ReceivedMessage) {
    if let Err(e) = core.nack(&mut message).await {
        tracing::warn!(message_id = %message.message_id, error = %e, "cannot schedule the retry; the message comes back after its invisible time");
    }
}

/// Receives from one broker's share of a topic forever, handing messages to the listener.
async fn pump<F, Fut>(
    core: Core,
    topic: String,
    source: Source,
    permits: Arc<Semaphore>,
    invisible: Duration,
    listener: Arc<F>,
) where
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
        let messages = match core.receive_from(&topic, &source, held.len(), invisible).await {
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
                        tracing::info!(message_id = %id, attempt = message.delivery_attempt, error = %e, "listener failed; retrying later");
                        give_back(&core, message).await;
                    }
                    Err(e) => {
                        tracing::error!(message_id = %id, error = %e, "listener panicked; retrying later");
                        give_back(&core, message).await;
                    }
                }
            });
        }
    }
}
