//! `rill bench timer`: many delay messages pending at once, then delivered.
//!
//! Schedules `count` messages due over a window that starts after all of
//! them are parked, measures the anonymous memory the process gained while
//! they wait (the wheel keeps entries on disk, so this should stay far
//! below a per-timer object) and, as they arrive, how late each one is
//! against its delivery time. The anchor is the target: p99 lateness within
//! 1 s of the due time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_broker::{Broker, BrokerConfig, Filter, ReceiveRequest};
use rill_proto::v2;
use rill_store::{MetaStore, Store, StoreConfig};
use serde::Serialize;

use crate::report::{table, thousands};
use crate::{Error, Result};

/// Options of the timer benchmark.
#[derive(Debug, Clone)]
pub struct TimerBenchOptions {
    /// Scratch directory (removed afterwards).
    pub dir: std::path::PathBuf,
    /// Delay messages to schedule.
    pub count: u64,
    /// Body size in bytes.
    pub message_size: usize,
    /// Seconds between the first and the last due time.
    pub spread_secs: u64,
    /// Seconds from the start until the first due time (parking must finish first).
    pub lead_secs: u64,
}

/// What the timer benchmark found.
#[derive(Debug, Clone, Serialize)]
pub struct TimerBenchReport {
    /// Messages scheduled.
    pub scheduled: u64,
    /// Messages delivered before the time limit.
    pub delivered: u64,
    /// Parking rate (sends per second).
    pub park_per_sec: f64,
    /// Timers pending once all were parked.
    pub pending_at_peak: u64,
    /// Anonymous memory the process gained between start and peak.
    pub anon_memory_growth_bytes: i64,
    /// That growth per pending timer.
    pub bytes_per_pending_timer: f64,
    /// Delivery lateness quantiles in milliseconds.
    pub late_ms_p50: f64,
    /// 99th percentile.
    pub late_ms_p99: f64,
    /// Worst.
    pub late_ms_max: f64,
    /// Delivered before their due time (must be 0).
    pub early: u64,
    /// p99 lateness over the 1000 ms target (≤ 1 meets it).
    pub ratio_p99_vs_target: f64,
}

impl TimerBenchReport {
    /// The report as a table.
    pub fn to_table(&self) -> String {
        let rows = vec![
            vec!["scheduled".into(), thousands(self.scheduled as f64)],
            vec!["delivered".into(), thousands(self.delivered as f64)],
            vec!["park rate (msgs/s)".into(), thousands(self.park_per_sec)],
            vec!["pending at peak".into(), thousands(self.pending_at_peak as f64)],
            vec!["anon memory growth".into(), format!("{:.1} MiB", self.anon_memory_growth_bytes as f64 / 1048576.0)],
            vec!["bytes per pending timer".into(), format!("{:.1}", self.bytes_per_pending_timer)],
            vec![
                "lateness p50 / p99 / max".into(),
                format!("{:.0} / {:.0} / {:.0} ms", self.late_ms_p50, self.late_ms_p99, self.late_ms_max),
            ],
            vec!["delivered early".into(), self.early.to_string()],
            vec!["p99 vs 1000 ms target".into(), format!("{:.2}", self.ratio_p99_vs_target)],
        ];
        table(&["timer benchmark", "value"], &rows)
    }
}

