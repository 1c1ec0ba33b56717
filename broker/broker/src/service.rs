//! The tonic `apache.rocketmq.v2.MessagingService`: maps each RPC onto
//! [`Broker`] and reports failures as protocol statuses inside the reply
//! (the clients read those), keeping gRPC errors for broken requests.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rill_proto::status;
use rill_proto::v2::messaging_service_server::{MessagingService, MessagingServiceServer};
use rill_proto::v2::{self, Code};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::Rejection;
use crate::settings::{self, ServerSettings};
use crate::{Broker, Error, Filter, ReceiveRequest};

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The gRPC face of a [`Broker`].
#[derive(Debug, Clone)]
pub struct Service {
    broker: Arc<Broker>,
}

impl Service {
    /// Wraps a broker.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> MessagingServiceServer<Self> {
        MessagingServiceServer::new(self)
            .max_decoding_message_size(self_limit())
            .max_encoding_message_size(self_limit())
    }
}

/// Largest gRPC message accepted: a batch of maximum-size bodies.
fn self_limit() -> usize {
    64 * 1024 * 1024
}

/// Serves `broker` on `addr` until `shutdown` resolves; over TLS when `tls` is given.
pub async fn serve(
    broker: Arc<Broker>,
    addr: SocketAddr,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Error> {
    // Replies are small and latency-bound: without TCP_NODELAY, Nagle's
    // algorithm meets the peer's delayed ACK and stalls a reply for ~40 ms.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
        if let Ok(s) = &s
            && let Err(e) = s.set_nodelay(true)
        {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        s
    });
    let background = crate::Broker::start_background(&broker);
    let stopper = Arc::clone(&broker);
    let shutdown = async move {
        shutdown.await;
        // Streams that clients keep open would hold the graceful shutdown forever.
        stopper.stop_serving();
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|source| Error::Transport { addr, source })?;
    }
    let served = builder
        .add_service(crate::admin::AdminService::new(Arc::clone(&broker)).into_server())
        .add_service(Service::new(Arc::clone(&broker)).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| Error::Transport { addr, source });
    // Also when serving failed: the timers must checkpoint and stop.
    broker.stop_serving();
    background.finish().await;
    served
}

