//! Change capture against a real MariaDB the tests start (binlog on, in a
//! temp dir): snapshot then streaming with nothing lost or doubled at the
//! seam, every column type, DDL mid-stream, a reader closed and reopened
//! at its position (mid-transaction too) or after its GTID when its binlog
//! file is gone, and a server restart. Without
//! `mariadbd` the tests say so loudly and pass, except in CI (`CI=true`).
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rill_mysql_cdc::{CdcConfig, CdcReader, ChangeEvent, LocalMariaDb, Op, Position};
use serde_json::{Value, json};

fn server() -> Option<&'static LocalMariaDb> {
    static SERVER: OnceLock<Option<LocalMariaDb>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if !rill_mysql_cdc::mariadb_available() {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no mariadbd on this machine");
                eprintln!("\n*** SKIPPED: mariadbd is not installed ***\n");
                return None;
            }
            Some(LocalMariaDb::start().unwrap())
        })
        .as_ref()
}

async fn sql(url: &str, statements: &[&str]) {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    for s in statements {
        conn.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.disconnect().await.unwrap();
}

/// A fresh database on `server` and the URL of it.
async fn database(server: &LocalMariaDb, name: &str) -> String {
    sql(&server.url("test"), &[&format!("DROP DATABASE IF EXISTS {name}"), &format!("CREATE DATABASE {name}")]).await;
    server.url(name)
}

/// Reads until `want` changes came (30 s at most), asking for `max` at a time.
async fn read(reader: &mut CdcReader, want: usize, max: usize) -> Vec<ChangeEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < want {
        assert!(Instant::now() < deadline, "only {} of {want} changes came: {out:?}", out.len());
        out.extend(reader.next(max, Duration::from_millis(200)).await.unwrap());
    }
    out
}

/// A row as a JSON object, by column name.
fn object(e: &ChangeEvent, row: &Option<Vec<Value>>) -> Value {
    let row = row.as_ref().expect("a row image");
    Value::Object(e.shape.columns.iter().cloned().zip(row.iter().cloned()).collect())
}

