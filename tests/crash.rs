//! `rill standalone` killed with SIGKILL while delay messages, a retry and a
//! transaction are pending: after a restart on the same data directory
//! none of them is lost.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{admin, signal, start, stop};
use rill_client::{ClientConfig, FilterExpression, Message, Producer, SimpleConsumer};

fn subscription(topic: &str) -> HashMap<String, FilterExpression> {
    [(topic.to_owned(), FilterExpression::all())].into_iter().collect()
}

#[test]
fn pending_timers_retries_and_transactions_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("rill.toml");
    // Short invisible times and a 2 s retry delay, so a retry is parked on the timer.
    std::fs::write(&config, "[broker]\nmin_invisible_secs = 1\nretry_delays_ms = [2000]\n").unwrap();
    let cfg = config.to_str().unwrap();
    let (child, state) = start(&data, &["--config", cfg]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let due = runtime.block_on(async {
        let producer = Producer::connect(ClientConfig::new(&addr)).await.unwrap();
        let consumer = SimpleConsumer::connect(
            ClientConfig::new(&addr),
            "workers",
            subscription("jobs"),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        producer.send(Message::new("jobs", "retry-me")).await.unwrap();
        let mut got = Vec::new();
        while got.is_empty() {
            got = consumer.receive(1, Duration::from_secs(1)).await.unwrap();
        }
        // Not acknowledged: after 1 s it waits 2 s on the timer for its retry.
        let due = std::time::SystemTime::now() + Duration::from_secs(4);
        for i in 0..20 {
            producer.send(Message::new("jobs", format!("later-{i}")).with_delay(Duration::from_secs(4))).await.unwrap();
        }
        let open = producer.send_transactional(Message::new("jobs", "undecided")).await.unwrap();
        drop(open);
        due
    });
    // The 20 timers and the parked retry are pending; then kill.
    let started = Instant::now();
    loop {
        let c = admin(&addr, &["cluster", "list"]);
        if c[0]["timers_pending"].as_u64().unwrap() >= 21 && c[0]["open_transactions"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never pending: {c}");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "-KILL");
    let _ = child.wait_with_output().unwrap();

    let (child, state) = start(&data, &["--config", cfg]);
    assert_eq!(state["recovery"]["unclean_shutdown"], true);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let c = admin(&addr, &["cluster", "list"]);
    assert_eq!(c[0]["open_transactions"], 1, "the open transaction came back: {c}");
    let got = runtime.block_on(async {
        let consumer = SimpleConsumer::connect(
            ClientConfig::new(&addr),
            "workers",
            subscription("jobs"),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let started = Instant::now();
        while got.len() < 21 && started.elapsed() < Duration::from_secs(20) {
            for m in consumer.receive(32, Duration::from_secs(10)).await.unwrap() {
                let body = String::from_utf8(m.body.to_vec()).unwrap();
                if body.starts_with("later-") {
                    assert!(std::time::SystemTime::now() >= due, "{body} came before its time");
                } else {
                    assert_eq!(m.delivery_attempt, 2, "the retry keeps its attempt count");
                }
                got.push(body);
                consumer.ack(&m).await.unwrap();
            }
        }
        got.sort();
        got
    });
    let mut want: Vec<String> = (0..20).map(|i| format!("later-{i}")).collect();
    want.push("retry-me".into());
    want.sort();
    // Nothing was delivered before the kill, so nothing may come twice.
    assert_eq!(got, want, "every pending timer and the retry were delivered once each");
    stop(child);
}