/// Anonymous resident memory of this process (`RssAnon`), in bytes.
fn anon_rss() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs the benchmark, reporting steps through `progress`.
pub fn run(opts: &TimerBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<TimerBenchReport> {
    if opts.count == 0 || opts.count > 5_000_000 {
        return Err(Error::Options { option: "--count", reason: "between 1 and 5,000,000".into() });
    }
    let io = |op| move |source| Error::Io { op, path: opts.dir.clone(), source };
    std::fs::create_dir_all(&opts.dir).map_err(io("create"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("start a runtime in"))?;
    let result = runtime.block_on(measure(opts, progress));
    let _ = std::fs::remove_dir_all(&opts.dir);
    result
}

async fn measure(opts: &TimerBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<TimerBenchReport> {
    let store = Store::open(StoreConfig::new(opts.dir.join("data")))?;
    let meta = MetaStore::open(opts.dir.join("data/meta"))?;
    let broker = Broker::new(store.clone(), meta, BrokerConfig::default());
    let background = broker.start_background();
    let before = anon_rss();
    let first_due = now_ms() + opts.lead_secs as i64 * 1000;
    let spread_ms = opts.spread_secs as i64 * 1000;
    progress(&format!("parking {} delay messages due over {} s", thousands(opts.count as f64), opts.spread_secs));
    let started = Instant::now();
    let body = bytes::Bytes::from(vec![b'x'; opts.message_size]);
    let mut i = 0u64;
    while i < opts.count {
        let n = (opts.count - i).min(512);
        let batch: Vec<v2::Message> = (i..i + n)
            .map(|k| {
                let due = first_due + (k as i64 * spread_ms) / opts.count as i64;
                v2::Message {
                    topic: Some(v2::Resource { resource_namespace: String::new(), name: "timers".into() }),
                    system_properties: Some(v2::SystemProperties {
                        message_id: format!("T{k:010}"),
                        delivery_timestamp: Some(rill_proto::time::timestamp_from_millis(due)),
                        ..Default::default()
                    }),
                    body: body.clone(),
                    ..Default::default()
                }
            })
            .collect();
        for r in broker.send_batch(&batch).await {
            r.map_err(|e| Error::Options { option: "send", reason: e.message })?;
        }
        i += n;
    }
    let park_secs = started.elapsed().as_secs_f64();
    // Let the timer loop take in every parked message.
    let settle = Instant::now();
    while broker.metrics().timers_pending() < opts.count && settle.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = broker.metrics().timers_pending();
    let growth = anon_rss() - before;
    progress(&format!("{} pending; consuming as they fall due", thousands(pending as f64)));

    let late = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(opts.count as usize)));
    let limit = Instant::now() + Duration::from_secs(opts.lead_secs + opts.spread_secs + 30);
    let mut tasks = Vec::new();
    for c in 0..2 {
        let (broker, late) = (Arc::clone(&broker), Arc::clone(&late));
        let count = opts.count as usize;
        tasks.push(tokio::spawn(async move {
            let req = ReceiveRequest {
                group: "bench".into(),
                client_id: format!("c{c}"),
                topic: "timers".into(),
                namespace: String::new(),
                queue: None,
                filter: Filter::All,
                batch: 256,
                invisible: Duration::from_secs(600),
                long_polling: Duration::from_secs(1),
            };
            while late.lock().len() < count && Instant::now() < limit {
                let Ok(got) = broker.receive(&req).await else { break };
                let arrived = now_ms();
                let mut mine = Vec::with_capacity(got.len());
                for m in &got {
                    let sys = m.system_properties.as_ref();
                    let due = sys
                        .and_then(|s| s.delivery_timestamp.as_ref())
                        .and_then(|t| rill_proto::time::timestamp_to_millis(t).ok())
                        .unwrap_or(arrived);
                    mine.push(arrived - due);
                    if let Some(h) = sys.and_then(|s| s.receipt_handle.as_deref()) {
                        let _ = broker.ack("bench", &req.client_id, "timers", h);
                    }
                }
                late.lock().extend(mine);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    broker.stop_serving();
    background.finish().await;
    store.close()?;
    let mut late = std::mem::take(&mut *late.lock());
    late.sort_unstable();
    let q = |p: f64| {
        late.get(((late.len() as f64 * p) as usize).min(late.len().saturating_sub(1))).copied().unwrap_or(0) as f64
    };
    let p99 = q(0.99);
    Ok(TimerBenchReport {
        scheduled: opts.count,
        delivered: late.len() as u64,
        park_per_sec: opts.count as f64 / park_secs.max(1e-9),
        pending_at_peak: pending,
        anon_memory_growth_bytes: growth,
        bytes_per_pending_timer: growth as f64 / pending.max(1) as f64,
        late_ms_p50: q(0.5),
        late_ms_p99: p99,
        late_ms_max: late.last().copied().unwrap_or(0) as f64,
        early: late.iter().filter(|l| **l < 0).count() as u64,
        ratio_p99_vs_target: p99 / 1000.0,
    })
}
