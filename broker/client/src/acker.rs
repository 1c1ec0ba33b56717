//! Acknowledgements gathered into few requests: a consumer keeps at most
//! [`MAX_OUTSTANDING`] `AckMessage` calls per broker on the wire, and acks
//! made while those are busy go together in the next call (one entry each,
//! each answered on its own). A lone ack leaves at once.

use std::collections::HashMap;
use std::sync::Arc;

use rill_proto::v2;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::connection::Connection;
use crate::{Error, Result, check};

/// Ack requests on the wire at once, per broker.
const MAX_OUTSTANDING: usize = 2;
/// Most entries in one request.
const MAX_ENTRIES: usize = 256;

/// One acknowledgement waiting to be sent.
struct Pending {
    /// [`crate::connection::endpoint_key`] of the broker that delivered the message.
    broker: String,
    topic: String,
    entry: v2::AckMessageEntry,
    reply: oneshot::Sender<Result<()>>,
}

/// Hands acknowledgements to the gathering task.
#[derive(Debug, Clone)]
pub(crate) struct Acker {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Acker {
    /// Starts the task; it ends when the last clone of the acker is dropped.
    pub fn start(conn: Connection, group: String) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(gather(conn, group, pending));
        Self { queue }
    }

    /// Acknowledges one message at the broker named by `broker` (its endpoint key).
    pub async fn ack(&self, broker: &str, topic: &str, entry: v2::AckMessageEntry) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { broker: broker.to_owned(), topic: topic.to_owned(), entry, reply })
            .map_err(|_| Error::Config("the consumer's ack loop has stopped".into()))?;
        answer.await.map_err(|_| Error::Config("the consumer's ack loop dropped an ack".into()))?
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// Routes each ack to the gathering task of its broker (started on first
/// use), so a slow or unreachable broker never holds up acks for another.
async fn gather(conn: Connection, group: String, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let mut per_broker: HashMap<String, mpsc::UnboundedSender<Pending>> = HashMap::new();
    while let Some(p) = pending.recv().await {
        let tx = per_broker.entry(p.broker.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(gather_for_broker(conn.clone(), group.clone(), rx));
            tx
        });
        if let Err(mpsc::error::SendError(p)) = tx.send(p) {
            let _ = p.reply.send(Err(Error::Config("the consumer's ack loop has stopped".into())));
        }
    }
}

/// Gathers one broker's acks into requests, at most [`MAX_OUTSTANDING`] at once.
async fn gather_for_broker(conn: Connection, group: String, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    while let Some(first) = pending.recv().await {
        // Waiting for a free slot is what lets later acks join this request.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
        let permit = Arc::new(permit);
        let mut batch = vec![first];
        while batch.len() < MAX_ENTRIES {
            match pending.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut by_topic: HashMap<String, Vec<Pending>> = HashMap::new();
        for p in batch {
            by_topic.entry(p.topic.clone()).or_default().push(p);
        }
        for (topic, acks) in by_topic {
            let (conn, group, permit) = (conn.clone(), group.clone(), Arc::clone(&permit));
            tokio::spawn(async move {
                let _permit = permit;
                send(&conn, &group, &topic, acks).await;
            });
        }
    }
}

/// One `AckMessage` call for `acks` (same broker, same topic).
async fn send(conn: &Connection, group: &str, topic: &str, acks: Vec<Pending>) {
    let Some(broker) = acks.first().map(|p| p.broker.clone()) else { return };
    let (entries, replies): (Vec<_>, Vec<_>) = acks.into_iter().map(|p| (p.entry, p.reply)).unzip();
    let n = entries.len();
    let req = v2::AckMessageRequest { group: Some(conn.resource(group)), topic: Some(conn.resource(topic)), entries };
    let outcome = async {
        let mut rpc = conn.broker_by_key(&broker)?;
        let reply =
            rpc.ack_message(conn.request(req)).await.map_err(|source| Error::Rpc { rpc: "AckMessage", source })?;
        let reply = reply.into_inner();
        if reply.entries.len() != n {
            check("AckMessage", reply.status)?;
            return Err(Error::Broker {
                rpc: "AckMessage",
                code: 0,
                message: format!("the broker answered {} entries for {n} acks", reply.entries.len()),
            });
        }
        Ok(reply.entries.into_iter().map(|e| check("AckMessage", e.status)).collect::<Vec<_>>())
    }
    .await;
    crate::answer_each(replies, outcome);
}
