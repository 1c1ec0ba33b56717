//! `rill bench cdc`: rows per second from a MariaDB table into the broker
//! through the connect runtime's `mysql-cdc` source (envelopes built,
//! sent, acknowledged, positions stored), for the snapshot and for the
//! binlog, each beside an anchor measured in the same run on the same
//! server: a plain `SELECT *` of the table (what reading the rows costs
//! the database alone) and the database's own write rate of the changes
//! (whether capture keeps up with the writer). The server is a private
//! MariaDB started for the run; the broker runs in this process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rill_connect::{ConnectorConfig, Control, Runtime};
use rill_mysql_cdc::LocalMariaDb;
use serde::Serialize;

use crate::local::LocalBroker;
use crate::report::{table, thousands};
use crate::{Error, Result};

/// The rows/s the issue sets for binlog → broker.
pub const TARGET_ROWS_PER_SEC: f64 = 100_000.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct CdcBenchOptions {
    /// Scratch directory (broker data, offsets); removed afterwards.
    pub dir: PathBuf,
    /// Rows in the table for the snapshot, and changes for the binlog.
    pub rows: u64,
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CdcCase {
    /// `snapshot` or `binlog`.
    pub phase: &'static str,
    /// Rows captured.
    pub rows: u64,
    /// Captured rows per second into the broker.
    pub rows_per_sec: f64,
    /// What it is compared with.
    pub anchor: &'static str,
    /// The anchor's rows per second.
    pub anchor_rows_per_sec: f64,
    /// rows_per_sec / anchor_rows_per_sec.
    pub ratio_vs_anchor: f64,
    /// rows_per_sec / the 100,000 rows/s target.
    pub ratio_vs_target: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct CdcBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// The phases.
    pub cases: Vec<CdcCase>,
}

impl CdcBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.phase.to_owned(),
                    thousands(c.rows as f64),
                    thousands(c.rows_per_sec),
                    format!("{} {}", c.anchor, thousands(c.anchor_rows_per_sec)),
                    format!("{:.2}", c.ratio_vs_anchor),
                    format!("{:.2}", c.ratio_vs_target),
                ]
            })
            .collect();
        table(
            &["phase", "rows", "rows/s into the broker", "anchor rows/s", "ratio vs anchor", "ratio vs 100k target"],
            &rows,
        )
    }
}

fn work(e: impl std::fmt::Display) -> Error {
    Error::Workload(e.to_string())
}

/// Runs the benchmark, reporting steps through `progress`.
pub fn run(opts: &CdcBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<CdcBenchReport> {
    if opts.rows == 0 || opts.rows > 5_000_000 {
        return Err(Error::Options { option: "--rows", reason: "between 1 and 5,000,000".into() });
    }
    progress("starting a MariaDB with the binlog on");
    let mysql = LocalMariaDb::start().map_err(work)?;
    let broker = LocalBroker::start(&opts.dir, false)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(work)?;
    let report = runtime.block_on(measure(opts, &mysql, &broker.addr.to_string(), progress));
    broker.shutdown()?;
    let _ = std::fs::remove_dir_all(&opts.dir);
    report
}

/// `rows` rows from `first` on, in multi-row INSERTs of 2,000; returns rows/s.
async fn write(url: &str, first: u64, rows: u64) -> Result<f64> {
    let mut conn = mysql_async::Conn::from_url(url).await.map_err(work)?;
    let started = Instant::now();
    let mut id = first;
    while id < first + rows {
        let end = (id + 2000).min(first + rows);
        let values: Vec<String> = (id..end)
            .map(|i| {
                format!(
                    "({i}, 'category-{}', {}.{:02}, 'a note of some length for row {i}', NOW(3))",
                    i % 50,
                    i % 997,
                    i % 100
                )
            })
            .collect();
        conn.query_drop(format!("INSERT INTO orders VALUES {}", values.join(","))).await.map_err(work)?;
        id = end;
    }
    let secs = started.elapsed().as_secs_f64();
    conn.disconnect().await.map_err(work)?;
    Ok(rows as f64 / secs.max(1e-9))
}

/// Waits (10 minutes at most) until the connector has sent `want` records; returns when it had.
async fn sent(connect: &Runtime, want: u64) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let s = connect.status("bench-cdc").ok_or_else(|| work("the connector is gone"))?;
        if let Some(e) = s.error {
            return Err(work(e));
        }
        if s.records >= want {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(work(format!("only {} of {want} rows reached the broker in 10 minutes", s.records)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn measure(
    opts: &CdcBenchOptions,
    mysql: &LocalMariaDb,
    broker: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<CdcBenchReport> {
    let url = mysql.url("bench");
    let mut conn = mysql_async::Conn::from_url(mysql.url("test")).await.map_err(work)?;
    conn.query_drop("CREATE DATABASE bench").await.map_err(work)?;
    conn.query_drop(
        "CREATE TABLE bench.orders (id BIGINT PRIMARY KEY, category VARCHAR(20), amount DECIMAL(10, 2), \
         note VARCHAR(64), ts DATETIME(3))",
    )
    .await
    .map_err(work)?;
    conn.disconnect().await.map_err(work)?;
    progress(&format!("loading {} rows", thousands(opts.rows as f64)));
    write(&url, 0, opts.rows).await?;

    progress("anchor: a plain SELECT * of the table");
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.map_err(work)?;
    let started = Instant::now();
    let rows: Vec<mysql_async::Row> = conn.exec("SELECT * FROM orders", ()).await.map_err(work)?;
    let select_rate = rows.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
    drop(rows);
    conn.disconnect().await.map_err(work)?;

    progress("snapshot → broker");
    let connect = Runtime::new(broker, &opts.dir.join("connect")).map_err(work)?;
    let config: ConnectorConfig = serde_json::from_value(serde_json::json!({
        "name": "bench-cdc", "source": "mysql-cdc", "topic": "bench-cdc",
        "config": {"hostname": "127.0.0.1", "port": mysql.port().to_string(), "username": "root",
                   "database-name": "bench", "table-name": "orders", "server-id": "7001"}
    }))
    .map_err(work)?;
    let started = Instant::now();
    connect.start(config).await.map_err(work)?;
    let done = sent(&connect, opts.rows).await?;
    let snapshot_rate = opts.rows as f64 / done.duration_since(started).as_secs_f64().max(1e-9);

    progress("binlog → broker (changes written while capture is paused, then caught up)");
    connect.control("bench-cdc", Control::Pause);
    let write_rate = write(&url, opts.rows, opts.rows).await?;
    let started = Instant::now();
    connect.control("bench-cdc", Control::Run);
    let done = sent(&connect, 2 * opts.rows).await?;
    let binlog_rate = opts.rows as f64 / done.duration_since(started).as_secs_f64().max(1e-9);
    connect.shutdown().await;

    let case = |phase, rate: f64, anchor, anchor_rate: f64| CdcCase {
        phase,
        rows: opts.rows,
        rows_per_sec: rate,
        anchor,
        anchor_rows_per_sec: anchor_rate,
        ratio_vs_anchor: rate / anchor_rate.max(1e-9),
        ratio_vs_target: rate / TARGET_ROWS_PER_SEC,
    };
    Ok(CdcBenchReport {
        bench: "cdc",
        cases: vec![
            case("snapshot", snapshot_rate, "plain SELECT *", select_rate),
            case("binlog", binlog_rate, "MariaDB writing the changes", write_rate),
        ],
    })
}
