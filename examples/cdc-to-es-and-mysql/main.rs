//! MariaDB orders → change data capture → enrich and aggregate (job.sql)
//! → a search index and a MySQL summary table, in one command:
//!
//! ```sh
//! examples/cdc-to-es-and-mysql/run.sh
//! ```
//!
//! It starts what the pipeline needs on free loopback ports — a MariaDB
//! server with the row binlog on, an OpenSearch-compatible server
//! (`osmem-server`) — fills the `orders` table, runs the SQL job, changes
//! rows while it runs (new orders, an update, a cancellation, a delete),
//! and after each step waits until the index and the summary table agree
//! with what MariaDB itself computes from the table; then it prints both
//! and stops everything. It exits non-zero if they do not agree within a
//! minute.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql_async::prelude::Queryable;
use rill_elasticsearch::server::LocalSearch;
use rill_mysql_cdc::LocalMariaDb;

const ORDERS: &[(i64, &str, &str, &str, i64, &str, &str)] = &[
    (1, "ada", "fr", "keyboard", 1, "49.90", "paid"),
    (2, "bob", "de", "monitor", 2, "189.00", "paid"),
    (3, "cy", "fr", "cable", 3, "4.50", "paid"),
    (4, "dee", "es", "mouse", 1, "19.99", "new"),
    (5, "eve", "de", "laptop", 1, "1299.00", "paid"),
    (6, "fay", "it", "stand", 2, "35.00", "new"),
    (7, "gus", "fr", "webcam", 1, "79.00", "paid"),
    (8, "hal", "es", "dock", 1, "129.00", "paid"),
];

/// The changes made while the job runs, one step at a time.
const STEPS: &[(&str, &[&str])] = &[
    (
        "two new orders",
        &[
            "INSERT INTO orders VALUES (9, 'ivy', 'it', 'headset', 2, 59.00, 'new')",
            "INSERT INTO orders VALUES (10, 'jo', 'de', 'cable', 10, 4.50, 'paid')",
        ],
    ),
    ("order 4 grows to 6 mice", &["UPDATE orders SET quantity = 6, status = 'paid' WHERE id = 4"]),
    ("order 2 is cancelled", &["UPDATE orders SET status = 'cancelled' WHERE id = 2"]),
    ("order 6 is deleted", &["DELETE FROM orders WHERE id = 6"]),
];

type Doc = (i64, String, String, String, i64, String, String, String);
type Summary = (String, i64, String, i64);

async fn query<T: mysql_async::prelude::FromRow + Send + 'static>(url: &str, q: &str) -> Result<Vec<T>> {
    let mut conn = mysql_async::Conn::from_url(url).await.with_context(|| format!("connecting to {url}"))?;
    let rows = conn.query(q).await.with_context(|| q.to_owned())?;
    conn.disconnect().await?;
    Ok(rows)
}

/// The index as MariaDB computes it from the table.
async fn expected_docs(db: &LocalMariaDb) -> Result<Vec<Doc>> {
    query(
        &db.url("shop"),
        "SELECT id, customer, UPPER(country), product, quantity, CAST(quantity * unit_price AS CHAR), \
         CASE WHEN quantity * unit_price >= 100 THEN 'large' WHEN quantity * unit_price >= 20 THEN 'medium' \
         ELSE 'small' END, status FROM orders ORDER BY id",
    )
    .await
}

/// The summary as MariaDB computes it from the table.
async fn expected_summary(db: &LocalMariaDb) -> Result<Vec<Summary>> {
    query(
        &db.url("shop"),
        "SELECT UPPER(country), COUNT(*), CAST(SUM(quantity * unit_price) AS CHAR), \
         CAST(SUM(quantity * unit_price >= 100) AS SIGNED) FROM orders WHERE status <> 'cancelled' \
         GROUP BY UPPER(country) ORDER BY 1",
    )
    .await
}

async fn summary(db: &LocalMariaDb) -> Result<Vec<Summary>> {
    let q = "SELECT country, orders, CAST(revenue AS CHAR), large_orders FROM revenue_by_country ORDER BY country";
    Ok(query(&db.url("report"), q).await.unwrap_or_default())
}

