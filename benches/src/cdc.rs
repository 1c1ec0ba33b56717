//! `rill bench cdc`: rows per second from a MariaDB table into the broker
//! through the connect runtime's `mysql-cdc` source (envelopes built,
//! sent, acknowledged, positions stored), for the snapshot and for the
//! binlog, then from the broker's topic into MySQL and into a search index
//! through the connect runtime's sinks (envelopes decoded, upserts
//! committed / documents acknowledged at checkpoints). Each phase stands
//! beside an anchor measured in the same run on the same servers: a plain
//! `SELECT *` of the table (what reading the rows costs the database
//! alone), the database's own write rate of the changes (whether capture —
//! and the MySQL sink — keep up with a writer), and plain `_bulk` requests
//! of the same documents (what indexing costs the search server alone).
//! The servers are a private MariaDB and an `osmem-server` started for the
//! run; the broker runs in this process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rill_connect::{ConnectorConfig, Control, Runtime};
use rill_elasticsearch::server::LocalSearch;
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
    /// `snapshot`, `binlog`, `sink mysql` or `sink elasticsearch`.
    pub phase: &'static str,
    /// Rows captured or written.
    pub rows: u64,
    /// Rows per second into the broker (capture) or out of it (sinks).
    pub rows_per_sec: f64,
    /// What it is compared with.
    pub anchor: &'static str,
    /// The anchor's rows per second.
    pub anchor_rows_per_sec: f64,
    /// rows_per_sec / anchor_rows_per_sec.
    pub ratio_vs_anchor: f64,
    /// rows_per_sec / the 100,000 rows/s target (capture phases; the target is for them).
    pub ratio_vs_target: Option<f64>,
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
                    c.ratio_vs_target.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                ]
            })
            .collect();
        table(&["phase", "rows", "rows/s", "anchor rows/s", "ratio vs anchor", "ratio vs 100k target"], &rows)
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
    progress("starting a MariaDB with the binlog on and an OpenSearch-compatible server");
    let mysql = LocalMariaDb::start().map_err(work)?;
    let search = LocalSearch::start().map_err(work)?;
    let broker = LocalBroker::start(&opts.dir, false)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(work)?;
    let report = runtime.block_on(measure(opts, &mysql, &search, &broker.addr.to_string(), progress));
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

