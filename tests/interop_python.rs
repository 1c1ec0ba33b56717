//! The official RocketMQ 5 Python client (`rocketmq-python-client`) against
//! `rill standalone`: producer, simple consumer with a tag filter, push
//! consumer, a second group, and a broker restart in between; delay
//! messages, push-consumer retries on the broker's retry schedule, a FIFO
//! group, transactions with a checker and the simple consumer's invisible
//! duration; and
//! against a name server with two brokers, where it must follow the routes.
//!
//! `./scripts/test` installs the client into a virtual environment and sets
//! `RILL_PYTHON`. Without it the test is skipped with a loud message, except
//! under `CI=true`, where it fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};

use common::{admin, broker_config, spawn, stop, wait_for_brokers};

fn python() -> Option<String> {
    match std::env::var("RILL_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but RILL_PYTHON is not set: run the tests through ./scripts/test"
            );
            eprintln!("\n*** SKIPPED Python interop: RILL_PYTHON is not set (./scripts/test sets it) ***\n");
            None
        }
    }
}

/// Starts `rill standalone` on a free port; returns it and its gRPC address.
fn start(data: &Path) -> (Child, String) {
    let (child, state) = common::start(data, &[]);
    (child, state["grpc_addr"].as_str().unwrap().to_owned())
}

/// Runs the Python script; returns the indices it printed after `word`.
fn script(python: &str, home: &Path, args: &[&str], word: &str) -> Vec<u64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_clients.py");
    let out = Command::new(python).arg(script).args(args).env("HOME", home).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(word))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn official_python_client_produces_and_consumes() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (data, home) = (dir.path().join("data"), dir.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let (broker, addr) = start(&data);

    let sent = script(&python, &home, &["send", &addr, "orders", "20"], "SENT ");
    assert_eq!(sent, (0..20).collect::<Vec<_>>());
    // A simple consumer with a tag filter gets exactly the TagA messages.
    let tag_a: BTreeSet<u64> =
        script(&python, &home, &["simple", &addr, "orders", "g-taga", "TagA", "10"], "GOT ").into_iter().collect();
    assert_eq!(tag_a, (0..20).step_by(2).collect());
    // A push consumer of another group gets the rest.
    let tag_b: BTreeSet<u64> =
        script(&python, &home, &["push", &addr, "orders", "g-tagb", "TagB", "10"], "GOT ").into_iter().collect();
    assert_eq!(tag_b, (1..20).step_by(2).collect());

    // Restart: everything stored and every acknowledgement survive.
    stop(broker);
    let (broker, addr) = start(&data);
    let all: BTreeSet<u64> =
        script(&python, &home, &["simple", &addr, "orders", "g-all", "*", "20"], "GOT ").into_iter().collect();
    assert_eq!(all, (0..20).collect(), "a new group receives every message again");
    let more = script(&python, &home, &["send", &addr, "orders", "2", "20"], "SENT ");
    assert_eq!(more, vec![20, 21]);
    // g-taga acknowledged its ten messages before the restart: the only
    // TagA message it can get now is the new one.
    let next = script(&python, &home, &["simple", &addr, "orders", "g-taga", "TagA", "1"], "GOT ");
    assert_eq!(next, vec![20]);
    stop(broker);
}

#[test]
fn official_python_client_follows_routes_across_two_brokers() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (namesrv, ns) = spawn(&["namesrv", "--namesrv-addr", "127.0.0.1:0"]);
    let ns = ns["namesrv_addr"].as_str().unwrap().to_owned();
    let mut brokers = Vec::new();
    for name in ["broker-a", "broker-b"] {
        let cfg = broker_config(dir.path(), name, &ns, "");
        let (child, state) = spawn(&["broker", "--config", cfg.to_str().unwrap()]);
        brokers.push((child, state["grpc_addr"].as_str().unwrap().to_owned()));
    }
    let (a, b) = (brokers[0].1.clone(), brokers[1].1.clone());
    wait_for_brokers(&a, 2);
    for addr in [&a, &b] {
        admin(addr, &["topic", "create", "orders", "--queues", "2"]);
    }
    // Both topic tables are at the name server before the client asks for a route.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while admin(&a, &["cluster", "list"])[1]["topics"] != 1 {
        assert!(std::time::Instant::now() < deadline, "broker-b's topic never reached the name server");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The producer knows broker-a only, the consumer broker-b only.
    let sent = script(&python, &home, &["send", &a, "orders", "40"], "SENT ");
    assert_eq!(sent, (0..40).collect::<Vec<_>>());
    for addr in [&a, &b] {
        let stored: u64 = admin(addr, &["topic", "describe", "orders"])["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["max_offset"].as_u64().unwrap())
            .sum();
        assert!(stored > 0, "the Python producer sent nothing to {addr}");
    }
    let got: BTreeSet<u64> =
        script(&python, &home, &["push", &b, "orders", "g-spread", "*", "40"], "GOT ").into_iter().collect();
    assert_eq!(got, (0..40).collect(), "the push consumer drains both brokers");

    for (child, _) in brokers {
        stop(child);
    }
    stop(namesrv);
}