async fn docs(search: &LocalSearch) -> Result<Vec<Doc>> {
    let mut out = Vec::new();
    for (_, d) in search.documents("orders").await? {
        let text = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
        // DECIMAL(20, 2) travels as a JSON number: two places, as the column has.
        let total = d["total"].as_f64().map_or_else(|| d["total"].to_string(), |t| format!("{t:.2}"));
        out.push((
            d["id"].as_i64().unwrap_or_default(),
            text("customer"),
            text("country"),
            text("product"),
            d["quantity"].as_i64().unwrap_or_default(),
            total,
            text("size"),
            text("status"),
        ));
    }
    out.sort_by_key(|d| d.0);
    Ok(out)
}

type Running = tokio::task::JoinHandle<rill_sql::Result<Vec<rill_streams::RunReport>>>;

/// Waits until the index and the summary agree with MariaDB (or the job fails).
async fn converged(db: &LocalMariaDb, search: &LocalSearch, job: &mut Running) -> Result<(Vec<Doc>, Vec<Summary>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if job.is_finished() {
            (&mut *job).await?.context("the job failed")?;
            bail!("the job stopped early");
        }
        let (want_docs, want_summary) = (expected_docs(db).await?, expected_summary(db).await?);
        let (got_docs, got_summary) = (docs(search).await?, summary(db).await?);
        if got_docs == want_docs && got_summary == want_summary {
            return Ok((got_docs, got_summary));
        }
        if Instant::now() > deadline {
            bail!(
                "after 60 s the index is {got_docs:?} (expected {want_docs:?}) and the summary {got_summary:?} \
                 (expected {want_summary:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print(docs: &[Doc], summary: &[Summary]) {
    println!("search index 'orders' ({} documents):", docs.len());
    println!("   id  customer  country product   qty     total  size    status");
    for (id, customer, country, product, qty, total, size, status) in docs {
        println!("  {id:>3}  {customer:<9} {country:<7} {product:<9} {qty:>3}  {total:>8}  {size:<6}  {status}");
    }
    println!("MySQL table report.revenue_by_country:");
    println!("  country orders    revenue  large_orders");
    for (country, orders, revenue, large) in summary {
        println!("  {country:<7} {orders:>6}  {revenue:>9}  {large}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    eprintln!("[example] starting MariaDB (row binlog on) and an OpenSearch-compatible server on loopback ports");
    let db = tokio::task::spawn_blocking(LocalMariaDb::start).await?.context("starting MariaDB")?;
    let search = LocalSearch::start().context("starting osmem-server")?;
    let mut conn = mysql_async::Conn::from_url(db.url("test")).await?;
    conn.query_drop("CREATE DATABASE shop").await?;
    conn.query_drop("CREATE DATABASE report").await?;
    conn.query_drop(
        "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, customer VARCHAR(40), country CHAR(2), product VARCHAR(40), \
         quantity INT, unit_price DECIMAL(10, 2), status VARCHAR(12))",
    )
    .await?;
    for (id, customer, country, product, qty, price, status) in ORDERS {
        conn.exec_drop(
            "INSERT INTO shop.orders VALUES (?, ?, ?, ?, ?, ?, ?)",
            (id, customer, country, product, qty, price, status),
        )
        .await?;
    }
    conn.disconnect().await?;

    let scratch = tempfile::tempdir()?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cdc-to-es-and-mysql/job.sql");
    let vars = HashMap::from([
        ("MYSQL_PORT".to_owned(), db.port().to_string()),
        ("ES_URL".to_owned(), search.url().to_owned()),
        ("CHECKPOINTS".to_owned(), scratch.path().join("checkpoints").display().to_string()),
    ]);
    let mut job = rill_sql::SqlJob::load(&file)?.with_vars(vars);
    *job.connectors_mut() = rill_connect::connectors();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running: Running = tokio::spawn(async move { job.run(stopped).await });
    eprintln!("[example] job.sql runs; waiting for the snapshot of {} orders", ORDERS.len());
    let (d, s) = converged(&db, &search, &mut running).await?;
    println!("== after the snapshot");
    print(&d, &s);
    for (what, statements) in STEPS {
        let mut conn = mysql_async::Conn::from_url(db.url("shop")).await?;
        for st in *statements {
            conn.query_drop(*st).await.with_context(|| st.to_string())?;
        }
        conn.disconnect().await?;
        eprintln!("[example] {what}; waiting for the index and the summary to follow");
        converged(&db, &search, &mut running).await?;
    }
    let (d, s) = converged(&db, &search, &mut running).await?;
    println!("== after the changes ({})", STEPS.iter().map(|s| s.0).collect::<Vec<_>>().join(", "));
    print(&d, &s);
    stop.send_replace(true);
    running.await??;
    eprintln!("[example] the index and the summary agree with MariaDB after every step");
    Ok(())
}
