//! The `mysql` sink against a real MariaDB (the machine's, 127.0.0.1:3306,
//! user root, database test; `RILL_MYSQL_URL` names another): a changelog
//! written through checkpoints leaves exactly the table it describes, and
//! writing the same changes again (a job restarted from its last
//! checkpoint) leaves it unchanged; a write while the server is down is
//! tried again until it is back (a server of the test's own, stopped and
//! started). Without a server the tests say so loudly and pass, except in
//! CI (`CI=true`), where they must run.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use mysql_async::prelude::Queryable;
use rill_mysql::{MysqlSink, MysqlSinkConfig};
use rill_streams::Sink;

fn url() -> String {
    std::env::var("RILL_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// Whether a server answers; in CI it must.
fn server_up() -> bool {
    let up = std::net::TcpStream::connect("127.0.0.1:3306").is_ok() || std::env::var("RILL_MYSQL_URL").is_ok();
    if !up {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no MariaDB on 127.0.0.1:3306");
        eprintln!("\n*** SKIPPED: no MariaDB on 127.0.0.1:3306 (set RILL_MYSQL_URL) ***\n");
    }
    up
}

fn changes(rows: &[(i64, &str, f64, i64, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("__op", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
        ],
    )
    .unwrap()
}

async fn table_rows(table: &str) -> Vec<(i64, String, f64, String)> {
    let pool = mysql_async::Pool::new(url().as_str());
    let mut conn = pool.get_conn().await.unwrap();
    let rows: Vec<(i64, String, f64, String)> =
        conn.query(format!("SELECT id, name, amount, CAST(at AS CHAR) FROM `{table}` ORDER BY id")).await.unwrap();
    conn.query_drop(format!("DROP TABLE `{table}`")).await.unwrap();
    drop(conn);
    pool.disconnect().await.unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_leaves_the_table_it_describes_and_a_replay_changes_nothing() {
    if !server_up() {
        return;
    }
    let table = format!("rill_sink_{}", std::process::id());
    let mut config = MysqlSinkConfig::new(&url(), &table, vec!["id".into()]);
    config.max_buffered = 2;
    config.auto_create = true;
    let log = vec![
        changes(&[(1, "ann", 10.5, 1_700_000_000_123, "+I"), (2, "bob", 5.0, 1_700_000_000_000, "+I")]),
        changes(&[(2, "bob", 5.0, 1_700_000_000_000, "-U"), (2, "bob 😀", 7.25, 1_700_000_001_000, "+U")]),
        changes(&[(1, "ann", 10.5, 1_700_000_000_123, "-D"), (3, "cy", 1.0, 1_700_000_002_000, "+I")]),
    ];
    let mut sink = tokio::task::spawn_blocking({
        let config = config.clone();
        move || MysqlSink::new(config).unwrap()
    })
    .await
    .unwrap();
    let log2 = log.clone();
    sink = tokio::task::spawn_blocking(move || {
        for (i, b) in log2.into_iter().enumerate() {
            sink.write(b).unwrap();
            if i == 1 {
                sink.prepare(1).unwrap();
            }
        }
        sink.prepare(2).unwrap();
        sink
    })
    .await
    .unwrap();
    // A restart from checkpoint 1: the changes after it come again.
    let mut again = MysqlSink::new(config).unwrap();
    let replay = log[2].clone();
    again = tokio::task::spawn_blocking(move || {
        again.write(replay).unwrap();
        again.prepare(3).unwrap();
        again
    })
    .await
    .unwrap();
    drop((sink, again));
    let rows = table_rows(&table).await;
    assert_eq!(
        rows,
        vec![
            (2, "bob 😀".to_owned(), 7.25, "2023-11-14 22:13:21.000".to_owned()),
            (3, "cy".to_owned(), 1.0, "2023-11-14 22:13:22.000".to_owned()),
        ]
    );
}

#[test]
fn a_sink_without_a_key_or_with_a_bad_url_is_refused_by_name() {
    let config = |url: &str, key: Vec<String>| MysqlSinkConfig::new(url, "t", key);
    let err = MysqlSink::new(config("mysql://root@127.0.0.1/test", vec![])).unwrap_err();
    assert!(err.to_string().contains("needs a primary key"), "{err}");
    let err = MysqlSink::new(config("postgres://root:pw@h/test", vec!["id".into()])).unwrap_err();
    assert!(err.to_string().contains("is not a MySQL URL") && !err.to_string().contains("pw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_the_server_is_down_lands_once_it_is_back() {
    if !rill_mysql_cdc::mariadb_available() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no mariadbd on this machine");
        eprintln!("\n*** SKIPPED: mariadbd is not installed ***\n");
        return;
    }
    let mut own = tokio::task::spawn_blocking(rill_mysql_cdc::LocalMariaDb::start).await.unwrap().unwrap();
    let mut config = MysqlSinkConfig::new(&own.url("test"), "t", vec!["id".into()]);
    config.auto_create = true;
    config.backoff = std::time::Duration::from_millis(20);
    config.max_retries = 12;
    let retries = Arc::clone(&config.retries);
    let mut sink = MysqlSink::new(config).unwrap();
    sink = tokio::task::spawn_blocking(move || {
        sink.write(changes(&[(1, "ann", 1.0, 1_700_000_000_000, "+I")])).unwrap();
        sink.prepare(1).unwrap();
        sink
    })
    .await
    .unwrap();
    own = tokio::task::spawn_blocking(move || {
        own.shut_down();
        own
    })
    .await
    .unwrap();
    let writing = std::thread::spawn(move || {
        sink.write(changes(&[(2, "bob", 2.0, 1_700_000_000_000, "+I")])).unwrap();
        let prepared = sink.prepare(2);
        (sink, prepared)
    });
    // The server comes back only after the sink has failed at least once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while retries.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the write never failed with the server down");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    own = tokio::task::spawn_blocking(move || {
        own.start_again().unwrap();
        own
    })
    .await
    .unwrap();
    let (sink, prepared) = tokio::task::spawn_blocking(move || writing.join().unwrap()).await.unwrap();
    prepared.unwrap();
    assert!(sink.retries() >= 1, "the write was tried again");
    let mut conn = mysql_async::Conn::from_url(own.url("test")).await.unwrap();
    let ids: Vec<i64> = conn.query("SELECT id FROM t ORDER BY id").await.unwrap();
    assert_eq!(ids, [1, 2]);
    conn.disconnect().await.unwrap();
}