/// Runs the script and returns the lines it printed.
fn script_lines(python: &str, home: &Path, args: &[&str]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_clients.py");
    let out = Command::new(python).arg(script).args(args).env("HOME", home).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "python {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(str::to_owned).collect()
}

#[test]
fn official_python_client_delay_retries_fifo_and_transactions() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // One second before the first retry, so the test stays short.
    let config = dir.path().join("rill.toml");
    std::fs::write(
        &config,
        "[broker]\nretry_delays_ms = [1000, 2000]\ntransaction_check_after_ms = 500\ntransaction_check_interval_ms = 500\n",
    )
    .unwrap();
    let (broker, state) = common::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();

    let lines = script_lines(&python, &home, &["delay", &addr, "reminders", "g-delay", "2"]);
    let late: i64 = lines.iter().find_map(|l| l.strip_prefix("LATE_MS ")).expect("arrived early").parse().unwrap();
    assert!(late < 1_000, "arrived {late} ms after its time");

    let lines = script_lines(&python, &home, &["retry", &addr, "flaky", "g-retry"]);
    let attempts: Vec<(i32, u64)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ATTEMPT "))
        .map(|l| {
            let mut p = l.split_whitespace();
            (p.next().unwrap().parse().unwrap(), p.next().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(attempts.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2], "{lines:?}");
    assert!(attempts[1].1 >= 1_000, "retried after {} ms, before the announced delay", attempts[1].1);

    // A FIFO group: each message group in order, a failure retried in place.
    admin(&addr, &["group", "put", "g-fifo", "--fifo"]);
    let lines = script_lines(&python, &home, &["fifo", &addr, "ledger", "g-fifo", "5"]);
    let orders: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ORDER ")).collect();
    assert_eq!(orders, ["G0 0,1,2,3,4", "G1 0,1,2,3,4", "G2 0,1,2,3,4"], "{lines:?}");

    // Transactions with a checker: commit, rollback, and one the broker checks back.
    let lines = script_lines(&python, &home, &["txn", &addr, "payments", "g-txn"]);
    let mut got: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("GOT ")).collect();
    got.sort();
    assert_eq!(got, ["checked", "committed"], "{lines:?}");
    assert!(lines.iter().any(|l| l == "CHECKED checked"), "{lines:?}");

    // Simple consumer invisible duration: limits enforced, a shortened one redelivers.
    let lines = script_lines(&python, &home, &["invisible", &addr, "jobs", "g-jobs"]);
    assert!(lines.iter().any(|l| l.starts_with("REFUSED")), "{lines:?}");
    let attempts: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ATTEMPT ")).collect();
    assert_eq!(attempts, ["1", "2"], "{lines:?}");
    stop(broker);
}

/// Sends `count` messages shaped as the Python script's `send` makes them
/// (body, tag, key, property) in one batch from the Rust producer, which
/// packs them; returns the message ids by index.
fn send_packed(addr: &str, topic: &str, count: u64) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let producer = rill_client::Producer::connect(rill_client::ClientConfig::new(addr)).await.unwrap();
        let messages = (0..count)
            .map(|i| {
                rill_client::Message::new(topic, format!("order-{i}"))
                    .with_tag(if i % 2 == 0 { "TagA" } else { "TagB" })
                    .with_key(format!("key-{i}"))
                    .with_property("shop", format!("shop-{}", i % 3))
            })
            .collect();
        let mut batch = producer.prepare(messages).unwrap();
        assert!(batch.is_packed(), "rill standalone takes packed batches");
        producer.send_prepared(&mut batch).await.unwrap().into_iter().map(|r| r.message_id).collect()
    })
}

#[test]
fn official_python_client_consumes_a_packed_batch_message_by_message() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (data, home) = (dir.path().join("data"), dir.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let (broker, addr) = start(&data);
    let ids = send_packed(&addr, "packed-orders", 20);

    // The script checks each message's tag, keys and properties against its index.
    let tag_a = script_lines(&python, &home, &["simple", &addr, "packed-orders", "g-a", "TagA", "10"]);
    let got: BTreeSet<u64> = tag_a
        .iter()
        .filter_map(|l| l.strip_prefix("GOT "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, (0..20).step_by(2).collect());
    for line in tag_a.iter().filter_map(|l| l.strip_prefix("GOT ")) {
        let fields: Vec<&str> = line.split(' ').collect();
        let i: usize = fields[0].parse().unwrap();
        assert_eq!(fields[2], ids[i], "the Python client sees the id the Rust producer was given");
    }
    let tag_b: BTreeSet<u64> =
        script(&python, &home, &["push", &addr, "packed-orders", "g-b", "TagB", "10"], "GOT ").into_iter().collect();
    assert_eq!(tag_b, (1..20).step_by(2).collect());

    // The admin CLI finds single packed messages by id and by key.
    let found = admin(&addr, &["message", "get", "--id", &ids[7]]);
    assert!(found.to_string().contains("order-7"), "{found}");
    let by_key = admin(&addr, &["message", "query", "--topic", "packed-orders", "--key", "key-12"]);
    assert!(by_key.to_string().contains("order-12") && !by_key.to_string().contains("order-13"), "{by_key}");
    stop(broker);
}
