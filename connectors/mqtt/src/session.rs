//! The MQTT session: a client whose event loop runs on a task of its own
//! (it must keep turning for keep-alives and acks), forwarding received
//! messages to [`MqttSource::next`]; QoS 1 messages are acknowledged to
//! the MQTT broker only in [`MqttSource::acknowledged`]. A dropped
//! connection is retried with backoff (1 s doubling to 30 s); when the
//! MQTT broker comes back without the session, the filters are
//! subscribed again. It owns the connection; what the messages become is
//! the caller's.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::pattern::fill;
use crate::{Error, MqttConfig, Result};

/// One message received.
#[derive(Debug, Clone)]
pub struct MqttMessage {
    /// Its MQTT topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The topic pattern's variables (none when there is no pattern).
    pub vars: Vec<(String, String)>,
    /// The key template filled in.
    pub key: Option<String>,
    /// The tag template filled in.
    pub tag: Option<String>,
    /// Sent again by the MQTT broker (it may have arrived before).
    pub redelivered: bool,
    /// Why it cannot be routed (its topic does not fit the pattern).
    pub error: Option<String>,
}

/// A subscribed MQTT session (see the module docs).
#[derive(Debug)]
pub struct MqttSource {
    config: MqttConfig,
    client: AsyncClient,
    inbox: mpsc::Receiver<Publish>,
    /// Messages handed out so far.
    handed: u64,
    /// QoS 1 messages handed out, not yet acknowledged to the MQTT broker,
    /// each with its number (1 for the first handed out).
    waiting: std::collections::VecDeque<(u64, Publish)>,
    task: JoinHandle<()>,
}

fn qos(n: u8) -> QoS {
    if n == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce }
}

impl MqttSource {
    /// Connects (waiting for the MQTT broker's answer, 10 s at most) and subscribes.
    pub async fn connect(config: MqttConfig) -> Result<Self> {
        let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
        options.set_clean_session(config.clean_session);
        options.set_keep_alive(config.keep_alive);
        options.set_manual_acks(true);
        options.set_max_packet_size(4 << 20, 4 << 20);
        if let Some((user, password)) = &config.credentials {
            options.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(options, 256);
        let filters: Vec<SubscribeFilter> =
            config.filters.iter().map(|f| SubscribeFilter::new(f.clone(), qos(config.qos))).collect();
        let url = config.url();
        // The first connection is awaited here, so a wrong address or refusal is an error at start.
        let connected = tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .map_err(|_| Error::Connect { url: url.clone(), reason: "no answer within 10 s".into() })?
            .map_err(|e| Error::Connect { url: url.clone(), reason: e.to_string() })?;
        match connected {
            Event::Incoming(Packet::ConnAck(ack)) if !ack.session_present => {
                client
                    .subscribe_many(filters.clone())
                    .await
                    .map_err(|e| Error::Connect { url: url.clone(), reason: e.to_string() })?;
            }
            Event::Incoming(Packet::ConnAck(_)) => {
                tracing::info!(%url, "mqtt session resumed with its subscriptions");
            }
            other => return Err(Error::Connect { url, reason: format!("expected CONNACK, got {other:?}") }),
        }
        let (tx, inbox) = mpsc::channel(4096);
        let resubscribe = client.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            // Set once DISCONNECT is out: the loop reads on until the MQTT broker
            // closes the connection, so the acks before it are processed (closing
            // a socket with unread data resets it, and the peer may drop them).
            let mut closing = false;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if !closing => {
                        if tx.send(p).await.is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) if !closing => {
                        backoff = Duration::from_secs(1);
                        tracing::info!(%url, session_present = ack.session_present, "mqtt reconnected");
                        if !ack.session_present
                            && let Err(e) = resubscribe.try_subscribe_many(filters.clone())
                        {
                            tracing::warn!(%url, error = %e, "renewing the mqtt subscriptions failed");
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => closing = true,
                    Ok(_) => {}
                    Err(_) if closing => return,
                    Err(e) => {
                        tracing::warn!(%url, error = %e, retry_in = ?backoff, "mqtt connection lost");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
        Ok(Self { config, client, inbox, handed: 0, waiting: Default::default(), task })
    }

    /// Messages received, `max` at most, waiting up to `wait` for the first.
    pub async fn next(&mut self, max: usize, wait: Duration) -> Vec<MqttMessage> {
        let mut out = Vec::new();
        let Ok(Some(first)) = tokio::time::timeout(wait, self.inbox.recv()).await else { return out };
        out.push(self.message(first));
        while out.len() < max {
            match self.inbox.try_recv() {
                Ok(p) => out.push(self.message(p)),
                Err(_) => break,
            }
        }
        out
    }

    fn message(&mut self, p: Publish) -> MqttMessage {
        let (vars, error) = match &self.config.pattern {
            None => (Vec::new(), None),
            Some(pattern) => match pattern.vars(&p.topic) {
                Some(vars) => (vars, None),
                None => (Vec::new(), Some(format!("MQTT topic '{}' does not fit topic-pattern '{pattern}'", p.topic))),
            },
        };
        let fill_in = |t: &Option<String>| t.as_deref().filter(|_| error.is_none()).map(|t| fill(t, &vars));
        let m = MqttMessage {
            topic: p.topic.clone(),
            payload: p.payload.to_vec(),
            key: fill_in(&self.config.key),
            tag: fill_in(&self.config.tag),
            vars,
            redelivered: p.dup,
            error,
        };
        self.handed += 1;
        if p.qos != QoS::AtMostOnce {
            self.waiting.push_back((self.handed, p));
        }
        m
    }

    /// How many messages [`MqttSource::next`] handed out so far.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// Every message [`MqttSource::next`] handed out is safe elsewhere:
    /// acknowledges them to the MQTT broker.
    pub fn acknowledged(&mut self) {
        self.acknowledge_through(self.handed);
    }

    /// The first `n` messages handed out are safe: acknowledges them.
    pub fn acknowledge_through(&mut self, n: u64) {
        while self.waiting.front().is_some_and(|(i, _)| *i <= n) {
            let Some((_, p)) = self.waiting.pop_front() else { break };
            if let Err(e) = self.client.try_ack(&p) {
                // Not acknowledged: the MQTT broker sends it again, at least once holds.
                tracing::warn!(topic = p.topic, error = %e, "acknowledging to the mqtt broker failed");
            }
        }
    }
}

impl MqttSource {
    /// Ends the session cleanly: acknowledgements already given reach the
    /// MQTT broker before the connection closes, which it closes itself on
    /// DISCONNECT (dropping does not wait).
    pub async fn close(mut self) {
        if self.client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        }
    }
}

impl Drop for MqttSource {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
        self.task.abort();
    }
}
