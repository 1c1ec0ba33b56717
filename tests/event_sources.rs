//! The event sources as a user runs them: `rill connect` with a YAML file.
//!
//! - `file-tail` follows an access log into a topic, each line parsed into
//!   fields, with the file, host and byte offset as properties and the
//!   group's tag. The log is rotated by rename while lines are written,
//!   the connector is stopped and started again mid-file, and every line
//!   arrives exactly once; a line that is not an access log line lands in
//!   the dead-letter topic with the reason and where it was.
//! - `http` takes beacons (JSON and NDJSON) with a token and answers once
//!   the broker has them; they are in the topic with their keys.
//! - `file-tail` JSON lines → topic → the `parquet` sink: the lake holds
//!   every line once, partitioned by level, a nested object as a struct
//!   column or as its JSON text by the declared type.
//! - `mqtt` takes devices' messages from the machine's Mosquitto (published
//!   with `mosquitto_pub`) into a topic per kind, keyed by device; a topic
//!   outside the pattern is a dead letter.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{rill, signal, start, stop};
use rill_client::{ClientConfig, FilterExpression, ReceivedMessage, SimpleConsumer};

/// Starts `rill connect` on `tests/connect/{file}` with `env`; returns it and its REST address.
fn connect_rest(file: &str, broker: &str, env: &[(&str, String)], state: &Path) -> (Child, String) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/connect").join(file);
    let mut command = rill();
    command
        .arg("connect")
        .arg(file)
        .arg("--json")
        .arg("--state-dir")
        .arg(state)
        .env("RILL_SERVER", broker)
        .env("RILL_LOG", "info");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(std::fs::File::options().create(true).append(true).open(state.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("rill connect printed {line:?}: {e}"));
    let rest = state["rest_addr"].as_str().unwrap().to_owned();
    (child, rest)
}

/// Starts `rill connect` on `tests/connect/{file}` with `env`.
fn connect(file: &str, broker: &str, env: &[(&str, String)], state: &Path) -> Child {
    connect_rest(file, broker, env, state).0
}