fn header(req: &Request<impl Sized>, name: &str) -> String {
    req.metadata().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn resource_name(r: &Option<v2::Resource>) -> (&str, &str) {
    r.as_ref().map_or(("", ""), |r| (r.resource_namespace.as_str(), r.name.as_str()))
}

fn duration(d: &Option<prost_types::Duration>, default: Duration) -> Result<Duration, Rejection> {
    match d {
        None => Ok(default),
        Some(d) => rill_proto::time::to_duration(d).map_err(|e| Rejection::new(Code::BadRequest, e.to_string())),
    }
}

/// The filter a receive or pull asked for (tag expression or SQL92).
fn filter_of(f: Option<&v2::FilterExpression>) -> Result<Filter, Rejection> {
    match f {
        None => Ok(Filter::All),
        Some(f) if f.r#type == v2::FilterType::Sql as i32 => Filter::sql(&f.expression),
        Some(f) => Filter::tags(&f.expression),
    }
}

fn now_millis() -> i64 {
    use rill_common::Clock;
    rill_common::SystemClock.now_millis()
}

fn unsupported(what: &str) -> v2::Status {
    status::new(Code::Unsupported, format!("{what} is not supported by this Rill broker yet"))
}

impl Service {
    async fn route_queues(
        &self,
        topic: &str,
        namespace: &str,
        endpoints: Option<v2::Endpoints>,
    ) -> Result<Vec<v2::MessageQueue>, Rejection> {
        self.broker.route(topic, namespace, endpoints.unwrap_or_else(|| self.advertised())).await
    }

    fn advertised(&self) -> v2::Endpoints {
        let addr = self.broker.config().store_host;
        v2::Endpoints {
            scheme: if addr.is_ipv4() { v2::AddressScheme::IPv4 } else { v2::AddressScheme::IPv6 } as i32,
            addresses: vec![v2::Address { host: addr.ip().to_string(), port: i32::from(addr.port()) }],
        }
    }

    fn server_settings(&self) -> ServerSettings {
        let c = self.broker.config();
        ServerSettings {
            max_body_size: c.max_body_size,
            receive_batch_size: 32,
            long_polling_timeout: Duration::from_secs(20).min(c.max_long_polling),
            max_retries: c.max_retries,
            retry_delays: c.retry_delays.clone(),
        }
    }
}

#[tonic::async_trait]
impl MessagingService for Service {
    async fn query_route(
        &self,
        request: Request<v2::QueryRouteRequest>,
    ) -> Result<Response<v2::QueryRouteResponse>, Status> {
        let req = request.into_inner();
        let (ns, topic) = resource_name(&req.topic);
        // Echo the access point the client used: it reaches us there.
        let endpoints = req.endpoints.clone().filter(|e| !e.addresses.is_empty());
        Ok(Response::new(match self.route_queues(topic, ns, endpoints).await {
            Ok(message_queues) => v2::QueryRouteResponse { status: Some(status::ok()), message_queues },
            Err(r) => v2::QueryRouteResponse { status: Some(r.status()), message_queues: Vec::new() },
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v2::HeartbeatRequest>,
    ) -> Result<Response<v2::HeartbeatResponse>, Status> {
        let client_id = header(&request, "x-mq-client-id");
        let req = request.into_inner();
        let (_, group) = resource_name(&req.group);
        let kind = v2::ClientType::try_from(req.client_type).map_or("", |t| t.as_str_name());
        self.broker.client_seen(group, &client_id, kind);
        Ok(Response::new(v2::HeartbeatResponse { status: Some(status::ok()) }))
    }

    async fn send_message(
        &self,
        request: Request<v2::SendMessageRequest>,
    ) -> Result<Response<v2::SendMessageResponse>, Status> {
        let req = request.into_inner();
        if req.messages.is_empty() {
            let s = status::new(Code::BadRequest, "a send request needs at least one message");
            return Ok(Response::new(v2::SendMessageResponse { status: Some(s), entries: Vec::new() }));
        }
        let mut entries = Vec::with_capacity(req.messages.len());
        let mut first_error = None;
        let results = self.broker.send_batch(&req.messages).await;
        // Stored messages counted per run of one topic (a request usually holds one).
        let mut run: Option<(&str, u64)> = None;
        for (msg, result) in req.messages.iter().zip(results) {
            let entry = match result {
                Ok((message_id, offset)) => {
                    let topic = msg.topic.as_ref().map_or("", |t| t.name.as_str());
                    match &mut run {
                        Some((t, n)) if *t == topic => *n += 1,
                        _ => {
                            if let Some((t, n)) = run.replace((topic, 1)) {
                                self.broker.metrics().sent(t, n);
                            }
                        }
                    }
                    let transactional = msg
                        .system_properties
                        .as_ref()
                        .is_some_and(|s| s.message_type == v2::MessageType::Transaction as i32);
                    // The message id names the transaction in EndTransaction.
                    let transaction_id = if transactional { message_id.clone() } else { String::new() };
                    v2::SendResultEntry {
                        status: Some(status::ok()),
                        message_id,
                        offset,
                        transaction_id,
                        ..Default::default()
                    }
                }
                Err(r) => {
                    self.broker.metrics().send_failed(r.code.as_str_name());
                    first_error.get_or_insert_with(|| r.status());
                    let message_id = msg.system_properties.as_ref().map(|s| s.message_id.clone()).unwrap_or_default();
                    v2::SendResultEntry { status: Some(r.status()), message_id, ..Default::default() }
                }
            };
            entries.push(entry);
        }
        if let Some((t, n)) = run {
            self.broker.metrics().sent(t, n);
        }
        Ok(Response::new(v2::SendMessageResponse { status: Some(first_error.unwrap_or_else(status::ok)), entries }))
    }

    async fn query_assignment(
        &self,
        request: Request<v2::QueryAssignmentRequest>,
    ) -> Result<Response<v2::QueryAssignmentResponse>, Status> {
        let req = request.into_inner();
        let (ns, topic) = resource_name(&req.topic);
        let endpoints = req.endpoints.clone().filter(|e| !e.addresses.is_empty());
        Ok(Response::new(match self.route_queues(topic, ns, endpoints).await {
            // Non-FIFO consumers pop from every queue of a broker: one
            // assignment per readable broker, queue id -1.
            Ok(queues) => {
                let mut assignments: Vec<v2::Assignment> = Vec::new();
                for mut q in queues {
                    let readable =
                        [v2::Permission::Read as i32, v2::Permission::ReadWrite as i32].contains(&q.permission);
                    let name = q.broker.as_ref().map(|b| b.name.clone());
                    let seen = assignments.iter().any(|a| {
                        a.message_queue.as_ref().and_then(|m| m.broker.as_ref()).map(|b| &b.name) == name.as_ref()
                    });
                    if readable && !seen {
                        q.id = -1;
                        assignments.push(v2::Assignment { message_queue: Some(q) });
                    }
                }
                v2::QueryAssignmentResponse { status: Some(status::ok()), assignments }
            }
            Err(r) => v2::QueryAssignmentResponse { status: Some(r.status()), assignments: Vec::new() },
        }))
    }

    type ReceiveMessageStream = Stream2<v2::ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        request: Request<v2::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        use v2::receive_message_response::Content;
        let client_id = header(&request, "x-mq-client-id");
        let req = request.into_inner();
        let result = async {
            let (_, group) = resource_name(&req.group);
            let queue = req
                .message_queue
                .as_ref()
                .ok_or_else(|| Rejection::new(Code::BadRequest, "message_queue is required"))?;
            let (ns, topic) = resource_name(&queue.topic);
            let filter = filter_of(req.filter_expression.as_ref())?;
            let r = ReceiveRequest {
                group: group.to_owned(),
                client_id: client_id.clone(),
                topic: topic.to_owned(),
                namespace: ns.to_owned(),
                queue: u32::try_from(queue.id).ok(),
                filter,
                batch: usize::try_from(req.batch_size).unwrap_or(0).clamp(1, 1024),
                invisible: duration(&req.invisible_duration, self.broker.config().default_invisible)?,
                long_polling: duration(&req.long_polling_timeout, Duration::from_secs(20))?,
            };
            let got = self.broker.receive(&r).await;
            if let Ok(msgs) = &got
                && !msgs.is_empty()
            {
                self.broker.metrics().delivered(topic, group, msgs.len());
            }
            got
        }
        .await;
        let items: Vec<Result<v2::ReceiveMessageResponse, Status>> = match result {
            Ok(msgs) if msgs.is_empty() => vec![Ok(v2::ReceiveMessageResponse {
                content: Some(Content::Status(status::new(Code::MessageNotFound, "no new message"))),
            })],
            // Status, then when the broker delivered (clients measure
            // delivery latency from it and fail without it), then messages.
            Ok(msgs) => [
                Content::Status(status::ok()),
                Content::DeliveryTimestamp(rill_proto::time::timestamp_from_millis(now_millis())),
            ]
            .into_iter()
            .chain(msgs.into_iter().map(Content::Message))
            .map(|c| Ok(v2::ReceiveMessageResponse { content: Some(c) }))
            .collect(),
            Err(r) => vec![Ok(v2::ReceiveMessageResponse { content: Some(Content::Status(r.status())) })],
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn ack_message(
        &self,
        request: Request<v2::AckMessageRequest>,
    ) -> Result<Response<v2::AckMessageResponse>, Status> {
        let client_id = header(&request, "x-mq-client-id");
        let req = request.into_inner();
        let (_, group) = resource_name(&req.group);
        let (_, topic) = resource_name(&req.topic);
        let mut first_error = None;
        let mut acked = 0;
        let entries = req
            .entries
            .iter()
            .map(|e| {
                let s = match self.broker.ack(group, &client_id, topic, &e.receipt_handle) {
                    Ok(()) => {
                        acked += 1;
                        status::ok()
                    }
                    Err(r) => first_error.get_or_insert_with(|| r.status()).clone(),
                };
                v2::AckMessageResultEntry {
                    message_id: e.message_id.clone(),
                    receipt_handle: e.receipt_handle.clone(),
                    status: Some(s),
                }
            })
            .collect();
        if acked > 0 {
            self.broker.metrics().acked(topic, group, acked);
        }
        Ok(Response::new(v2::AckMessageResponse { status: Some(first_error.unwrap_or_else(status::ok)), entries }))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<v2::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<v2::ForwardMessageToDeadLetterQueueResponse>, Status> {
        let client_id = header(&request, "x-mq-client-id");
        let req = request.into_inner();
        let (_, group) = resource_name(&req.group);
        let (_, topic) = resource_name(&req.topic);
        let status = match self.broker.forward_to_dlq(group, &client_id, topic, &req.receipt_handle).await {
            Ok(()) => status::ok(),
            Err(r) => r.status(),
        };
        Ok(Response::new(v2::ForwardMessageToDeadLetterQueueResponse { status: Some(status) }))
    }

    type PullMessageStream = Stream2<v2::PullMessageResponse>;

    async fn pull_message(
        &self,
        request: Request<v2::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        use v2::pull_message_response::Content;
        let req = request.into_inner();
        let items = match self.pull(&req) {
            Ok((msgs, next)) => std::iter::once(Content::Status(status::ok()))
                .chain(msgs.into_iter().map(Content::Message))
                .chain(std::iter::once(Content::NextOffset(next as i64)))
                .map(|c| Ok(v2::PullMessageResponse { content: Some(c) }))
                .collect::<Vec<_>>(),
            Err(r) => vec![Ok(v2::PullMessageResponse { content: Some(Content::Status(r.status())) })],
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn update_offset(
        &self,
        request: Request<v2::UpdateOffsetRequest>,
    ) -> Result<Response<v2::UpdateOffsetResponse>, Status> {
        let req = request.into_inner();
        let (_, group) = resource_name(&req.group);
        let s = match (req.message_queue.as_ref(), u64::try_from(req.offset)) {
            (Some(q), Ok(offset)) if q.id >= 0 => {
                let (_, topic) = resource_name(&q.topic);
                self.broker.reset_group(group, Some(topic), Some(q.id as u32), || {
                    self.broker.meta().commit_offset(group, topic, q.id as u32, offset)
                });
                status::ok()
            }
            _ => status::new(Code::IllegalOffset, "update offset needs a queue id ≥ 0 and an offset ≥ 0"),
        };
        Ok(Response::new(v2::UpdateOffsetResponse { status: Some(s) }))
    }

    async fn get_offset(
        &self,
        request: Request<v2::GetOffsetRequest>,
    ) -> Result<Response<v2::GetOffsetResponse>, Status> {
        let req = request.into_inner();
        let (_, group) = resource_name(&req.group);
        let found = req.message_queue.as_ref().filter(|q| q.id >= 0).and_then(|q| {
            let (_, topic) = resource_name(&q.topic);
            self.broker.meta().offset(group, topic, q.id as u32)
        });
        Ok(Response::new(match found {
            Some(o) => v2::GetOffsetResponse { status: Some(status::ok()), offset: o as i64 },
            None => v2::GetOffsetResponse {
                status: Some(status::new(
                    Code::OffsetNotFound,
                    format!("group '{group}' has no offset for this queue"),
                )),
                offset: 0,
            },
        }))
    }

    async fn query_offset(
        &self,
        request: Request<v2::QueryOffsetRequest>,
    ) -> Result<Response<v2::QueryOffsetResponse>, Status> {
        let req = request.into_inner();
        let Some(q) = req.message_queue.as_ref().filter(|q| q.id >= 0) else {
            let s = status::new(Code::BadRequest, "query offset needs a message queue with an id ≥ 0");
            return Ok(Response::new(v2::QueryOffsetResponse { status: Some(s), offset: 0 }));
        };
        let (_, topic) = resource_name(&q.topic);
        let store = self.broker.store();
        let (min, max) = store.queue_bounds(topic, q.id as u32).unwrap_or((0, 0));
        let offset = match v2::QueryOffsetPolicy::try_from(req.query_offset_policy) {
            Ok(v2::QueryOffsetPolicy::End) => max,
            Ok(v2::QueryOffsetPolicy::Timestamp) => {
                let ts =
                    req.timestamp.as_ref().and_then(|t| rill_proto::time::timestamp_to_millis(t).ok()).unwrap_or(0);
                store.offset_for_time(topic, q.id as u32, ts).unwrap_or(max)
            }
            _ => min,
        };
        Ok(Response::new(v2::QueryOffsetResponse { status: Some(status::ok()), offset: offset as i64 }))
    }

    async fn end_transaction(
        &self,
        request: Request<v2::EndTransactionRequest>,
    ) -> Result<Response<v2::EndTransactionResponse>, Status> {
        let req = request.into_inner();
        let resolution = match v2::TransactionResolution::try_from(req.resolution) {
            Ok(v2::TransactionResolution::Commit) => Some(crate::txn::Resolution::Commit),
            Ok(v2::TransactionResolution::Rollback) => Some(crate::txn::Resolution::Rollback),
            _ => None,
        };
        let id = if req.transaction_id.is_empty() { &req.message_id } else { &req.transaction_id };
        let status = match resolution {
            None => status::new(Code::BadRequest, "resolution must be COMMIT or ROLLBACK"),
            Some(r) => match self.broker.end_transaction(id, r).await {
                Ok(()) => status::ok(),
                Err(r) => r.status(),
            },
        };
        Ok(Response::new(v2::EndTransactionResponse { status: Some(status) }))
    }

    type TelemetryStream = Stream2<v2::TelemetryCommand>;

    async fn telemetry(
        &self,
        request: Request<Streaming<v2::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let client_id = header(&request, "x-mq-client-id");
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let server = self.server_settings();
        let metric_endpoints = self.advertised();
        let broker = Arc::clone(&self.broker);
        let mut stopping = self.broker.stopping();
        tokio::spawn(async move {
            loop {
                let cmd = tokio::select! {
                    cmd = inbound.message() => match cmd {
                        Ok(Some(cmd)) => cmd,
                        _ => break,
                    },
                    _ = stopping.wait_for(|s| *s) => break,
                };
                let Some(v2::telemetry_command::Command::Settings(client)) = cmd.command else { continue };
                if let Some(v2::settings::PubSub::Publishing(p)) = &client.pub_sub {
                    // Kept for transaction check-backs over this stream.
                    broker.producer_connected(
                        &client_id,
                        p.topics.iter().map(|t| t.name.clone()).collect(),
                        tx.clone(),
                    );
                }
                if let Some(v2::settings::PubSub::Subscription(s)) = &client.pub_sub {
                    let group = s.group.as_ref().map_or("", |g| g.name.as_str());
                    let kind = client.client_type.and_then(|t| v2::ClientType::try_from(t).ok());
                    broker.client_seen(group, &client_id, kind.map_or("", |t| t.as_str_name()));
                    let subs = s
                        .subscriptions
                        .iter()
                        .filter_map(|e| {
                            let topic = e.topic.as_ref()?.name.clone();
                            let f = e.expression.as_ref()?;
                            let kind = if f.r#type == v2::FilterType::Sql as i32 { "SQL92" } else { "TAG" };
                            Some((topic, format!("{kind} {}", f.expression)))
                        })
                        .collect();
                    broker.client_subscribed(group, &client_id, subs);
                }
                let group = match &client.pub_sub {
                    Some(v2::settings::PubSub::Subscription(s)) => {
                        s.group.as_ref().and_then(|g| broker.meta().group(&g.name))
                    }
                    _ => None,
                };
                let fifo = group.as_ref().is_some_and(|g| g.fifo);
                // The group's own attempts, which the revive pass applies.
                let server = ServerSettings {
                    max_retries: group.as_ref().map_or(server.max_retries, |g| g.max_retries),
                    ..server.clone()
                };
                let reply = v2::TelemetryCommand {
                    status: Some(status::ok()),
                    command: Some(v2::telemetry_command::Command::Settings(settings::merge(
                        client,
                        &server,
                        fifo,
                        &metric_endpoints,
                    ))),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
            broker.producer_gone(&client_id);
            tracing::debug!(client = %client_id, "telemetry stream closed");
        });
        let mut response = Response::new(Box::pin(ReceiverStream::new(rx)) as Self::TelemetryStream);
        response
            .metadata_mut()
            .insert(rill_proto::PACKED_BATCHES_HEADER, tonic::metadata::MetadataValue::from_static("1"));
        Ok(response)
    }

    async fn notify_client_termination(
        &self,
        request: Request<v2::NotifyClientTerminationRequest>,
    ) -> Result<Response<v2::NotifyClientTerminationResponse>, Status> {
        let client_id = header(&request, "x-mq-client-id");
        let (_, group) = resource_name(&request.get_ref().group);
        self.broker.client_left(group, &client_id);
        Ok(Response::new(v2::NotifyClientTerminationResponse { status: Some(status::ok()) }))
    }

    async fn change_invisible_duration(
        &self,
        request: Request<v2::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<v2::ChangeInvisibleDurationResponse>, Status> {
        let client_id = header(&request, "x-mq-client-id");
        let req = request.into_inner();
        let (_, group) = resource_name(&req.group);
        let (_, topic) = resource_name(&req.topic);
        let result = duration(&req.invisible_duration, self.broker.config().default_invisible)
            .and_then(|d| self.broker.change_invisible(group, &client_id, topic, &req.receipt_handle, d));
        Ok(Response::new(match result {
            Ok(receipt_handle) => v2::ChangeInvisibleDurationResponse { status: Some(status::ok()), receipt_handle },
            Err(r) => v2::ChangeInvisibleDurationResponse { status: Some(r.status()), receipt_handle: String::new() },
        }))
    }

    async fn recall_message(
        &self,
        _request: Request<v2::RecallMessageRequest>,
    ) -> Result<Response<v2::RecallMessageResponse>, Status> {
        Ok(Response::new(v2::RecallMessageResponse {
            status: Some(unsupported("recalling messages")),
            message_id: String::new(),
        }))
    }

    async fn sync_lite_subscription(
        &self,
        _request: Request<v2::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<v2::SyncLiteSubscriptionResponse>, Status> {
        Ok(Response::new(v2::SyncLiteSubscriptionResponse { status: Some(unsupported("lite topics")) }))
    }
}

impl Service {
    fn pull(&self, req: &v2::PullMessageRequest) -> Result<(Vec<v2::Message>, u64), Rejection> {
        let q = req
            .message_queue
            .as_ref()
            .filter(|q| q.id >= 0)
            .ok_or_else(|| Rejection::new(Code::BadRequest, "pull needs a message queue with an id ≥ 0"))?;
        let (ns, topic) = resource_name(&q.topic);
        self.broker.topic(topic)?;
        let offset =
            u64::try_from(req.offset).map_err(|_| Rejection::new(Code::IllegalOffset, "offset is negative"))?;
        let filter = filter_of(req.filter_expression.as_ref())?;
        let batch = usize::try_from(req.batch_size).unwrap_or(0).clamp(1, 1024);
        let read = self
            .broker
            .store()
            .read_queue(topic, q.id as u32, offset, batch)
            .map_err(|e| Rejection::new(Code::InternalServerError, e.to_string()))?;
        let msgs = read
            .messages
            .iter()
            .filter(|m| filter.matches(m))
            .map(|m| crate::convert::from_store(m, ns, crate::convert::Delivery::default()))
            .collect();
        Ok((msgs, read.next_offset))
    }
}
