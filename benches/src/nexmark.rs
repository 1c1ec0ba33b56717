//! `rill bench nexmark`: the Nexmark queries on the streams runtime, fed
//! straight from the generator, one query after another in one run.
//!
//! Per query it reports events per second of CPU time (events/s/core: the
//! job runs on one thread, so this is what one core sustains) with the
//! generator counted, as in the Nexmark project's Flink runs where the
//! generator is the job's source; the same for the dataflow alone;
//! wall-clock throughput; the processing time of a chunk (p50/p99: how long
//! a micro-batch waits); and the largest state held. The first is set
//! beside Flink's per-core figure from the Nexmark project's baseline where
//! one exists, and beside the target (1M events/s/core for stateless
//! queries, 200k for windowed ones).

use std::time::Duration;

use rill_nexmark::{GeneratorConfig, Query};
use serde::Serialize;

use crate::report::{table, thousands};
use crate::{Error, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct NexmarkBenchOptions {
    /// The queries, in order.
    pub queries: Vec<Query>,
    /// Events per query.
    pub events: u64,
    /// Events per chunk (micro-batch).
    pub chunk: u64,
    /// Event-time disorder of the input (ms).
    pub disorder: i64,
    /// Also run each query's SQL job file (`examples/nexmark/qN.sql`) and compare.
    pub sql: bool,
}

/// Flink's events/s per core from the Nexmark project's baseline.
pub fn flink_per_core(q: Query) -> Option<f64> {
    match q {
        Query::Q0 => Some(155_000.0),
        Query::Q2 => Some(175_000.0),
        Query::Q5 => Some(22_000.0),
        Query::Q7 => Some(12_000.0),
        Query::Q8 => Some(146_000.0),
        _ => None,
    }
}

/// One query's figures.
#[derive(Debug, Clone, Serialize)]
pub struct NexmarkCase {
    /// The query.
    pub query: &'static str,
    /// Whether it keeps state.
    pub stateful: bool,
    /// Events fed in.
    pub events: u64,
    /// Result rows.
    pub results: u64,
    /// CPU seconds the dataflow spent processing.
    pub process_cpu_secs: f64,
    /// CPU seconds generating the events.
    pub generate_cpu_secs: f64,
    /// Events per CPU second, generator and dataflow (Flink's figures count their generator too).
    pub events_per_sec_per_core: f64,
    /// Events per CPU second of the dataflow alone.
    pub dataflow_events_per_sec_per_core: f64,
    /// Events per wall-clock second, generation included.
    pub events_per_sec_wall: f64,
    /// Processing time of a chunk, median (ms).
    pub chunk_p50_ms: f64,
    /// Processing time of a chunk, 99th percentile (ms).
    pub chunk_p99_ms: f64,
    /// Largest state held (rows or keys).
    pub peak_state: usize,
    /// Flink's per-core figure, where the baseline has one.
    pub flink_events_per_sec_per_core: Option<f64>,
    /// Ours over Flink's.
    pub ratio_vs_flink: Option<f64>,
    /// The target per core.
    pub target_per_core: f64,
    /// Ours over the target.
    pub ratio_vs_target: f64,
    /// The SQL job file's events per CPU second, generator and dataflow (with `--sql`).
    pub sql_events_per_sec_per_core: Option<f64>,
    /// The SQL job file's events per CPU second of the dataflow alone.
    pub sql_dataflow_events_per_sec_per_core: Option<f64>,
    /// The SQL job's dataflow throughput over the DSL job's (the target is at least 0.9).
    pub ratio_sql_vs_dsl: Option<f64>,
    /// The same with the generator counted (the headline figures' basis).
    pub ratio_sql_vs_dsl_with_generator: Option<f64>,
    /// Result rows of the SQL job.
    pub sql_results: Option<u64>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct NexmarkBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// Events per chunk.
    pub chunk: u64,
    /// Events per CPU second the generator itself sustains (not counted above).
    pub generator_events_per_sec_per_core: f64,
    /// The queries.
    pub cases: Vec<NexmarkCase>,
}

impl NexmarkBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.query.to_owned(),
                    thousands(c.events as f64),
                    thousands(c.results as f64),
                    thousands(c.events_per_sec_per_core),
                    thousands(c.dataflow_events_per_sec_per_core),
                    thousands(c.events_per_sec_wall),
                    format!("{:.2} / {:.2}", c.chunk_p50_ms, c.chunk_p99_ms),
                    thousands(c.peak_state as f64),
                    c.flink_events_per_sec_per_core.map_or("-".into(), thousands),
                    c.ratio_vs_flink.map_or("-".into(), |r| format!("{r:.1}")),
                    format!("{:.2} (of {})", c.ratio_vs_target, thousands(c.target_per_core)),
                ]
            })
            .collect();
        if self.cases.iter().any(|c| c.ratio_sql_vs_dsl.is_some()) {
            return self.sql_table();
        }
        let mut out = table(
            &[
                "query",
                "events",
                "results",
                "events/s/core",
                "dataflow only /core",
                "events/s wall",
                "chunk p50/p99 ms",
                "peak state",
                "Flink /core",
                "vs Flink",
                "vs target",
            ],
            &rows,
        );
        out.push_str(&format!(
            "events/s/core counts the generator (the job's source) and the dataflow; generator alone: {} events/s/core; chunks of {} events\n",
            thousands(self.generator_events_per_sec_per_core),
            thousands(self.chunk as f64)
        ));
        out
    }

    /// The DSL and SQL versions side by side.
    fn sql_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                let opt = |v: Option<f64>| v.map_or("-".into(), thousands);
                vec![
                    c.query.to_owned(),
                    thousands(c.events as f64),
                    format!("{} / {}", thousands(c.results as f64), opt(c.sql_results.map(|r| r as f64))),
                    thousands(c.dataflow_events_per_sec_per_core),
                    opt(c.sql_dataflow_events_per_sec_per_core),
                    c.ratio_sql_vs_dsl.map_or("-".into(), |r| format!("{r:.2}")),
                    thousands(c.events_per_sec_per_core),
                    opt(c.sql_events_per_sec_per_core),
                    c.ratio_sql_vs_dsl_with_generator.map_or("-".into(), |r| format!("{r:.2}")),
                ]
            })
            .collect();
        let mut out = table(
            &[
                "query",
                "events",
                "results DSL / SQL",
                "DSL dataflow /core",
                "SQL dataflow /core",
                "SQL vs DSL",
                "DSL with generator /core",
                "SQL with generator /core",
                "SQL vs DSL with generator",
            ],
            &rows,
        );
        out.push_str(
            "SQL vs DSL compares the dataflows alone (events per CPU second), the median of 3 alternating rounds each; \
             the target is at least 0.90\n",
        );
        out
    }
}

