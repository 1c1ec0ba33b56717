//! `rill admin` against a running `rill standalone`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{admin, rill, start, stop};
use rill_client::{ClientConfig, FilterExpression, Message, Producer, SimpleConsumer};

fn admin_fails(addr: &str, args: &[&str]) -> String {
    let out = rill().args(["admin", "--server", addr]).args(args).output().unwrap();
    assert!(!out.status.success(), "rill admin {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn topics_groups_offsets_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();

    let created = admin(&addr, &["topic", "create", "orders", "--queues", "2"]);
    assert_eq!(created["write_queues"], 2);
    assert!(admin_fails(&addr, &["topic", "create", "orders"]).contains("exists"));
    assert!(admin_fails(&addr, &["topic", "create", "bad topic"]).contains("bad topic"));

    // Produce six messages with keys, consume and acknowledge two of them.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ids: Vec<String> = runtime.block_on(async {
        let producer = Producer::connect(ClientConfig::new(&addr)).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..6 {
            let m = Message::new("orders", format!("order {i}")).with_tag("created").with_key(format!("order-{i}"));
            ids.push(producer.send(m).await.unwrap().message_id);
        }
        let subs: HashMap<_, _> = [("orders".to_owned(), FilterExpression::all())].into_iter().collect();
        let consumer = SimpleConsumer::connect(ClientConfig::new(&addr), "billing", subs, Duration::from_millis(500))
            .await
            .unwrap();
        let mut acked = 0;
        while acked < 2 {
            for m in consumer.receive(1, Duration::from_secs(60)).await.unwrap() {
                consumer.ack(&m).await.unwrap();
                acked += 1;
            }
        }
        ids
    });

    let topic = admin(&addr, &["topic", "describe", "orders"]);
    let stored: u64 = topic["queues"].as_array().unwrap().iter().map(|q| q["max_offset"].as_u64().unwrap()).sum();
    assert_eq!(stored, 6);
    let listed = admin(&addr, &["topic", "list"]);
    assert!(listed.as_array().unwrap().iter().any(|t| t["name"] == "orders"));

    let group = admin(&addr, &["group", "describe", "billing"]);
    assert_eq!(group["total_lag"], 4, "{group}");
    assert_eq!(group["members"][0]["subscriptions"]["orders"], "TAG *", "{group}");
    assert_eq!(group["inconsistent_topics"], serde_json::json!([]));
    assert!(!group["members"].as_array().unwrap().is_empty(), "the consumer is a member: {group}");
    let groups = admin(&addr, &["group", "list"]);
    assert!(groups.as_array().unwrap().iter().any(|g| g["name"] == "billing"));

    let reset = admin(&addr, &["offset", "reset", "--group", "billing", "--topic", "orders", "--to", "earliest"]);
    assert_eq!(reset["total_lag"], 6);
    let reset = admin(&addr, &["offset", "reset", "--group", "billing", "--topic", "orders", "--to", "latest"]);
    assert_eq!(reset["total_lag"], 0);
    assert!(
        admin_fails(&addr, &["offset", "reset", "--group", "billing", "--topic", "orders", "--to", "yesterday"])
            .contains("yesterday")
    );

    let by_key = admin(&addr, &["message", "query", "--topic", "orders", "--key", "order-3"]);
    assert_eq!(by_key.as_array().unwrap().len(), 1);
    assert_eq!(by_key[0]["body"], "order 3");
    // A time range: stored in it, or not.
    let stored = by_key[0]["store_timestamp_ms"].as_i64().unwrap();
    let (from, to) = ((stored - 1000).to_string(), (stored + 1000).to_string());
    let inside =
        admin(&addr, &["message", "query", "--topic", "orders", "--key", "order-3", "--begin", &from, "--end", &to]);
    assert_eq!(inside.as_array().unwrap().len(), 1);
    let later = (stored + 60_000).to_string();
    let outside = admin(&addr, &["message", "query", "--topic", "orders", "--key", "order-3", "--begin", &later]);
    assert!(outside.as_array().unwrap().is_empty());
    assert!(
        admin_fails(&addr, &["message", "query", "--topic", "orders", "--key", "k", "--begin", "soon"])
            .contains("soon")
    );
    let by_id = admin(&addr, &["message", "get", "--id", &ids[4]]);
    assert_eq!(by_id[0]["keys"], serde_json::json!(["order-4"]));
    assert!(admin_fails(&addr, &["message", "get", "--id", "nope"]).contains("nope"));

    let cluster = admin(&addr, &["cluster", "list"]);
    assert_eq!(cluster[0]["address"], addr);
    assert_eq!(cluster[0]["timers_pending"], 0);
    assert_eq!(cluster[0]["open_transactions"], 0);
    let table = rill().args(["admin", "--server", &addr, "topic", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("orders"));

    let deleted = admin(&addr, &["topic", "delete", "orders"]);
    assert_eq!(deleted["existed"], true);
    stop(broker);
}

