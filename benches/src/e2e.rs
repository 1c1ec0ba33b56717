//! `rill bench e2e`: end-to-end latency, produce → consume, at a fixed rate:
//! Rill (push consumer, async flush) and, in the same run, NATS JetStream
//! (pull consumer, file storage). Each body starts with the send time, so
//! latency is measured on one clock in one process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_client::{ClientConfig, FilterExpression, Message, Producer, PushConsumer};
use serde::Serialize;

use crate::local::LocalBroker;
use crate::report::{percentile_us, table, thousands};
use crate::{Error, Result, client_error, peer_error};

/// What to run.
#[derive(Debug, Clone)]
pub struct E2eBenchOptions {
    /// Scratch directory for the broker's data; removed afterwards.
    pub dir: std::path::PathBuf,
    /// Messages per second to send.
    pub rate: u64,
    /// How long to send, in seconds.
    pub seconds: f64,
    /// Body size in bytes (at least 8).
    pub message_size: usize,
    /// NATS server to compare with; `None` skips the peer.
    pub nats_url: Option<String>,
}

impl Default for E2eBenchOptions {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir().join(format!("rill-bench-e2e-{}", std::process::id())),
            rate: 10_000,
            seconds: 5.0,
            message_size: 1024,
            nats_url: Some("127.0.0.1:4222".into()),
        }
    }
}

/// One system's latencies.
#[derive(Debug, Clone, Serialize)]
pub struct E2eCase {
    /// System measured.
    pub system: String,
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Send rate achieved, msgs/s.
    pub rate: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Largest latency, µs.
    pub max_us: f64,
    /// p99 divided by JetStream's p99 (lower is better; 0 without JetStream).
    pub p99_ratio_vs_jetstream: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct E2eBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// Target p99 in µs.
    pub target_p99_us: f64,
    /// The cases.
    pub cases: Vec<E2eCase>,
}

impl E2eBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.system.clone(),
                    thousands(c.rate),
                    format!("{}/{}", c.received, c.sent),
                    format!("{:.0}", c.p50_us),
                    format!("{:.0}", c.p99_us),
                    format!("{:.0}", c.max_us),
                ]
            })
            .collect();
        let mut out = table(&["system", "msgs/s", "received", "p50 µs", "p99 µs", "max µs"], &rows);
        out.push_str(&format!("target: p99 < {:.0} µs\n", self.target_p99_us));
        out
    }
}

/// Latencies recorded by a consumer.
#[derive(Debug, Default)]
struct Recorder {
    latencies: std::sync::Mutex<Vec<u64>>,
    received: AtomicU64,
}

impl Recorder {
    fn record(&self, base: Instant, body: &[u8]) {
        if body.len() < 8 {
            return;
        }
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&body[..8]);
        let now = base.elapsed().as_nanos() as u64;
        let latency = now.saturating_sub(u64::from_le_bytes(sent));
        if let Ok(mut v) = self.latencies.lock() {
            v.push(latency);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
    }
}

