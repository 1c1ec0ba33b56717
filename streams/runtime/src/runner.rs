//! Runs a [`Dataflow`] on broker topics with exactly-once checkpoints.
//!
//! Each source of the job reads one topic: every queue of it (or this
//! process's share, see [`Member`]) is pulled by offset in a task of its
//! own, message bodies are decoded into the source's schema there (bad ones
//! go to the dead-letter output with their coordinates, as do rows a sink
//! refuses, or fail the job, per policy), and event time advances per queue from bounded
//! out-of-orderness, with an idle timeout so a silent queue does not hold
//! the job back. The dataflow itself runs in the job's one loop.
//!
//! Every checkpoint interval, between two pulls: the dataflow's state and
//! the next offset of every queue are snapshotted, sinks prepare, the
//! checkpoint is stored durably, sinks commit, and the offsets are also
//! committed to the broker for monitoring. A restart restores the latest
//! checkpoint, tells sinks to recover to it and reads on from its offsets —
//! so output is exactly-once even after a kill at any point.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use rill_client::{ClientConfig, FilterExpression, QueueReader, QueueRef, StartFrom};
use rill_time::{WatermarkConfig, Watermarks};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::checkpoint::CheckpointStore;
use crate::dataflow::{Dataflow, NodeMetrics};
use crate::decode::{DeadLetter, Decoded, Decoder, Origin};
use crate::source::{Source, SourceInput};
use crate::window_agg::event_times;
use crate::{Error, Result};

mod checkpointing;
mod fetch;

use fetch::{Fetch, Fetched, Payload};

/// How often the run logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How long the loop waits for rows before moving event time and checkpoints on.
const TICK: Duration = Duration::from_millis(50);
/// Most hand-overs taken from the queues' tasks between two watermark steps.
const DRAIN: usize = 64;

/// One topic feeding one source of the job.
#[derive(Debug)]
pub struct TopicInput {
    /// The job's source it feeds.
    pub source: String,
    /// The topic.
    pub topic: String,
    /// The decoded rows' event-time column.
    pub event_time: String,
    /// How bodies become rows (its schema must be the source's).
    pub decoder: Decoder,
    /// Filter pushed down to the broker.
    pub filter: FilterExpression,
    /// Event-time progress per queue.
    pub watermarks: WatermarkConfig,
    /// Where queues without a stored position start.
    pub start: StartFrom,
}

/// What to do with a message that does not decode or a row a sink refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadLetterPolicy {
    /// Send it to the dead-letter output and go on (counted).
    #[default]
    Skip,
    /// Stop the job with that message in the error.
    Fail,
}

/// How the runner works.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The broker (or name server) to read from.
    pub client: ClientConfig,
    /// Consumer group offsets are committed under.
    pub group: String,
    /// Where checkpoints go (none: no checkpoints, at-most-what-was-read).
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Messages per pull.
    pub batch: u32,
    /// Undecodable messages and refused rows.
    pub dead_letters: DeadLetterPolicy,
    /// Processing time: event time is the wall clock (sources read a
    /// `proc_time` metadata column, see [`crate::Metadata::ProcessingTime`])
    /// and advances with it, whatever the rows say.
    pub processing_time: bool,
    /// Treat the input as bounded: once every queue is read to its end,
    /// end event time (every open window fires), checkpoint and stop.
    pub until_caught_up: bool,
    /// This process's share of the queues when several processes run the job.
    pub member: Member,
    /// Where to serve the job's metrics (`GET /metrics`, Prometheus text).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Which queues a process reads when `count` processes run one job in one
/// consumer group: of each topic's queues, ordered by broker and queue id,
/// every `count`-th from `index`. Each member keeps its own checkpoints
/// (its own directory) and state; keyed results are whole when producers
/// send each key to one queue (a RocketMQ message group or sharding key),
/// as keyed streams across processes need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    index: u32,
    count: u32,
}

