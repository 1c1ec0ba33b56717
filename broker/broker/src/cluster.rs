//! The broker's place in a cluster: keeps it registered with a name server
//! (the registration, with the full topic table, doubles as the heartbeat:
//! every 30 s and at once when a topic changes; a clean stop unregisters)
//! and builds topic routes that span every broker the name server knows,
//! so a client that reaches any broker learns where all queues live.
//!
//! Without a name server the route is this broker alone. This module does
//! not decide what a topic is (the metadata store does) nor serve RPCs.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use rill_namesrv::{BrokerKey, NameServerClient};
use rill_proto::namesrv as pb;
use rill_proto::v2::{self, Code};
use rill_store::TopicConfig;

use crate::Broker;
use crate::convert::Rejection;

/// How often the registration is repeated (RocketMQ brokers: 30 s).
pub const REGISTER_EVERY: Duration = Duration::from_secs(30);

/// How long a route learned from the name server is used without asking again.
const ROUTE_FRESH: Duration = Duration::from_secs(5);
/// How long a name server query may take before the broker answers without it.
const ROUTE_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Other brokers' part of a topic's route, as last learned.
#[derive(Debug, Clone)]
struct Learned {
    at: Instant,
    /// `None` when the name server has not answered yet (it is not asked
    /// again before [`ROUTE_FRESH`] has passed either way).
    brokers: Option<Vec<pb::BrokerQueues>>,
}

/// The broker's link to its name server, if it has one.
#[derive(Debug, Default)]
pub(crate) struct Link {
    namesrv: OnceLock<NameServerClient>,
    changed: tokio::sync::Notify,
    routes: Mutex<HashMap<String, Learned>>,
}

impl Broker {
    /// Uses `client` for routes; [`keep_registered`] does the registering.
    pub fn attach_name_server(&self, client: NameServerClient) {
        if self.cluster.namesrv.set(client).is_err() {
            tracing::warn!("a name server is already attached; keeping the first");
        }
    }

    /// The name server this broker reports to, if any.
    pub fn name_server(&self) -> Option<&NameServerClient> {
        self.cluster.namesrv.get()
    }

    /// Tells the registration task that the topic table changed.
    pub fn topics_changed(&self) {
        self.cluster.changed.notify_one();
    }

    /// This broker's identity in the cluster.
    pub fn broker_key(&self) -> BrokerKey {
        BrokerKey {
            cluster: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: 0,
        }
    }

    /// The registration sent to the name server: identity, address, topics.
    pub fn registration(&self, grpc_addr: &str) -> pb::RegisterBrokerRequest {
        let key = self.broker_key();
        pb::RegisterBrokerRequest {
            cluster: key.cluster,
            broker_name: key.broker_name,
            broker_id: key.broker_id,
            grpc_addr: grpc_addr.to_owned(),
            topics: self.meta.topics().iter().map(topic_queues).collect(),
        }
    }

    /// The queues of `topic` on every broker that serves it. Queues of this
    /// broker carry `here` (the access point the client used); the others
    /// the address their broker registered.
    pub async fn route(
        &self,
        topic: &str,
        namespace: &str,
        here: v2::Endpoints,
    ) -> Result<Vec<v2::MessageQueue>, Rejection> {
        let local = self.topic(topic);
        let mut parts: Vec<(String, v2::Endpoints, pb::TopicQueues)> = Vec::new();
        for b in self.others(topic).await.into_iter().filter(|b| b.broker_name != self.config.broker_name) {
            let (Some(q), Some(endpoints)) = (b.queues, endpoints(&b.grpc_addr)) else {
                tracing::warn!(broker = %b.broker_name, addr = %b.grpc_addr, "unusable route entry skipped");
                continue;
            };
            parts.push((b.broker_name, endpoints, q));
        }
        match local {
            Ok((_, cfg)) => parts.push((self.config.broker_name.clone(), here, topic_queues(&cfg))),
            Err(r) if parts.is_empty() => return Err(r),
            Err(_) => {}
        }
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        let types =
            [v2::MessageType::Normal, v2::MessageType::Fifo, v2::MessageType::Delay, v2::MessageType::Transaction];
        let mut queues = Vec::new();
        for (name, endpoints, q) in parts {
            let broker = v2::Broker { name, id: 0, endpoints: Some(endpoints) };
            let permission = permission(q.perm);
            for id in 0..q.read_queues.max(q.write_queues) {
                queues.push(v2::MessageQueue {
                    topic: Some(v2::Resource { resource_namespace: namespace.to_owned(), name: topic.to_owned() }),
                    id: id as i32,
                    permission: permission as i32,
                    broker: Some(broker.clone()),
                    accept_message_types: types.iter().map(|t| *t as i32).collect(),
                });
            }
        }
        if queues.is_empty() {
            return Err(Rejection::new(Code::TopicNotFound, format!("topic '{topic}' has no queues")));
        }
        Ok(queues)
    }

