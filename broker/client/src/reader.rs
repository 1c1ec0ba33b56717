//! [`QueueReader`]: reads queues by offset (PullMessage) and keeps a
//! group's offsets on the broker (GetOffset / UpdateOffset / QueryOffset).
//!
//! It is for readers that own their positions — a stream job stores the
//! offsets in its checkpoints and restarts from them, so what it has read
//! is decided by the job, not by acknowledgements.

use std::time::Duration;

use rill_proto::v2;
use tokio_stream::StreamExt;

use crate::connection::{Connection, endpoint_key};
use crate::consumer::FilterExpression;
use crate::{ClientConfig, Error, ReceivedMessage, Result, check};

/// One queue of a topic on one broker (compared by topic, broker and id).
#[derive(Debug, Clone)]
pub struct QueueRef {
    /// The topic.
    pub topic: String,
    /// `host:port` of the broker holding it.
    pub broker: String,
    /// Queue id on that broker.
    pub id: i32,
    endpoints: Option<v2::Endpoints>,
}

impl PartialEq for QueueRef {
    fn eq(&self, other: &Self) -> bool {
        (&self.topic, &self.broker, self.id) == (&other.topic, &other.broker, other.id)
    }
}

impl Eq for QueueRef {}

impl std::hash::Hash for QueueRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.topic, &self.broker, self.id).hash(state);
    }
}

impl PartialOrd for QueueRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for QueueRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.topic, &self.broker, self.id).cmp(&(&other.topic, &other.broker, other.id))
    }
}

impl QueueRef {
    /// `topic/broker/id`, a stable name for storing positions.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.topic, self.broker, self.id)
    }
}

/// Where to start a queue that has no stored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest message kept.
    Earliest,
    /// After the newest message.
    Latest,
    /// The first message stored at or after this time (ms since the epoch).
    Timestamp(i64),
    /// The consumer group's committed offset, or the oldest message when it has none.
    GroupOffsets,
}

/// What one pull returned.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Messages in queue order.
    pub messages: Vec<ReceivedMessage>,
    /// The offset to pull from next.
    pub next_offset: u64,
}

/// Reads queues by offset for consumer group `group` (see the module docs).
#[derive(Debug, Clone)]
pub struct QueueReader {
    conn: Connection,
    group: String,
}

impl QueueReader {
    /// A reader talking to the brokers of `config` as `group`.
    pub fn connect(config: ClientConfig, group: &str) -> Result<Self> {
        Ok(Self { conn: Connection::open(config)?, group: group.to_owned() })
    }

    /// Every readable queue of `topic`, sorted.
    pub async fn queues(&self, topic: &str) -> Result<Vec<QueueRef>> {
        let route = self.conn.route(topic).await?;
        let mut queues: Vec<QueueRef> = route
            .iter()
            .filter(|q| [v2::Permission::Read as i32, v2::Permission::ReadWrite as i32].contains(&q.permission))
            .map(|q| {
                let endpoints = q.broker.as_ref().and_then(|b| b.endpoints.clone());
                let broker = endpoint_key(endpoints.as_ref().unwrap_or(&self.conn.access_point));
                QueueRef { topic: topic.to_owned(), broker, id: q.id, endpoints }
            })
            .collect();
        queues.sort();
        Ok(queues)
    }

    fn rpc(&self, q: &QueueRef) -> Result<crate::connection::Rpc> {
        match &q.endpoints {
            Some(e) => self.conn.broker(e),
            None => Ok(self.conn.rpc.clone()),
        }
    }

    fn wire(&self, q: &QueueRef) -> v2::MessageQueue {
        v2::MessageQueue { topic: Some(self.conn.resource(&q.topic)), id: q.id, ..Default::default() }
    }

