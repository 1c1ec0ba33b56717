//! CDC straight from a database's binlog, as a user runs it: a SQL job
//! file whose source is `mysql-cdc` (a MariaDB the test starts, binlog on)
//! aggregates orders per category into a MySQL table. The job is killed
//! (SIGKILL) while changes are still coming and started again; the table
//! it keeps ends equal to the same aggregate computed by the database
//! itself: nothing lost, nothing counted twice. Without `mariadbd` the test
//! says so loudly and passes, except in CI (`CI=true`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{rill, signal};
use mysql_async::prelude::Queryable;
use rill_mysql_cdc::LocalMariaDb;

type Summary = Vec<(String, i64, String)>;

async fn sql(url: &str, statements: &[String]) {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    for s in statements {
        conn.query_drop(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.disconnect().await.unwrap();
}

async fn summary(url: &str, query: &str) -> Option<Summary> {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    let rows = conn.query(query).await.ok();
    conn.disconnect().await.unwrap();
    rows
}

/// What the database says the job's table should hold.
async fn oracle(server: &LocalMariaDb) -> Summary {
    let q = "SELECT category, COUNT(*), CAST(SUM(amount) AS CHAR) FROM orders GROUP BY category ORDER BY category";
    summary(&server.url("shop"), q).await.unwrap()
}

/// What the job's table holds.
async fn table(server: &LocalMariaDb) -> Option<Summary> {
    let q = "SELECT category, orders, CAST(revenue AS CHAR) FROM per_category ORDER BY category";
    summary(&server.url("report"), q).await
}

fn job(server: &LocalMariaDb, checkpoints: &Path) -> Child {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/mysql_cdc_to_mysql.sql");
    rill()
        .arg("run")
        .arg(file)
        .env("MYSQL_PORT", server.port().to_string())
        .env("CHECKPOINTS", checkpoints)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (60 s at most) for the job's table to equal the database's own aggregate.
async fn converged(server: &LocalMariaDb, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let want = oracle(server).await;
        if table(server).await.as_ref() == Some(&want) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the job exited ({status}) before its table caught up");
        }
        assert!(Instant::now() < deadline, "the table is {:?}, the database says {want:?}", table(server).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn changes(round: i64) -> Vec<String> {
    let categories = ["books", "games", "music", "garden"];
    let mut out = Vec::new();
    for i in 0..40 {
        let id = round * 100 + i;
        let category = categories[(id % 4) as usize];
        out.push(format!("INSERT INTO orders VALUES ({id}, '{category}', {}.{:02})", id % 97, id % 100));
    }
    out.push(format!(
        "UPDATE orders SET category = 'games', amount = amount + 1.25 WHERE id % 5 = 0 AND id >= {}",
        round * 100
    ));
    out.push(format!("DELETE FROM orders WHERE id % 7 = 0 AND id >= {}", round * 100));
    out.push("BEGIN".to_owned());
    out.push(format!("UPDATE orders SET amount = amount * 2 WHERE id % 3 = 0 AND id >= {}", round * 100));
    out.push(format!("DELETE FROM orders WHERE category = 'music' AND id % 2 = 0 AND id >= {}", round * 100));
    out.push("COMMIT".to_owned());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sql_job_reading_the_binlog_survives_a_kill_with_exact_results() {
    if !common::servers_available(false) {
        return;
    }
    let server = tokio::task::spawn_blocking(LocalMariaDb::start).await.unwrap().unwrap();
    let setup = [
        "CREATE DATABASE shop".to_owned(),
        "CREATE DATABASE report".to_owned(),
        "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, category VARCHAR(20), amount DECIMAL(10, 2))".to_owned(),
    ];
    sql(&server.url("test"), &setup).await;
    sql(&server.url("shop"), &changes(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let mut first = job(&server, &checkpoints);
    converged(&server, &mut first).await;
    // More changes, and the job killed while they stream in.
    let more = changes(1);
    let (head, tail) = more.split_at(20);
    sql(&server.url("shop"), head).await;
    signal(&first, "-KILL");
    first.wait().unwrap();
    sql(&server.url("shop"), tail).await;
    sql(&server.url("shop"), &changes(2)).await;
    let mut second = job(&server, &checkpoints);
    converged(&server, &mut second).await;
    signal(&second, "-INT");
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "the job did not stop cleanly: {}", String::from_utf8_lossy(&out.stderr));
}
