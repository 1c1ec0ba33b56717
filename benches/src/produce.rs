//! `rill bench produce`: acknowledged publishes of 1 KiB messages to a Rill
//! broker (async and sync flush) and, in the same run, to NATS JetStream
//! with file storage on this machine — same message size, same number of
//! requests in flight, every publish acknowledged before it counts.
//!
//! The Rill broker runs in this process on its own runtime threads, on a
//! loopback port; the load generator talks to it through `rill-client` over
//! gRPC exactly as an application would.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_client::{ClientConfig, Message, Producer};
use serde::Serialize;

use crate::local::LocalBroker;
use crate::report::{percentile_us, table, thousands};
use crate::{Error, Result, client_error, peer_error};

/// What to run.
#[derive(Debug, Clone)]
pub struct ProduceBenchOptions {
    /// Scratch directory for the broker's data; removed afterwards.
    pub dir: PathBuf,
    /// Body size in bytes.
    pub message_size: usize,
    /// Most messages per case.
    pub messages: u64,
    /// Requests in flight, spread over the producers.
    pub in_flight: usize,
    /// Client connections.
    pub producers: usize,
    /// Time limit per case, in seconds.
    pub max_seconds: f64,
    /// NATS server to compare with; `None` skips the peer.
    pub nats_url: Option<String>,
}

impl Default for ProduceBenchOptions {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir().join(format!("rill-bench-produce-{}", std::process::id())),
            message_size: 1024,
            messages: 1_000_000,
            in_flight: 256,
            producers: 4,
            max_seconds: 10.0,
            nats_url: Some("127.0.0.1:4222".into()),
        }
    }
}

/// One system under load.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceCase {
    /// `rill async flush`, `rill sync flush` or `nats jetstream (file)`.
    pub system: String,
    /// Acknowledged messages.
    pub messages: u64,
    /// Elapsed seconds.
    pub seconds: f64,
    /// Acknowledged messages per second.
    pub msgs_per_sec: f64,
    /// Payload megabytes per second.
    pub mb_per_sec: f64,
    /// Median publish-to-acknowledgement latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Throughput divided by JetStream's (0 when JetStream was not run).
    pub ratio_vs_jetstream: f64,
    /// Throughput per CPU core of this machine.
    pub msgs_per_sec_per_core: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// Logical CPUs.
    pub cores: usize,
    /// Body size.
    pub message_size: usize,
    /// Requests in flight.
    pub in_flight: usize,
    /// Rill's async-flush throughput target on this machine (msgs/s).
    pub target_msgs_per_sec: f64,
    /// Target ratio to JetStream.
    pub target_ratio_vs_jetstream: f64,
    /// The cases.
    pub cases: Vec<ProduceCase>,
}

impl ProduceBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.system.clone(),
                    thousands(c.msgs_per_sec),
                    format!("{:.1}", c.mb_per_sec),
                    format!("{:.0}", c.p50_us),
                    format!("{:.0}", c.p99_us),
                    if c.ratio_vs_jetstream > 0.0 { format!("{:.2}", c.ratio_vs_jetstream) } else { "-".into() },
                ]
            })
            .collect();
        let mut out = table(&["system", "msgs/s", "MB/s", "p50 µs", "p99 µs", "× JetStream"], &rows);
        out.push_str(&format!(
            "targets: ≥ {:.1} × JetStream and ≥ {} msgs/s with async flush ({} in flight, {} B messages)\n",
            self.target_ratio_vs_jetstream,
            thousands(self.target_msgs_per_sec),
            self.in_flight,
            self.message_size
        ));
        out
    }
}