    /// Up to `max` messages of `q` from `offset` that pass `filter`.
    pub async fn pull(&self, q: &QueueRef, offset: u64, max: u32, filter: &FilterExpression) -> Result<Pulled> {
        use v2::pull_message_response::Content;
        let req = v2::PullMessageRequest {
            group: Some(self.conn.resource(&self.group)),
            message_queue: Some(self.wire(q)),
            offset: i64::try_from(offset).map_err(|_| Error::Config(format!("offset {offset} is too large")))?,
            batch_size: i32::try_from(max).unwrap_or(i32::MAX),
            filter_expression: Some(filter.to_wire()),
            long_polling_timeout: None,
        };
        let mut stream = self
            .rpc(q)?
            .pull_message(self.conn.request(req))
            .await
            .map_err(|source| Error::Rpc { rpc: "PullMessage", source })?
            .into_inner();
        let mut messages = Vec::new();
        let mut next = offset;
        while let Some(item) = stream.next().await {
            let item = item.map_err(|source| Error::Rpc { rpc: "PullMessage", source })?;
            match item.content {
                Some(Content::Status(s)) => check("PullMessage", Some(s))?,
                Some(Content::Message(m)) => messages.push(ReceivedMessage::from_wire(m, q.broker.clone())),
                Some(Content::NextOffset(n)) => next = u64::try_from(n).unwrap_or(next),
                None => {}
            }
        }
        Ok(Pulled { messages, next_offset: next })
    }

    /// The group's committed offset of `q`, if it has one.
    pub async fn committed(&self, q: &QueueRef) -> Result<Option<u64>> {
        let req =
            v2::GetOffsetRequest { group: Some(self.conn.resource(&self.group)), message_queue: Some(self.wire(q)) };
        let reply = self
            .rpc(q)?
            .get_offset(self.conn.request(req))
            .await
            .map_err(|source| Error::Rpc { rpc: "GetOffset", source })?
            .into_inner();
        if reply.status.as_ref().is_some_and(|s| s.code == v2::Code::OffsetNotFound as i32) {
            return Ok(None);
        }
        check("GetOffset", reply.status)?;
        Ok(u64::try_from(reply.offset).ok())
    }

    /// Stores `offset` as the group's position in `q`.
    pub async fn commit(&self, q: &QueueRef, offset: u64) -> Result<()> {
        let req = v2::UpdateOffsetRequest {
            group: Some(self.conn.resource(&self.group)),
            message_queue: Some(self.wire(q)),
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
        };
        let reply = self
            .rpc(q)?
            .update_offset(self.conn.request(req))
            .await
            .map_err(|source| Error::Rpc { rpc: "UpdateOffset", source })?
            .into_inner();
        check("UpdateOffset", reply.status)
    }

    /// The offset `from` points at in `q`.
    pub async fn offset_of(&self, q: &QueueRef, from: StartFrom) -> Result<u64> {
        let (policy, timestamp) = match from {
            StartFrom::GroupOffsets => match self.committed(q).await? {
                Some(offset) => return Ok(offset),
                None => (v2::QueryOffsetPolicy::Beginning, None),
            },
            StartFrom::Earliest => (v2::QueryOffsetPolicy::Beginning, None),
            StartFrom::Latest => (v2::QueryOffsetPolicy::End, None),
            StartFrom::Timestamp(ms) => {
                (v2::QueryOffsetPolicy::Timestamp, Some(rill_proto::time::timestamp_from_millis(ms)))
            }
        };
        let req =
            v2::QueryOffsetRequest { message_queue: Some(self.wire(q)), query_offset_policy: policy as i32, timestamp };
        let reply = self
            .rpc(q)?
            .query_offset(self.conn.request(req))
            .await
            .map_err(|source| Error::Rpc { rpc: "QueryOffset", source })?
            .into_inner();
        check("QueryOffset", reply.status)?;
        Ok(u64::try_from(reply.offset).unwrap_or(0))
    }

    /// How long a caller should wait before pulling an empty queue again.
    pub fn idle_backoff(empty_pulls: u32) -> Duration {
        Duration::from_millis((5u64 << empty_pulls.min(6)).min(200))
    }
}
