//! `rill bench tail`: MiB/s of 200-byte log lines from files to messages
//! the broker acknowledged, through the connect runtime's `file-tail`
//! source (lines split, records built, sent in acknowledged batches, the
//! position stored after each) and a broker in this process. Beside it,
//! in the same run on the same file: reading the file and counting its
//! lines (what the disk and page cache give), and the tailer alone
//! (events built, nothing sent). The Vector project's published figure
//! for file → TCP on 2 vCPUs (76.7 MiB/s) is shown as a reference from
//! another machine, not an anchor of this run.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rill_connect::{ConnectorConfig, Runtime};
use rill_tail::{TailConfig, Tailer};
use serde::Serialize;

use crate::local::LocalBroker;
use crate::report::{table, thousands};
use crate::{Error, Result};

/// The MiB/s the issue sets for file → acknowledged broker messages.
pub const TARGET_MIB_PER_SEC: f64 = 150.0;
/// Vector's published file → TCP figure on 2 vCPUs (another machine).
pub const VECTOR_REPORTED_MIB_PER_SEC: f64 = 76.7;
/// Bytes per line, its break included.
const LINE: usize = 200;

/// What to run.
#[derive(Debug, Clone)]
pub struct TailBenchOptions {
    /// Scratch directory (the log file, broker data); removed afterwards.
    pub dir: PathBuf,
    /// MiB of lines.
    pub mib: u64,
}

/// One case's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TailCase {
    /// What was measured.
    pub case: &'static str,
    /// Lines.
    pub lines: u64,
    /// MiB/s of lines.
    pub mib_per_sec: f64,
    /// Lines per second.
    pub lines_per_sec: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct TailBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// The cases.
    pub cases: Vec<TailCase>,
    /// file-tail → broker MiB/s / plain read MiB/s.
    pub ratio_vs_plain_read: f64,
    /// file-tail → broker MiB/s / the 150 MiB/s target.
    pub ratio_vs_target: f64,
    /// file-tail → broker MiB/s / Vector's published 76.7 MiB/s (another machine).
    pub ratio_vs_vector_reported: f64,
}

impl TailBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.case.to_owned(),
                    thousands(c.lines as f64),
                    format!("{:.1}", c.mib_per_sec),
                    thousands(c.lines_per_sec),
                ]
            })
            .collect();
        let mut out = table(&["case", "lines", "MiB/s", "lines/s"], &rows);
        out.push_str(&format!(
            "\nfile-tail → broker vs plain read: {:.3}   vs 150 MiB/s target: {:.2}   vs Vector's published 76.7 MiB/s (other machine): {:.2}\n",
            self.ratio_vs_plain_read, self.ratio_vs_target, self.ratio_vs_vector_reported
        ));
        out
    }
}

fn work(e: impl std::fmt::Display) -> Error {
    Error::Workload(e.to_string())
}

fn case(name: &'static str, lines: u64, secs: f64) -> TailCase {
    let secs = secs.max(1e-9);
    TailCase {
        case: name,
        lines,
        mib_per_sec: (lines * LINE as u64) as f64 / secs / (1 << 20) as f64,
        lines_per_sec: lines as f64 / secs,
    }
}

/// Runs the benchmark, reporting steps through `progress`.
pub fn run(opts: &TailBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<TailBenchReport> {
    if opts.mib == 0 || opts.mib > 8192 {
        return Err(Error::Options { option: "--mib", reason: "between 1 and 8,192".into() });
    }
    let logs = opts.dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::Io { op: "create", path: logs.clone(), source: e })?;
    let path = logs.join("app.log");
    let lines = opts.mib * (1 << 20) / LINE as u64;
    progress(&format!("writing {} lines of {LINE} bytes ({} MiB)", thousands(lines as f64), opts.mib));
    {
        let file =
            std::fs::File::create(&path).map_err(|e| Error::Io { op: "create", path: path.clone(), source: e })?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let pad = "x".repeat(LINE - 60);
        for i in 0..lines {
            writeln!(w, "2026-11-25T13:00:00.000Z INFO app[{:010}] request done {pad}", i).map_err(|e| Error::Io {
                op: "write",
                path: path.clone(),
                source: e,
            })?;
        }
        w.flush().map_err(|e| Error::Io { op: "write", path: path.clone(), source: e })?;
    }
    let mut cases = Vec::new();

    progress("anchor: reading the file and counting its lines");
    let started = Instant::now();
    let mut file = std::fs::File::open(&path).map_err(|e| Error::Io { op: "open", path: path.clone(), source: e })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut counted = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::Io { op: "read", path: path.clone(), source: e })?;
        if n == 0 {
            break;
        }
        counted += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
    if counted != lines {
        return Err(work(format!("counted {counted} of {lines} lines")));
    }
    cases.push(case("plain read, lines counted", lines, started.elapsed().as_secs_f64()));

    progress("the tailer alone (events built, nothing sent)");
    let glob = logs.join("*.log").to_string_lossy().into_owned();
    let started = Instant::now();
    let mut tailer = Tailer::open(TailConfig::new(&glob), None).map_err(work)?;
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < lines {
        seen += tailer.poll(64 << 20).map_err(work)?.len() as u64;
        if Instant::now() > deadline {
            return Err(work(format!("the tailer read {seen} of {lines} lines in 10 minutes")));
        }
    }
    cases.push(case("tailer alone", lines, started.elapsed().as_secs_f64()));
    drop(tailer);

    progress("file-tail → broker (acknowledged)");
    let broker = LocalBroker::start(&opts.dir.join("broker"), false)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(work)?;
    let measured = rt.block_on(async {
        let connect = Runtime::new(&broker.addr.to_string(), &opts.dir.join("connect")).map_err(work)?;
        let config: ConnectorConfig = serde_json::from_value(serde_json::json!({
            "name": "bench-tail", "source": "file-tail", "topic": "bench-tail",
            "config": {"path": glob, "tag": "app"}
        }))
        .map_err(work)?;
        let started = Instant::now();
        connect.start(config).await.map_err(work)?;
        loop {
            let status = connect.status("bench-tail");
            if let Some(e) = status.as_ref().and_then(|s| s.error.clone()) {
                return Err(work(format!("bench-tail: {e}")));
            }
            let sent = status.map_or(0, |s| s.records);
            if sent >= lines {
                break;
            }
            if Instant::now() > deadline {
                return Err(work(format!("only {sent} of {lines} lines reached the broker in 10 minutes")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        connect.shutdown().await;
        Ok(secs)
    });
    let stored = broker.stored("bench-tail");
    broker.shutdown()?;
    let _ = std::fs::remove_dir_all(&opts.dir);
    let measured = measured?;
    if stored != lines {
        return Err(work(format!("the broker holds {stored} messages for {lines} lines")));
    }
    cases.push(case("file-tail → broker, acknowledged", lines, measured));
    let (plain, sent) = (cases[0].mib_per_sec, cases[2].mib_per_sec);
    Ok(TailBenchReport {
        bench: "tail",
        cases,
        ratio_vs_plain_read: sent / plain.max(1e-9),
        ratio_vs_target: sent / TARGET_MIB_PER_SEC,
        ratio_vs_vector_reported: sent / VECTOR_REPORTED_MIB_PER_SEC,
    })
}