/// Waits (10 minutes at most) until `count` reaches `want` (connector `name` failing ends the wait); returns when it did.
async fn reached<F, C>(connect: &Runtime, name: &str, want: u64, mut count: C) -> Result<Instant>
where
    C: FnMut() -> F,
    F: std::future::Future<Output = u64>,
{
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(e) = connect.status(name).and_then(|s| s.error) {
            return Err(work(format!("{name}: {e}")));
        }
        let n = count().await;
        if n >= want {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(work(format!("{name}: only {n} of {want} rows in 10 minutes")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records the capture connector has sent.
fn records(connect: &Runtime) -> u64 {
    connect.status("bench-cdc").map_or(0, |s| s.records)
}

/// Rows of `table` at `url` (0 before it exists).
async fn rows_in(url: &str, table: &str) -> u64 {
    let Ok(mut conn) = mysql_async::Conn::from_url(url).await else { return 0 };
    let n: Option<u64> = conn.query_first(format!("SELECT COUNT(*) FROM {table}")).await.ok().flatten();
    let _ = conn.disconnect().await;
    n.unwrap_or(0)
}

/// A sink connector reading the captured topic (as a connect file would declare it).
fn sink(name: &str, connector: &str, config: serde_json::Value) -> Result<ConnectorConfig> {
    serde_json::from_value(serde_json::json!({
        "name": name, "sink": connector, "topics": ["bench-cdc"], "format": "debezium-json",
        "columns": ["id BIGINT NOT NULL", "category STRING", "amount DECIMAL(10, 2)", "note STRING"],
        "primary-key": ["id"], "config": config
    }))
    .map_err(work)
}

/// The anchor of the search sink: `rows` documents like the sink's in plain `_bulk` requests of 1,000; returns rows/s.
async fn plain_bulk(search: &LocalSearch, rows: u64) -> Result<f64> {
    let started = Instant::now();
    let mut id = 0;
    while id < rows {
        let end = (id + 1000).min(rows);
        let mut body = String::new();
        for i in id..end {
            body.push_str(&format!("{{\"index\":{{\"_index\":\"plain\",\"_id\":\"{i}\"}}}}\n"));
            body.push_str(&format!(
                "{{\"id\":{i},\"category\":\"category-{}\",\"amount\":{}.{:02},\"note\":\"a note of some length for row {i}\"}}\n",
                i % 50,
                i % 997,
                i % 100
            ));
        }
        search.bulk(body).await.map_err(work)?;
        id = end;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

async fn measure(
    opts: &CdcBenchOptions,
    mysql: &LocalMariaDb,
    search: &LocalSearch,
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
    let done = reached(&connect, "bench-cdc", opts.rows, || async { records(&connect) }).await?;
    let snapshot_rate = opts.rows as f64 / done.duration_since(started).as_secs_f64().max(1e-9);

    progress("binlog → broker (changes written while capture is paused, then caught up)");
    connect.control("bench-cdc", Control::Pause);
    let write_rate = write(&url, opts.rows, opts.rows).await?;
    let started = Instant::now();
    connect.control("bench-cdc", Control::Run);
    let done = reached(&connect, "bench-cdc", 2 * opts.rows, || async { records(&connect) }).await?;
    let binlog_rate = opts.rows as f64 / done.duration_since(started).as_secs_f64().max(1e-9);
    connect.control("bench-cdc", Control::Pause);

    // The topic now holds every row twice over (snapshot, then binlog inserts): 2 × rows keys.
    let all = 2 * opts.rows;
    progress("broker → MySQL (upserts of every captured row)");
    let mut conn = mysql_async::Conn::from_url(mysql.url("test")).await.map_err(work)?;
    conn.query_drop("CREATE DATABASE copy").await.map_err(work)?;
    conn.disconnect().await.map_err(work)?;
    let copy = mysql.url("copy");
    let config = sink(
        "bench-mysql",
        "mysql",
        serde_json::json!({"url": copy, "table-name": "orders_copy", "sink.auto-create": "true"}),
    )?;
    let started = Instant::now();
    connect.start(config).await.map_err(work)?;
    let done = reached(&connect, "bench-mysql", all, || rows_in(&copy, "orders_copy")).await?;
    let mysql_rate = all as f64 / done.duration_since(started).as_secs_f64().max(1e-9);
    connect.control("bench-mysql", Control::Pause);

    progress("broker → search index (documents by key)");
    let config = sink("bench-es", "elasticsearch", serde_json::json!({"hosts": search.url(), "index": "copy"}))?;
    let started = Instant::now();
    connect.start(config).await.map_err(work)?;
    let done = reached(&connect, "bench-es", all, || async { search.count("copy").await.unwrap_or(0) }).await?;
    let es_rate = all as f64 / done.duration_since(started).as_secs_f64().max(1e-9);
    connect.shutdown().await;
    progress("anchor: plain _bulk requests of the same documents");
    let bulk_rate = plain_bulk(search, all).await?;

    let case = |phase, rows, rate: f64, anchor, anchor_rate: f64, target: bool| CdcCase {
        phase,
        rows,
        rows_per_sec: rate,
        anchor,
        anchor_rows_per_sec: anchor_rate,
        ratio_vs_anchor: rate / anchor_rate.max(1e-9),
        ratio_vs_target: target.then(|| rate / TARGET_ROWS_PER_SEC),
    };
    Ok(CdcBenchReport {
        bench: "cdc",
        cases: vec![
            case("snapshot", opts.rows, snapshot_rate, "plain SELECT *", select_rate, true),
            case("binlog", opts.rows, binlog_rate, "MariaDB writing the changes", write_rate, true),
            case("sink mysql", all, mysql_rate, "MariaDB writing the changes", write_rate, false),
            case("sink elasticsearch", all, es_rate, "plain _bulk requests", bulk_rate, false),
        ],
    })
}
