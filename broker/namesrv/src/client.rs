//! A connection to a name server, as brokers and tools use it.

use std::time::Duration;

use rill_proto::namesrv as pb;
use rill_proto::namesrv::name_server_client::NameServerClient as Rpc;
use tonic::transport::{Channel, Endpoint};

use crate::{BrokerKey, Error, Result};

/// Talks to one name server; connects lazily and reconnects by itself.
#[derive(Debug, Clone)]
pub struct NameServerClient {
    addr: String,
    rpc: Rpc<Channel>,
}

impl NameServerClient {
    /// A client for the name server at `addr` (`HOST:PORT`).
    pub fn new(addr: &str, timeout: Duration) -> Result<Self> {
        let bad = |reason: String| Error::Address { addr: addr.to_owned(), reason };
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("expected HOST:PORT".into()))?;
        port.parse::<u16>().map_err(|_| bad(format!("{port:?} is not a port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let uri = if host.contains(':') { format!("http://[{host}]:{port}") } else { format!("http://{host}:{port}") };
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self { addr: addr.to_owned(), rpc: Rpc::new(channel) })
    }

    /// The name server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn fail(&self, rpc: &'static str) -> impl FnOnce(tonic::Status) -> Error + '_ {
        move |source| Error::Rpc { addr: self.addr.clone(), rpc, source }
    }

    /// Registers (or heartbeats) a broker; returns the name server's broker timeout.
    pub async fn register(&self, req: pb::RegisterBrokerRequest) -> Result<Duration> {
        let reply = self.rpc.clone().register_broker(req).await.map_err(self.fail("RegisterBroker"))?;
        Ok(Duration::from_millis(reply.into_inner().broker_timeout_ms))
    }

    /// Removes a broker from the name server's routes.
    pub async fn unregister(&self, key: &BrokerKey) -> Result<bool> {
        let req = pb::UnregisterBrokerRequest {
            cluster: key.cluster.clone(),
            broker_name: key.broker_name.clone(),
            broker_id: key.broker_id,
        };
        let reply = self.rpc.clone().unregister_broker(req).await.map_err(self.fail("UnregisterBroker"))?;
        Ok(reply.into_inner().existed)
    }

    /// The brokers serving `topic`; empty when none does.
    pub async fn route(&self, topic: &str) -> Result<Vec<pb::BrokerQueues>> {
        match self.rpc.clone().query_route(pb::QueryRouteRequest { topic: topic.to_owned() }).await {
            Ok(r) => Ok(r.into_inner().brokers),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(Vec::new()),
            Err(s) => Err(self.fail("QueryRoute")(s)),
        }
    }

    /// Every live broker.
    pub async fn brokers(&self) -> Result<Vec<pb::BrokerInfo>> {
        let reply = self.rpc.clone().list_brokers(pb::ListBrokersRequest {}).await.map_err(self.fail("ListBrokers"))?;
        Ok(reply.into_inner().brokers)
    }
}
