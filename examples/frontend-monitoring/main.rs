//! Front-end beacons over HTTP → per page and minute (http-job.sql) → a
//! MySQL table and a Parquet lake, in one command:
//!
//! ```sh
//! examples/frontend-monitoring/run.sh
//! ```
//!
//! It starts a MariaDB of its own on a free loopback port, runs the job
//! (whose `http` source listens on another), and plays the browsers:
//! every sample beacon (`beacons.jsonl`) is POSTed as `navigator.sendBeacon`
//! would (`page/index.html` is such a page; the address printed lets you
//! try it by hand while the example runs). It waits until the MySQL table and the lake hold one
//! row per page and minute with the views and errors the sample data
//! gives, prints the table, and exits non-zero if they do not agree
//! within a minute.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql_async::prelude::Queryable;
use rill_mysql_cdc::LocalMariaDb;

/// (page, minute "2026-01-01T00:00") → (views, errors).
type Stats = BTreeMap<(String, String), (i64, i64)>;

fn minute(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms - ms.rem_euclid(60_000))
        .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_default()
}

async fn table(url: &str) -> Result<Vec<(String, String, i64, f64, i64)>> {
    let mut conn = mysql_async::Conn::from_url(url).await?;
    let q = "SELECT page, DATE_FORMAT(minute, '%Y-%m-%dT%H:%i'), views, p95_latency_ms, errors FROM page_stats ORDER BY 1, 2";
    let rows = conn.query(q).await.unwrap_or_default();
    conn.disconnect().await?;
    Ok(rows)
}

/// Rows and views in the lake's committed files.
async fn lake(dir: &Path) -> Result<(i64, i64)> {
    if rill_parquet::committed(dir).map(|f| f.is_empty()).unwrap_or(true) {
        return Ok((0, 0));
    }
    let ctx = datafusion::prelude::SessionContext::new();
    let parts = vec![
        ("dt".to_owned(), datafusion::arrow::datatypes::DataType::Utf8),
        ("hr".to_owned(), datafusion::arrow::datatypes::DataType::Utf8),
    ];
    let options = datafusion::prelude::ParquetReadOptions::default().table_partition_cols(parts);
    ctx.register_parquet("lake", dir.to_str().context("path")?, options).await?;
    let b = ctx.sql("SELECT COUNT(*), SUM(views) FROM lake").await?.collect().await?;
    let col = |i: usize| {
        datafusion::arrow::array::as_primitive_array::<datafusion::arrow::datatypes::Int64Type>(b[0].column(i)).value(0)
    };
    Ok((col(0), col(1)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/frontend-monitoring");
    let beacons: Vec<serde_json::Value> = std::fs::read_to_string(here.join("beacons.jsonl"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut expected = Stats::new();
    for b in &beacons {
        let page = b["page"].as_str().context("page")?.to_owned();
        let e = expected.entry((page, minute(b["ts"].as_i64().context("ts")?))).or_default();
        e.0 += 1;
        e.1 += i64::from(b["status"].as_i64().unwrap_or(200) >= 500);
    }

    eprintln!("[example] starting MariaDB on a loopback port");
    let db = tokio::task::spawn_blocking(LocalMariaDb::start).await?.context("starting MariaDB")?;
    let mut conn = mysql_async::Conn::from_url(db.url("test")).await?;
    conn.query_drop("CREATE DATABASE report").await?;
    conn.disconnect().await?;
    let work = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let token = "demo-token";
    let vars = HashMap::from([
        ("WORK".to_owned(), work.path().display().to_string()),
        ("HTTP_LISTEN".to_owned(), listen.clone()),
        ("BEACON_TOKEN".to_owned(), token.to_owned()),
        ("MYSQL_PORT".to_owned(), db.port().to_string()),
    ]);
    let mut job = rill_sql::SqlJob::load(&here.join("http-job.sql"))?.with_vars(vars);
    *job.connectors_mut() = rill_connect::connectors();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = tokio::spawn(async move { job.run(stopped).await });

    let client = rill_elasticsearch::http_client_builder().build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("http://{listen}/health")).send().await.is_err() {
        if running.is_finished() || Instant::now() > deadline {
            (&mut running).await?.context("the job failed")?;
            bail!("the job's http source never listened on {listen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "[example] http-job.sql runs; beacons go to http://{listen}/ingest/beacons (try page/index.html?endpoint=http://{listen}&token={token})"
    );
    let url = format!("http://{listen}/ingest/beacons?token={token}");
    let last = beacons.iter().filter_map(|b| b["ts"].as_i64()).max().unwrap_or_default();
    // The sample beacons in order, then one two minutes later that closes every minute of them.
    let closing =
        serde_json::json!({"page": "/", "latency_ms": 1, "status": 200, "country": "xx", "ts": last + 120_000});
    for b in beacons.iter().chain([&closing]) {
        let r = client.post(&url).header("content-type", "text/plain;charset=UTF-8").body(b.to_string()).send().await?;
        if !r.status().is_success() {
            bail!("beacon {b}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
    }
    eprintln!("[example] {} beacons sent; waiting for {} rows (page × minute)", beacons.len(), expected.len());
    let report = db.url("report");
    let rows = loop {
        if running.is_finished() {
            (&mut running).await?.context("the job failed")?;
            bail!("the job stopped early");
        }
        let rows = table(&report).await?;
        let got: Stats = rows.iter().map(|(p, m, v, _, e)| ((p.clone(), m.clone()), (*v, *e))).collect();
        let in_lake = lake(&work.path().join("lake")).await?;
        if got == expected && in_lake == (expected.len() as i64, beacons.len() as i64) {
            break rows;
        }
        if Instant::now() > deadline + Duration::from_secs(30) {
            bail!("the MySQL table holds {got:?} and the lake {in_lake:?}; the beacons make {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.send_replace(true);
    (&mut running).await??;
    println!("MySQL table report.page_stats:");
    println!("  page       minute            views  p95_latency_ms  errors");
    for (page, minute, views, p95, errors) in &rows {
        println!("  {page:<10} {minute}  {views:>5}  {p95:>14.1}  {errors:>6}");
    }
    println!("Parquet lake: {} rows under dt=…/hr=… partitions", rows.len());
    eprintln!("[example] the MySQL table and the lake agree with the beacons sent");
    Ok(())
}