    /// The brokers the name server routes `topic` to: from a cache younger
    /// than [`ROUTE_FRESH`], else asked (bounded by [`ROUTE_QUERY_TIMEOUT`]).
    /// When the name server cannot answer, the last answer is used, or
    /// none: serving this broker's own queues beats failing outright.
    async fn others(&self, topic: &str) -> Vec<pb::BrokerQueues> {
        let Some(ns) = self.name_server() else { return Vec::new() };
        let cached = self.cluster.routes.lock().get(topic).cloned();
        if let Some(c) = &cached
            && c.at.elapsed() < ROUTE_FRESH
        {
            return c.brokers.clone().unwrap_or_default();
        }
        let stale = cached.and_then(|c| c.brokers);
        let answer = match tokio::time::timeout(ROUTE_QUERY_TIMEOUT, ns.route(topic)).await {
            Ok(Ok(brokers)) => Some(brokers),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, topic, "name server query failed; using the last known route");
                None
            }
            Err(_) => {
                tracing::warn!(namesrv = ns.addr(), topic, "name server did not answer; using the last known route");
                None
            }
        };
        let brokers = answer.or(stale);
        self.cluster.routes.lock().insert(topic.to_owned(), Learned { at: Instant::now(), brokers: brokers.clone() });
        brokers.unwrap_or_default()
    }
}

fn topic_queues(t: &TopicConfig) -> pb::TopicQueues {
    pb::TopicQueues {
        topic: t.name.clone(),
        read_queues: t.read_queues,
        write_queues: t.write_queues,
        perm: t.perm,
        message_type: t.message_type.clone(),
    }
}

/// RocketMQ permission bits (4 read, 2 write) as the protocol's enum.
fn permission(perm: u32) -> v2::Permission {
    match (perm & rill_store::perm::READ != 0, perm & rill_store::perm::WRITE != 0) {
        (true, true) => v2::Permission::ReadWrite,
        (true, false) => v2::Permission::Read,
        (false, true) => v2::Permission::Write,
        (false, false) => v2::Permission::None,
    }
}

/// `HOST:PORT` as protocol endpoints.
pub fn endpoints(addr: &str) -> Option<v2::Endpoints> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let scheme = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => v2::AddressScheme::IPv4,
        Ok(std::net::IpAddr::V6(_)) => v2::AddressScheme::IPv6,
        Err(_) => v2::AddressScheme::DomainName,
    };
    Some(v2::Endpoints {
        scheme: scheme as i32,
        addresses: vec![v2::Address { host: host.to_owned(), port: i32::from(port) }],
    })
}

/// Registers `broker` (reachable at `grpc_addr`) with its name server every
/// `every` and whenever its topics change, until the broker stops serving;
/// then unregisters it. Failures are logged and retried on the next beat.
pub async fn keep_registered(broker: Arc<Broker>, grpc_addr: String, every: Duration) {
    let Some(client) = broker.name_server().cloned() else { return };
    let mut stopping = broker.stopping();
    let mut failing = false;
    loop {
        match client.register(broker.registration(&grpc_addr)).await {
            Ok(_) if failing => {
                tracing::info!(namesrv = client.addr(), "registered with the name server again");
                failing = false;
            }
            Ok(_) => tracing::debug!(namesrv = client.addr(), "registered with the name server"),
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot register with the name server; retrying");
                }
                failing = true;
            }
        }
        let retry = if failing { every.min(Duration::from_secs(3)) } else { every };
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = broker.cluster.changed.notified() => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    match client.unregister(&broker.broker_key()).await {
        Ok(_) => tracing::info!(namesrv = client.addr(), "unregistered from the name server"),
        Err(e) => tracing::warn!(error = %e, "cannot unregister from the name server; it will expire the entry"),
    }
}
