//! `rill.admin.v1.RillAdmin`: topics, groups and their lag, offset resets,
//! message lookup by id and key, and the cluster view — what `rill admin`
//! calls. Served on the broker's gRPC port beside the RocketMQ service.

use std::collections::BTreeSet;
use std::sync::Arc;

use rill_proto::admin::rill_admin_server::{RillAdmin, RillAdminServer};
use rill_proto::admin::*;
use rill_store::{GroupConfig, StoredMessage, TopicConfig, perm};
use tonic::{Request, Response, Status};

use crate::Broker;

/// The admin service of a [`Broker`].
#[derive(Debug, Clone)]
pub struct AdminService {
    broker: Arc<Broker>,
}

impl AdminService {
    /// Wraps a broker.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> RillAdminServer<Self> {
        RillAdminServer::new(self)
    }

    fn topic_info(&self, cfg: &TopicConfig) -> TopicInfo {
        let store = self.broker.store();
        TopicInfo {
            name: cfg.name.clone(),
            read_queues: cfg.read_queues,
            write_queues: cfg.write_queues,
            perm: cfg.perm,
            message_type: cfg.message_type.clone(),
            queues: (0..cfg.read_queues.max(cfg.write_queues))
                .map(|q| {
                    let (min_offset, max_offset) = store.queue_bounds(&cfg.name, q).unwrap_or((0, 0));
                    QueueInfo { queue_id: q, min_offset, max_offset }
                })
                .collect(),
        }
    }

    fn group_info(&self, name: &str) -> GroupInfo {
        let meta = self.broker.meta();
        let cfg = meta.group(name).unwrap_or_else(|| rill_store::GroupConfig::new(name));
        let store = self.broker.store();
        let mut queues = Vec::new();
        for (topic, offsets) in meta.group_offsets(name) {
            for (queue_id, offset) in offsets {
                let max_offset = store.queue_bounds(&topic, queue_id).map_or(0, |b| b.1);
                let lag = max_offset.saturating_sub(offset);
                queues.push(GroupQueue { topic: topic.clone(), queue_id, offset, max_offset, lag });
            }
        }
        let live = self.broker.group_members(name);
        let inconsistent_topics = crate::members::Members::inconsistent(&live);
        let members = live
            .into_iter()
            .map(|m| Member {
                client_id: m.client_id,
                client_type: m.client_type,
                last_seen_ms: m.last_seen,
                subscriptions: m.subscriptions.into_iter().collect(),
            })
            .collect();
        GroupInfo {
            name: name.to_owned(),
            broadcast: cfg.broadcast,
            fifo: cfg.fifo,
            max_retries: cfg.max_retries,
            total_lag: queues.iter().map(|q| q.lag).sum(),
            members,
            queues,
            inconsistent_topics,
        }
    }
}

fn message_info(m: &StoredMessage) -> MessageInfo {
    let p = &m.properties;
    MessageInfo {
        topic: m.topic.to_string(),
        queue_id: m.queue_id,
        queue_offset: m.queue_offset,
        physical_offset: m.physical_offset,
        message_id: p.unique_id().unwrap_or_default().to_owned(),
        tag: p.tag().unwrap_or_default().to_owned(),
        keys: p.keys().map(str::to_owned).collect(),
        properties: p.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        born_timestamp_ms: m.born_timestamp,
        store_timestamp_ms: m.store_timestamp,
        body: m.body.to_vec(),
        reconsume_times: m.reconsume_times,
    }
}