fn summary(events: &[ChangeEvent]) -> Vec<(Op, Value)> {
    events
        .iter()
        .map(|e| {
            let row = if e.op == Op::Delete { &e.before } else { &e.after };
            (e.op, object(e, row))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_snapshot_and_the_binlog_meet_without_a_gap_or_a_double() {
    let Some(server) = server() else { return };
    let url = database(server, "seam").await;
    sql(&url, &["CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(20))"]).await;
    let values: Vec<String> = (1..=25).map(|i| format!("({i}, 'n{i}')")).collect();
    sql(&url, &[&format!("INSERT INTO orders VALUES {}", values.join(","))]).await;
    let mut config = CdcConfig::new(&url);
    config.fetch_size = 10;
    let mut reader = CdcReader::open(config, None).await.unwrap();
    assert!(reader.in_snapshot());
    // Changes made while the snapshot is read come once, from the binlog.
    sql(
        &url,
        &[
            "INSERT INTO orders VALUES (26, 'late')",
            "UPDATE orders SET note = 'moved' WHERE id = 2",
            "DELETE FROM orders WHERE id = 3",
        ],
    )
    .await;
    let events = read(&mut reader, 28, 100).await;
    let got = summary(&events);
    let snapshot: Vec<&(Op, Value)> = got.iter().filter(|(op, _)| *op == Op::Read).collect();
    assert_eq!(snapshot.len(), 25, "{got:?}");
    assert_eq!(snapshot[1].1, json!({"id": 2, "note": "n2"}), "the snapshot sees the table as it was");
    assert_eq!(
        &got[25..],
        &[
            (Op::Create, json!({"id": 26, "note": "late"})),
            (Op::Update, json!({"id": 2, "note": "moved"})),
            (Op::Delete, json!({"id": 3, "note": "n3"})),
        ]
    );
    assert_eq!(object(&events[26], &events[26].before), json!({"id": 2, "note": "n2"}));
    assert!(events[25].source.gtid.is_some(), "MariaDB gives each transaction a GTID");
    assert_eq!(events[26].key(), "2");
    assert!(reader.position().snapshot_done);
    assert!(reader.next(10, Duration::from_millis(300)).await.unwrap().is_empty(), "nothing more");
}

const TYPES: &str = "CREATE TABLE types (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT, mu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  d DECIMAL(20, 6), f FLOAT, db DOUBLE,
  c CHAR(4), vc VARCHAR(40), tx TEXT, bin BINARY(3), vb VARBINARY(8), bl BLOB,
  dt DATE, tm TIME(3), dtm DATETIME(6), ts TIMESTAMP(3) NULL, yr YEAR,
  en ENUM('small', 'medium', 'large'), st SET('a', 'b', 'c'), b1 BIT(1), b12 BIT(12), js JSON)";

const VALUES: &str = "-128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615,
  12345678901234.500000, 1.5, 1.2345678901234567,
  'ab', 'héllo 👋 wörld', 'long text', X'000102', X'ff00', X'deadbeef',
  '2026-11-25', '-12:30:00.5', '2026-11-25 13:05:00.123456', '2026-11-25 12:05:00.250', 2026,
  'medium', 'a,c', b'1', b'101010101010', '{\"k\": [1, 2.5, \"x\"]}'";

#[tokio::test(flavor = "multi_thread")]
async fn every_column_type_maps_exactly_and_alike_in_snapshot_and_binlog() {
    let Some(server) = server() else { return };
    let url = database(server, "types").await;
    sql(&url, &["SET time_zone = '+00:00'", TYPES, &format!("INSERT INTO types VALUES (1, {VALUES})")]).await;
    let mut reader = CdcReader::open(CdcConfig::new(&url), None).await.unwrap();
    let nulls = vec!["NULL"; 29].join(", ");
    let (streamed, nulled) =
        (format!("INSERT INTO types VALUES (2, {VALUES})"), format!("INSERT INTO types VALUES (3, {nulls})"));
    sql(&url, &["SET time_zone = '+00:00'", &streamed, &nulled]).await;
    let events = read(&mut reader, 3, 100).await;
    assert_eq!((events[0].op, events[1].op, events[2].op), (Op::Read, Op::Create, Op::Create));
    let mut snap = object(&events[0], &events[0].after);
    let mut streamed = object(&events[1], &events[1].after);
    let expected = json!({
        "ti": -128, "tu": 255, "si": -32768, "su": 65535, "mi": -8388608, "mu": 16777215,
        "i": -2147483648_i64, "iu": 4294967295_u64, "bi": i64::MIN, "bu": u64::MAX,
        "d": "12345678901234.500000", "f": 1.5, "db": 1.2345678901234567,
        "c": "ab", "vc": "héllo 👋 wörld", "tx": "long text", "bin": "AAEC", "vb": "/wA=", "bl": "3q2+7w==",
        "dt": "2026-11-25", "tm": "-12:30:00.500000", "dtm": "2026-11-25T13:05:00.123456", "ts": "2026-11-25T12:05:00.250000Z",
        "yr": 2026, "en": "medium", "st": "a,c", "b1": true, "b12": 0b1010_1010_1010, "js": "{\"k\": [1, 2.5, \"x\"]}"
    });
    snap.as_object_mut().unwrap().remove("id");
    streamed.as_object_mut().unwrap().remove("id");
    assert_eq!(snap, expected, "snapshot");
    assert_eq!(streamed, expected, "binlog");
    let all_null = object(&events[2], &events[2].after);
    assert!(all_null.as_object().unwrap().iter().all(|(k, v)| k == "id" || v.is_null()), "{all_null}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_after_ddl_decode_with_the_new_columns() {
    let Some(server) = server() else { return };
    let url = database(server, "ddl").await;
    sql(&url, &["CREATE TABLE t (id INT PRIMARY KEY, a INT)"]).await;
    let mut config = CdcConfig::new(&url);
    config.startup = rill_mysql_cdc::Startup::Latest;
    let mut reader = CdcReader::open(config, None).await.unwrap();
    sql(
        &url,
        &[
            "INSERT INTO t VALUES (1, 10)",
            "ALTER TABLE t ADD COLUMN note VARCHAR(10) DEFAULT '0'",
            "INSERT INTO t VALUES (2, 20, '22')",
            "ALTER TABLE t DROP COLUMN a",
            "INSERT INTO t VALUES (3, '33')",
            "ALTER TABLE t MODIFY COLUMN note BIGINT UNSIGNED",
            "UPDATE t SET note = 18446744073709551615 WHERE id = 3",
        ],
    )
    .await;
    let events = read(&mut reader, 4, 100).await;
    assert_eq!(object(&events[3], &events[3].before), json!({"id": 3, "note": 33}), "the column's new type");
    let got = summary(&events);
    assert_eq!(
        got,
        vec![
            (Op::Create, json!({"id": 1, "a": 10})),
            (Op::Create, json!({"id": 2, "a": 20, "note": "22"})),
            (Op::Create, json!({"id": 3, "note": "33"})),
            (Op::Update, json!({"id": 3, "note": u64::MAX})),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_reopened_at_its_position_goes_on_exactly_once() {
    let Some(server) = server() else { return };
    let url = database(server, "resume").await;
    sql(&url, &["CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t VALUES (0, 0)"]).await;
    let mut reader = CdcReader::open(CdcConfig::new(&url), None).await.unwrap();
    // Transactions of several row events each, so a position can fall inside one.
    let mut statements = vec![];
    for txn in 0..5 {
        statements.push("BEGIN".to_owned());
        for row in 0..4 {
            let id = 1 + txn * 4 + row;
            statements.push(format!("INSERT INTO t VALUES ({id}, {id})"));
        }
        statements.push("COMMIT".to_owned());
    }
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    sql(&url, &refs).await;
    let mut seen: Vec<i64> = Vec::new();
    let mut reopened = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 21 {
        assert!(Instant::now() < deadline, "stuck at {seen:?}");
        // One row event at a time, then a fresh reader at the position every few.
        let got = reader.next(1, Duration::from_millis(200)).await.unwrap();
        seen.extend(got.iter().map(|e| e.after.as_ref().unwrap()[0].as_i64().unwrap()));
        if !got.is_empty() && seen.len() % 3 == 2 && !reader.in_snapshot() {
            let at: Position = Position::decode(&reader.position().encode()).unwrap();
            reader = CdcReader::open(CdcConfig::new(&url), Some(at)).await.unwrap();
            reopened += 1;
        }
    }
    assert!(reopened >= 5, "reopened {reopened} times");
    assert_eq!(seen, (0..=20).collect::<Vec<i64>>());
    assert!(reader.next(10, Duration::from_millis(300)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restart_loses_nothing() {
    if server().is_none() {
        return;
    }
    let mut own = LocalMariaDb::start().unwrap();
    let url = own.url("test");
    sql(&url, &["CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)"]).await;
    let mut reader = CdcReader::open(CdcConfig::new(&url), None).await.unwrap();
    sql(&url, &["INSERT INTO t VALUES (2)"]).await;
    let mut seen: Vec<i64> =
        read(&mut reader, 2, 100).await.iter().map(|e| e.after.as_ref().unwrap()[0].as_i64().unwrap()).collect();
    own.restart().unwrap();
    sql(&url, &["INSERT INTO t VALUES (3)", "INSERT INTO t VALUES (4)"]).await;
    seen.extend(read(&mut reader, 2, 100).await.iter().map(|e| e.after.as_ref().unwrap()[0].as_i64().unwrap()));
    assert_eq!(seen, vec![1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_position_whose_binlog_file_was_purged_resumes_after_its_gtid() {
    if server().is_none() {
        return;
    }
    // A server of its own: purging binlogs under the other tests would pull their files away.
    let own = LocalMariaDb::start().unwrap();
    let url = own.url("test");
    sql(&url, &["CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)"]).await;
    let mut reader = CdcReader::open(CdcConfig::new(&url), None).await.unwrap();
    sql(&url, &["INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (3)"]).await;
    let ids = |events: &[ChangeEvent]| -> Vec<i64> {
        events.iter().map(|e| e.after.as_ref().unwrap()[0].as_i64().unwrap()).collect()
    };
    assert_eq!(ids(&read(&mut reader, 3, 100).await), [1, 2, 3]);
    let at = reader.position();
    assert!(at.gtid.is_some(), "{at:?}");
    reader.close().await;
    // Later changes land in a new file, and the position's file is purged.
    sql(&url, &["FLUSH BINARY LOGS", "INSERT INTO t VALUES (4)", "INSERT INTO t VALUES (5)"]).await;
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    // The server keeps a file a dump thread still reads: end the closed reader's thread first.
    let dumps: Vec<u64> =
        conn.query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").await.unwrap();
    for id in dumps {
        let _ = conn.query_drop(format!("KILL {id}")).await;
    }
    let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.unwrap();
    let last: String = logs.last().unwrap().get(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        conn.query_drop(format!("PURGE BINARY LOGS TO '{last}'")).await.unwrap();
        let left: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.unwrap();
        if left.iter().all(|r| r.get::<String, _>(0).unwrap() != at.file) {
            break;
        }
        assert!(Instant::now() < deadline, "{} is still there", at.file);
        tokio::task::yield_now().await;
    }
    conn.disconnect().await.unwrap();
    let mut reader = CdcReader::open(CdcConfig::new(&url), Some(at)).await.unwrap();
    assert_eq!(ids(&read(&mut reader, 2, 100).await), [4, 5], "exactly the changes after the position");
    assert!(reader.next(10, Duration::from_millis(300)).await.unwrap().is_empty(), "nothing doubled");
    // Its positions are real ones in the new file: reopening by file and offset goes on from there.
    let after = reader.position();
    assert_eq!(after.file, last);
    reader.close().await;
    sql(&url, &["INSERT INTO t VALUES (6)"]).await;
    let mut reader = CdcReader::open(CdcConfig::new(&url), Some(after)).await.unwrap();
    assert_eq!(ids(&read(&mut reader, 1, 100).await), [6]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_the_row_binlog_is_refused_with_the_setting_named() {
    if server().is_none() {
        return;
    }
    // A server of its own: the setting is global.
    let own = LocalMariaDb::start().unwrap();
    let url = own.url("test");
    sql(&url, &["SET GLOBAL binlog_row_metadata = 'MINIMAL'"]).await;
    let err = CdcReader::open(CdcConfig::new(&url), None).await.unwrap_err().to_string();
    assert!(err.contains("binlog_row_metadata is MINIMAL (needs FULL)"), "{err}");
}
