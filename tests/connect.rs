//! The connect runtime as a user runs it: `rill connect` with a YAML file
//! whose source reads a MariaDB table's binlog (a server the test starts)
//! into a topic and whose sinks copy that topic into another MySQL table
//! and a search index (an OpenSearch-compatible server the test starts);
//! a third sink's documents are all refused by its index and land in a
//! dead-letter topic with the reason while it keeps running. The REST API
//! lists, pauses and resumes them; the process is killed (SIGKILL) while
//! changes stream and started again, and both copies end equal to the
//! table (masked column aside): nothing lost, nothing doubled. A file with
//! a mistake is refused with its line and column. Without `mariadbd` or
//! `osmem-server` the test says so loudly and passes, except in CI.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{rill, signal, start, stop};
use mysql_async::prelude::Queryable;
use rill_client::{ClientConfig, FilterExpression, SimpleConsumer};
use rill_elasticsearch::server::LocalSearch;
use rill_mysql_cdc::LocalMariaDb;

type Rows = Vec<(i64, String, String, Option<String>)>;

async fn sql(url: &str, statements: &[String]) {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    for s in statements {
        conn.query_drop(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.disconnect().await.unwrap();
}

async fn rows(url: &str, table: &str) -> Option<Rows> {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    let q = format!("SELECT id, category, CAST(amount AS CHAR), card FROM {table} ORDER BY id");
    let out = conn.query(q).await.ok();
    conn.disconnect().await.unwrap();
    out
}

fn file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/connect/cdc_to_mysql_and_search.yaml")
}

/// Starts `rill connect`; returns it and its REST address.
fn connect(broker: &str, mysql: &LocalMariaDb, search: &LocalSearch, state: &Path) -> (Child, String) {
    let mut child = rill()
        .arg("connect")
        .arg(file())
        .arg("--json")
        .arg("--state-dir")
        .arg(state)
        .env("RILL_SERVER", broker)
        .env("MYSQL_PORT", mysql.port().to_string())
        .env("ES_URL", search.url())
        .env("RILL_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::options().create(true).append(true).open(state.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "rill connect printed nothing");
    let state: serde_json::Value = serde_json::from_str(&line).unwrap();
    (child, state["rest_addr"].as_str().unwrap().to_owned())
}

async fn http(method: &str, addr: &str, path: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (code, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// The search index's documents as rows (amount as a number: JSON has no decimals).
async fn indexed(search: &LocalSearch) -> Vec<(i64, String, f64, Option<String>)> {
    let docs = search.documents("orders").await.unwrap();
    docs.into_iter()
        .map(|(id, d)| {
            assert_eq!(id, d["id"].to_string(), "the document id is the key");
            let card = d["card"].as_str().map(str::to_owned);
            (d["id"].as_i64().unwrap(), d["category"].as_str().unwrap().to_owned(), d["amount"].as_f64().unwrap(), card)
        })
        .collect()
}

/// Waits (60 s at most) for both copies to equal the table with the card masked.
async fn copied(mysql: &LocalMariaDb, search: &LocalSearch, child: &mut Child, log: &Path) {
    let log = || std::fs::read_to_string(log.with_extension("log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let want: Rows = rows(&mysql.url("shop"), "orders")
            .await
            .unwrap()
            .into_iter()
            .map(|(id, c, a, card)| (id, c, a, card.map(|_| "****".to_owned())))
            .collect();
        let got = rows(&mysql.url("report"), "orders_copy").await;
        let mut docs = indexed(search).await;
        docs.sort_by_key(|d| d.0);
        let want_docs: Vec<_> =
            want.iter().map(|(id, c, a, card)| (*id, c.clone(), a.parse::<f64>().unwrap(), card.clone())).collect();
        if got.as_ref() == Some(&want) && docs == want_docs {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("rill connect exited ({status}): {}", log());
        }
        assert!(
            Instant::now() < deadline,
            "the copy is {got:?}, the index {docs:?}, the table {want:?}; rill connect said: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (60 s at most) for `n` refused documents in the dead-letter topic, each with the index's reason.
async fn refused(broker: &str, n: usize) {
    let subs = [("orders-refused".to_owned(), FilterExpression::all())].into_iter().collect();
    let consumer = SimpleConsumer::connect(ClientConfig::new(broker), "check-refused", subs, Duration::from_secs(30))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < n {
        assert!(Instant::now() < deadline, "{seen} of {n} refused documents in the dead-letter topic");
        for m in consumer.receive(32, Duration::from_secs(30)).await.unwrap() {
            let reason = m.properties.get("rill.error").cloned().unwrap_or_default();
            assert!(reason.contains("mapper_parsing_exception"), "{reason}");
            assert_eq!(m.properties.get("rill.connector").map(String::as_str), Some("orders-strict"));
            let doc: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
            assert!(doc["category"].is_string(), "the refused document travels with its reason: {doc}");
            consumer.ack(&m).await.unwrap();
            seen += 1;
        }
    }
}

fn changes(round: i64) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..30 {
        let id = round * 100 + i;
        out.push(format!("INSERT INTO orders VALUES ({id}, 'c{}', {}.25, '4111-{id}')", id % 3, id % 50));
    }
    out.push(format!(
        "UPDATE orders SET amount = amount + 1, category = 'moved' WHERE id % 4 = 0 AND id >= {}",
        round * 100
    ));
    out.push(format!("DELETE FROM orders WHERE id % 5 = 0 AND id >= {}", round * 100));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn connectors_from_yaml_copy_a_table_exactly_across_a_kill() {
    if !common::servers_available(true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mysql = tokio::task::spawn_blocking(LocalMariaDb::start).await.unwrap().unwrap();
    let search = LocalSearch::start().unwrap();
    // An index whose category must be a number: every order is refused.
    search.create_index("orders-strict", serde_json::json!({"category": {"type": "long"}})).await.unwrap();
    let setup = [
        "CREATE DATABASE shop".to_owned(),
        "CREATE DATABASE report".to_owned(),
        "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, category VARCHAR(20), amount DECIMAL(10, 2), card VARCHAR(20))"
            .to_owned(),
    ];
    sql(&mysql.url("test"), &setup).await;
    sql(&mysql.url("shop"), &changes(0)).await;
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let state_dir = dir.path().join("connect");
    let (mut first, rest) = connect(&addr, &mysql, &search, &state_dir);
    copied(&mysql, &search, &mut first, &state_dir).await;
    refused(&addr, 24).await;
    assert_eq!(search.count("orders-strict").await.unwrap(), 0);

    let (code, list) = http("GET", &rest, "/connectors").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orders-copy", "orders-search", "orders-strict", "shop-cdc"]);
    assert!(list.as_array().unwrap().iter().all(|c| c["state"] == "RUNNING"), "{list}");
    let (code, status) = http("GET", &rest, "/connectors/shop-cdc").await;
    assert_eq!(code, 200);
    // The snapshot's rows (30 inserted, 6 deleted before it began), then nothing.
    assert_eq!(status["records"], 24, "{status}");
    assert!(status["position"].as_str().unwrap().contains("\"snapshot_done\":true"), "{status}");
    assert_eq!(http("POST", &rest, "/connectors/shop-cdc/pause").await.0, 202);
    assert_eq!(http("GET", &rest, "/connectors/nope").await.0, 404);
    let (code, api) = http("GET", &rest, "/openapi.json").await;
    assert_eq!(code, 200);
    assert!(api["paths"]["/connectors/{name}/config"]["put"].is_object());
    sql(&mysql.url("shop"), &changes(1)).await;
    assert_eq!(http("POST", &rest, "/connectors/shop-cdc/resume").await.0, 202);
    copied(&mysql, &search, &mut first, &state_dir).await;

    // Killed while changes stream in; started again on the same state.
    let more = changes(2);
    sql(&mysql.url("shop"), &more[..15]).await;
    signal(&first, "-KILL");
    first.wait().unwrap();
    sql(&mysql.url("shop"), &more[15..]).await;
    let (mut second, _) = connect(&addr, &mysql, &search, &state_dir);
    copied(&mysql, &search, &mut second, &state_dir).await;
    signal(&second, "-INT");
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stop(broker);
}

#[test]
fn a_connect_file_with_a_mistake_names_where() {
    let dir = tempfile::tempdir().unwrap();
    let bad = std::fs::read_to_string(file()).unwrap().replace("server-id: 6001", "server_id: 6001");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let out = rill()
        .arg("connect")
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RILL_SERVER", "127.0.0.1:1")
        .env("MYSQL_PORT", "1")
        .env("ES_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:16:7: connector 'shop-cdc': config.server_id: unknown option 'server_id'"), "{err}");
    assert!(err.contains("did you mean 'server-id'?"), "{err}");
}
