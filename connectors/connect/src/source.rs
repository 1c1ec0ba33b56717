//! Source tasks: a record source (a database's change log, …) read,
//! transformed, and sent to the broker; its position is stored only after
//! the broker acknowledged every record before it, so a restart resends
//! at most the last unacknowledged batch and never skips one (sinks are
//! idempotent by key, so results are exactly-once). Records that cannot
//! be handled go to the connector's dead-letter topic with the reason, or
//! stop it, as its error policy says.
//!
//! It owns the source side of the runtime; the registry of record sources
//! is [`Sources`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rill_client::{ClientConfig, Message, Producer};
use rill_sql::{OptionSpec, Options};
use tokio::sync::watch;

use crate::config::{ConnectorConfig, Tolerance};
use crate::offsets::Offsets;
use crate::runtime::{Control, Status};
use crate::transform::{Outcome, Transforms};

/// One record for the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Message key (the row's primary key).
    pub key: Option<String>,
    /// Tag (the table).
    pub tag: Option<String>,
    /// FIFO message group (changes of one row stay in order).
    pub group: Option<String>,
    /// Values a `topic:` template may name (`{db}`, `{table}`).
    pub vars: Vec<(String, String)>,
    /// When it happened at the origin (ms since the epoch), for lag.
    pub origin_ms: Option<i64>,
    /// User properties (headers such as the file and host of a log line).
    pub properties: Vec<(&'static str, String)>,
    /// Where it came from, named in dead letters and errors (`file app.log at byte 120`).
    pub location: Option<String>,
    /// Why the source could not make a proper record of it (it goes to the dead-letter topic).
    pub error: Option<String>,
    /// The payload (JSON, or the raw bytes read).
    pub body: Vec<u8>,
}

/// A future of a record source.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Records from outside the broker, with a position to resume from.
pub trait RecordSource: Send {
    /// Begins after `position` (a stored one) or where the source is configured to.
    fn open(&mut self, position: Option<String>) -> Pending<'_, ()>;
    /// The next records; none when a short wait brought none.
    fn poll(&mut self) -> Pending<'_, Vec<Record>>;
    /// Where the records returned so far end.
    fn position(&self) -> String;
    /// Every record returned so far is acknowledged by the broker (and
    /// the position stored): a source whose callers wait may answer them.
    fn acknowledged(&mut self) {}
    /// The records up to `position` (one [`RecordSource::position`] gave)
    /// are safe: a job's checkpoint holds them.
    fn acknowledge_through(&mut self, _position: &str) {
        self.acknowledged();
    }
    /// The connector stops: ends sessions cleanly.
    fn close(&mut self) -> Pending<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// A source connector the connect file can name.
pub trait RecordSourceConnector: Send + Sync {
    /// The options it takes (`connector` included), as in SQL.
    fn options(&self) -> &'static [OptionSpec];
    /// A source for these checked options.
    fn build(&self, options: &Options) -> Result<Box<dyn RecordSource>, String>;
}

/// The record sources the connect file can name.
#[derive(Clone)]
pub struct Sources {
    by_name: BTreeMap<String, Arc<dyn RecordSourceConnector>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Default for Sources {
    fn default() -> Self {
        let mut s = Self { by_name: BTreeMap::new() };
        s.register("mysql-cdc", Arc::new(crate::cdc::CdcConnector));
        s.register("file-tail", Arc::new(crate::tail::TailConnector));
        s.register("http", Arc::new(crate::http::HttpConnector));
        s.register("mqtt", Arc::new(crate::mqtt::MqttConnector));
        s
    }
}

impl Sources {
    /// Adds (or replaces) the source `name`.
    pub fn register(&mut self, name: &str, connector: Arc<dyn RecordSourceConnector>) {
        self.by_name.insert(name.to_owned(), connector);
    }

    /// The source `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn RecordSourceConnector>> {
        self.by_name.get(name)
    }

