//! `rill bench state`: keyed state past its memory budget. A stateful
//! step holds one entry per key of a stream of distinct keys (10 million
//! by default) twice in one run: once within a memory budget, spilling the
//! rest to disk, and once with no budget (all in memory, the anchor). The
//! step is a dedup (every key remembered) or a window aggregate (one
//! group per key in an hour's tumbling window that closes after the
//! feed). Per case it reports rows/s (wall and per core), the memory the
//! process gained while holding the state, and — to show the spilled state
//! is still there — a check: for dedup how many of a sample of repeated
//! keys were caught as duplicates, for the window how many keys' results
//! came out right when the window fired.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rill_streams::agg;
use rill_streams::{Dedup, StateConfig, WindowAggregate, WindowAggregateConfig, Windows};
use rill_time::WindowSpec;
use serde::Serialize;

use crate::report::{table, thousands};
use crate::{Error, Result};

/// The stateful step measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateOperator {
    /// Deduplication remembering every key.
    Dedup,
    /// A keyed tumbling-window aggregate (count and sum per key).
    Window,
}

impl StateOperator {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            StateOperator::Dedup => "dedup",
            StateOperator::Window => "window",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StateBenchOptions {
    /// The step holding the state.
    pub operator: StateOperator,
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
    /// Keys checked after the feed: a sample of repeats for dedup, every
    /// key's window result for the window aggregate.
    pub checked: u64,
    /// Of those, right (caught as duplicates; count and sum as fed): must
    /// equal `checked`.
    pub correct: u64,
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
    /// The step holding the state.
    pub operator: StateOperator,
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
                    format!("{}/{}", c.correct, c.checked),
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
                "checked right",
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
    checked: u64,
    correct: u64,
}

/// Feeds batches of fresh keys to `step` (given each batch and the keys
/// fed with it) until all keys are in or the time bound hits; returns the
/// keys fed, wall and CPU time.
fn feed(
    opts: &StateBenchOptions,
    schema: &SchemaRef,
    progress: &mut dyn FnMut(&str),
    step: &mut dyn FnMut(&RecordBatch, u64) -> Result<()>,
) -> Result<(u64, Duration, Duration)> {
    let limit = Duration::from_secs_f64(opts.max_seconds);
    let (t0, c0) = (Instant::now(), rill_nexmark::thread_cpu());
    let mut fed = 0u64;
    let mut last_report = Instant::now();
    while fed < opts.keys && t0.elapsed() < limit {
        let n = (opts.batch as u64).min(opts.keys - fed);
        step(&batch(schema, fed..fed + n)?, fed + n)?;
        fed += n;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            progress(&format!("{} keys", thousands(fed as f64)));
        }
    }
    Ok((fed, t0.elapsed(), rill_nexmark::thread_cpu().saturating_sub(c0)))
}

fn case(opts: &StateBenchOptions, budget: usize, progress: &mut dyn FnMut(&str)) -> Result<Measured> {
    let config = StateConfig::new(budget, &opts.dir).map_err(workload)?;
    match opts.operator {
        StateOperator::Dedup => dedup_case(opts, config, progress),
        StateOperator::Window => window_case(opts, config, progress),
    }
}

fn dedup_case(opts: &StateBenchOptions, config: StateConfig, progress: &mut dyn FnMut(&str)) -> Result<Measured> {
    let schema = schema();
    // A bound of a day: no key expires during the run, all must be remembered.
    let mut dedup = Dedup::new(&schema, &["id"], "ts", 86_400_000).map_err(workload)?.with_state(config);
    let (before, _) = rss();
    let (fed, wall, cpu) = feed(opts, &schema, progress, &mut |b, through| {
        let kept = dedup.apply(b).map_err(workload)?;
        if kept.num_rows() != b.num_rows() {
            return Err(Error::Workload(format!(
                "{} fresh keys of {} were taken for duplicates",
                b.num_rows() - kept.num_rows(),
                b.num_rows()
            )));
        }
        dedup.advance(1_700_000_000_000 + (through / 1000) as i64 - 1).map_err(workload)
    })?;
    let (after, _) = rss();
    // Every 1000th key again: each must be caught as a duplicate.
    let mut checked = 0;
    let mut correct = 0;
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
        checked += chunk.len() as u64;
        correct += (chunk.len() - kept.num_rows()) as u64;
    }
    Ok(Measured {
        keys: fed,
        wall,
        cpu,
        rss_growth: after.saturating_sub(before),
        state_memory: dedup.state().memory_bytes(),
        spilled: dedup.state().on_disk(),
        checked,
        correct,
    })
}

fn window_case(opts: &StateBenchOptions, config: StateConfig, progress: &mut dyn FnMut(&str)) -> Result<Measured> {
    let schema = schema();
    let hour = WindowSpec::tumbling(3_600_000).map_err(workload)?;
    let aggregate = WindowAggregateConfig {
        time_column: "ts".into(),
        keys: vec!["id".into()],
        windows: Windows::Time(hour),
        aggregates: vec![agg::count("id").alias("n"), agg::sum("id").alias("total")],
        allowed_lateness: 0,
        early_fire: false,
    };
    let mut window = WindowAggregate::new(Arc::clone(&schema), aggregate).map_err(workload)?.with_state(config);
    let (before, _) = rss();
    let (fed, wall, cpu) = feed(opts, &schema, progress, &mut |b, through| {
        window.process(b).map_err(workload)?;
        // Event time moves, but not past the hour: nothing fires during the feed.
        window.advance(1_700_000_000_000 + (through / 1000) as i64 - 1).map_err(workload)?;
        Ok(())
    })?;
    let (after, _) = rss();
    let (state_memory, spilled) = (window.memory_bytes(), window.spilled_groups());
    progress("firing the window");
    // The window fires: every key once, counted once, its sum its own id.
    let mut seen = vec![false; fed as usize];
    let mut correct = 0;
    for b in window.advance_batches(i64::MAX).map_err(workload)? {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let n = b.column(4).as_primitive::<Int64Type>();
        let total = b.column(5).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let id = ids.value(r);
            let fresh =
                usize::try_from(id).ok().and_then(|i| seen.get_mut(i)).is_some_and(|s| !std::mem::replace(s, true));
            if fresh && n.value(r) == 1 && total.value(r) == id {
                correct += 1;
            }
        }
    }
    Ok(Measured {
        keys: fed,
        wall,
        cpu,
        rss_growth: after.saturating_sub(before),
        state_memory,
        spilled,
        checked: fed,
        correct,
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
        checked: m.checked,
        correct: m.correct,
        throughput_ratio_vs_in_memory: speed(m) / speed(&memory).max(1e-9),
        memory_ratio_vs_in_memory: m.rss_growth as f64 / (memory.rss_growth as f64).max(1.0),
    };
    let op = opts.operator.name();
    Ok(StateBenchReport {
        bench: "state",
        operator: opts.operator,
        budget_mib: mib(opts.budget as f64),
        cases: vec![
            to_case(format!("{op}, {:.0} MiB budget, spilling", mib(opts.budget as f64)), &spill),
            to_case(format!("{op}, all in memory (anchor)"), &memory),
        ],
    })
}
