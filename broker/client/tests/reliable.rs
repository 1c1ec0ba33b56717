//! Retries, dead letters and delay messages as a `rill-client` user meets
//! them, against an in-process broker with a scaled-down retry ladder.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::server_with;
use rill_broker::{BrokerConfig, TimerConfig};
use rill_client::{
    ClientConfig, ConsumeError, FilterExpression, Message, Producer, PushConsumer, ReceivedMessage, SimpleConsumer,
};

/// Retries after 200 ms, then 400 ms; two retries, then the dead-letter queue.
fn ladder() -> BrokerConfig {
    BrokerConfig {
        retry_delays: vec![Duration::from_millis(200), Duration::from_millis(400)],
        max_retries: 2,
        revive_interval: Duration::from_millis(50),
        timer: TimerConfig { precision: Duration::from_millis(50), ..TimerConfig::default() },
        ..BrokerConfig::default()
    }
}

/// A simple consumer of `group` on `topic` (all messages).
async fn simple(endpoint: &str, group: &str, topic: &str, wait: Duration) -> SimpleConsumer {
    SimpleConsumer::connect(ClientConfig::new(endpoint), group, subscription(topic), wait).await.unwrap()
}

fn subscription(topic: &str) -> HashMap<String, FilterExpression> {
    [(topic.to_owned(), FilterExpression::all())].into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_listener_retries_on_the_announced_ladder_then_dead_letters() {
    let s = server_with(ladder()).await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let sent = producer.send(Message::new("payments", "p1").with_key("order-7")).await.unwrap();

    let (tx, mut attempts) = tokio::sync::mpsc::unbounded_channel::<(i32, Instant)>();
    let consumer = PushConsumer::start(
        ClientConfig::new(&s.endpoint),
        "billing",
        subscription("payments"),
        4,
        Duration::from_secs(30),
        move |m: ReceivedMessage| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((m.delivery_attempt, Instant::now()));
                Err(ConsumeError("the payment service is down".into()))
            }
        },
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(10), attempts.recv()).await.unwrap().unwrap();
        seen.push(next);
    }
    assert_eq!(seen.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3]);
    // Each retry waited at least its step of the ladder.
    assert!(seen[1].1 - seen[0].1 >= Duration::from_millis(200), "{:?}", seen[1].1 - seen[0].1);
    assert!(seen[2].1 - seen[1].1 >= Duration::from_millis(400), "{:?}", seen[2].1 - seen[1].1);

    // After the third failure the message goes to %DLQ%billing, and no further attempt comes.
    let dlq = "%DLQ%billing";
    let started = Instant::now();
    while s.broker.store().queue_bounds(dlq, 0).map(|b| b.1) != Some(1) {
        assert!(started.elapsed() < Duration::from_secs(10), "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = s.broker.store().read_queue(dlq, 0, 0, 10).unwrap().messages;
    assert_eq!(dead[0].properties.unique_id(), Some(sent.message_id.as_str()));
    assert_eq!(dead[0].properties.get("DLQ_ORIGIN_TOPIC"), Some("payments"));
    assert!(tokio::time::timeout(Duration::from_millis(800), attempts.recv()).await.is_err(), "retried past the DLQ");
    consumer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_consumer_sees_the_policy_and_can_nack() {
    let s = server_with(ladder()).await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    producer.send(Message::new("jobs", "j1")).await.unwrap();
    let consumer = simple(&s.endpoint, "workers", "jobs", Duration::from_secs(2)).await;
    let policy = consumer.retry_policy();
    assert_eq!(policy.max_attempts, 3);
    assert_eq!(policy.delays, [Duration::from_millis(200), Duration::from_millis(400)]);
    let mut got = consumer.receive(1, Duration::from_secs(30)).await.unwrap();
    let nacked = Instant::now();
    consumer.nack(&mut got[0]).await.unwrap();
    let again = consumer.receive(1, Duration::from_secs(30)).await.unwrap();
    assert!(nacked.elapsed() >= Duration::from_millis(200));
    assert_eq!(again[0].delivery_attempt, 2);
    assert_eq!(again[0].body, got[0].body);
    consumer.ack(&again[0]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_messages_arrive_after_their_delay() {
    let s = server_with(ladder()).await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let consumer = simple(&s.endpoint, "reminders", "remind", Duration::from_secs(3)).await;
    let level_1 = rill_client::delay_level(1).unwrap();
    assert_eq!(level_1, Duration::from_secs(1));
    assert_eq!(rill_client::delay_level(18), Some(Duration::from_secs(7200)));
    assert_eq!(rill_client::delay_level(0), None);
    let sent_at = Instant::now();
    producer.send(Message::new("remind", "wake up").with_delay(level_1)).await.unwrap();
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(sent_at.elapsed() < Duration::from_secs(10), "the delay message never came");
        got = consumer.receive(1, Duration::from_secs(30)).await.unwrap();
    }
    let waited = sent_at.elapsed();
    assert!(waited >= Duration::from_millis(950), "arrived after {waited:?}");
    assert!(waited < Duration::from_secs(2), "arrived after {waited:?}");
    assert!(got[0].delivery_timestamp.is_some());
    let far = producer.send(Message::new("remind", "x").with_delay(Duration::from_secs(41 * 24 * 3600))).await;
    assert_eq!(far.unwrap_err().code(), Some(rill_client::Code::IllegalDeliveryTime));
}

fn transactions(check_every_ms: u64, max_checks: u32) -> BrokerConfig {
    BrokerConfig {
        transactions: rill_broker::txn::TxnConfig {
            check_after: Duration::from_millis(check_every_ms),
            check_interval: Duration::from_millis(check_every_ms),
            max_checks,
        },
        ..ladder()
    }
}

async fn drain(consumer: &SimpleConsumer, wait: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let end = Instant::now() + wait;
    while Instant::now() < end {
        for m in consumer.receive(16, Duration::from_secs(30)).await.unwrap() {
            out.push(String::from_utf8(m.body.to_vec()).unwrap());
            consumer.ack(&m).await.unwrap();
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_or_roll_back() {
    let s = server_with(transactions(60_000, 15)).await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let consumer = simple(&s.endpoint, "shipping", "orders", Duration::from_millis(300)).await;
    let keep = producer.send_transactional(Message::new("orders", "keep")).await.unwrap();
    let drop_it = producer.send_transactional(Message::new("orders", "drop")).await.unwrap();
    assert!(!keep.receipt().transaction_id.is_empty());
    assert_eq!(s.broker.open_transactions(), 2);
    assert!(drain(&consumer, Duration::from_millis(500)).await.is_empty(), "half messages are invisible");
    keep.commit().await.unwrap();
    drop_it.rollback().await.unwrap();
    assert_eq!(drain(&consumer, Duration::from_millis(800)).await, ["keep"]);
    assert_eq!(s.broker.open_transactions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_are_checked_back_and_discarded_after_the_last_check() {
    let s = server_with(transactions(150, 3)).await;
    // The producer that sent the halves is gone before ending them.
    {
        let gone = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
        let a = gone.send_transactional(Message::new("orders", "commit-me")).await.unwrap();
        let b = gone.send_transactional(Message::new("orders", "undecided")).await.unwrap();
        drop((a, b));
    }
    let (tx, mut asked) = tokio::sync::mpsc::unbounded_channel::<String>();
    let _checker = Producer::connect_transactional(ClientConfig::new(&s.endpoint), &["orders"], move |m| {
        let tx = tx.clone();
        async move {
            let body = String::from_utf8(m.body.to_vec()).unwrap();
            let _ = tx.send(body.clone());
            if body == "commit-me" {
                rill_client::TransactionResolution::Commit
            } else {
                rill_client::TransactionResolution::Unknown
            }
        }
    })
    .await
    .unwrap();
    let consumer = simple(&s.endpoint, "shipping", "orders", Duration::from_millis(300)).await;
    let mut got = Vec::new();
    let started = Instant::now();
    while got.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "the checked-back commit never arrived");
        got = drain(&consumer, Duration::from_millis(300)).await;
    }
    assert_eq!(got, ["commit-me"]);
    // "undecided" is asked about three times, then discarded.
    let started = Instant::now();
    while s.broker.open_transactions() > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the undecided transaction was never discarded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut undecided = 0;
    while let Ok(body) = asked.try_recv() {
        undecided += usize::from(body == "undecided");
    }
    assert_eq!(undecided, 3);
    let discarded = s.broker.store().read_queue(rill_broker::txn::DISCARD_TOPIC, 0, 0, 10).unwrap().messages;
    assert_eq!(discarded.len(), 1);
    assert_eq!(&discarded[0].body[..], b"undecided");
    assert!(drain(&consumer, Duration::from_millis(300)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_their_own_replies_and_time_out_clearly() {
    let s = server_with(ladder()).await;
    let replier = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let answering = replier.clone();
    let _service = PushConsumer::start(
        ClientConfig::new(&s.endpoint),
        "pricing",
        subscription("quotes"),
        8,
        Duration::from_secs(30),
        move |m: ReceivedMessage| {
            let p = answering.clone();
            async move {
                let body = format!("price of {}", String::from_utf8_lossy(&m.body));
                p.reply(&m, Message::new("ignored", body)).await.map_err(|e| ConsumeError(e.to_string()))?;
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    let requester = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let mut asks = Vec::new();
    for i in 0..5 {
        let r = requester.clone();
        asks.push(tokio::spawn(async move {
            r.request(Message::new("quotes", format!("item-{i}")), Duration::from_secs(10)).await
        }));
    }
    for (i, ask) in asks.into_iter().enumerate() {
        let reply = ask.await.unwrap().unwrap();
        assert_eq!(String::from_utf8(reply.body.to_vec()).unwrap(), format!("price of item-{i}"));
    }
    // Replies are routed, never stored.
    assert!(s.broker.store().queue_bounds("RILL_REPLY_TOPIC", 0).is_none());

    // Nobody answers on this topic: a clear timeout.
    let started = Instant::now();
    let err = requester.request(Message::new("nobody-home", "hello?"), Duration::from_millis(500)).await.unwrap_err();
    assert!(matches!(err, rill_client::Error::RequestTimeout { .. }), "{err}");
    assert!(err.to_string().contains("no reply"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A message that is not a request cannot be replied to.
    let plain = ReceivedMessage { properties: HashMap::new(), ..reply_shape() };
    assert!(replier.reply(&plain, Message::new("x", "y")).await.is_err());
}

fn reply_shape() -> ReceivedMessage {
    ReceivedMessage {
        topic: "t".into(),
        body: bytes::Bytes::from_static(b"x"),
        tag: None,
        keys: Vec::new(),
        properties: HashMap::new(),
        message_id: "m".into(),
        message_group: None,
        queue_id: 0,
        queue_offset: 0,
        delivery_attempt: 1,
        store_timestamp: 0,
        delivery_timestamp: None,
        receipt_handle: String::new(),
        invisible_duration: None,
        broker: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_group_receives_each_message_group_in_order_one_at_a_time() {
    let s = server_with(ladder()).await;
    let mut fifo = rill_store::GroupConfig::new("ledger");
    fifo.fifo = true;
    s.broker.meta().put_group(fifo).unwrap();
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    for i in 0..4 {
        for account in ["acct-1", "acct-2"] {
            let m = Message::new("postings", format!("{account}:{i}")).with_message_group(account);
            producer.send(m).await.unwrap();
        }
    }
    let consumer = simple(&s.endpoint, "ledger", "postings", Duration::from_millis(300)).await;
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    let started = Instant::now();
    while seen.values().map(Vec::len).sum::<usize>() < 8 {
        assert!(started.elapsed() < Duration::from_secs(10), "stuck with {seen:?}");
        let got = consumer.receive(32, Duration::from_secs(30)).await.unwrap();
        let mut groups: Vec<&str> = got.iter().map(|m| m.message_group.as_deref().unwrap()).collect();
        groups.sort_unstable();
        groups.dedup();
        assert_eq!(groups.len(), got.len(), "one message per message group in flight");
        for m in got {
            let (account, i) = std::str::from_utf8(&m.body).unwrap().split_once(':').unwrap();
            seen.entry(account.to_owned()).or_default().push(i.parse().unwrap());
            consumer.ack(&m).await.unwrap();
        }
    }
    assert_eq!(seen["acct-1"], [0, 1, 2, 3]);
    assert_eq!(seen["acct-2"], [0, 1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql92_subscription_gets_only_matching_messages() {
    let s = server_with(ladder()).await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    for (i, (region, amount)) in [("eu", 50), ("us", 500), ("eu", 500), ("eu", 5000)].iter().enumerate() {
        let m = Message::new("payments", format!("p{i}"))
            .with_property("region", *region)
            .with_property("amount", amount.to_string());
        producer.send(m).await.unwrap();
    }
    let subs: HashMap<String, FilterExpression> =
        [("payments".to_owned(), FilterExpression::Sql("region = 'eu' AND amount BETWEEN 100 AND 1000".into()))]
            .into_iter()
            .collect();
    let consumer =
        SimpleConsumer::connect(ClientConfig::new(&s.endpoint), "eu-review", subs, Duration::from_millis(300))
            .await
            .unwrap();
    let got = consumer.receive(32, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.iter().map(|m| &m.body[..]).collect::<Vec<_>>(), [b"p2"]);
    let bad: HashMap<String, FilterExpression> =
        [("payments".to_owned(), FilterExpression::Sql("region = ".into()))].into_iter().collect();
    let broken = SimpleConsumer::connect(ClientConfig::new(&s.endpoint), "broken", bad, Duration::from_millis(300))
        .await
        .unwrap();
    let err = broken.receive(1, Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(err.code(), Some(rill_client::Code::IllegalFilterExpression), "{err}");
    assert!(err.to_string().contains("column 10"), "{err}");
}