/// Waits (30 s at most) until connector `name` is RUNNING: its source is open.
async fn running(rest: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = rill_elasticsearch::http_client_builder().build().unwrap();
    loop {
        let status: serde_json::Value = match client.get(format!("http://{rest}/connectors/{name}")).send().await {
            Ok(r) => serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if status["state"] == "RUNNING" {
            return;
        }
        assert!(status["state"] != "FAILED", "{status}");
        assert!(Instant::now() < deadline, "connector {name} is not running: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn access_line(i: usize) -> String {
    format!(
        "10.0.0.{} - - [25/Nov/2026:13:{:02}:{:02} +0000] \"GET /item/{i} HTTP/1.1\" 200 {} \"-\" \"probe/1.0\"\n",
        i % 250,
        (i / 60) % 60,
        i % 60,
        100 + i
    )
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

/// Receives from `topic` until `n` messages came (60 s at most), acking each; then waits
/// one long poll (2 s) to see that no more come.
async fn receive(broker: &str, group: &str, topic: &str, n: usize) -> Vec<ReceivedMessage> {
    let subs = [(topic.to_owned(), FilterExpression::all())].into_iter().collect();
    let consumer =
        SimpleConsumer::connect(ClientConfig::new(broker), group, subs, Duration::from_secs(2)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} messages in {topic}", got.len());
        for m in consumer.receive(64, Duration::from_secs(30)).await.unwrap() {
            consumer.ack(&m).await.unwrap();
            got.push(m);
        }
    }
    // Nothing more than expected.
    let extra = consumer.receive(64, Duration::from_secs(30)).await.unwrap();
    assert!(extra.is_empty(), "{} messages more than the {n} expected", extra.len());
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_access_log_reaches_its_topic_exactly_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("access.log");
    let mut text: String = (0..300).map(access_line).collect();
    text.push_str("this is not an access log line\n");
    append(&log, &text);
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let state_dir = dir.path().join("connect");
    let env = [("LOG_DIR", logs.display().to_string())];
    let first = connect("logs_to_topic.yaml", &addr, &env, &state_dir);
    let mut got = receive(&addr, "check-1", "access", 300).await;

    // Rotation by rename while the writer still appends to the old file.
    append(&log, &(300..400).map(access_line).collect::<String>());
    std::fs::rename(&log, logs.join("access.log.1")).unwrap();
    append(&logs.join("access.log.1"), &(400..450).map(access_line).collect::<String>());
    append(&log, &(450..600).map(access_line).collect::<String>());
    got.extend(receive(&addr, "check-1", "access", 300).await);

    // Stopped, lines written meanwhile (one of them half), started again.
    signal(&first, "-INT");
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success());
    append(&log, &(600..700).map(access_line).collect::<String>());
    let half = access_line(700);
    append(&log, &half[..20]);
    let second = connect("logs_to_topic.yaml", &addr, &env, &state_dir);
    append(&log, &half[20..]);
    append(&log, &(701..750).map(access_line).collect::<String>());
    got.extend(receive(&addr, "check-1", "access", 150).await);

    // Where each line is: the first file holds 0..300, the bad line and 300..450; the second 450..750.
    let mut expected = BTreeMap::new();
    let mut at = 0u64;
    for i in 0..450 {
        if i == 300 {
            at += "this is not an access log line\n".len() as u64;
        }
        expected.insert(i as u64, at);
        at += access_line(i).len() as u64;
    }
    let mut at = 0u64;
    for i in 450..750 {
        expected.insert(i as u64, at);
        at += access_line(i).len() as u64;
    }
    let mut items: Vec<u64> = Vec::new();
    for m in &got {
        assert_eq!(m.tag.as_deref(), Some("web"));
        assert_eq!(m.properties.get("host").map(String::as_str), Some("web-01"));
        let file = &m.properties["file"];
        assert!(file.ends_with("access.log") || file.ends_with("access.log.1"), "{file}");
        let offset: u64 = m.properties["offset"].parse().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(doc["status"], 200, "{doc}");
        assert_eq!(doc["method"], "GET");
        let item: u64 = doc["path"].as_str().unwrap().trim_start_matches("/item/").parse().unwrap();
        assert_eq!(doc["size"], 100 + item);
        assert_eq!(offset, expected[&item], "offset of line {item}");
        items.push(item);
    }
    items.sort_unstable();
    assert_eq!(items, (0..750).collect::<Vec<_>>(), "every line exactly once");

    let refused = receive(&addr, "check-dlq", "access-refused", 1).await;
    let reason = &refused[0].properties["rill.error"];
    assert!(reason.contains("not a line of the combined log format"), "{reason}");
    let origin = &refused[0].properties["rill.origin"];
    assert!(origin.contains("access.log at byte") && origin.contains("source web-logs"), "{origin}");
    assert_eq!(&refused[0].body[..], b"this is not an access log line");

    signal(&second, "-INT");
    second.wait_with_output().unwrap();
    stop(broker);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn beacons_posted_over_http_are_in_their_topic_when_the_request_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("HTTP_LISTEN", listen.clone()), ("BEACON_TOKEN", "t0k3n".to_owned())];
    let (connect, rest) = connect_rest("beacons_to_topic.yaml", &addr, &env, &dir.path().join("connect"));
    running(&rest, "beacons").await;
    let client = rill_elasticsearch::http_client_builder().build().unwrap();
    let url = format!("http://{listen}/ingest/web");
    let r = client.post(&url).body(r#"{"session": "s1"}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .post(&url)
        .bearer_auth("t0k3n")
        .header("user-agent", "beacon-test/1")
        .body(r#"[{"session": "s1", "lcp_ms": 1800}, {"session": "s2", "lcp_ms": 950}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"accepted":2}"#);
    let r = client
        .post(format!("{url}?token=t0k3n"))
        .header("content-type", "application/x-ndjson")
        .body("{\"session\": \"s3\", \"lcp_ms\": 3000}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client.post(format!("http://{listen}/ingest/admin")).bearer_auth("t0k3n").body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let got = receive(&addr, "check-beacons", "beacons-web", 3).await;
    let mut keys: Vec<(String, i64)> = got
        .iter()
        .map(|m| {
            assert_eq!(m.tag.as_deref(), Some("beacon"));
            assert_eq!(m.properties.get("client").map(String::as_str), Some("127.0.0.1"));
            let doc: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
            (m.keys[0].clone(), doc["lcp_ms"].as_i64().unwrap())
        })
        .collect();
    keys.sort();
    assert_eq!(keys, [("s1".to_owned(), 1800), ("s2".to_owned(), 950), ("s3".to_owned(), 3000)]);
    assert!(got.iter().any(|m| m.properties.get("user-agent").map(String::as_str) == Some("beacon-test/1")));
    signal(&connect, "-INT");
    assert!(connect.wait_with_output().unwrap().status.success());
    stop(broker);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_messages_over_mqtt_reach_a_topic_per_kind() {
    if std::net::TcpStream::connect("127.0.0.1:1883").is_err() {
        assert!(std::env::var("CI").is_err(), "Mosquitto on 127.0.0.1:1883 is needed in CI: run ./scripts/test");
        eprintln!("\n*** SKIPPED: no Mosquitto on 127.0.0.1:1883; ./scripts/test starts it ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("rill-e2e/{nanos}");
    let env = [("MQTT_PREFIX", prefix.clone()), ("MQTT_CLIENT", format!("rill-e2e-{nanos}"))];
    let (connect, rest) = connect_rest("devices_to_topic.yaml", &addr, &env, &dir.path().join("connect"));
    // Subscribed once the connector runs: a message published before would reach no one.
    running(&rest, "devices").await;
    for device in ["d1", "d2"] {
        let lines: String = (0..5).map(|i| format!("{{\"device\": \"{device}\", \"temp\": {i}}}\n")).collect();
        mosquitto_pub(&format!("{prefix}/{device}/telemetry"), &lines);
    }
    mosquitto_pub(&format!("{prefix}/d1/too/deep"), "{}\n");
    let got = receive(&addr, "check-iot", "iot-telemetry", 10).await;
    for m in &got {
        let doc: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(m.keys, [doc["device"].as_str().unwrap()]);
        assert_eq!(m.tag.as_deref(), Some("telemetry"));
        assert!(m.properties["mqtt-topic"].ends_with("/telemetry"));
    }
    let refused = receive(&addr, "check-iot-dlq", "devices-refused", 1).await;
    assert!(refused[0].properties["rill.error"].contains("does not fit topic-pattern"), "{:?}", refused[0].properties);
    signal(&connect, "-INT");
    assert!(connect.wait_with_output().unwrap().status.success());
    stop(broker);
    // The persistent session is no longer needed.
    let _ = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-i", &format!("rill-e2e-{nanos}"), "-c", "-E", "-t", "x"])
        .output();
}

fn mosquitto_pub(topic: &str, lines: &str) {
    let mut child = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", "1883", "-q", "1", "-l", "-t", topic])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (mosquitto-clients) is installed by ./scripts/test");
    child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

/// Rows and distinct `n` in the lake's committed files (level from the paths).
async fn lake_rows(lake: &Path) -> (i64, i64) {
    if rill_parquet::committed(lake).map(|f| f.is_empty()).unwrap_or(true) {
        return (0, 0);
    }
    let ctx = datafusion::prelude::SessionContext::new();
    let parts = vec![("level".to_owned(), datafusion::arrow::datatypes::DataType::Utf8)];
    let options = datafusion::prelude::ParquetReadOptions::default().table_partition_cols(parts);
    ctx.register_parquet("lake", lake.to_str().unwrap(), options).await.unwrap();
    let b = ctx.sql("SELECT COUNT(*), COUNT(DISTINCT n) FROM lake").await.unwrap().collect().await.unwrap();
    let col = |i: usize| {
        datafusion::arrow::array::as_primitive_array::<datafusion::arrow::datatypes::Int64Type>(b[0].column(i)).value(0)
    };
    (col(0), col(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn tailed_json_logs_reach_a_parquet_lake_through_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let lines: String = (0..200)
        .map(|n| {
            let level = ["info", "warn"][n % 2];
            let line = serde_json::json!({
                "level": level, "msg": format!("event {n}"), "n": n,
                "ctx": {"user": format!("u{}", n % 3), "ms": n * 2}, "extra": {"tags": ["a", n]}
            });
            format!("{line}\n")
        })
        .collect();
    append(&logs.join("app.log"), &lines);
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let lake = dir.path().join("lake");
    let env = [("LOG_DIR", logs.display().to_string()), ("LAKE", lake.display().to_string())];
    let connect = connect("logs_to_lake.yaml", &addr, &env, &dir.path().join("connect"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while lake_rows(&lake).await.0 < 200 {
        assert!(Instant::now() < deadline, "the lake holds {:?} of 200 rows", lake_rows(&lake).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&connect, "-INT");
    assert!(connect.wait_with_output().unwrap().status.success());
    assert_eq!(lake_rows(&lake).await, (200, 200), "every line once");
    // Nested objects: a struct column and a text column holding the object's JSON.
    let ctx = datafusion::prelude::SessionContext::new();
    let parts = vec![("level".to_owned(), datafusion::arrow::datatypes::DataType::Utf8)];
    let options = datafusion::prelude::ParquetReadOptions::default().table_partition_cols(parts);
    ctx.register_parquet("lake", lake.to_str().unwrap(), options).await.unwrap();
    let b = ctx.sql("SELECT ctx, ctx['user'], ctx['ms'], extra FROM lake WHERE n = 7").await.unwrap();
    let b = b.collect().await.unwrap();
    assert!(matches!(b[0].schema().field(0).data_type(), datafusion::arrow::datatypes::DataType::Struct(_)));
    let text = |i: usize| {
        // DataFusion reads Parquet text as string views.
        let column = datafusion::arrow::compute::cast(b[0].column(i), &datafusion::arrow::datatypes::DataType::Utf8);
        datafusion::arrow::array::as_string_array(&column.unwrap()).value(0).to_owned()
    };
    assert_eq!(text(1), "u1");
    assert_eq!(
        datafusion::arrow::array::as_primitive_array::<datafusion::arrow::datatypes::Int32Type>(b[0].column(2))
            .value(0),
        14
    );
    let extra: serde_json::Value = serde_json::from_str(&text(3)).unwrap();
    assert_eq!(extra, serde_json::json!({"tags": ["a", 7]}));
    for level in ["level=info", "level=warn"] {
        assert!(lake.join(level).join(rill_parquet::SUCCESS).exists(), "{level}");
    }
    stop(broker);
}
