//! The `rill.namesrv.v1.NameServer` gRPC service over a [`Registry`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rill_proto::namesrv as pb;
use rill_proto::namesrv::name_server_server::{NameServer, NameServerServer};
use tonic::{Request, Response, Status};

use crate::{BrokerKey, Error, Registry, Result};

/// How often expired brokers are swept out (reads skip them anyway).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The gRPC face of a [`Registry`].
#[derive(Debug, Clone)]
pub struct NameServerService {
    registry: Arc<Registry>,
}

impl NameServerService {
    /// Wraps a registry.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> NameServerServer<Self> {
        NameServerServer::new(self)
    }
}

#[tonic::async_trait]
impl NameServer for NameServerService {
    async fn register_broker(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerResponse>, Status> {
        self.registry.register(request.into_inner()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::RegisterBrokerResponse { broker_timeout_ms: self.registry.timeout().as_millis() as u64 }))
    }

    async fn unregister_broker(
        &self,
        request: Request<pb::UnregisterBrokerRequest>,
    ) -> Result<Response<pb::UnregisterBrokerResponse>, Status> {
        let r = request.into_inner();
        let key = BrokerKey { cluster: r.cluster, broker_name: r.broker_name, broker_id: r.broker_id };
        Ok(Response::new(pb::UnregisterBrokerResponse { existed: self.registry.unregister(&key) }))
    }

    async fn query_route(&self, request: Request<pb::QueryRouteRequest>) -> Result<Response<pb::TopicRoute>, Status> {
        let topic = request.into_inner().topic;
        let brokers = self.registry.route(&topic);
        if brokers.is_empty() {
            return Err(Status::not_found(format!("no live broker serves topic '{topic}'")));
        }
        Ok(Response::new(pb::TopicRoute { topic, brokers }))
    }

    async fn list_brokers(&self, _: Request<pb::ListBrokersRequest>) -> Result<Response<pb::BrokerList>, Status> {
        Ok(Response::new(pb::BrokerList { brokers: self.registry.brokers() }))
    }
}

/// Serves `registry` on `listener` until `shutdown` resolves, sweeping out
/// expired brokers in the background.
pub async fn serve(
    registry: Arc<Registry>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let sweeper = {
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                registry.expire();
            }
        })
    };
    let result = tonic::transport::Server::builder()
        .add_service(NameServerService::new(registry).into_server())
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source });
    sweeper.abort();
    result
}