impl Default for Member {
    /// The only member: every queue.
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl Member {
    /// Member `index` (from 0) of `count`.
    pub fn new(index: u32, count: u32) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::Plan(format!("member {index} of {count}: the index must be below a non-zero count")));
        }
        Ok(Self { index, count })
    }

    /// Instance `i` of `n` inside this member: member `index × n + i` of `count × n`.
    pub fn split(&self, i: u32, n: u32) -> Result<Self> {
        let count = self.count.checked_mul(n).ok_or_else(|| Error::Plan(format!("{n} instances of member {self}")))?;
        Self::new(self.index * n + i, count)
    }

    /// Whether the `nth` queue (of a topic's queues in order) is this member's.
    pub fn owns(&self, nth: usize) -> bool {
        nth % self.count as usize == self.index as usize
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl RunnerConfig {
    /// Defaults: checkpoints every 5 s if a directory is given, 512 messages a pull.
    pub fn new(client: ClientConfig, group: &str) -> Self {
        Self {
            client,
            group: group.to_owned(),
            checkpoint_dir: None,
            checkpoint_interval: Duration::from_secs(5),
            batch: 512,
            dead_letters: DeadLetterPolicy::Skip,
            processing_time: false,
            until_caught_up: false,
            member: Member::default(),
            metrics_addr: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages read.
    pub messages: u64,
    /// Dead letters: messages that did not decode, rows sinks refused.
    pub dead: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// The checkpoint the run started from.
    pub restored_from: Option<u64>,
}

/// A running job's figures, published after every round of pulls.
#[derive(Debug, Clone, Default)]
pub struct JobStatus {
    /// Messages read so far.
    pub messages: u64,
    /// Dead letters so far.
    pub dead: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// How long the last checkpoint took (ms).
    pub last_checkpoint_ms: u64,
    /// Wall clock minus the job's event time (ms): how far results lag
    /// behind now for a live input; `None` before the first watermark.
    pub watermark_lag_ms: Option<i64>,
    /// Per operator: rows in and out, late rows, state size, event time.
    pub operators: Vec<NodeMetrics>,
}

struct QueueState {
    input: usize,
    /// Name of its position in checkpoints: `source@topic/broker/queue`.
    position: String,
    queue: QueueRef,
    next: u64,
    mark: usize,
    /// Its task found nothing after `next`.
    at_end: bool,
}

/// Where a job's undecodable messages go.
type DeadLetterOut = Box<dyn FnMut(DeadLetter) + Send>;

/// A connector source being read.
struct SourceState {
    /// Its place in `marks`, `names` and `times`.
    index: usize,
    /// Name of its position in checkpoints: `source@source`.
    key: String,
    mark: usize,
    /// Where the rows handed over so far end.
    position: String,
    /// Its task found nothing more for now.
    at_end: bool,
    inner: Arc<tokio::sync::Mutex<Box<dyn Source>>>,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    /// Aborts the task and waits until it is gone.
    async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// The runner (see the module docs).
pub struct Runner {
    config: RunnerConfig,
    inputs: Vec<TopicInput>,
    /// In a mutex so the runner is `Sync`; taken when the run starts.
    sources: std::sync::Mutex<Vec<SourceInput>>,
    /// In a mutex so the runner is `Sync` (its futures cross threads).
    dead: Option<std::sync::Mutex<DeadLetterOut>>,
    status: tokio::sync::watch::Sender<JobStatus>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("config", &self.config).field("inputs", &self.inputs).finish_non_exhaustive()
    }
}

fn source_err(e: rill_client::Error) -> Error {
    Error::Source(e.to_string())
}

impl Runner {
    /// A runner reading `inputs`.
    pub fn new(config: RunnerConfig, inputs: Vec<TopicInput>) -> Self {
        Self {
            config,
            inputs,
            sources: std::sync::Mutex::new(Vec::new()),
            dead: None,
            status: tokio::sync::watch::Sender::new(JobStatus::default()),
        }
    }

    /// Live figures of the run (updated after every round of pulls).
    pub fn status(&self) -> tokio::sync::watch::Receiver<JobStatus> {
        self.status.subscribe()
    }

    fn publish(&self, flow: &Dataflow, report: &RunReport, last_checkpoint_ms: u64) {
        let operators = flow.metrics();
        let mark = operators.iter().filter(|m| m.name.starts_with("sink")).map(|m| m.watermark).min();
        let wall = crate::decode::wall_clock_ms();
        let lag = mark.filter(|m| *m > i64::MIN && *m < i64::MAX).map(|m| wall - m);
        self.status.send_replace(JobStatus {
            messages: report.messages,
            dead: report.dead,
            checkpoints: report.checkpoints,
            last_checkpoint_ms,
            watermark_lag_ms: lag,
            operators,
        });
    }

    /// Also reads `input`, a connector's source (see [`crate::Source`]).
    pub fn source(mut self, input: SourceInput) -> Self {
        self.sources.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).push(input);
        self
    }

    /// Where undecodable messages and rows sinks refused go (logged at WARN without one).
    pub fn dead_letters(mut self, out: impl FnMut(DeadLetter) + Send + 'static) -> Self {
        self.dead = Some(std::sync::Mutex::new(Box::new(out)));
        self
    }

    /// Runs `flow` until `stop` turns true (or, when configured, until
    /// caught up); a last checkpoint is taken on the way out.
    pub async fn run(mut self, mut flow: Dataflow, mut stop: tokio::sync::watch::Receiver<bool>) -> Result<RunReport> {
        for input in &self.inputs {
            let expected = flow.source_schema(&input.source)?;
            if expected.fields() != input.decoder.schema().fields() {
                return Err(Error::Plan(format!(
                    "topic '{}' decodes into other columns than source '{}' takes",
                    input.topic, input.source
                )));
            }
        }
        let connectors = std::mem::take(self.sources.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner));
        for s in &connectors {
            if flow.source_schema(&s.source)?.fields() != s.inner.schema().fields() {
                return Err(Error::Plan(format!(
                    "source '{}' gives other columns than the job's source takes",
                    s.source
                )));
            }
        }
        let reader = QueueReader::connect(self.config.client.clone(), &self.config.group).map_err(source_err)?;
        let metrics = match self.config.metrics_addr {
            Some(addr) => Some(crate::metrics::serve(self.config.group.clone(), addr, self.status()).await?),
            None => None,
        };
        // Stops serving when the run ends, however it ends.
        let metrics = metrics.map(|t| AbortOnDrop(Some(t)));
        let store = self.config.checkpoint_dir.as_ref().map(CheckpointStore::open).transpose()?;
        let restored = match &store {
            Some(s) => s.latest()?,
            None => None,
        };
        let mut report = RunReport { restored_from: restored.as_ref().map(|c| c.id), ..Default::default() };
        flow.recover_sinks(report.restored_from)?;
        if let Some(c) = &restored {
            flow.restore(&c.snapshot)?;
            tracing::info!(checkpoint = c.id, "restored the job from its latest checkpoint");
        }
        let started = Instant::now();
        let now = || i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let mut marks = Vec::new();
        let mut queues = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let mut m = Watermarks::new(input.watermarks, 0, now())?;
            let mut all = reader.queues(&input.topic).await.map_err(source_err)?;
            all.sort();
            for (nth, q) in all.into_iter().enumerate() {
                if !self.config.member.owns(nth) {
                    continue;
                }
                let position = format!("{}@{}", input.source, q.key());
                let next = match restored.as_ref().and_then(|c| c.positions.get(&position)) {
                    Some(n) => *n,
                    None => reader.offset_of(&q, input.start).await.map_err(source_err)?,
                };
                let mark = m.add_input(now());
                queues.push(QueueState { input: i, queue: q, next, mark, at_end: false, position });
            }
            marks.push(m);
        }
        // Connector sources come after the topics in `marks`, `names` and `times`.
        let mut names: Vec<String> = self.inputs.iter().map(|i| i.source.clone()).collect();
        let mut sources = Vec::new();
        for mut s in connectors {
            let key = format!("{}@source", s.source);
            let position = restored.as_ref().and_then(|c| c.sources.get(&key)).cloned();
            s.inner.start(position.as_deref())?;
            let mut m = Watermarks::new(s.watermarks, 0, now())?;
            let mark = m.add_input(now());
            sources.push(SourceState {
                index: marks.len(),
                key,
                mark,
                position: s.inner.position(),
                at_end: false,
                inner: Arc::new(tokio::sync::Mutex::new(s.inner)),
            });
            marks.push(m);
            names.push(s.source);
        }
        tracing::info!(queues = queues.len(), sources = sources.len(), member = %self.config.member, "reading queues and sources, one task each");
        let times: Vec<usize> = names.iter().map(|n| flow.source_time(n)).collect::<Result<_>>()?;
        let decoders: Vec<Arc<Decoder>> = self.inputs.iter().map(|i| Arc::new(i.decoder.clone())).collect();
        let (tx, mut rx) = mpsc::channel((queues.len() + sources.len()).max(1) * 2);
        let mut tasks = JoinSet::new();
        for (i, q) in queues.iter().enumerate() {
            let input = &self.inputs[q.input];
            let fetch = Fetch {
                queue: i,
                at: q.queue.clone(),
                from: q.next,
                batch: self.config.batch,
                filter: input.filter.clone(),
                // Processing time is stamped as rows enter the dataflow, so the loop decodes.
                decoder: (!self.config.processing_time).then(|| Arc::clone(&decoders[q.input])),
            };
            fetch::spawn(&mut tasks, reader.clone(), fetch, tx.clone());
        }
        for (i, s) in sources.iter().enumerate() {
            fetch::spawn_source(&mut tasks, i, Arc::clone(&s.inner), tx.clone());
        }
        drop(tx);
        let mut next_id = report.restored_from.map_or(1, |id| id + 1);
        let mut last_checkpoint = Instant::now();
        let mut last_checkpoint_ms = 0;
        let mut last_progress = Instant::now();
        let no_queues = queues.is_empty() && sources.is_empty();
        let mut stop_open = true;
        while !*stop.borrow() {
            let first = tokio::select! {
                f = rx.recv(), if !no_queues => match f {
                    Some(f) => Some(f),
                    // A task only ends after handing over its error.
                    None => return Err(Error::Source("every queue reader stopped".into())),
                },
                Some(Err(e)) = tasks.join_next(), if !no_queues => {
                    return Err(Error::Source(format!("a queue reader failed: {e}")));
                }
                changed = stop.changed(), if stop_open => {
                    // Without a sender nobody can stop the job: it runs on (or until caught up).
                    stop_open = changed.is_ok();
                    None
                }
                // Event time and checkpoints move on while the queues are quiet.
                _ = tokio::time::sleep(TICK) => None,
            };
            let mut items: Vec<Fetched> = first.into_iter().collect();
            while items.len() < DRAIN {
                match rx.try_recv() {
                    Ok(f) => items.push(f),
                    Err(_) => break,
                }
            }
            for item in items {
                match item {
                    Fetched::Rows { queue, next, messages, payload } => {
                        let q = &mut queues[queue];
                        q.next = next;
                        q.at_end = false;
                        report.messages += messages;
                        let decoded = match payload {
                            Payload::Decoded(d) => d,
                            Payload::Records(r) => decoders[q.input].decode(&r)?,
                        };
                        self.take(&mut flow, &mut report, &mut marks, times[q.input], q, decoded, now())?;
                    }
                    Fetched::End { queue, at } => {
                        let q = &mut queues[queue];
                        q.at_end = q.next == at;
                    }
                    Fetched::SourceRows { source, position, batch } => {
                        let s = &mut sources[source];
                        s.position = position;
                        s.at_end = false;
                        report.messages += batch.num_rows() as u64;
                        for ts in event_times(batch.column(times[s.index]))?.into_iter().flatten() {
                            marks[s.index].observe(s.mark, ts, now());
                        }
                        if batch.num_rows() > 0 {
                            flow.push(&names[s.index], batch)?;
                        }
                    }
                    Fetched::SourceEnd { source, position } => {
                        let s = &mut sources[source];
                        s.at_end = s.position == position;
                    }
                    Fetched::Failed(e) => return Err(e),
                }
            }
            for (i, m) in marks.iter_mut().enumerate() {
                let mark = if self.config.processing_time {
                    // Rows decoded from now on carry a later processing time.
                    Some(crate::decode::wall_clock_ms() - 1)
                } else {
                    m.advance(now())
                };
                if let Some(w) = mark {
                    flow.watermark(&names[i], w)?;
                }
            }
            self.set_aside(&mut report, flow.rejected())?;
            if self.config.until_caught_up && queues.iter().all(|q| q.at_end) && sources.iter().all(|s| s.at_end) {
                // The input is bounded and read: event time ends, every open window fires.
                flow.finish()?;
                break;
            }
            if store.is_some() && last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                last_checkpoint_ms = self
                    .checkpoint(&mut flow, &mut report, store.as_ref(), &reader, &queues, &sources, next_id)
                    .await?;
                report.checkpoints += 1;
                next_id += 1;
                last_checkpoint = Instant::now();
            }
            self.publish(&flow, &report, last_checkpoint_ms);
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                self.log_progress();
            }
        }
        tasks.abort_all();
        if store.is_some() {
            last_checkpoint_ms =
                self.checkpoint(&mut flow, &mut report, store.as_ref(), &reader, &queues, &sources, next_id).await?;
            report.checkpoints += 1;
        }
        self.publish(&flow, &report, last_checkpoint_ms);
        if let Some(m) = metrics {
            m.stop().await;
        }
        Ok(report)
    }

    /// Hands dead letters (undecodable messages, rows sinks refused) to the
    /// job's output for them — or fails the job with the first, per policy.
    pub(super) fn set_aside(&self, report: &mut RunReport, dead: Vec<DeadLetter>) -> Result<()> {
        report.dead += dead.len() as u64;
        for d in dead {
            if self.config.dead_letters == DeadLetterPolicy::Fail {
                return Err(match d.origin {
                    Origin::Message { .. } => Error::Source(format!("{}: {}", d.origin, d.reason)),
                    Origin::Sink(_) => Error::Sink(format!("{}: {}", d.origin, d.reason)),
                });
            }
            match self.dead.as_ref().map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)) {
                Some(mut out) => out(d),
                None => tracing::warn!(origin = %d.origin, reason = %d.reason, "dead letter"),
            }
        }
        Ok(())
    }

    /// Pushes one queue's decoded rows into the flow: dead letters out (or
    /// the job fails, per policy), event time observed.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        flow: &mut Dataflow,
        report: &mut RunReport,
        marks: &mut [Watermarks],
        time_column: usize,
        q: &QueueState,
        decoded: Decoded,
        now: i64,
    ) -> Result<()> {
        self.set_aside(report, decoded.dead)?;
        for ts in event_times(decoded.batch.column(time_column))?.into_iter().flatten() {
            marks[q.input].observe(q.mark, ts, now);
        }
        if decoded.batch.num_rows() > 0 {
            flow.push(&self.inputs[q.input].source, decoded.batch)?;
        }
        Ok(())
    }

    fn log_progress(&self) {
        let status = self.status.borrow().clone();
        let state: usize = status.operators.iter().map(|m| m.state).sum();
        tracing::info!(
            messages = status.messages,
            dead = status.dead,
            checkpoints = status.checkpoints,
            state,
            watermark_lag_ms = status.watermark_lag_ms,
            "job progress"
        );
    }
}