/// Runs Rill (async, then sync flush) and JetStream.
pub fn run(opts: &ProduceBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<ProduceBenchReport> {
    if opts.in_flight == 0 || opts.producers == 0 || opts.message_size == 0 {
        return Err(Error::Options { option: "--in-flight/--producers/--size", reason: "must be positive".into() });
    }
    let load = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|source| Error::Io {
        op: "start a runtime in",
        path: opts.dir.clone(),
        source,
    })?;
    let mut cases = Vec::new();
    for sync in [false, true] {
        progress(&format!("rill, {} flush", if sync { "sync" } else { "async" }));
        cases.push(rill_case(opts, sync, &load)?);
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
    if let Some(url) = &opts.nats_url {
        progress(&format!("nats jetstream (file storage) at {url}"));
        let js = load.block_on(nats_case(opts, url))?;
        let js_rate = js.msgs_per_sec;
        for c in &mut cases {
            c.ratio_vs_jetstream = c.msgs_per_sec / js_rate.max(f64::MIN_POSITIVE);
        }
        cases.push(ProduceCase { ratio_vs_jetstream: 1.0, ..js });
    }
    Ok(ProduceBenchReport {
        bench: "produce",
        cores: cores(),
        message_size: opts.message_size,
        in_flight: opts.in_flight,
        target_msgs_per_sec: 150_000.0,
        target_ratio_vs_jetstream: 1.5,
        cases,
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn rill_case(opts: &ProduceBenchOptions, sync: bool, load: &tokio::runtime::Runtime) -> Result<ProduceCase> {
    let dir = opts.dir.join(if sync { "sync" } else { "async" });
    let broker = LocalBroker::start(&dir, sync)?;
    let addr = broker.addr;
    let body = Bytes::from(vec![0x42u8; opts.message_size]);
    let result = load.block_on(async {
        let mut producers = Vec::new();
        for _ in 0..opts.producers {
            producers.push(Producer::connect(ClientConfig::new(addr.to_string())).await.map_err(client_error)?);
        }
        // Create the topic before the clock starts.
        producers[0].send(Message::new("bench", body.clone())).await.map_err(client_error)?;
        let producers = Arc::new(producers);
        drive(opts, move |i| {
            let (producers, body) = (Arc::clone(&producers), body.clone());
            async move {
                let p = &producers[i % producers.len()];
                p.send(Message::new("bench", body)).await.map(|_| ()).map_err(client_error)
            }
        })
        .await
    });
    broker.shutdown()?;
    let (messages, seconds, latencies) = result?;
    Ok(case(if sync { "rill sync flush" } else { "rill async flush" }, opts, messages, seconds, latencies))
}

async fn nats_case(opts: &ProduceBenchOptions, url: &str) -> Result<ProduceCase> {
    let peer = |e: &dyn std::fmt::Display| peer_error(url, e);
    let client = async_nats::connect(url).await.map_err(|e| peer(&e))?;
    let js = async_nats::jetstream::new(client.clone());
    let stream_name = format!("RILLBENCH{}", std::process::id());
    let subject = format!("rillbench.{}", std::process::id());
    let _ = js.delete_stream(&stream_name).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![subject.clone()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| peer(&e))?;
    let mut contexts = Vec::new();
    for _ in 0..opts.producers {
        let c = async_nats::connect(url).await.map_err(|e| peer(&e))?;
        contexts.push(async_nats::jetstream::new(c));
    }
    let contexts = Arc::new(contexts);
    let body = Bytes::from(vec![0x42u8; opts.message_size]);
    let url_owned = url.to_owned();
    let result = drive(opts, move |i| {
        let (contexts, body, subject, url) = (Arc::clone(&contexts), body.clone(), subject.clone(), url_owned.clone());
        async move {
            let js = &contexts[i % contexts.len()];
            let ack = js.publish(subject, body).await.map_err(|e| peer_error(&url, &e))?;
            ack.await.map(|_| ()).map_err(|e| peer_error(&url, &e))
        }
    })
    .await;
    let _ = js.delete_stream(&stream_name).await;
    let (messages, seconds, latencies) = result?;
    Ok(case("nats jetstream (file)", opts, messages, seconds, latencies))
}

/// Keeps `in_flight` publishes going until the message count or the time
/// limit is reached; returns acknowledged count, seconds and latencies (ns).
async fn drive<F, Fut>(opts: &ProduceBenchOptions, publish: F) -> Result<(u64, f64, Vec<u64>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let tickets = Arc::new(AtomicU64::new(0));
    let limit = Duration::from_secs_f64(opts.max_seconds);
    let start = Instant::now();
    let mut workers = Vec::with_capacity(opts.in_flight);
    let publish = Arc::new(publish);
    for w in 0..opts.in_flight {
        let (tickets, publish) = (Arc::clone(&tickets), Arc::clone(&publish));
        let messages = opts.messages;
        // Each worker has one publish in flight at a time.
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed() < limit && tickets.fetch_add(1, Ordering::Relaxed) < messages {
                let t = Instant::now();
                publish(w).await?;
                latencies.push(t.elapsed().as_nanos() as u64);
            }
            Ok::<_, Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        let part = w.await.map_err(|e| Error::Options { option: "workers", reason: e.to_string() })??;
        all.extend(part);
    }
    Ok((all.len() as u64, start.elapsed().as_secs_f64(), all))
}

fn case(system: &str, opts: &ProduceBenchOptions, messages: u64, seconds: f64, mut latencies: Vec<u64>) -> ProduceCase {
    latencies.sort_unstable();
    let pct = |p: f64| percentile_us(&latencies, p);
    let rate = messages as f64 / seconds.max(f64::MIN_POSITIVE);
    ProduceCase {
        system: system.into(),
        messages,
        seconds,
        msgs_per_sec: rate,
        mb_per_sec: rate * opts.message_size as f64 / 1e6,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        ratio_vs_jetstream: 0.0,
        msgs_per_sec_per_core: rate / cores() as f64,
    }
}
