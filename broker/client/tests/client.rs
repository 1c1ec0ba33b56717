//! The Rust client against an in-process Rill broker on a loopback port.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Server, server_with};
use rill_broker::{Broker, BrokerConfig};
use rill_client::{ClientConfig, ConsumeError, FilterExpression, Message, Producer, PushConsumer, SimpleConsumer};
use rill_store::{MetaStore, Store, StoreConfig};

async fn server() -> Server {
    server_with(BrokerConfig::default()).await
}

fn subscription(topic: &str, filter: FilterExpression) -> HashMap<String, FilterExpression> {
    [(topic.to_owned(), filter)].into_iter().collect()
}

/// A simple consumer of `group` on one topic, long-polling up to `wait`.
async fn reader(endpoint: &str, group: &str, topic: &str, filter: FilterExpression, wait: Duration) -> SimpleConsumer {
    SimpleConsumer::connect(ClientConfig::new(endpoint), group, subscription(topic, filter), wait).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_consume_with_a_tag_filter_and_ack() {
    let s = server().await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    for i in 0..10 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let m = Message::new("numbers", format!("n{i}"))
            .with_tag(tag)
            .with_key(format!("k{i}"))
            .with_property("i", i.to_string());
        let receipt = producer.send(m).await.unwrap();
        assert!(receipt.message_id.starts_with("01"));
    }
    let batch = producer.send_batch(vec![Message::new("numbers", "b1"), Message::new("numbers", "b2")]).await.unwrap();
    assert_eq!(batch.len(), 2);
    let late = producer.send_async(Message::new("numbers", "async").with_tag("odd")).await.unwrap().unwrap();
    assert!(!late.message_id.is_empty());

    let consumer =
        reader(&s.endpoint, "evens", "numbers", FilterExpression::Tag("even".into()), Duration::from_millis(500)).await;
    let mut seen = BTreeSet::new();
    loop {
        let got = consumer.receive(16, Duration::from_secs(30)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for m in got {
            assert_eq!(m.tag.as_deref(), Some("even"));
            let i: usize = m.properties["i"].parse().unwrap();
            assert_eq!(m.keys, vec![format!("k{i}")]);
            assert_eq!(&m.body[..], format!("n{i}").as_bytes());
            consumer.ack(&m).await.unwrap();
            seen.insert(i);
        }
    }
    assert_eq!(seen, (0..10).step_by(2).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_batch_is_sent_again_under_the_same_message_ids() {
    let s = server().await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    assert!(producer.prepare(Vec::new()).is_err(), "an empty batch is refused");
    let mixed = producer.prepare(vec![Message::new("a", "1"), Message::new("b", "2")]).unwrap_err();
    assert!(mixed.to_string().contains("'a' and 'b'"), "{mixed}");

    let messages = (0..3).map(|i| Message::new("prepared", format!("p{i}")).with_property("i", i.to_string()));
    let mut batch = producer.prepare(messages.collect()).unwrap();
    assert_eq!(batch.len(), 3);
    let first = producer.send_prepared(&mut batch).await.unwrap();
    let again = producer.send_prepared(&mut batch).await.unwrap();
    let ids = |r: &[rill_client::SendReceipt]| r.iter().map(|r| r.message_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&again), "a resend keeps each message's id");
    assert_eq!(ids(&first).into_iter().collect::<BTreeSet<_>>().len(), 3, "each message has an id of its own");

    let consumer =
        reader(&s.endpoint, "prepared-readers", "prepared", FilterExpression::all(), Duration::from_secs(5)).await;
    let mut bodies = Vec::new();
    while bodies.len() < 6 {
        let got = consumer.receive(16, Duration::from_secs(10)).await.unwrap();
        assert!(!got.is_empty(), "only {} of 6 stored messages arrived", bodies.len());
        for m in got {
            assert_eq!(
                String::from_utf8_lossy(&m.body),
                format!("p{}", m.properties["i"]),
                "body and properties travel"
            );
            bodies.push(String::from_utf8(m.body.to_vec()).unwrap());
            consumer.ack(&m).await.unwrap();
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["p0", "p0", "p1", "p1", "p2", "p2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extending_invisibility_retires_the_old_handle() {
    let s = server().await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    producer.send(Message::new("t", "x")).await.unwrap();
    let consumer = reader(&s.endpoint, "g", "t", FilterExpression::all(), Duration::from_secs(1)).await;
    let mut m = consumer.receive(1, Duration::from_secs(30)).await.unwrap().pop().unwrap();
    let old = m.clone();
    consumer.change_invisible_duration(&mut m, Duration::from_secs(60)).await.unwrap();
    let err = consumer.ack(&old).await.unwrap_err();
    assert_eq!(err.code(), Some(rill_proto::v2::Code::InvalidReceiptHandle), "{err}");
    consumer.ack(&m).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_listener_failures_and_panics_lead_to_redelivery() {
    let config = BrokerConfig {
        retry_delays: vec![Duration::from_millis(100)],
        revive_interval: Duration::from_millis(50),
        ..BrokerConfig::default()
    };
    let s = server_with(config).await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    for i in 0..3 {
        producer.send(Message::new("jobs", format!("job{i}"))).await.unwrap();
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let counter = Arc::clone(&calls);
    let consumer = PushConsumer::start(
        ClientConfig::new(&s.endpoint),
        "workers",
        subscription("jobs", FilterExpression::all()),
        4,
        // Failed messages come back after the broker's first retry delay.
        Duration::from_secs(30),
        move |m| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let done = done_tx.clone();
            async move {
                let body = String::from_utf8(m.body.to_vec()).unwrap();
                if body == "job1" && m.delivery_attempt == 1 {
                    return Err(ConsumeError("first try fails".into()));
                }
                if body == "job2" && m.delivery_attempt == 1 {
                    panic!("listener bug on call {n}");
                }
                let _ = done.send((body, m.delivery_attempt));
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    let mut finished = HashMap::new();
    while finished.len() < 3 {
        let (body, attempt) = tokio::time::timeout(Duration::from_secs(20), done_rx.recv()).await.unwrap().unwrap();
        finished.insert(body, attempt);
    }
    consumer.shutdown();
    assert_eq!(finished["job0"], 1);
    assert_eq!(finished["job1"], 2, "an Err is redelivered");
    assert_eq!(finished["job2"], 2, "a panic is redelivered");
    assert!(calls.load(Ordering::SeqCst) >= 5);
}

#[tokio::test]
async fn bad_configuration_and_refusals_are_clear() {
    let err = Producer::connect(ClientConfig::new("no-port")).await.unwrap_err();
    assert!(err.to_string().contains("no-port"), "{err}");
    let s = server().await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let err = producer.send(Message::new("bad topic", "x")).await.unwrap_err();
    assert_eq!(err.code(), Some(rill_proto::v2::Code::IllegalTopic), "{err}");
    assert!(!err.is_retryable());
}

/// A broker on a fixed address that can be stopped and started again.
async fn serve_at(
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
) -> (Arc<Broker>, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let mut cfg = StoreConfig::new(dir.join("data"));
    cfg.segment_size = 8 << 20;
    let store = Store::open(cfg).unwrap();
    let meta = MetaStore::open(dir.join("data/meta")).unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let broker = Broker::new(store, meta, BrokerConfig { store_host: addr, ..BrokerConfig::default() });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let b = Arc::clone(&broker);
    let task = tokio::spawn(async move {
        let _ = rill_broker::service::serve(b, addr, listener, None, async move {
            let _ = stopped.await;
        })
        .await;
    });
    (broker, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_and_announce_themselves_again_after_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (_broker, stop, task) = serve_at(addr, &dir.path().join("a")).await;
    let producer = Producer::connect(ClientConfig::new(addr.to_string())).await.unwrap();
    let consumer = reader(&addr.to_string(), "g", "t", FilterExpression::all(), Duration::from_millis(200)).await;
    producer.send(Message::new("t", "before")).await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();

    let (broker, _stop, _task) = serve_at(addr, &dir.path().join("b")).await;
    // The consumer announces itself to the new broker on its own.
    let started = std::time::Instant::now();
    while broker.group_members("g").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "the consumer never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the channel reconnects for ordinary calls.
    producer.send(Message::new("t", "after")).await.unwrap();
    let got = consumer.receive(8, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.iter().map(|m| &m.body[..]).collect::<Vec<_>>(), [b"after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_share_requests_but_succeed_or_fail_one_by_one() {
    let s = server().await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let mut sends = Vec::new();
    for i in 0..300 {
        sends.push(producer.send_async(Message::new("bulk", format!("b{i}")).with_key(format!("k{i}"))));
    }
    // A message the broker refuses, in the middle of the stream.
    let too_big = producer.send_async(Message::new("bulk", vec![0u8; 4 * 1024 * 1024 + 1]));
    for i in 300..400 {
        sends.push(producer.send_async(Message::new("bulk", format!("b{i}"))));
    }
    let mut ids = BTreeSet::new();
    for s in sends {
        ids.insert(s.await.unwrap().unwrap().message_id);
    }
    assert_eq!(ids.len(), 400, "every send has its own receipt");
    let err = too_big.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(rill_proto::v2::Code::MessageBodyTooLarge), "{err}");

    let consumer =
        reader(&s.endpoint, "bulk-readers", "bulk", FilterExpression::all(), Duration::from_millis(300)).await;
    let mut bodies = BTreeSet::new();
    loop {
        let got = consumer.receive(64, Duration::from_secs(30)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for m in got {
            assert!(ids.contains(&m.message_id));
            bodies.insert(String::from_utf8(m.body.to_vec()).unwrap());
            consumer.ack(&m).await.unwrap();
        }
    }
    assert_eq!(bodies.len(), 400, "each message stored exactly once");
}
