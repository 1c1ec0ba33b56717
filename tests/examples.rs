//! The example pipelines as a user runs them: a broker of their own, the
//! sample data sent with `rill produce`, the job file run with `rill run`
//! to the end of that data. The rows printed must be what the sample data
//! says, worked out here independently of the job.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{rill, start, stop};
use serde_json::Value;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Runs `produce` then the example's job on a fresh broker; returns the printed rows.
fn run_example(name: &str, produce: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let out = rill().args(["produce", "--server", &addr]).args(produce).output().unwrap();
    assert!(out.status.success(), "produce: {}", String::from_utf8_lossy(&out.stderr));
    let job = example(name).join("job.sql");
    // Checkpoints of this run only (not the user's data directory).
    let checkpoints = format!("state.checkpoints.dir={}", dir.path().join("checkpoints").display());
    let out = rill().args(["run", "--set", &checkpoints]).arg(&job).env("RILL_SERVER", &addr).output().unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    stop(broker);
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

const MINUTE: i64 = 60_000;

#[test]
fn frontend_monitoring_reports_views_p95_and_errors_per_page_and_minute() {
    let data = example("frontend-monitoring").join("beacons.jsonl");
    let beacons = lines(&data);
    let rows = run_example("frontend-monitoring", &["--topic", "beacons", data.to_str().unwrap()]);
    // (page, minute) → latencies and errors, from the sample data.
    let mut want: BTreeMap<(String, i64), (Vec<i64>, i64)> = BTreeMap::new();
    for b in &beacons {
        let ts = b["ts"].as_i64().unwrap();
        let e = want.entry((b["page"].as_str().unwrap().to_owned(), ts - ts.rem_euclid(MINUTE))).or_default();
        e.0.push(b["latency_ms"].as_i64().unwrap());
        e.1 += i64::from(b["status"].as_i64().unwrap() >= 500);
    }
    assert_eq!(rows.len(), want.len(), "one row per page and minute: {rows:?}");
    let mut seen = 0;
    for row in &rows {
        let minute = chrono::NaiveDateTime::parse_from_str(row["minute"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let (latencies, errors) = &want[&(row["page"].as_str().unwrap().to_owned(), minute)];
        assert_eq!(row["views"].as_i64().unwrap(), latencies.len() as i64, "{row}");
        assert_eq!(row["errors"].as_i64().unwrap(), *errors, "{row}");
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        let p95 = row["p95_latency_ms"].as_f64().unwrap();
        let (median, max) = (sorted[sorted.len() / 2] as f64, *sorted.last().unwrap() as f64);
        assert!(p95 >= median && p95 <= max, "p95 {p95} outside [{median}, {max}]: {row}");
        seen += latencies.len();
    }
    assert_eq!(seen, beacons.len(), "every beacon is counted once");
}

#[test]
fn order_analytics_sums_revenue_per_category_and_five_minutes_of_the_pushed_down_tags() {
    let data = example("order-analytics").join("orders.jsonl");
    let orders = lines(&data);
    let rows =
        run_example("order-analytics", &["--topic", "orders", "--tag-field", "category", data.to_str().unwrap()]);
    let mut want: BTreeMap<(String, i64), (i64, f64, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for o in &orders {
        let category = o["category"].as_str().unwrap();
        if !["books", "games", "music"].contains(&category) {
            continue;
        }
        let ts = o["ts"].as_i64().unwrap();
        let e = want.entry((category.to_owned(), ts - ts.rem_euclid(5 * MINUTE))).or_default();
        e.0 += 1;
        e.1 += o["amount"].as_f64().unwrap();
        e.2.insert(o["customer"].as_str().unwrap().to_owned());
    }
    assert!(want.len() >= 9, "the sample spans several windows per category");
    assert_eq!(rows.len(), want.len(), "{rows:?}");
    for row in &rows {
        let start = chrono::NaiveDateTime::parse_from_str(row["window_start"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let (count, revenue, customers) = &want[&(row["category"].as_str().unwrap().to_owned(), start)];
        assert_eq!(row["orders"].as_i64().unwrap(), *count, "{row}");
        assert!((row["revenue"].as_f64().unwrap() - revenue).abs() < 0.006, "{row} vs {revenue}");
        assert_eq!(row["customers"].as_i64().unwrap(), customers.len() as i64, "{row}");
    }
    // The tag condition went into the subscription.
    let explain = rill().args(["run", "--explain"]).arg(example("order-analytics").join("job.sql")).output().unwrap();
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("books || games || music"), "{text}");
}

/// `examples/cdc-to-es-and-mysql`: the example program (built with the
/// tests) starts its own MariaDB and search server, runs its job and exits
/// non-zero unless the index and the summary agree with MariaDB's own
/// computation after the snapshot and after every change.
#[test]
fn cdc_to_es_and_mysql_keeps_the_index_and_the_summary_true() {
    if !common::servers_available(true) {
        return;
    }
    // target/<profile>/deps/<this test> → target/<profile>/examples/<example>
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join("cdc-to-es-and-mysql");
    assert!(example.is_file(), "{} was not built with the tests", example.display());
    let out = std::process::Command::new(&example).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // 8 orders in the snapshot; 2 added, 1 deleted after.
    assert!(stdout.contains("== after the snapshot\nsearch index 'orders' (8 documents):"), "{stdout}");
    assert!(stdout.contains("search index 'orders' (9 documents):"), "{stdout}");
    assert!(stderr.contains("agree with MariaDB after every step"), "{stderr}");
}

/// Runs the example program `name` (built with the tests); returns its stdout and stderr.
fn run_program(name: &str) -> (String, String) {
    // target/<profile>/deps/<this test> → target/<profile>/examples/<example>
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(example.is_file(), "{} was not built with the tests", example.display());
    let out = std::process::Command::new(&example).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// `examples/logs-to-es-and-lake`: logs rotated twice while the job follows
/// them; the program exits non-zero unless the index and the lake hold
/// exactly what was written.
#[test]
fn logs_to_es_and_lake_indexes_problems_and_lakes_every_event() {
    if !common::servers_available(true) {
        return;
    }
    let (stdout, stderr) = run_program("logs-to-es-and-lake");
    // 1,200 events: every 10th a warning, every 25th an error (48), some both (24 counted as errors).
    assert!(stdout.contains("search index 'logs-2026.11.25': 144 warnings and errors"), "{stdout}");
    assert!(
        stdout.contains("  at rill.example.Client.call(Client.java:"),
        "the stack trace stays with its error: {stdout}"
    );
    assert!(stdout.contains("service=auth/dt=2026-11-25/hr=13"), "{stdout}");
    assert!(stderr.contains("exactly what was written, across two rotations"), "{stderr}");
}

/// `examples/iot-mqtt`: readings over the machine's Mosquitto into
/// per-device minutes; the program exits non-zero unless they agree with
/// what it published.
#[test]
fn iot_mqtt_aggregates_each_device_per_minute() {
    if std::net::TcpStream::connect("127.0.0.1:1883").is_err() {
        assert!(std::env::var("CI").is_err(), "Mosquitto on 127.0.0.1:1883 is needed in CI: run ./scripts/test");
        eprintln!("\n*** SKIPPED iot-mqtt example: no Mosquitto on 127.0.0.1:1883 ***\n");
        return;
    }
    let (stdout, stderr) = run_program("iot-mqtt");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains("2026-11-25T13:0")).collect();
    assert_eq!(rows.len(), 9, "3 devices × 3 minutes: {stdout}");
    assert!(rows.iter().all(|r| r.split_whitespace().nth(2) == Some("12")), "12 readings a minute: {stdout}");
    assert!(stderr.contains("agree with the readings published"), "{stderr}");
}

/// `examples/frontend-monitoring` (run.sh): beacons POSTed over HTTP into
/// per-page minutes in MySQL and a lake; the program exits non-zero unless
/// both agree with the sample beacons.
#[test]
fn frontend_monitoring_over_http_fills_mysql_and_the_lake() {
    if !common::servers_available(false) {
        return;
    }
    let (stdout, stderr) = run_program("frontend-monitoring");
    assert!(stdout.contains("MySQL table report.page_stats:"), "{stdout}");
    assert!(stderr.contains("agree with the beacons sent"), "{stderr}");
}