fn stamped(base: Instant, size: usize) -> Bytes {
    let mut body = vec![0u8; size.max(8)];
    body[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
    Bytes::from(body)
}

/// Runs Rill and JetStream at the same rate.
pub fn run(opts: &E2eBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<E2eBenchReport> {
    if opts.rate == 0 || opts.seconds <= 0.0 {
        return Err(Error::Options { option: "--rate/--seconds", reason: "must be positive".into() });
    }
    let load = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|source| Error::Io {
        op: "start a runtime in",
        path: opts.dir.clone(),
        source,
    })?;
    progress(&format!("rill at {} msgs/s", thousands(opts.rate as f64)));
    let broker = LocalBroker::start(&opts.dir, false)?;
    let addr = broker.addr.to_string();
    let rill = load.block_on(rill_case(opts, &addr));
    broker.shutdown()?;
    let _ = std::fs::remove_dir_all(&opts.dir);
    let mut cases = vec![rill?];
    if let Some(url) = &opts.nats_url {
        progress(&format!("nats jetstream at {} msgs/s", thousands(opts.rate as f64)));
        let js = load.block_on(nats_case(opts, url))?;
        for c in &mut cases {
            c.p99_ratio_vs_jetstream = c.p99_us / js.p99_us.max(f64::MIN_POSITIVE);
        }
        cases.push(E2eCase { p99_ratio_vs_jetstream: 1.0, ..js });
    }
    Ok(E2eBenchReport { bench: "e2e", target_p99_us: 5_000.0, cases })
}

async fn rill_case(opts: &E2eBenchOptions, addr: &str) -> Result<E2eCase> {
    let base = Instant::now();
    let producer = Producer::connect(ClientConfig::new(addr)).await.map_err(client_error)?;
    // Create the topic before the consumer subscribes.
    producer.send(Message::new("e2e", stamped(base, opts.message_size))).await.map_err(client_error)?;
    let recorder = Arc::new(Recorder::default());
    let sink = Arc::clone(&recorder);
    let subs = [("e2e".to_owned(), FilterExpression::all())].into_iter().collect();
    let consumer =
        PushConsumer::start(ClientConfig::new(addr), "e2e-bench", subs, 256, Duration::from_secs(60), move |m| {
            sink.record(base, &m.body);
            async { Ok(()) }
        })
        .await
        .map_err(client_error)?;
    let sent = pace(opts, |_| {
        let (producer, body) = (producer.clone(), stamped(base, opts.message_size));
        tokio::spawn(async move {
            let _ = producer.send(Message::new("e2e", body)).await;
        });
    })
    .await;
    let case = finish("rill (push consumer, async flush)", &recorder, sent + 1, opts).await;
    consumer.shutdown();
    Ok(case)
}

async fn nats_case(opts: &E2eBenchOptions, url: &str) -> Result<E2eCase> {
    use tokio_stream::StreamExt;
    let peer = |e: &dyn std::fmt::Display| peer_error(url, e);
    let client = async_nats::connect(url).await.map_err(|e| peer(&e))?;
    let js = async_nats::jetstream::new(client);
    let name = format!("RILLE2E{}", std::process::id());
    let subject = format!("rille2e.{}", std::process::id());
    let _ = js.delete_stream(&name).await;
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| peer(&e))?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("e2e".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| peer(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| peer(&e))?;
    let base = Instant::now();
    let recorder = Arc::new(Recorder::default());
    let sink = Arc::clone(&recorder);
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            sink.record(base, &m.payload);
            let _ = m.ack().await;
        }
    });
    let sent = pace(opts, |_| {
        let (js, subject, body) = (js.clone(), subject.clone(), stamped(base, opts.message_size));
        tokio::spawn(async move {
            if let Ok(ack) = js.publish(subject, body).await {
                let _ = ack.await;
            }
        });
    })
    .await;
    let case = finish("nats jetstream (pull consumer, file)", &recorder, sent, opts).await;
    reader.abort();
    let _ = js.delete_stream(&name).await;
    Ok(case)
}

/// Calls `send` at `opts.rate` per second for `opts.seconds`; returns how many were sent.
async fn pace(opts: &E2eBenchOptions, mut send: impl FnMut(u64)) -> u64 {
    let total = (opts.rate as f64 * opts.seconds) as u64;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        // Catch up to the schedule: rate × elapsed messages by now.
        let due = ((start.elapsed().as_secs_f64() * opts.rate as f64) as u64).min(total);
        while sent < due {
            send(sent);
            sent += 1;
        }
    }
    sent
}

/// Waits (bounded) for everything sent to arrive, then summarises.
async fn finish(system: &str, r: &Recorder, sent: u64, opts: &E2eBenchOptions) -> E2eCase {
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut lat = r.latencies.lock().map(|v| v.clone()).unwrap_or_default();
    lat.sort_unstable();
    let pct = |p: f64| percentile_us(&lat, p);
    E2eCase {
        system: system.into(),
        sent,
        received: r.received.load(Ordering::Relaxed),
        rate: sent as f64 / opts.seconds,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        max_us: lat.last().map_or(0.0, |&n| n as f64 / 1000.0),
        p99_ratio_vs_jetstream: 0.0,
    }
}
