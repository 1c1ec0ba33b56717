//! `rill bench store`: CommitLog append throughput against the raw limits
//! of the same disk, measured in one run.
//!
//! Cases: 1 KiB messages (by default) from 1, 4 and 16 concurrent writers,
//! with async flush (compared with plain sequential `write(2)` of the same
//! sizes into the page cache) and with sync flush (compared with
//! `write` + `fdatasync` of batches of as many messages as there are
//! writers, which is what group commit can at best turn them into).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_common::TopicName;
use rill_store::{FlushConfig, MessageToStore, Store, StoreConfig};

/// The store's default async flush interval, mirrored by one raw anchor.
const ASYNC_FLUSH_MS: u64 = 500;
/// Slices each case is cut into, alternating with its anchor, so that both
/// see the machine alike: the disk's burst allowance (fdatasync is faster in
/// a series' first seconds), write-back of earlier cases, noisy neighbours.
const ROUNDS: u32 = 5;
use serde::Serialize;

use crate::report::{percentile_us, table, thousands};
use crate::{Error, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct StoreBenchOptions {
    /// Scratch directory on the disk to measure; removed afterwards.
    pub dir: PathBuf,
    /// Body size of each message in bytes.
    pub message_size: usize,
    /// Messages per async-flush case (and bytes of the raw write: the same total).
    pub async_messages: u64,
    /// At most this many messages per sync-flush case (usually the time limit ends it first).
    pub sync_messages: u64,
    /// Concurrent writer counts to try.
    pub writers: Vec<usize>,
    /// Time limit per case, in seconds.
    pub max_seconds: f64,
}

impl Default for StoreBenchOptions {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir().join(format!("rill-bench-store-{}", std::process::id())),
            message_size: 1024,
            async_messages: 1_000_000,
            sync_messages: 1_000_000,
            writers: vec![1, 4, 16],
            max_seconds: 5.0,
        }
    }
}

/// A raw-disk measurement: the anchor of a store case.
#[derive(Debug, Clone, Serialize)]
pub struct RawResult {
    /// `raw_write_vs_<W>_writers`, `raw_write_fdatasync` or `raw_write_fdatasync_every_<P>ms`.
    pub name: String,
    /// Messages per `write` (and per `fdatasync` for the synced variant).
    pub batch_messages: usize,
    /// Messages written.
    pub messages: u64,
    /// Elapsed seconds.
    pub seconds: f64,
    /// Message-equivalents per second.
    pub msgs_per_sec: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// `fdatasync` calls per second (0 for the unsynced variant).
    pub fsyncs_per_sec: f64,
}

/// One store case with its anchor and ratio.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// `async` or `sync`.
    pub flush: String,
    /// Concurrent writers.
    pub writers: usize,
    /// Messages acknowledged.
    pub messages: u64,
    /// Elapsed seconds.
    pub seconds: f64,
    /// Acknowledged messages per second.
    pub msgs_per_sec: f64,
    /// Payload megabytes per second.
    pub mb_per_sec: f64,
    /// Median append latency in microseconds.
    pub p50_us: f64,
    /// 99th percentile append latency in microseconds.
    pub p99_us: f64,
    /// Name of the raw measurement this case is compared with.
    pub anchor: String,
    /// The anchor's megabytes per second.
    pub anchor_mb_per_sec: f64,
    /// `mb_per_sec / anchor_mb_per_sec`.
    pub ratio_vs_raw: f64,
    /// Async cases: ratio to raw writes flushed on the store's async schedule (0 otherwise).
    pub ratio_vs_raw_same_flush: f64,
    /// The target ratio from the issue (0.7 async, 0.8 sync with 16 writers; 0 = none).
    pub target_ratio: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// Logical CPUs of the machine.
    pub cores: usize,
    /// Message body size.
    pub message_size: usize,
    /// Raw disk measurements.
    pub raw: Vec<RawResult>,
    /// Store measurements.
    pub cases: Vec<CaseResult>,
}

