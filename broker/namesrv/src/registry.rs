//! The name server's state: live brokers and the topics each one serves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rill_common::Clock;
use rill_proto::namesrv as pb;

use crate::{Error, Result};

/// A broker silent for longer than this is dropped (RocketMQ's 120 s).
pub const DEFAULT_BROKER_TIMEOUT: Duration = Duration::from_secs(120);

/// Identity of a registered broker: cluster, broker name, broker id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerKey {
    /// Cluster name.
    pub cluster: String,
    /// Broker name (shared by a master and its slaves).
    pub broker_name: String,
    /// 0 for a master.
    pub broker_id: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    grpc_addr: String,
    topics: BTreeMap<String, pb::TopicQueues>,
    last_seen_ms: i64,
}

/// Live brokers and their topics; every read skips expired brokers.
#[derive(Debug)]
pub struct Registry {
    brokers: RwLock<BTreeMap<BrokerKey, Entry>>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl Registry {
    /// An empty registry that drops brokers silent for longer than `timeout`.
    pub fn new(clock: Arc<dyn Clock>, timeout: Duration) -> Self {
        Self { brokers: RwLock::new(BTreeMap::new()), clock, timeout }
    }

    /// How long a broker may stay silent.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Records a registration (or heartbeat): replaces the broker's topic table.
    pub fn register(&self, req: pb::RegisterBrokerRequest) -> Result<()> {
        let invalid = |field, reason: &str| Err(Error::Invalid { field, reason: reason.to_owned() });
        if req.broker_name.is_empty() {
            return invalid("broker_name", "must not be empty");
        }
        if req.grpc_addr.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
            return Err(Error::Invalid { field: "grpc_addr", reason: format!("{:?} is not HOST:PORT", req.grpc_addr) });
        }
        let mut topics = BTreeMap::new();
        for t in req.topics {
            if t.topic.is_empty() {
                return invalid("topics.topic", "must not be empty");
            }
            topics.insert(t.topic.clone(), t);
        }
        let key = BrokerKey { cluster: req.cluster, broker_name: req.broker_name, broker_id: req.broker_id };
        let entry = Entry { grpc_addr: req.grpc_addr, topics, last_seen_ms: self.clock.now_millis() };
        let previous = self.brokers.write().insert(key.clone(), entry);
        if previous.is_none() {
            tracing::info!(cluster = %key.cluster, broker = %key.broker_name, id = key.broker_id, "broker registered");
        }
        Ok(())
    }

    /// Removes a broker; whether it was known.
    pub fn unregister(&self, key: &BrokerKey) -> bool {
        let existed = self.brokers.write().remove(key).is_some();
        if existed {
            tracing::info!(cluster = %key.cluster, broker = %key.broker_name, id = key.broker_id, "broker unregistered");
        }
        existed
    }

    fn alive(&self, e: &Entry, now: i64) -> bool {
        now.saturating_sub(e.last_seen_ms) <= self.timeout.as_millis() as i64
    }

    /// Every live broker serving `topic` (master entries first, by broker name).
    pub fn route(&self, topic: &str) -> Vec<pb::BrokerQueues> {
        let now = self.clock.now_millis();
        self.brokers
            .read()
            .iter()
            .filter(|(_, e)| self.alive(e, now))
            .filter_map(|(k, e)| {
                e.topics.get(topic).map(|q| pb::BrokerQueues {
                    cluster: k.cluster.clone(),
                    broker_name: k.broker_name.clone(),
                    broker_id: k.broker_id,
                    grpc_addr: e.grpc_addr.clone(),
                    queues: Some(q.clone()),
                })
            })
            .collect()
    }