fn rejected(r: crate::convert::Rejection) -> Status {
    match r.code {
        rill_proto::v2::Code::TopicNotFound => Status::not_found(r.message),
        rill_proto::v2::Code::InternalServerError => Status::internal(r.message),
        _ => Status::invalid_argument(r.message),
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn message_type(s: &str) -> Result<String, Status> {
    match s.to_ascii_uppercase().as_str() {
        "" => Ok(String::new()),
        t @ ("NORMAL" | "FIFO" | "DELAY" | "TRANSACTION") => Ok(t.to_owned()),
        other => Err(Status::invalid_argument(format!(
            "message type {other:?} is not one of NORMAL, FIFO, DELAY, TRANSACTION"
        ))),
    }
}

#[tonic::async_trait]
impl RillAdmin for AdminService {
    async fn create_topic(&self, request: Request<TopicSpec>) -> Result<Response<TopicInfo>, Status> {
        let spec = request.into_inner();
        let meta = self.broker.meta();
        if meta.topic(&spec.name).is_some() {
            return Err(Status::already_exists(format!("topic '{}' exists; use `topic update`", spec.name)));
        }
        if spec.queues == 0 || spec.queues > 1024 {
            return Err(Status::invalid_argument(format!("queues must be 1..=1024, not {}", spec.queues)));
        }
        let mut cfg = TopicConfig::new(spec.name.clone(), spec.queues);
        let t = message_type(&spec.message_type)?;
        if !t.is_empty() {
            cfg.message_type = t;
        }
        if spec.read_only {
            cfg.perm = perm::READ;
        }
        meta.put_topic(cfg.clone()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.broker.topics_changed();
        Ok(Response::new(self.topic_info(&cfg)))
    }

    async fn update_topic(&self, request: Request<TopicSpec>) -> Result<Response<TopicInfo>, Status> {
        let spec = request.into_inner();
        let meta = self.broker.meta();
        let mut cfg = meta.topic(&spec.name).ok_or_else(|| Status::not_found(format!("no topic '{}'", spec.name)))?;
        if spec.queues > 0 {
            if spec.queues > 1024 {
                return Err(Status::invalid_argument(format!("queues must be 1..=1024, not {}", spec.queues)));
            }
            cfg.read_queues = spec.queues;
            cfg.write_queues = spec.queues;
        }
        let t = message_type(&spec.message_type)?;
        if !t.is_empty() {
            cfg.message_type = t;
        }
        cfg.perm = if spec.read_only { perm::READ } else { perm::READ_WRITE };
        meta.put_topic(cfg.clone()).map_err(internal)?;
        self.broker.topics_changed();
        Ok(Response::new(self.topic_info(&cfg)))
    }

    async fn delete_topic(&self, request: Request<Name>) -> Result<Response<Done>, Status> {
        let existed = self.broker.meta().delete_topic(&request.into_inner().name).map_err(internal)?;
        self.broker.topics_changed();
        Ok(Response::new(Done { existed }))
    }

    async fn list_topics(&self, _request: Request<Empty>) -> Result<Response<TopicList>, Status> {
        let topics = self.broker.meta().topics().iter().map(|t| self.topic_info(t)).collect();
        Ok(Response::new(TopicList { topics }))
    }

    async fn describe_topic(&self, request: Request<Name>) -> Result<Response<TopicInfo>, Status> {
        let name = request.into_inner().name;
        let cfg = self.broker.meta().topic(&name).ok_or_else(|| Status::not_found(format!("no topic '{name}'")))?;
        Ok(Response::new(self.topic_info(&cfg)))
    }

    async fn list_groups(&self, _request: Request<Empty>) -> Result<Response<GroupList>, Status> {
        let meta = self.broker.meta();
        let names: BTreeSet<String> = meta.groups().into_iter().map(|g| g.name).chain(meta.offset_groups()).collect();
        Ok(Response::new(GroupList { groups: names.iter().map(|n| self.group_info(n)).collect() }))
    }

    async fn describe_group(&self, request: Request<Name>) -> Result<Response<GroupInfo>, Status> {
        let name = request.into_inner().name;
        let meta = self.broker.meta();
        let known = meta.group(&name).is_some() || meta.offset_groups().contains(&name);
        if !known && self.broker.group_members(&name).is_empty() {
            return Err(Status::not_found(format!("no group '{name}'")));
        }
        Ok(Response::new(self.group_info(&name)))
    }

    async fn put_group(&self, request: Request<GroupSpec>) -> Result<Response<GroupInfo>, Status> {
        let spec = request.into_inner();
        rill_common::GroupName::new(&spec.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut cfg = self.broker.meta().group(&spec.name).unwrap_or_else(|| GroupConfig::new(&spec.name));
        cfg.broadcast = spec.broadcast;
        cfg.fifo = spec.fifo;
        if let Some(n) = spec.max_retries {
            cfg.max_retries = n;
        }
        self.broker.meta().put_group(cfg).map_err(internal)?;
        Ok(Response::new(self.group_info(&spec.name)))
    }

    async fn reset_offset(&self, request: Request<ResetOffsetRequest>) -> Result<Response<GroupInfo>, Status> {
        let req = request.into_inner();
        let cfg = self
            .broker
            .meta()
            .topic(&req.topic)
            .ok_or_else(|| Status::not_found(format!("no topic '{}'", req.topic)))?;
        rill_common::GroupName::new(&req.group).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let store = self.broker.store();
        let mut targets = Vec::new();
        for q in 0..cfg.read_queues.max(cfg.write_queues) {
            let (min, max) = store.queue_bounds(&req.topic, q).unwrap_or((0, 0));
            let target = match req.to {
                Some(reset_offset_request::To::Earliest(_)) => min,
                Some(reset_offset_request::To::Latest(_)) => max,
                Some(reset_offset_request::To::TimestampMs(ts)) => {
                    store.offset_for_time(&req.topic, q, ts).unwrap_or(max)
                }
                None => return Err(Status::invalid_argument("say where to reset to: earliest, latest or a timestamp")),
            };
            targets.push((q, target));
        }
        let meta = self.broker.meta();
        self.broker.reset_group(&req.group, Some(&req.topic), None, || {
            for (q, target) in targets {
                meta.commit_offset(&req.group, &req.topic, q, target);
            }
        });
        self.broker.persist_offsets().map_err(internal)?;
        Ok(Response::new(self.group_info(&req.group)))
    }

    async fn get_message(&self, request: Request<MessageId>) -> Result<Response<MessageList>, Status> {
        let id = request.into_inner().id;
        let found = self.broker.store().message_by_id(&id).map_err(internal)?;
        let messages: Vec<MessageInfo> = found.iter().map(message_info).collect();
        if messages.is_empty() {
            return Err(Status::not_found(format!("no retained message has id {id}")));
        }
        Ok(Response::new(MessageList { messages }))
    }

    async fn query_messages(&self, request: Request<MessageQuery>) -> Result<Response<MessageList>, Status> {
        let q = request.into_inner();
        let end = if q.end_ms == 0 { i64::MAX } else { q.end_ms };
        let max = if q.max == 0 { 64 } else { q.max as usize };
        let found = self.broker.store().query_by_key(&q.topic, &q.key, q.begin_ms, end, max).map_err(internal)?;
        Ok(Response::new(MessageList { messages: found.iter().map(message_info).collect() }))
    }

    async fn list_dead_letters(&self, request: Request<DeadLetterQuery>) -> Result<Response<MessageList>, Status> {
        let q = request.into_inner();
        let max = if q.max == 0 { 64 } else { q.max.min(1024) as usize };
        let found = self.broker.dead_letters(&q.group, q.from_offset, max).map_err(rejected)?;
        Ok(Response::new(MessageList { messages: found.iter().map(message_info).collect() }))
    }

    async fn resend_dead_letters(&self, request: Request<DeadLetterResend>) -> Result<Response<Resent>, Status> {
        let r = request.into_inner();
        let n = self.broker.resend_dead_letters(&r.group, &r.message_ids).await.map_err(rejected)?;
        Ok(Response::new(Resent { count: n as u32 }))
    }

    async fn trace_message(&self, request: Request<MessageId>) -> Result<Response<TraceList>, Status> {
        let id = request.into_inner().id;
        let events = self.broker.message_trace(&id).map_err(internal)?;
        if events.is_empty() {
            return Err(Status::not_found(format!(
                "no trace of message {id}: it was sent without tracing, or its records were deleted by retention"
            )));
        }
        let entries = events
            .into_iter()
            .map(|e| TraceEntry {
                event: e.event,
                time_ms: e.time_ms,
                topic: e.topic,
                broker: e.broker,
                group: e.group,
                client: e.client,
                attempt: e.attempt,
                detail: e.detail,
            })
            .collect();
        Ok(Response::new(TraceList { entries }))
    }

    async fn list_cluster(&self, _request: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let state = self.broker.store().state();
        let c = self.broker.config();
        let mut brokers = vec![BrokerInfo {
            name: c.broker_name.clone(),
            address: c.store_host.to_string(),
            data_dir: state.data_dir.display().to_string(),
            commitlog_min: state.min_offset,
            commitlog_max: state.committed,
            topics: self.broker.meta().topics().len() as u32,
            cluster: c.cluster_name.clone(),
            last_seen_ms_ago: 0,
            timers_pending: self.broker.metrics().timers_pending(),
            open_transactions: self.broker.open_transactions() as u64,
        }];
        // The other brokers as the name server knows them.
        if let Some(ns) = self.broker.name_server() {
            let others = ns.brokers().await.map_err(|e| Status::unavailable(e.to_string()))?;
            brokers.extend(others.into_iter().filter(|b| b.broker_name != c.broker_name).map(|b| BrokerInfo {
                name: b.broker_name,
                address: b.grpc_addr,
                topics: b.topics,
                cluster: b.cluster,
                last_seen_ms_ago: b.last_seen_ms_ago,
                ..Default::default()
            }));
        }
        Ok(Response::new(ClusterInfo { brokers }))
    }
}
