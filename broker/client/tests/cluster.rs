//! A name server and two brokers in one process (their own ports and data
//! directories), one topic spread over both: the client learns the whole
//! route from either broker, sends to every queue of both, and a consumer
//! group of two members drains everything exactly once between them.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_broker::{Broker, BrokerConfig};
use rill_client::{ClientConfig, ConsumeError, FilterExpression, Message, Producer, PushConsumer};
use rill_common::SystemClock;
use rill_namesrv::{DEFAULT_BROKER_TIMEOUT, NameServerClient, Registry};
use rill_store::{MetaStore, Store, StoreConfig, TopicConfig};

const TOPIC: &str = "spread";
const QUEUES: u32 = 4;

struct Node {
    broker: Arc<Broker>,
    addr: String,
    _dir: tempfile::TempDir,
}

async fn start_broker(name: &str, namesrv: &str, stop: tokio::sync::watch::Receiver<bool>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path().join("data"));
    cfg.segment_size = 8 << 20;
    let store = Store::open(cfg).unwrap();
    let meta = MetaStore::open(dir.path().join("data/meta")).unwrap();
    meta.put_topic(TopicConfig::new(TOPIC, QUEUES)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = BrokerConfig {
        broker_name: name.into(),
        auto_create_topics: false,
        store_host: addr,
        transactions: rill_broker::txn::TxnConfig {
            check_after: Duration::from_millis(200),
            check_interval: Duration::from_millis(200),
            max_checks: 15,
        },
        ..BrokerConfig::default()
    };
    let broker = Broker::new(store, meta, config);
    broker.attach_name_server(NameServerClient::new(namesrv, Duration::from_secs(3)).unwrap());
    tokio::spawn(rill_broker::cluster::keep_registered(
        Arc::clone(&broker),
        addr.to_string(),
        rill_broker::cluster::REGISTER_EVERY,
    ));
    let mut stop = stop;
    tokio::spawn(rill_broker::service::serve(Arc::clone(&broker), addr, listener, None, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Node { broker, addr: addr.to_string(), _dir: dir }
}

/// A name server and two brokers serving [`TOPIC`], both registered.
async fn cluster(stop: tokio::sync::watch::Receiver<bool>) -> (Node, Node) {
    let registry = Arc::new(Registry::new(Arc::new(SystemClock), DEFAULT_BROKER_TIMEOUT));
    let ns_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ns_addr = ns_listener.local_addr().unwrap().to_string();
    let mut ns_stop = stop.clone();
    tokio::spawn(rill_namesrv::service::serve(Arc::clone(&registry), ns_listener, async move {
        let _ = ns_stop.wait_for(|s| *s).await;
    }));
    let a = start_broker("broker-a", &ns_addr, stop.clone()).await;
    let b = start_broker("broker-b", &ns_addr, stop.clone()).await;

    // Both registrations are in once the name server routes the topic to both.
    let ns = NameServerClient::new(&ns_addr, Duration::from_secs(3)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while ns.route(TOPIC).await.map(|r| r.len()).unwrap_or(0) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both brokers register within 10 s");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_two_drains_a_topic_spread_over_two_brokers_exactly_once() {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (a, b) = cluster(stop).await;

    // Consumers know only broker b, the producer only broker a: the route does the rest.
    let seen: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut members = Vec::new();
    for member in 0..2 {
        let (seen, done_tx) = (Arc::clone(&seen), done_tx.clone());
        let subs: HashMap<String, FilterExpression> = [(TOPIC.to_owned(), FilterExpression::all())].into();
        let consumer =
            PushConsumer::start(ClientConfig::new(&b.addr), "drainers", subs, 4, Duration::from_secs(30), move |m| {
                let (seen, done_tx) = (Arc::clone(&seen), done_tx.clone());
                async move {
                    seen.lock().unwrap().push((member, String::from_utf8_lossy(&m.body).into_owned()));
                    let _ = done_tx.send(());
                    Ok::<(), ConsumeError>(())
                }
            })
            .await
            .unwrap();
        members.push(consumer);
    }

    let producer = Producer::connect(ClientConfig::new(&a.addr)).await.unwrap();
    let total = 4 * 2 * QUEUES as usize * 10;
    for i in 0..total {
        producer.send(Message::new(TOPIC, format!("m{i}"))).await.unwrap();
    }

    // Every queue of both brokers holds messages.
    for node in [&a, &b] {
        for q in 0..QUEUES {
            let (min, max) = node.broker.store().queue_bounds(TOPIC, q).unwrap_or((0, 0));
            assert!(max > min, "queue {q} of {} got nothing", node.broker.config().broker_name);
        }
    }

    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.lock().unwrap().len() < total {
            done.recv().await.unwrap();
        }
    })
    .await
    .expect("the group receives every message within 30 s");

    let seen = seen.lock().unwrap().clone();
    let bodies: HashSet<&str> = seen.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies.len(), total, "every message arrived");
    assert_eq!(seen.len(), total, "and none twice");
    for member in 0..2 {
        assert!(seen.iter().any(|(m, _)| *m == member), "member {member} received nothing");
    }
    drop(members);
    stop_tx.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_on_either_broker_are_checked_back() {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (a, b) = cluster(stop).await;
    // Half messages on both brokers, their producer gone before ending them.
    {
        let gone = Producer::connect(ClientConfig::new(&a.addr)).await.unwrap();
        for i in 0..8 {
            let t = gone.send_transactional(Message::new(TOPIC, format!("t{i}"))).await.unwrap();
            drop(t);
        }
    }
    assert!(a.broker.open_transactions() > 0 && b.broker.open_transactions() > 0, "halves on both brokers");
    // A checker that knows only broker a is asked by both and commits.
    let _checker = Producer::connect_transactional(ClientConfig::new(&a.addr), &[TOPIC], |_m| async {
        rill_client::TransactionResolution::Commit
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(15), async {
        while a.broker.open_transactions() + b.broker.open_transactions() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every open transaction is resolved within 15 s");
    let committed: u64 = [&a, &b]
        .iter()
        .map(|n| {
            (0..QUEUES).map(|q| n.broker.store().queue_bounds(TOPIC, q).map_or(0, |(lo, hi)| hi - lo)).sum::<u64>()
        })
        .sum();
    assert_eq!(committed, 8);
    stop_tx.send_replace(true);
}
