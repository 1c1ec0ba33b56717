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

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rill_client::{ClientConfig, Message, Producer};
use rill_sql::{OptionSpec, Options};
use tokio::sync::watch;

use crate::config::{ConnectorConfig, Tolerance};
use crate::lanes::{Flight, Lanes};
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
    /// Where `record` came from, named in dead letters and errors; its
    /// `location` unless the source spells it only when asked (it is
    /// rarely needed, and building it for every record costs).
    fn locate(&self, record: &Record) -> Option<String> {
        record.location.clone()
    }
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

/// Connections to the broker a source sends over (HTTP/2 frames of one
/// connection go through one task on either side).
const CONNECTIONS: usize = 4;

/// Polls handed to the lanes and not yet landed, at most.
const IN_FLIGHT: usize = 3;

/// Runs one source connector until told to stop or it fails. While the
/// broker stores one poll's records the next polls are read and sent;
/// positions are stored in poll order, each once its poll landed.
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
    let mut producers = vec![producer];
    for _ in 1..CONNECTIONS {
        producers
            .push(Producer::connect(ClientConfig::new(&broker)).await.map_err(|e| format!("broker {broker}: {e}"))?);
    }
    let mut lanes = Lanes::start(&producers);
    let mut flights: VecDeque<Flight> = VecDeque::new();
    let landed = |flight: &Flight, source: &mut Box<dyn RecordSource>| -> Result<(), String> {
        // Every record before the position is acknowledged: store it.
        offsets.put(&config.name, &flight.position).map_err(|e| e.to_string())?;
        source.acknowledge_through(&flight.position);
        let mut s = status.lock();
        s.records += flight.sent;
        s.dead_letters += flight.dead;
        s.position = Some(flight.position.clone());
        s.lag_ms = flight.origin.map(|o| (now_ms() - o).max(0));
        Ok(())
    };
    // A poll is never cut short (it returns within a short wait), so no record it took is lost.
    loop {
        if *control.borrow() != Control::Run {
            // Paused or stopping: what was sent lands first.
            while let Some(mut f) = flights.pop_front() {
                f.land().await?;
                landed(&f, &mut source)?;
            }
        }
        if !crate::runtime::runnable(&mut control, &status).await {
            break;
        }
        while let Some(f) = flights.front_mut() {
            if !f.landed()? {
                break;
            }
            if let Some(f) = flights.pop_front() {
                landed(&f, &mut source)?;
            }
        }
        let records = source.poll().await?;
        if records.is_empty() {
            while let Some(mut f) = flights.pop_front() {
                f.land().await?;
                landed(&f, &mut source)?;
            }
            // Nothing pending: the position may still have moved (the snapshot's end, skipped tables).
            let position = source.position();
            offsets.put(&config.name, &position).map_err(|e| e.to_string())?;
            let mut s = status.lock();
            s.lag_ms = Some(0);
            s.position = Some(position);
            continue;
        }
        // Batches go out as they fill, while the rest of the poll is turned into messages.
        let mut flight = Flight::new(source.position());
        lanes.begin(records.len());
        for mut r in records {
            flight.origin = r.origin_ms.or(flight.origin);
            // A dead letter carries the record as read, before any transform.
            let original = (!transforms.is_empty()).then(|| r.body.clone());
            let outcome = match r.error.take() {
                Some(reason) => Err(reason),
                None => transforms.apply(&mut r.body),
            };
            match outcome {
                Ok(Outcome::Dropped) => {}
                Ok(Outcome::Keep(routed)) => {
                    let topic: Cow<'_, str> = match routed {
                        Some(t) => Cow::Owned(t),
                        None if r.vars.is_empty() => Cow::Borrowed(&template),
                        None => Cow::Owned(topic_of(&template, &r.vars)),
                    };
                    let mut m = Message::new(topic.as_ref(), r.body);
                    m.tag = r.tag;
                    m.keys = r.key.into_iter().collect();
                    m.message_group = r.group;
                    m.properties.extend(r.properties.into_iter().map(|(k, v)| (k.to_owned(), v)));
                    lanes.push(&topic, m, &mut flight)?;
                    flight.sent += 1;
                }
                Err(reason) if config.errors.tolerance == Tolerance::All => {
                    let origin = match &source.locate(&r) {
                        Some(at) => format!("{at}, source {}", config.name),
                        None => format!("record of source {}", config.name),
                    };
                    let body = original.unwrap_or(r.body);
                    let mut m = crate::sink::dead_letter(&dlq, &config.name, body, reason, origin);
                    m.keys = r.key.into_iter().collect();
                    lanes.push(&dlq, m, &mut flight)?;
                    flight.dead += 1;
                }
                Err(reason) => {
                    let what = match (&source.locate(&r), &r.key) {
                        (Some(at), _) => at.clone(),
                        (None, key) => format!("record with key {key:?}"),
                    };
                    return Err(format!("{what}: {reason} (errors.tolerance is none)"));
                }
            }
        }
        lanes.end(&mut flight)?;
        flights.push_back(flight);
        while flights.len() > IN_FLIGHT {
            if let Some(mut f) = flights.pop_front() {
                f.land().await?;
                landed(&f, &mut source)?;
            }
        }
    }
    source.close().await
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_route_by_table() {
        let vars = vec![("db".to_owned(), "shop".to_owned()), ("table".to_owned(), "orders".to_owned())];
        assert_eq!(topic_of("cdc-{db}-{table}", &vars), "cdc-shop-orders");
        assert_eq!(topic_of("all", &vars), "all");
    }
}
