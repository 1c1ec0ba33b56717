//! The `rill` command as a user meets it.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{rill, signal, start};

#[test]
fn help_lists_the_commands() {
    let out = rill().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["standalone", "broker", "namesrv", "admin", "bench", "--log-level"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
    let out = rill().args(["bench", "store", "--help"]).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("--sync-messages"));
}

#[test]
fn standalone_reports_state_and_stops_cleanly_or_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, state) = start(&data, &["--flush", "sync"]);
    assert_eq!(state["data_dir"], data.display().to_string());
    assert_eq!(state["sync_flush"], true);
    assert_eq!(state["recovery"]["unclean_shutdown"], false);
    assert!(data.join("abort").exists(), "the abort marker exists while running");
    assert_eq!(state["topics"], serde_json::json!([]));
    let addr: std::net::SocketAddr = state["grpc_addr"].as_str().unwrap().parse().unwrap();
    assert!(addr.port() > 0);
    assert!(std::net::TcpStream::connect(addr).is_ok(), "the gRPC port accepts connections");
    assert!(data.join("meta").is_dir());
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("store closed cleanly"), "{log}");
    assert!(log.contains("unregistered from the name server"), "the embedded name server outlives the broker: {log}");
    assert!(!data.join("abort").exists(), "a clean stop removes the abort marker");

    let (child, state) = start(&data, &[]);
    assert_eq!(state["recovery"]["unclean_shutdown"], false);
    assert_eq!(state["sync_flush"], false);
    signal(&child, "-KILL");
    child.wait_with_output().unwrap();

    let (child, state) = start(&data, &[]);
    assert_eq!(state["recovery"]["unclean_shutdown"], true, "after kill -9 the next start recovers");
    signal(&child, "-INT");
    assert!(child.wait_with_output().unwrap().status.success());
}