/// Rounds of each version with `--sql`.
const SQL_ROUNDS: usize = 3;

/// The run whose processing CPU time is the median.
fn median(mut runs: Vec<rill_nexmark::Run>) -> rill_nexmark::Run {
    runs.sort_by_key(|r| r.process_cpu);
    runs.swap_remove(runs.len() / 2)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the benchmark, reporting steps through `progress`.
pub fn run(opts: &NexmarkBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<NexmarkBenchReport> {
    if opts.events == 0 || opts.events > 100_000_000 || opts.chunk == 0 {
        return Err(Error::Options {
            option: "--events / --chunk",
            reason: "events must be 1..=100,000,000 and chunks at least 1 event".into(),
        });
    }
    let mut cases = Vec::new();
    let (mut generated, mut generate_cpu) = (0u64, Duration::ZERO);
    for q in &opts.queries {
        progress(&format!("{} over {} events", q.name(), thousands(opts.events as f64)));
        let config = GeneratorConfig {
            events: opts.events,
            chunk: opts.chunk,
            disorder: opts.disorder,
            // Event time runs at the standard 10k events/s.
            ..GeneratorConfig::default()
        };
        let workload = |e: rill_nexmark::Error| Error::Workload(e.to_string());
        // With --sql, the two versions take turns, three rounds, and the
        // median run of each counts (one machine's noise is that large).
        let rounds = if opts.sql { SQL_ROUNDS } else { 1 };
        let (mut dsl_runs, mut sql_runs) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            dsl_runs.push(rill_nexmark::run(*q, config).map_err(workload)?);
            if opts.sql {
                let file = rill_nexmark::sql::job_file(*q).0;
                progress(&format!("{} as SQL ({file}), round {} of {rounds}", q.name(), round + 1));
                sql_runs.push(rill_nexmark::sql::run_sql(*q, config).map_err(workload)?);
            }
        }
        let run = median(dsl_runs);
        generated += run.events;
        generate_cpu += run.generate_cpu;
        let cpu = run.process_cpu.as_secs_f64().max(1e-9);
        let gen_cpu = run.generate_cpu.as_secs_f64();
        let per_core = run.events as f64 / (cpu + gen_cpu);
        let pick = |p: f64| {
            let l = &run.chunk_latencies;
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().map_or(0.0, ms)
        };
        let sql = (!sql_runs.is_empty()).then(|| median(sql_runs));
        let sql_cpu = sql.as_ref().map(|s| s.process_cpu.as_secs_f64().max(1e-9));
        let flink = flink_per_core(*q);
        let target = if q.is_stateful() { 200_000.0 } else { 1_000_000.0 };
        cases.push(NexmarkCase {
            query: q.name(),
            stateful: q.is_stateful(),
            events: run.events,
            results: run.rows.iter().map(|b| b.num_rows() as u64).sum(),
            process_cpu_secs: cpu,
            generate_cpu_secs: gen_cpu,
            events_per_sec_per_core: per_core,
            dataflow_events_per_sec_per_core: run.events as f64 / cpu,
            events_per_sec_wall: run.events as f64 / run.elapsed.as_secs_f64().max(1e-9),
            chunk_p50_ms: pick(0.5),
            chunk_p99_ms: pick(0.99),
            peak_state: run.peak_state,
            flink_events_per_sec_per_core: flink,
            ratio_vs_flink: flink.map(|f| per_core / f),
            target_per_core: target,
            ratio_vs_target: per_core / target,
            sql_events_per_sec_per_core: sql
                .as_ref()
                .zip(sql_cpu)
                .map(|(s, c)| s.events as f64 / (c + s.generate_cpu.as_secs_f64())),
            sql_dataflow_events_per_sec_per_core: sql.as_ref().zip(sql_cpu).map(|(s, c)| s.events as f64 / c),
            ratio_sql_vs_dsl: sql.as_ref().zip(sql_cpu).map(|(s, c)| (s.events as f64 / c) / (run.events as f64 / cpu)),
            sql_results: sql.as_ref().map(|s| s.rows.iter().map(|b| b.num_rows() as u64).sum()),
            ratio_sql_vs_dsl_with_generator: sql
                .as_ref()
                .zip(sql_cpu)
                .map(|(s, c)| (s.events as f64 / (c + s.generate_cpu.as_secs_f64())) / per_core),
        });
    }
    Ok(NexmarkBenchReport {
        bench: "nexmark",
        chunk: opts.chunk,
        generator_events_per_sec_per_core: generated as f64 / generate_cpu.as_secs_f64().max(1e-9),
        cases,
    })
}
