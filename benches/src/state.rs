//! `rill bench state`: keyed state past its memory budget. A dedup step
//! remembers every key of a stream of distinct keys (10 million by
//! default) twice in one run: once within a memory budget, spilling the
//! rest to disk, and once with no budget (all in memory, the anchor). Per
//! case it reports rows/s (wall and per core), the memory the process
//! gained while holding the state, and — to show the spilled state is
//! still there — how many of a sample of repeated keys were caught as
//! duplicates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rill_streams::{Dedup, StateConfig};
use serde::Serialize;

use crate::report::{table, thousands};
use crate::{Error, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct StateBenchOptions {
    /// Distinct keys fed in.
    pub keys: u64,
    /// Memory budget of the spilling case (bytes).
    pub budget: usize,
    /// Rows per batch.
    pub batch: usize,
    /// Upper bound on each case's feeding time.
    pub max_seconds: f64,
    /// Where the spill files go.
    pub dir: std::path::PathBuf,
}

/// One case's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StateCase {
    /// Which case.
    pub case: String,
    /// Distinct keys fed (fewer than asked when the time bound hit).
    pub keys: u64,
    /// Rows per wall-clock second.
    pub rows_per_sec: f64,
    /// Rows per CPU second of the feeding thread.
    pub rows_per_sec_per_core: f64,
    /// Resident memory the process gained holding the state (MiB).
    pub rss_growth_mib: f64,
    /// Memory the store accounts for its in-memory entries (MiB).
    pub state_memory_mib: f64,
    /// Entries in the spill file.
    pub spilled_keys: u64,
    /// Repeated keys probed after the feed.
    pub probed: u64,
    /// Of those, caught as duplicates (must equal `probed`).
    pub duplicates_caught: u64,
    /// Throughput over the in-memory anchor's.
    pub throughput_ratio_vs_in_memory: f64,
    /// Memory growth over the in-memory anchor's.
    pub memory_ratio_vs_in_memory: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StateBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// Memory budget of the spilling case (MiB).
    pub budget_mib: f64,
    /// The cases: spilling first, then the anchor.
    pub cases: Vec<StateCase>,
}

impl StateBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.case.clone(),
                    thousands(c.keys as f64),
                    thousands(c.rows_per_sec),
                    thousands(c.rows_per_sec_per_core),
                    format!("{:.0}", c.rss_growth_mib),
                    format!("{:.0}", c.state_memory_mib),
                    thousands(c.spilled_keys as f64),
                    format!("{}/{}", c.duplicates_caught, c.probed),
                    format!("{:.2}", c.throughput_ratio_vs_in_memory),
                    format!("{:.3}", c.memory_ratio_vs_in_memory),
                ]
            })
            .collect();
        table(
            &[
                "case",
                "keys",
                "rows/s",
                "rows/s/core",
                "RSS growth MiB",
                "state MiB",
                "spilled keys",
                "dups caught",
                "speed vs memory",
                "memory vs memory",
            ],
            &rows,
        )
    }
}

/// Resident and peak resident memory of this process (bytes).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("ts", DataType::Int64, false)]))
}

fn batch(schema: &SchemaRef, ids: std::ops::Range<u64>) -> Result<RecordBatch> {
    let ids: Vec<i64> = ids.map(|i| i as i64).collect();
    // A thousand keys per millisecond of event time.
    let ts: Vec<i64> = ids.iter().map(|i| 1_700_000_000_000 + i / 1000).collect();
    RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(Int64Array::from(ids)), Arc::new(Int64Array::from(ts))])
        .map_err(|e| Error::Workload(e.to_string()))
}

fn workload(e: impl std::fmt::Display) -> Error {
    Error::Workload(e.to_string())
}

struct Measured {
    keys: u64,
    wall: Duration,
    cpu: Duration,
    rss_growth: u64,
    state_memory: usize,
    spilled: u64,
    probed: u64,
    caught: u64,
}