    /// Every live broker.
    pub fn brokers(&self) -> Vec<pb::BrokerInfo> {
        let now = self.clock.now_millis();
        self.brokers
            .read()
            .iter()
            .filter(|(_, e)| self.alive(e, now))
            .map(|(k, e)| pb::BrokerInfo {
                cluster: k.cluster.clone(),
                broker_name: k.broker_name.clone(),
                broker_id: k.broker_id,
                grpc_addr: e.grpc_addr.clone(),
                topics: e.topics.len() as u32,
                last_seen_ms_ago: now.saturating_sub(e.last_seen_ms).max(0) as u64,
            })
            .collect()
    }

    /// Forgets brokers past the timeout; returns who was dropped.
    pub fn expire(&self) -> Vec<BrokerKey> {
        let now = self.clock.now_millis();
        let mut brokers = self.brokers.write();
        let dead: Vec<BrokerKey> =
            brokers.iter().filter(|(_, e)| !self.alive(e, now)).map(|(k, _)| k.clone()).collect();
        for k in &dead {
            brokers.remove(k);
            tracing::warn!(
                cluster = %k.cluster,
                broker = %k.broker_name,
                id = k.broker_id,
                timeout_s = self.timeout.as_secs(),
                "broker silent for too long; dropped from routes"
            );
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rill_common::ManualClock;

    use super::*;

    fn reg(name: &str, addr: &str, topics: &[(&str, u32)]) -> pb::RegisterBrokerRequest {
        pb::RegisterBrokerRequest {
            cluster: "c".into(),
            broker_name: name.into(),
            broker_id: 0,
            grpc_addr: addr.into(),
            topics: topics
                .iter()
                .map(|(t, q)| pb::TopicQueues {
                    topic: (*t).into(),
                    read_queues: *q,
                    write_queues: *q,
                    perm: 6,
                    message_type: "NORMAL".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn routes_span_brokers_and_silent_brokers_expire_after_the_timeout() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let r = Registry::new(clock.clone(), DEFAULT_BROKER_TIMEOUT);
        r.register(reg("a", "127.0.0.1:1", &[("orders", 4), ("only-a", 1)])).unwrap();
        r.register(reg("b", "127.0.0.1:2", &[("orders", 2)])).unwrap();
        let route = r.route("orders");
        assert_eq!(route.iter().map(|b| b.broker_name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(route[1].queues.as_ref().unwrap().write_queues, 2);
        assert_eq!(r.route("only-a").len(), 1);
        assert!(r.route("nowhere").is_empty());

        // b keeps beating, a falls silent: at exactly 120 s a is still alive.
        clock.advance(60_000);
        r.register(reg("b", "127.0.0.1:2", &[("orders", 2)])).unwrap();
        clock.advance(60_000);
        assert_eq!(r.route("orders").len(), 2);
        assert!(r.expire().is_empty());
        clock.advance(1);
        assert_eq!(r.route("orders").len(), 1, "expired brokers leave routes before the sweep");
        let dropped = r.expire();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].broker_name, "a");
        assert_eq!(r.brokers().len(), 1);

        // A re-registration replaces the topic table.
        r.register(reg("b", "127.0.0.1:2", &[])).unwrap();
        assert!(r.route("orders").is_empty());
        assert!(r.unregister(&BrokerKey { cluster: "c".into(), broker_name: "b".into(), broker_id: 0 }));
        assert!(r.brokers().is_empty());
    }

    #[test]
    fn bad_registrations_name_the_field() {
        let r = Registry::new(Arc::new(ManualClock::new(0)), DEFAULT_BROKER_TIMEOUT);
        let e = r.register(reg("", "127.0.0.1:1", &[])).unwrap_err().to_string();
        assert!(e.contains("broker_name"), "{e}");
        let e = r.register(reg("a", "nohost", &[])).unwrap_err().to_string();
        assert!(e.contains("grpc_addr") && e.contains("nohost"), "{e}");
        let e = r.register(reg("a", "h:99999", &[])).unwrap_err().to_string();
        assert!(e.contains("grpc_addr"), "{e}");
        let e = r.register(reg("a", "h:1", &[("", 1)])).unwrap_err().to_string();
        assert!(e.contains("topics.topic"), "{e}");
    }
}
