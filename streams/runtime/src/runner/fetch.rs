//! One task per queue: it pulls messages from its position on, decodes
//! them into the source's rows and hands them to the job's loop through a
//! bounded channel, so a slow job holds the pulls back. The tasks never
//! move a checkpointed position themselves: the loop does, as it pushes
//! rows into the dataflow, so a checkpoint's positions are exactly what the
//! dataflow has seen.

use std::sync::Arc;

use rill_client::{FilterExpression, QueueReader, QueueRef};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use datafusion::arrow::array::RecordBatch;

use crate::decode::{Decoded, Decoder, SourceRecord};
use crate::source::Source;
use crate::{Error, Result};

/// Messages as handed over: decoded by the task, or left for the loop to
/// decode when rows must carry the time they enter the dataflow
/// (processing time).
pub(super) enum Payload {
    /// Rows and the messages that did not decode.
    Decoded(Decoded),
    /// The messages as read.
    Records(Vec<SourceRecord>),
}

/// What a queue's task hands over.
pub(super) enum Fetched {
    /// The messages before `next` (possibly none: all filtered out).
    Rows {
        /// Index of the queue in the loop's list.
        queue: usize,
        /// The queue's position after these messages.
        next: u64,
        /// Messages read.
        messages: u64,
        /// Their contents.
        payload: Payload,
    },
    /// Nothing after `at` for now (sent once each time the queue runs dry).
    End {
        /// Index of the queue.
        queue: usize,
        /// Its position.
        at: u64,
    },
    /// Rows of a connector source, and its position after them.
    SourceRows {
        /// Index of the source in the loop's list.
        source: usize,
        /// Its position after these rows.
        position: String,
        /// The rows.
        batch: RecordBatch,
    },
    /// A bounded connector source is finished: no rows will come again.
    SourceEnd {
        /// Index of the source.
        source: usize,
        /// Its position.
        position: String,
    },
    /// The task stopped on an error.
    Failed(Error),
}

/// What one queue's task reads.
pub(super) struct Fetch {
    pub queue: usize,
    pub at: QueueRef,
    pub from: u64,
    pub batch: u32,
    pub filter: FilterExpression,
    /// Decodes in the task; `None` leaves decoding to the loop.
    pub decoder: Option<Arc<Decoder>>,
}

/// Starts the task of connector source `index` in `tasks`.
pub(super) fn spawn_source(
    tasks: &mut JoinSet<()>,
    index: usize,
    source: Arc<tokio::sync::Mutex<Box<dyn Source>>>,
    out: mpsc::Sender<Fetched>,
) {
    tasks.spawn(async move {
        let mut empty_polls = 0;
        let mut sent_position: Option<String> = None;
        loop {
            let (polled, position, finished, schema) = {
                let mut s = source.lock().await;
                let polled = s.poll().await;
                (polled, s.position(), s.finished(), s.schema())
            };
            let item = match polled {
                Err(e) => {
                    let _ = out.send(Fetched::Failed(e)).await;
                    return;
                }
                Ok(Some(batch)) => {
                    empty_polls = 0;
                    Fetched::SourceRows { source: index, position, batch }
                }
                Ok(None) if finished => Fetched::SourceEnd { source: index, position },
                // No rows, but the source moved on (past a snapshot's end, past others' changes):
                // checkpoints take the new position.
                Ok(None) if sent_position.as_ref() != Some(&position) => {
                    Fetched::SourceRows { source: index, position, batch: RecordBatch::new_empty(schema) }
                }
                Ok(None) => {
                    // Nothing yet (a rate, a quiet upstream): ask again in a while.
                    empty_polls += 1;
                    tokio::time::sleep(QueueReader::idle_backoff(empty_polls)).await;
                    continue;
                }
            };
            if let Fetched::SourceRows { position, .. } = &item {
                sent_position = Some(position.clone());
            }
            let end = matches!(item, Fetched::SourceEnd { .. });
            if out.send(item).await.is_err() {
                return;
            }
            if end {
                // Bounded and read: nothing will come again; stay until the job ends.
                out.closed().await;
                return;
            }
        }
    });
}

/// Starts the task of one queue in `tasks`.
pub(super) fn spawn(tasks: &mut JoinSet<()>, reader: QueueReader, fetch: Fetch, out: mpsc::Sender<Fetched>) {
    tasks.spawn(async move {
        if let Err(e) = run(&reader, &fetch, &out).await {
            let _ = out.send(Fetched::Failed(e)).await;
        }
    });
}

async fn run(reader: &QueueReader, f: &Fetch, out: &mpsc::Sender<Fetched>) -> Result<()> {
    let mut next = f.from;
    let mut empty_pulls = 0;
    loop {
        let pulled = reader.pull(&f.at, next, f.batch, &f.filter).await.map_err(|e| Error::Source(e.to_string()))?;
        if pulled.messages.is_empty() && pulled.next_offset == next {
            if empty_pulls == 0 && out.send(Fetched::End { queue: f.queue, at: next }).await.is_err() {
                return Ok(());
            }
            empty_pulls += 1;
            tokio::time::sleep(QueueReader::idle_backoff(empty_pulls)).await;
            continue;
        }
        empty_pulls = 0;
        // The messages are moved into records, not copied.
        let records: Vec<SourceRecord> = pulled
            .messages
            .into_iter()
            .map(|m| SourceRecord {
                queue: u32::try_from(m.queue_id).unwrap_or(0),
                offset: u64::try_from(m.queue_offset).unwrap_or(0),
                store_time: m.store_timestamp,
                topic: m.topic,
                tag: m.tag,
                properties: m.properties,
                body: m.body,
            })
            .collect();
        let messages = records.len() as u64;
        let payload = match &f.decoder {
            Some(d) => Payload::Decoded(d.decode(&records)?),
            None => Payload::Records(records),
        };
        next = pulled.next_offset;
        let rows = Fetched::Rows { queue: f.queue, next, messages, payload };
        if out.send(rows).await.is_err() {
            // The job stopped.
            return Ok(());
        }
    }
}