#[test]
fn admin_says_when_no_broker_is_there() {
    let err = admin_fails("127.0.0.1:1", &["topic", "list"]);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn dead_letters_are_listed_and_resent() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let subs: HashMap<_, _> = [("payments".to_owned(), FilterExpression::all())].into_iter().collect();
    let (consumer, poison) = runtime.block_on(async {
        let producer = Producer::connect(ClientConfig::new(&addr)).await.unwrap();
        producer.send(Message::new("payments", "fine")).await.unwrap();
        let poison = producer.send(Message::new("payments", "poison").with_key("p-1")).await.unwrap().message_id;
        let consumer = SimpleConsumer::connect(ClientConfig::new(&addr), "billing", subs, Duration::from_millis(500))
            .await
            .unwrap();
        let mut handled = 0;
        while handled < 2 {
            for m in consumer.receive(8, Duration::from_secs(60)).await.unwrap() {
                if &m.body[..] == b"poison" {
                    consumer.forward_to_dead_letter_queue(&m).await.unwrap();
                } else {
                    consumer.ack(&m).await.unwrap();
                }
                handled += 1;
            }
        }
        (consumer, poison)
    });

    let dead = admin(&addr, &["dlq", "list", "--group", "billing"]);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["message_id"], poison.as_str());
    assert_eq!(dead[0]["topic"], "%DLQ%billing");
    assert_eq!(dead[0]["properties"]["DLQ_ORIGIN_TOPIC"], "payments");
    assert_eq!(dead[0]["reconsume_times"], 1);
    assert_eq!(dead[0]["body"], "poison");
    let text = rill().args(["admin", "--server", &addr, "dlq", "list", "--group", "billing"]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains(&poison));
    assert!(admin(&addr, &["dlq", "list", "--group", "nobody"]).as_array().unwrap().is_empty());

    let resent = admin(&addr, &["dlq", "resend", "--group", "billing", "--id", "no-such-id"]);
    assert_eq!(resent["resent"], 0);
    let resent = admin(&addr, &["dlq", "resend", "--group", "billing", "--id", &poison]);
    assert_eq!(resent["resent"], 1);
    // Back on its topic, as a first attempt, with its id and key.
    runtime.block_on(async {
        let mut got = Vec::new();
        while got.is_empty() {
            got = consumer.receive(8, Duration::from_secs(60)).await.unwrap();
        }
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].body[..], b"poison");
        assert_eq!(got[0].message_id, poison);
        assert_eq!(got[0].keys, ["p-1"]);
        assert_eq!(got[0].delivery_attempt, 1);
        assert!(!got[0].properties.contains_key("DLQ_ORIGIN_TOPIC"));
        consumer.ack(&got[0]).await.unwrap();
    });
    stop(broker);
}

#[test]
fn a_traced_message_shows_its_life() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let id = runtime.block_on(async {
        let producer = Producer::connect(ClientConfig::new(&addr).with_trace()).await.unwrap();
        let id = producer.send(Message::new("parcels", "p-1").with_key("parcel-1")).await.unwrap().message_id;
        let subs: HashMap<_, _> = [("parcels".to_owned(), FilterExpression::all())].into_iter().collect();
        let consumer = SimpleConsumer::connect(ClientConfig::new(&addr), "couriers", subs, Duration::from_millis(500))
            .await
            .unwrap();
        // First attempt: given back at once; the broker retries it.
        let mut first = Vec::new();
        while first.is_empty() {
            first = consumer.receive(1, Duration::from_secs(60)).await.unwrap();
        }
        consumer.change_invisible_duration(&mut first[0], Duration::from_millis(1)).await.unwrap();
        let mut second = Vec::new();
        while second.is_empty() {
            second = consumer.receive(1, Duration::from_secs(60)).await.unwrap();
        }
        assert_eq!(second[0].delivery_attempt, 2);
        consumer.ack(&second[0]).await.unwrap();
        id
    });
    // Records are written in the background: wait (bounded) for the last one.
    let started = std::time::Instant::now();
    let events = loop {
        let out = rill().args(["admin", "--json", "--server", &addr, "trace", &id]).output().unwrap();
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let events: Vec<String> =
                v.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
            if events.last().map(String::as_str) == Some("SubAfter") {
                break v;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the trace never completed");
        std::thread::sleep(Duration::from_millis(100));
    };
    let names: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["Pub", "SubBefore", "Retry", "SubBefore", "SubAfter"], "{events}");
    let all = events.as_array().unwrap();
    assert_eq!(all[1]["group"], "couriers");
    assert_eq!(all[3]["attempt"], 2);
    assert_eq!(all[0]["topic"], "parcels");
    let text = rill().args(["admin", "--server", &addr, "trace", &id]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("SubAfter"));
    assert!(admin_fails(&addr, &["trace", "no-such-message"]).contains("no trace"));
    stop(broker);
}

#[test]
fn pending_timers_and_open_transactions_show_in_the_cluster_view() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let producer = Producer::connect(ClientConfig::new(&addr)).await.unwrap();
        producer.send(Message::new("later", "in an hour").with_delay(Duration::from_secs(3600))).await.unwrap();
        let open = producer.send_transactional(Message::new("later", "undecided")).await.unwrap();
        drop(open); // left open on purpose
    });
    let started = std::time::Instant::now();
    loop {
        let c = admin(&addr, &["cluster", "list"]);
        if c[0]["timers_pending"] == 1 && c[0]["open_transactions"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "cluster view never showed them: {c}");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(broker);
}