impl StoreBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let mut rows = Vec::new();
        for r in &self.raw {
            rows.push(vec![
                r.name.clone(),
                format!("batch {}", r.batch_messages),
                thousands(r.msgs_per_sec),
                format!("{:.1}", r.mb_per_sec),
                "-".into(),
                "-".into(),
                "anchor".into(),
            ]);
        }
        for c in &self.cases {
            let target =
                if c.target_ratio > 0.0 { format!(" (target ≥ {:.2})", c.target_ratio) } else { String::new() };
            let same = if c.ratio_vs_raw_same_flush > 0.0 {
                format!("; {:.2} × raw_write_fdatasync_every_{ASYNC_FLUSH_MS}ms", c.ratio_vs_raw_same_flush)
            } else {
                String::new()
            };
            rows.push(vec![
                format!("rill {} flush", c.flush),
                format!("{} writers", c.writers),
                thousands(c.msgs_per_sec),
                format!("{:.1}", c.mb_per_sec),
                micros(c.p50_us),
                micros(c.p99_us),
                format!("{:.2} × {}{target}{same}", c.ratio_vs_raw, c.anchor),
            ]);
        }
        table(&["case", "concurrency", "msgs/s", "MB/s", "p50 µs", "p99 µs", "ratio"], &rows)
    }
}