#[test]
fn a_bad_config_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rill.toml");
    std::fs::write(&file, "[store]\nsegment_size = \"big\"\n").unwrap();
    let out = rill().args(["standalone", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rill.toml") && err.contains("segment_size"), "{err}");
    std::fs::write(&file, "[store\n").unwrap();
    let out = rill().args(["standalone", "--config"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn bench_store_prints_one_json_object_with_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let out = rill()
        .args(["bench", "store", "--json", "--messages", "3000", "--sync-messages", "100", "--writers", "1,2"])
        .args(["--size", "512", "--max-seconds", "5", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        assert!(c["ratio_vs_raw"].as_f64().unwrap() > 0.0, "{c}");
        assert!(c["msgs_per_sec"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert_eq!(report["raw"].as_array().unwrap().len(), 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("[bench store]"), "progress goes to stderr");
}

#[test]
fn a_data_directory_without_permission_is_named_in_the_error() {
    // Root ignores file permissions, so the check runs the binary as `nobody`.
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if uid.as_deref().ok() != Some("0") || !setpriv {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: this test needs root and setpriv");
        eprintln!("\n*** SKIPPED permission test: needs root and setpriv to run the binary as nobody ***\n");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A copy of the binary that `nobody` may execute wherever the build lives.
    let exe = dir.path().join("rill");
    std::fs::copy(env!("CARGO_BIN_EXE_rill"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["standalone", "--grpc-addr", "127.0.0.1:0", "--namesrv-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("RILL_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied") && err.contains(&data.display().to_string()), "{err}");
}

#[test]
fn bench_produce_compares_rill_with_nats_jetstream() {
    // The machine runs NATS with JetStream on 127.0.0.1:4222.
    if std::net::TcpStream::connect("127.0.0.1:4222").is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but NATS is not running on 127.0.0.1:4222");
        eprintln!("\n*** SKIPPED bench produce: no NATS server on 127.0.0.1:4222 ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = rill()
        // Few messages and a generous cap: a disk that is slow to sync (CI
        // machines share theirs) must not cut the run short.
        .args(["bench", "produce", "--json", "--messages", "600", "--in-flight", "16", "--producers", "2"])
        .args(["--max-seconds", "60", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let systems: Vec<&str> = cases.iter().map(|c| c["system"].as_str().unwrap()).collect();
    assert_eq!(systems, ["rill async flush", "rill sync flush", "nats jetstream (file)"]);
    for c in cases {
        assert_eq!(c["messages"], 600, "{c}");
        assert!(c["ratio_vs_jetstream"].as_f64().unwrap() > 0.0, "{c}");
        assert!(c["msgs_per_sec_per_core"].as_f64().unwrap() > 0.0, "{c}");
    }
}

#[test]
fn bench_e2e_reports_latency_for_every_message_sent() {
    let dir = tempfile::tempdir().unwrap();
    let out = rill()
        .args(["bench", "e2e", "--json", "--skip-peer", "--rate", "500", "--seconds", "1", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rill = &report["cases"][0];
    assert_eq!(rill["received"], rill["sent"], "{rill}");
    assert!(rill["sent"].as_u64().unwrap() >= 500);
    assert!(rill["p99_us"].as_f64().unwrap() >= rill["p50_us"].as_f64().unwrap());
}

#[test]
fn bench_nexmark_reports_every_query_beside_flink_and_the_target() {
    let out = rill().args(["bench", "nexmark", "--json", "--events", "20000", "--chunk", "2000"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["query"].as_str().unwrap()).collect();
    assert_eq!(names, ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11"]);
    for c in cases {
        assert_eq!(c["events"], 20_000, "{c}");
        let (all, dataflow) =
            (c["events_per_sec_per_core"].as_f64().unwrap(), c["dataflow_events_per_sec_per_core"].as_f64().unwrap());
        assert!(all > 0.0 && dataflow > all, "the generator's time counts in the first: {c}");
        assert!(c["ratio_vs_target"].as_f64().unwrap() > 0.0, "{c}");
    }
    let q5 = cases.iter().find(|c| c["query"] == "q5").unwrap();
    assert!(q5["ratio_vs_flink"].as_f64().unwrap() > 0.0 && q5["results"].as_u64().unwrap() > 0, "{q5}");
    assert!(report["generator_events_per_sec_per_core"].as_f64().unwrap() > 0.0);

    // With --sql each query's job file runs beside the DSL version, with the same results.
    let out = rill()
        .args(["bench", "nexmark", "--sql", "--query", "q3,q5", "--json", "--events", "20000", "--chunk", "2000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for c in report["cases"].as_array().unwrap() {
        assert_eq!(c["sql_results"], c["results"], "{c}");
        assert!(c["ratio_sql_vs_dsl"].as_f64().unwrap() > 0.0, "{c}");
        assert!(c["ratio_sql_vs_dsl_with_generator"].as_f64().unwrap() > 0.0, "{c}");
    }

    let bad = rill().args(["bench", "nexmark", "--query", "q6"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--query q6: no such query"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn bench_state_spills_beyond_its_budget_and_still_catches_every_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let out = rill()
        .args(["bench", "state", "--json", "--keys", "150000", "--budget-mb", "2", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    let (spill, memory) = (&cases[0], &cases[1]);
    for c in cases {
        assert_eq!(c["keys"], 150_000, "{c}");
        assert_eq!(c["checked"], 150, "{c}");
        assert_eq!(c["correct"], 150, "{c}");
        assert!(c["rows_per_sec_per_core"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert!(spill["spilled_keys"].as_u64().unwrap() > 100_000, "{spill}");
    assert!(spill["state_memory_mib"].as_f64().unwrap() <= 2.0, "{spill}");
    assert_eq!(memory["spilled_keys"], 0, "{memory}");
    assert!(memory["state_memory_mib"].as_f64().unwrap() > 2.0, "{memory}");
    assert_eq!(memory["throughput_ratio_vs_in_memory"], 1.0, "{memory}");
    // The scratch directory goes with the run.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bench_state_window_spills_groups_and_fires_every_key_right() {
    let dir = tempfile::tempdir().unwrap();
    let out = rill()
        .args(["bench", "state", "--operator", "window", "--json", "--keys", "60000", "--budget-mb", "2", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["operator"], "window");
    let cases = report["cases"].as_array().unwrap();
    let (spill, memory) = (&cases[0], &cases[1]);
    for c in cases {
        assert_eq!(c["keys"], 60_000, "{c}");
        assert_eq!(c["checked"], 60_000, "{c}");
        assert_eq!(c["correct"], 60_000, "every key's window result is right: {c}");
    }
    assert!(spill["spilled_keys"].as_u64().unwrap() > 30_000, "{spill}");
    assert!(spill["state_memory_mib"].as_f64().unwrap() <= 2.0, "{spill}");
    assert_eq!(memory["spilled_keys"], 0, "{memory}");
    assert!(memory["state_memory_mib"].as_f64().unwrap() > 2.0, "{memory}");
    let bad = rill().args(["bench", "state", "--operator", "join"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("'join'"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bench_cdc_reports_capture_and_sinks_beside_their_anchors() {
    if !common::servers_available(true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = rill().args(["bench", "cdc", "--json", "--rows", "3000", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let phases: Vec<&str> = cases.iter().map(|c| c["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["snapshot", "binlog", "sink mysql", "sink elasticsearch"]);
    for c in cases {
        // Capture moves the table's rows; the sinks every row of the topic (snapshot and binlog).
        let capture = !c["phase"].as_str().unwrap().starts_with("sink");
        assert_eq!(c["rows"], if capture { 3000 } else { 6000 }, "{c}");
        let (rate, anchor) = (c["rows_per_sec"].as_f64().unwrap(), c["anchor_rows_per_sec"].as_f64().unwrap());
        assert!(rate > 0.0 && anchor > 0.0, "{c}");
        assert!((c["ratio_vs_anchor"].as_f64().unwrap() - rate / anchor).abs() < 1e-9, "{c}");
        if capture {
            assert!((c["ratio_vs_target"].as_f64().unwrap() - rate / 100_000.0).abs() < 1e-9, "{c}");
        } else {
            assert!(c["ratio_vs_target"].is_null(), "the target is for capture: {c}");
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the scratch directory goes with the run");
}

#[test]
fn bench_tail_reports_file_to_broker_beside_a_plain_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = rill().args(["bench", "tail", "--json", "--mib", "4", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(names, ["plain read, lines counted", "tailer alone", "file-tail → broker, acknowledged"]);
    assert!(cases.iter().all(|c| c["lines"] == 4 * 1024 * 1024 / 200), "{report}");
    let (plain, sent) = (cases[0]["mib_per_sec"].as_f64().unwrap(), cases[2]["mib_per_sec"].as_f64().unwrap());
    assert!(plain > 0.0 && sent > 0.0, "{report}");
    assert!((report["ratio_vs_plain_read"].as_f64().unwrap() - sent / plain).abs() < 1e-9, "{report}");
    assert!((report["ratio_vs_target"].as_f64().unwrap() - sent / 150.0).abs() < 1e-9, "{report}");
    assert!((report["ratio_vs_vector_reported"].as_f64().unwrap() - sent / 76.7).abs() < 1e-9, "{report}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the scratch directory goes with the run");
    let table = rill().args(["bench", "tail", "--mib", "1", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("vs 150 MiB/s target"));
}

#[test]
fn bench_parquet_reports_the_lake_sink_beside_a_plain_writer() {
    let dir = tempfile::tempdir().unwrap();
    let out = rill()
        .args(["bench", "parquet", "--json", "--mb", "3", "--checkpoint-every", "5000", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(names, ["JSON decode alone", "decode + plain Parquet writer", "decode + lake sink, committed"]);
    let rate = |i: usize| cases[i]["mb_per_sec"].as_f64().unwrap();
    assert!(report["input_mb"].as_f64().unwrap() >= 3.0);
    assert!(cases[1]["parquet_bytes"].as_u64().unwrap() > 0 && cases[2]["parquet_bytes"].as_u64().unwrap() > 0);
    assert!((report["ratio_vs_plain_writer"].as_f64().unwrap() - rate(2) / rate(1)).abs() < 1e-9, "{report}");
    assert!((report["ratio_vs_decode"].as_f64().unwrap() - rate(2) / rate(0)).abs() < 1e-9, "{report}");
    assert!((report["ratio_vs_target"].as_f64().unwrap() - rate(2) / 200.0).abs() < 1e-9, "{report}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the scratch directory goes with the run");
}

#[test]
fn run_explains_a_sql_job_and_places_its_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("orders.sql");
    std::fs::write(
        &job,
        "CREATE TABLE orders (\n  category STRING,\n  amount BIGINT,\n  ts TIMESTAMP(3),\n  kind STRING METADATA FROM 'tag',\n  \
         WATERMARK FOR ts AS ts - INTERVAL '2' SECOND\n) WITH ('connector' = 'rocketmq', 'endpoints' = '127.0.0.1:8081',\n  \
         'topic' = 'orders', 'consumer-group' = 'revenue');\n\
         CREATE TABLE revenue (category STRING, window_start TIMESTAMP(3), total BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO revenue SELECT category, window_start, SUM(amount)\n\
         FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '5' MINUTE))\n\
         WHERE kind = 'paid'\nGROUP BY category, window_start, window_end;\n",
    )
    .unwrap();
    let out = rill().args(["run", "--explain"]).arg(&job).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("pushed down: tag 'paid'"), "{plan}");
    assert!(plan.contains("window TUMBLE(5 min) on ts, keys [category]"), "{plan}");
    assert!(plan.contains("sink revenue: print"), "{plan}");

    std::fs::write(&job, "CREATE TABLE t (a BIGINT) WITH ('connector' = 'print');\nINSERT INTO t SELECT b FROM t;\n")
        .unwrap();
    let out = rill().args(["run"]).arg(&job).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:22:", job.display())), "{err}");
}

#[test]
fn run_executes_a_datagen_job_to_the_end_of_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("gen.sql");
    std::fs::write(
        &job,
        format!(
            "SET 'state.checkpoints.dir' = '{}';\n\
             CREATE TABLE gen (n BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'datagen', 'number-of-rows' = '20',\n  \
             'rows-per-second' = '1000', 'fields.n.kind' = 'sequence', 'fields.n.start' = '1');\n\
             CREATE TABLE out (n BIGINT, twice BIGINT) WITH ('connector' = 'print');\n\
             INSERT INTO out SELECT n, n * 2 FROM gen WHERE n % 2 = 0;\n",
            dir.path().join("checkpoints").display()
        ),
    )
    .unwrap();
    let out = rill().args(["run"]).arg(&job).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut pairs: Vec<(i64, i64)> =
        rows.iter().map(|r| (r["n"].as_i64().unwrap(), r["twice"].as_i64().unwrap())).collect();
    pairs.sort_unstable();
    assert_eq!(pairs, (1..=10).map(|i| (2 * i, 4 * i)).collect::<Vec<_>>());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("20 messages read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