    /// Every name.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

/// `template` with `{name}`s filled in from `vars`.
fn topic_of(template: &str, vars: &[(String, String)]) -> String {
    let mut topic = template.to_owned();
    for (k, v) in vars {
        topic = topic.replace(&format!("{{{k}}}"), v);
    }
    topic
}

/// Runs one source connector until told to stop or it fails.
pub(crate) async fn run(
    config: ConnectorConfig,
    mut source: Box<dyn RecordSource>,
    broker: String,
    offsets: Arc<Offsets>,
    status: Arc<parking_lot::Mutex<Status>>,
    mut control: watch::Receiver<Control>,
) -> Result<(), String> {
    let transforms = Transforms::new(&config.transforms)?;
    let template = config.topic.clone().unwrap_or_default();
    let producer = Producer::connect(ClientConfig::new(&broker)).await.map_err(|e| format!("broker {broker}: {e}"))?;
    source.open(offsets.get(&config.name)).await?;
    let dlq = config.dead_letter_topic();
    // A poll is never cut short (it returns within a short wait), so no record it took is lost.
    while crate::runtime::runnable(&mut control, &status).await {
        let records = source.poll().await?;
        if records.is_empty() {
            // Nothing pending: the position may still have moved (the snapshot's end, skipped tables).
            let position = source.position();
            offsets.put(&config.name, &position).map_err(|e| e.to_string())?;
            let mut s = status.lock();
            s.lag_ms = Some(0);
            s.position = Some(position);
            continue;
        }
        let mut batches: BTreeMap<String, Vec<Message>> = BTreeMap::new();
        let (mut sent, mut dead, mut origin) = (0u64, 0u64, None);
        for mut r in records {
            origin = r.origin_ms.or(origin);
            let original = r.body.clone();
            let outcome = match r.error.take() {
                Some(reason) => Err(reason),
                None => transforms.apply(&mut r.body),
            };
            match outcome {
                Ok(Outcome::Dropped) => {}
                Ok(Outcome::Keep(routed)) => {
                    let topic = routed.unwrap_or_else(|| topic_of(&template, &r.vars));
                    let mut m = Message::new(&topic, r.body);
                    m.tag = r.tag;
                    m.keys = r.key.into_iter().collect();
                    m.message_group = r.group;
                    m.properties.extend(r.properties.into_iter().map(|(k, v)| (k.to_owned(), v)));
                    batches.entry(topic).or_default().push(m);
                    sent += 1;
                }
                Err(reason) if config.errors.tolerance == Tolerance::All => {
                    let origin = match &r.location {
                        Some(at) => format!("{at}, source {}", config.name),
                        None => format!("record of source {}", config.name),
                    };
                    let mut m = crate::sink::dead_letter(&dlq, &config.name, original, reason, origin);
                    m.keys = r.key.into_iter().collect();
                    batches.entry(dlq.clone()).or_default().push(m);
                    dead += 1;
                }
                Err(reason) => {
                    let what = match (&r.location, &r.key) {
                        (Some(at), _) => at.clone(),
                        (None, key) => format!("record with key {key:?}"),
                    };
                    return Err(format!("{what}: {reason} (errors.tolerance is none)"));
                }
            }
        }
        for (topic, messages) in batches {
            send(&producer, &topic, messages).await?;
        }
        // Every record before the position is acknowledged: store it.
        let position = source.position();
        offsets.put(&config.name, &position).map_err(|e| e.to_string())?;
        source.acknowledged();
        let mut s = status.lock();
        s.records += sent;
        s.dead_letters += dead;
        s.position = Some(position);
        s.lag_ms = origin.map(|o| (now_ms() - o).max(0));
    }
    source.close().await
}

/// Batches sent at once: messages of one group share a lane (their order
/// holds); the lanes' batches travel concurrently.
const LANES: usize = 4;

/// Messages per batch.
const BATCH: usize = 256;

fn lane_of(group: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    group.hash(&mut h);
    (h.finish() % LANES as u64) as usize
}

/// Sends `messages` (all acknowledged when it returns Ok) in batches over
/// a few concurrent lanes; a failed batch is retried a few times with backoff.
pub(crate) async fn send(producer: &Producer, topic: &str, messages: Vec<Message>) -> Result<(), String> {
    if messages.len() <= BATCH {
        return send_lane(producer, topic, messages).await;
    }
    let mut lanes: Vec<Vec<Message>> = (0..LANES).map(|_| Vec::new()).collect();
    for (i, m) in messages.into_iter().enumerate() {
        let lane = m.message_group.as_deref().map_or(i % LANES, lane_of);
        lanes[lane].push(m);
    }
    let mut sending = tokio::task::JoinSet::new();
    for lane in lanes.into_iter().filter(|l| !l.is_empty()) {
        let (producer, topic) = (producer.clone(), topic.to_owned());
        sending.spawn(async move { send_lane(&producer, &topic, lane).await });
    }
    while let Some(sent) = sending.join_next().await {
        sent.map_err(|e| format!("sending to topic {topic}: {e}"))??;
    }
    Ok(())
}

/// One lane: its batches in order, each acknowledged before the next.
async fn send_lane(producer: &Producer, topic: &str, messages: Vec<Message>) -> Result<(), String> {
    for chunk in messages.chunks(BATCH) {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match producer.send_batch(chunk.to_vec()).await {
                Ok(_) => break,
                Err(e) if attempt < 5 => {
                    tracing::warn!(topic, error = %e, "send failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(format!("sending to topic {topic}: {e}")),
            }
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_always_takes_the_same_lane() {
        let lanes: Vec<usize> = (0..100).map(|i| lane_of(&format!("shop.orders:{i}"))).collect();
        assert!(lanes.iter().all(|l| *l < LANES));
        assert_eq!(lanes, (0..100).map(|i| lane_of(&format!("shop.orders:{i}"))).collect::<Vec<_>>());
        assert!((0..LANES).all(|l| lanes.contains(&l)), "groups spread over every lane: {lanes:?}");
    }

    #[test]
    fn topics_route_by_table() {
        let vars = vec![("db".to_owned(), "shop".to_owned()), ("table".to_owned(), "orders".to_owned())];
        assert_eq!(topic_of("cdc-{db}-{table}", &vars), "cdc-shop-orders");
        assert_eq!(topic_of("all", &vars), "all");
    }
}