/// Microseconds with a decimal below 10 µs, where whole numbers say little.
fn micros(us: f64) -> String {
    if us < 10.0 { format!("{us:.1}") } else { format!("{us:.0}") }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// Runs every case; `progress` receives one line per step.
pub fn run(opts: &StoreBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<StoreBenchReport> {
    if opts.message_size == 0 || opts.writers.is_empty() || opts.writers.contains(&0) {
        return Err(Error::Options { option: "--size/--writers", reason: "must be positive".into() });
    }
    std::fs::create_dir_all(&opts.dir).map_err(io("create", &opts.dir))?;
    let result = run_cases(opts, progress);
    let _ = std::fs::remove_dir_all(&opts.dir);
    result
}

fn run_cases(opts: &StoreBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<StoreBenchReport> {
    let limit = Duration::from_secs_f64(opts.max_seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("start a runtime in", &opts.dir))?;
    let mut raw = Vec::new();
    let mut cases = Vec::new();
    // Each store case runs right after its anchor, so both see the disk in
    // the same state (fdatasync is much faster in its first seconds). The
    // sync cases come first: they write little, while the async cases
    // leave gigabytes to write back and discard that would slow them.
    for &w in &opts.writers {
        progress(&format!("sync flush, {w} writer(s), interleaved with raw write + fdatasync of {w} message(s)"));
        let mut anchor = RawSeq::open(&opts.dir, opts.message_size, w, true, opts.sync_messages)?;
        let case = runtime.block_on(store_case(opts, true, w, opts.sync_messages, limit, ROUNDS, &mut |slice| {
            anchor.run(slice, opts.sync_messages / u64::from(ROUNDS))
        }))?;
        let anchor = anchor.finish()?;
        raw.push(anchor.clone());
        let target = if w >= 16 { 0.8 } else { 0.0 };
        cases.push(compare(case, format!("raw_write_fdatasync_batch_{w}"), anchor.mb_per_sec, target));
        clean_page_cache();
    }
    // The store's async flush writes back every 500 ms while appending; the
    // page-cache-only anchor defers all of that past the measurement, so a
    // second reference flushes on the same schedule.
    let period = Duration::from_millis(ASYNC_FLUSH_MS);
    progress(&format!("raw sequential write, fdatasync every {ASYNC_FLUSH_MS} ms (best of two)"));
    let same_flush =
        best_of_two(|| raw_write_flushed_every(&opts.dir, opts.message_size, opts.async_messages, limit, period))?;
    raw.push(same_flush.clone());
    clean_page_cache();
    for &w in &opts.writers {
        // Page-cache writes swing with what the machine and the disk are
        // doing; slices alternating with the anchor see the same swings.
        progress(&format!("rill store, async flush, {w} writer(s), interleaved with raw sequential writes"));
        let mut anchor = RawSeq::open(&opts.dir, opts.message_size, 1, false, opts.async_messages)?;
        let case = runtime.block_on(store_case(opts, false, w, opts.async_messages, limit, ROUNDS, &mut |slice| {
            anchor.run(slice, opts.async_messages / u64::from(ROUNDS))
        }))?;
        let anchor = RawResult { name: format!("raw_write_vs_{w}_writers"), ..anchor.finish()? };
        raw.push(anchor.clone());
        let case = CaseResult {
            ratio_vs_raw_same_flush: case.mb_per_sec / same_flush.mb_per_sec.max(f64::MIN_POSITIVE),
            ..case
        };
        cases.push(compare(case, anchor.name.clone(), anchor.mb_per_sec, 0.7));
        clean_page_cache();
    }
    Ok(StoreBenchReport {
        bench: "store",
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        message_size: opts.message_size,
        raw,
        cases,
    })
}

fn best_of_two(mut run: impl FnMut() -> Result<RawResult>) -> Result<RawResult> {
    let a = run()?;
    let b = run()?;
    Ok(if b.mb_per_sec > a.mb_per_sec { b } else { a })
}

fn compare(case: CaseResult, anchor: String, anchor_mb: f64, target_ratio: f64) -> CaseResult {
    let ratio = if anchor_mb > 0.0 { case.mb_per_sec / anchor_mb } else { 0.0 };
    CaseResult { anchor, anchor_mb_per_sec: anchor_mb, ratio_vs_raw: ratio, target_ratio, ..case }
}

/// Writes dirty pages out so each case starts from the same state.
fn clean_page_cache() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Sequential writes of `size`-byte messages, with `fdatasync` from a second
/// thread every `period`, like the store's async flush.
fn raw_write_flushed_every(
    dir: &Path,
    size: usize,
    messages: u64,
    limit: Duration,
    period: Duration,
) -> Result<RawResult> {
    let path = dir.join("raw.bin");
    let file = create_scratch(&path)?;
    let chunk = vec![0x5Au8; size];
    let start = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (file, done) = (&file, &done);
    let (written, syncs) = std::thread::scope(|scope| {
        let background = scope.spawn(move || {
            let mut n = 0u64;
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(period);
                if file.sync_data().is_ok() {
                    n += 1;
                }
            }
            n
        });
        let run = || -> Result<(u64, u64)> {
            let (mut written, mut pos) = (0u64, 0u64);
            while written < messages && start.elapsed() < limit {
                file.write_all_at(&chunk, pos).map_err(io("write", &path))?;
                pos += chunk.len() as u64;
                written += 1;
            }
            Ok((written, 0))
        };
        let result = run();
        done.store(true, Ordering::Release);
        let extra = background.join().unwrap_or(0);
        result.map(|(w, s)| (w, s + extra))
    })?;
    let seconds = start.elapsed().as_secs_f64();

    std::fs::remove_file(&path).map_err(io("remove", &path))?;
    clean_page_cache();
    Ok(RawResult {
        name: format!("raw_write_fdatasync_every_{}ms", period.as_millis()),
        batch_messages: 1,
        messages: written,
        seconds,
        msgs_per_sec: written as f64 / seconds,
        mb_per_sec: (written * size as u64) as f64 / seconds / 1e6,
        fsyncs_per_sec: syncs as f64 / seconds,
    })
}

/// Sequential writes of `batch` messages at a time, each followed by
/// `fdatasync` when `fsync` is set, in slices of time that interleave with
/// the store's.
struct RawSeq {
    path: PathBuf,
    file: File,
    chunk: Vec<u8>,
    batch: usize,
    fsync: bool,
    pos: u64,
    written: u64,
    syncs: u64,
    seconds: f64,
}

impl RawSeq {
    fn open(dir: &Path, size: usize, batch: usize, fsync: bool, max_messages: u64) -> Result<Self> {
        let path = dir.join(format!("raw-{}-{batch}.bin", if fsync { "sync" } else { "write" }));
        let file = create_scratch(&path)?;
        // Synced writes reserve space up front, as the store does (without it
        // every fdatasync also journals the file's growth). Plain writes
        // append to an empty file, their fastest form: the higher bar.
        if fsync {
            preallocate(&file, max_messages * size as u64).map_err(io("reserve space for", &path))?;
        }
        Ok(Self {
            path,
            file,
            chunk: vec![0x5Au8; size * batch],
            batch,
            fsync,
            pos: 0,
            written: 0,
            syncs: 0,
            seconds: 0.0,
        })
    }

    /// Writes for `slice`, or `max_messages` messages if that comes first.
    fn run(&mut self, slice: Duration, max_messages: u64) -> Result<()> {
        let start = Instant::now();
        let mut n = 0u64;
        while n + self.batch as u64 <= max_messages && start.elapsed() < slice {
            self.file.write_all_at(&self.chunk, self.pos).map_err(io("write", &self.path))?;
            if self.fsync {
                self.file.sync_data().map_err(io("fdatasync", &self.path))?;
                self.syncs += 1;
            }
            self.pos += self.chunk.len() as u64;
            n += self.batch as u64;
        }
        self.written += n;
        self.seconds += start.elapsed().as_secs_f64();
        Ok(())
    }

    fn finish(self) -> Result<RawResult> {
        std::fs::remove_file(&self.path).map_err(io("remove", &self.path))?;
        let size = self.chunk.len() as f64 / self.batch as f64;
        let seconds = self.seconds.max(f64::MIN_POSITIVE);
        Ok(RawResult {
            name: if self.fsync { "raw_write_fdatasync".into() } else { "raw_write".into() },
            batch_messages: self.batch,
            messages: self.written,
            seconds: self.seconds,
            msgs_per_sec: self.written as f64 / seconds,
            mb_per_sec: self.written as f64 * size / seconds / 1e6,
            fsyncs_per_sec: self.syncs as f64 / seconds,
        })
    }
}

/// Creates (or empties) a scratch file for a raw measurement.
fn create_scratch(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).map_err(io("create", path))
}

fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscall on an owned descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::from_raw_os_error(rc)) }
}

