//! A CDC changelog into an upsert sink, as a user runs it: Debezium change
//! events sent to a topic with `rill produce`, a SQL job file run with
//! `rill run` that aggregates them per category with retractions and
//! writes a MySQL table (the machine's MariaDB), read back here. Running
//! the job again over the same events (a restart without its checkpoints)
//! leaves the same table. Without a server the test says so loudly and
//! passes, except in CI (`CI=true`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{rill, start, stop};
use mysql_async::prelude::Queryable;

const URL: &str = "mysql://root@127.0.0.1:3306/test";

fn event(op: &str, before: Option<(i64, &str, f64)>, after: Option<(i64, &str, f64)>) -> String {
    let row = |r: Option<(i64, &str, f64)>| {
        r.map_or(serde_json::Value::Null, |(id, c, a)| serde_json::json!({"id": id, "category": c, "amount": a}))
    };
    serde_json::json!({"before": row(before), "after": row(after), "op": op, "source": {"table": "orders"}}).to_string()
}

#[test]
fn a_cdc_changelog_aggregated_in_sql_keeps_a_mysql_table_up_to_date() {
    if std::net::TcpStream::connect("127.0.0.1:3306").is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no MariaDB on 127.0.0.1:3306");
        eprintln!("\n*** SKIPPED: no MariaDB on 127.0.0.1:3306 ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = [
        event("r", None, Some((1, "books", 10.0))),
        event("c", None, Some((2, "books", 5.0))),
        event("c", None, Some((3, "games", 30.0))),
        event("u", Some((2, "books", 5.0)), Some((2, "games", 7.0))),
        event("d", Some((1, "books", 10.0)), None),
        event("c", None, Some((4, "music", 12.0))),
        event("u", Some((4, "music", 12.0)), Some((4, "music", 20.0))),
        event("d", Some((4, "music", 20.0)), None),
        event("c", None, Some((5, "books", 1.5))),
        event("c", None, Some((6, "games", 500.0))),
    ];
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, events.join("\n") + "\n").unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let out = rill()
        .args(["produce", "--server", &addr, "--topic", "cdc-orders", "--message-group", "orders"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = format!("rill_cdc_{}", std::process::id());
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/cdc_to_mysql.sql");
    for run in 0..2 {
        let out = rill()
            .args(["run"])
            .arg(&job)
            .env("RILL_SERVER", &addr)
            .env("MYSQL_URL", URL)
            .env("MYSQL_TABLE", &table)
            .env("CHECKPOINTS", dir.path().join(format!("checkpoints-{run}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "run {run}: {}", String::from_utf8_lossy(&out.stderr));
        let rows = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = mysql_async::Pool::new(URL);
            let mut conn = pool.get_conn().await.unwrap();
            let rows: Vec<(String, i64, f64)> =
                conn.query(format!("SELECT category, orders, revenue FROM `{table}` ORDER BY category")).await.unwrap();
            drop(conn);
            pool.disconnect().await.unwrap();
            rows
        });
        // books: order 5; games: orders 2 (moved from books) and 3; music came and went; order 6 filtered out.
        assert_eq!(rows, vec![("books".to_owned(), 1, 1.5), ("games".to_owned(), 2, 37.0)], "run {run}");
    }
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = mysql_async::Pool::new(URL);
        pool.get_conn().await.unwrap().query_drop(format!("DROP TABLE `{table}`")).await.unwrap();
        pool.disconnect().await.unwrap();
    });
    stop(broker);
}