fn case(opts: &StateBenchOptions, budget: usize, progress: &mut dyn FnMut(&str)) -> Result<Measured> {
    let schema = schema();
    let config = StateConfig::new(budget, &opts.dir).map_err(workload)?;
    // A bound of a day: no key expires during the run, all must be remembered.
    let mut dedup = Dedup::new(&schema, &["id"], "ts", 86_400_000).map_err(workload)?.with_state(config);
    let (before, _) = rss();
    let limit = Duration::from_secs_f64(opts.max_seconds);
    let (t0, c0) = (Instant::now(), rill_nexmark::thread_cpu());
    let mut fed = 0u64;
    let mut last_report = Instant::now();
    while fed < opts.keys && t0.elapsed() < limit {
        let n = (opts.batch as u64).min(opts.keys - fed);
        let b = batch(&schema, fed..fed + n)?;
        let kept = dedup.apply(&b).map_err(workload)?;
        if kept.num_rows() as u64 != n {
            return Err(Error::Workload(format!(
                "{} fresh keys of {n} were taken for duplicates",
                n - kept.num_rows() as u64
            )));
        }
        dedup.advance(1_700_000_000_000 + ((fed + n) / 1000) as i64 - 1).map_err(workload)?;
        fed += n;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            progress(&format!("{} keys", thousands(fed as f64)));
        }
    }
    let (wall, cpu) = (t0.elapsed(), rill_nexmark::thread_cpu().saturating_sub(c0));
    let (after, _) = rss();
    // Every 1000th key again: each must be caught as a duplicate.
    let mut probed = 0;
    let mut caught = 0;
    let sample: Vec<u64> = (0..fed).step_by(1000).collect();
    for chunk in sample.chunks(opts.batch.max(1)) {
        let ids: Vec<i64> = chunk.iter().map(|i| *i as i64).collect();
        let ts: Vec<i64> = chunk.iter().map(|i| 1_700_000_000_000 + (*i / 1000) as i64).collect();
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(Int64Array::from(ts))],
        )
        .map_err(workload)?;
        let kept = dedup.apply(&b).map_err(workload)?;
        probed += chunk.len() as u64;
        caught += (chunk.len() - kept.num_rows()) as u64;
    }
    Ok(Measured {
        keys: fed,
        wall,
        cpu,
        rss_growth: after.saturating_sub(before),
        state_memory: dedup.state().memory_bytes(),
        spilled: dedup.state().on_disk(),
        probed,
        caught,
    })
}

/// Runs the benchmark, reporting steps through `progress`.
pub fn run(opts: &StateBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<StateBenchReport> {
    if opts.keys == 0 || opts.keys > 100_000_000 || opts.batch == 0 {
        return Err(Error::Options {
            option: "--keys / --batch",
            reason: "keys must be 1..=100,000,000, batches at least 1 row".into(),
        });
    }
    std::fs::create_dir_all(&opts.dir).map_err(|source| Error::Io { op: "create", path: opts.dir.clone(), source })?;
    let mib = |b: f64| b / (1u64 << 20) as f64;
    progress(&format!("within a budget of {:.0} MiB", mib(opts.budget as f64)));
    // The spilling case first: the anchor's memory, once freed, may stay with the process.
    let spill = case(opts, opts.budget, progress)?;
    progress("all in memory");
    let memory = case(opts, 1 << 40, progress)?;
    let speed = |m: &Measured| m.keys as f64 / m.wall.as_secs_f64().max(1e-9);
    let to_case = |name: String, m: &Measured| StateCase {
        case: name,
        keys: m.keys,
        rows_per_sec: speed(m),
        rows_per_sec_per_core: m.keys as f64 / m.cpu.as_secs_f64().max(1e-9),
        rss_growth_mib: mib(m.rss_growth as f64),
        state_memory_mib: mib(m.state_memory as f64),
        spilled_keys: m.spilled,
        probed: m.probed,
        duplicates_caught: m.caught,
        throughput_ratio_vs_in_memory: speed(m) / speed(&memory).max(1e-9),
        memory_ratio_vs_in_memory: m.rss_growth as f64 / (memory.rss_growth as f64).max(1.0),
    };
    Ok(StateBenchReport {
        bench: "state",
        budget_mib: mib(opts.budget as f64),
        cases: vec![
            to_case(format!("dedup, {:.0} MiB budget, spilling", mib(opts.budget as f64)), &spill),
            to_case("dedup, all in memory (anchor)".into(), &memory),
        ],
    })
}