/// Runs `writers` concurrent appenders for `limit` or `messages`, split into
/// `rounds` slices; `before_round` runs before each slice (the interleaved anchor).
async fn store_case(
    opts: &StoreBenchOptions,
    sync: bool,
    writers: usize,
    messages: u64,
    limit: Duration,
    rounds: u32,
    before_round: &mut dyn FnMut(Duration) -> Result<()>,
) -> Result<CaseResult> {
    let dir = opts.dir.join(format!("store-{}-{writers}", if sync { "sync" } else { "async" }));
    let mut config = StoreConfig::new(&dir);
    if sync {
        config.flush = FlushConfig::Sync {};
    }
    let store = Store::open(config)?;
    let topic = TopicName::new("bench").map_err(rill_store::Error::from)?;
    let body = Bytes::from(vec![0xA5u8; opts.message_size]);
    let slice = limit / rounds.max(1);
    let per_round = (messages / u64::from(rounds.max(1))).max(1);
    let mut latencies = Vec::new();
    let mut seconds = 0.0;
    for _ in 0..rounds.max(1) {
        before_round(slice)?;
        let tickets = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(writers);
        for w in 0..writers {
            let (store, topic, body, tickets) = (store.clone(), topic.clone(), body.clone(), Arc::clone(&tickets));
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while start.elapsed() < slice && tickets.fetch_add(1, Ordering::Relaxed) < per_round {
                    let t = Instant::now();
                    store.append(MessageToStore::new(topic.clone(), (w % 8) as u32, body.clone())).await?;
                    latencies.push(t.elapsed().as_nanos() as u64);
                }
                Ok::<_, rill_store::Error>(latencies)
            }));
        }
        for t in tasks {
            let part = t
                .await
                .map_err(|e| Error::Options { option: "writers", reason: format!("writer task failed: {e}") })??;
            latencies.extend(part);
        }
        seconds += start.elapsed().as_secs_f64();
    }
    store.close()?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort_unstable();
    let pct = |p: f64| percentile_us(&latencies, p);
    let n = latencies.len() as u64;
    Ok(CaseResult {
        flush: if sync { "sync".into() } else { "async".into() },
        writers,
        messages: n,
        seconds,
        msgs_per_sec: n as f64 / seconds,
        mb_per_sec: (n * opts.message_size as u64) as f64 / seconds / 1e6,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        anchor: String::new(),
        anchor_mb_per_sec: 0.0,
        ratio_vs_raw: 0.0,
        ratio_vs_raw_same_flush: 0.0,
        target_ratio: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny run: checks the plumbing and that every figure is filled in,
    /// not any speed.
    #[test]
    fn a_small_run_reports_every_case_with_ratios() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreBenchOptions {
            dir: dir.path().join("b"),
            message_size: 256,
            async_messages: 2_000,
            sync_messages: 200,
            writers: vec![1, 4],
            max_seconds: 5.0,
        };
        let mut steps = 0;
        let report = run(&opts, &mut |_| steps += 1).unwrap();
        assert_eq!(report.cases.len(), 4);
        assert_eq!(report.raw.len(), 5);
        assert_eq!(steps, 5);
        let first_async = report.cases.iter().find(|c| c.flush == "async").unwrap();
        assert!(first_async.ratio_vs_raw_same_flush > 0.0);
        assert_eq!(first_async.messages, 2_000);
        for c in &report.cases {
            assert!(c.messages > 0 && c.msgs_per_sec > 0.0 && c.ratio_vs_raw > 0.0, "{c:?}");
            assert!(c.p99_us >= c.p50_us);
        }
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["cases"][3]["ratio_vs_raw"].as_f64().unwrap() > 0.0);
        assert!(report.to_table().contains("rill sync flush"));
        assert!(!opts.dir.exists(), "scratch directory is removed");
    }
}
