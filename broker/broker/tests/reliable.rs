//! Retries, dead letters and delayed messages, driven through the broker's
//! own API with a manual clock (visibility and retry decisions) or the real
//! one (timers, which run as the serving broker's background loop).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_broker::park::{self, props};
use rill_broker::{Broker, BrokerConfig, Filter, ReceiveRequest, TimerConfig};
use rill_common::{Clock, ManualClock, SystemClock};
use rill_proto::v2::{self, Code};
use rill_store::{GroupConfig, MetaStore, Store, StoreConfig};

fn open(dir: &std::path::Path, config: BrokerConfig, clock: Arc<dyn Clock>) -> Arc<Broker> {
    let mut cfg = StoreConfig::new(dir.join("data"));
    cfg.segment_size = 8 << 20;
    let store = Store::open(cfg).unwrap();
    let meta = MetaStore::open(dir.join("data/meta")).unwrap();
    Broker::with_clock(store, meta, config, clock)
}

/// Retries visible at once (a zero retry delay), so the manual clock alone drives them.
fn config() -> BrokerConfig {
    BrokerConfig {
        default_queues: 2,
        min_invisible: Duration::from_secs(1),
        retry_delays: vec![Duration::ZERO],
        ..BrokerConfig::default()
    }
}

fn message(topic: &str, body: &str) -> v2::Message {
    v2::Message {
        topic: Some(v2::Resource { resource_namespace: String::new(), name: topic.into() }),
        system_properties: Some(v2::SystemProperties { message_id: format!("ID-{body}"), ..Default::default() }),
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        ..Default::default()
    }
}

fn delayed(topic: &str, body: &str, due_ms: i64) -> v2::Message {
    let mut m = message(topic, body);
    let sys = m.system_properties.as_mut().unwrap();
    sys.delivery_timestamp = Some(rill_proto::time::timestamp_from_millis(due_ms));
    sys.message_type = v2::MessageType::Delay as i32;
    m
}

fn receive(group: &str, invisible: Duration, long_polling: Duration) -> ReceiveRequest {
    ReceiveRequest {
        group: group.into(),
        client_id: "c1".into(),
        topic: "orders".into(),
        namespace: String::new(),
        queue: None,
        filter: Filter::All,
        batch: 32,
        invisible,
        long_polling,
    }
}

fn attempt(m: &v2::Message) -> i32 {
    m.system_properties.as_ref().unwrap().delivery_attempt.unwrap()
}

fn handle(m: &v2::Message) -> String {
    m.system_properties.as_ref().unwrap().receipt_handle.clone().unwrap()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn unacknowledged_messages_retry_then_become_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = open(dir.path(), config(), clock.clone());
    let mut group = GroupConfig::new("sms");
    group.max_retries = 2;
    b.meta().put_group(group).unwrap();
    b.send(&message("orders", "o1")).await.unwrap();

    let mut seen = Vec::new();
    for round in 1..=3 {
        let got = b.receive(&receive("sms", 5 * SECOND, Duration::ZERO)).await.unwrap();
        assert_eq!(got.len(), 1, "round {round}");
        let m = &got[0];
        assert_eq!(m.topic.as_ref().unwrap().name, "orders", "a retry arrives as a message of its topic");
        assert_eq!(m.system_properties.as_ref().unwrap().message_id, "ID-o1");
        seen.push(attempt(m));
        // Nothing more until the invisible time passes.
        assert_eq!(b.revive().await, 0);
        clock.advance(5_001);
        assert_eq!(b.revive().await, 1, "round {round}: the expired message leaves flight");
    }
    assert_eq!(seen, [1, 2, 3]);
    // Three attempts used (max_retries 2): the third expiry made it a dead letter.
    assert!(b.receive(&receive("sms", 5 * SECOND, Duration::ZERO)).await.unwrap().is_empty());
    let dlq = b.store().read_queue(&park::dlq_topic("sms"), 0, 0, 10).unwrap().messages;
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(d.properties.get(props::DLQ_ORIGIN_TOPIC), Some("orders"));
    assert_eq!(d.properties.get(props::DLQ_ORIGIN_MESSAGE_ID), Some("ID-o1"));
    assert_eq!(d.properties.unique_id(), Some("ID-o1"));
    assert_eq!(d.reconsume_times, 3);
    assert_eq!(&d.body[..], b"o1");
    assert!(b.metrics().render(&b).contains(r#"rill_dead_letters_total{topic="orders",group="sms"} 1"#));
    // Offsets moved past the original and the retries: nothing is in flight.
    assert_eq!(b.meta().offset("sms", &park::retry_topic("sms", "orders"), 0), Some(2));
}

#[tokio::test]
async fn an_ack_of_a_retry_ends_it_and_a_stale_handle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = open(dir.path(), config(), clock.clone());
    b.send(&message("orders", "o1")).await.unwrap();
    let first = b.receive(&receive("g", 5 * SECOND, Duration::ZERO)).await.unwrap();
    clock.advance(6_000);
    assert_eq!(b.revive().await, 1);
    let err = b.ack("g", "c1", "orders", &handle(&first[0])).unwrap_err();
    assert_eq!(err.code, Code::InvalidReceiptHandle);
    let retry = b.receive(&receive("g", 5 * SECOND, Duration::ZERO)).await.unwrap();
    assert_eq!(attempt(&retry[0]), 2);
    b.ack("g", "c1", "orders", &handle(&retry[0])).unwrap();
    clock.advance(60_000);
    assert_eq!(b.revive().await, 0);
    assert!(b.receive(&receive("g", 5 * SECOND, Duration::ZERO)).await.unwrap().is_empty());
}

#[tokio::test]
async fn fifo_groups_retry_in_place_and_broadcast_groups_never_retry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = open(dir.path(), config(), clock.clone());
    let mut fifo = GroupConfig::new("ordered");
    fifo.fifo = true;
    b.meta().put_group(fifo).unwrap();
    let mut fans = GroupConfig::new("fans");
    fans.broadcast = true;
    b.meta().put_group(fans).unwrap();
    b.send(&message("orders", "o1")).await.unwrap();

    let first = b.receive(&receive("ordered", 5 * SECOND, Duration::ZERO)).await.unwrap();
    let offset = first[0].system_properties.as_ref().unwrap().queue_offset;
    b.receive(&receive("fans", 5 * SECOND, Duration::ZERO)).await.unwrap();
    clock.advance(6_000);
    // The broadcast member's copy leaves flight for good; the FIFO one stays.
    assert_eq!(b.revive().await, 1);
    let again = b.receive(&receive("ordered", 5 * SECOND, Duration::ZERO)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(attempt(&again[0]), 2);
    assert_eq!(again[0].system_properties.as_ref().unwrap().queue_offset, offset, "same message, same place");
    assert!(b.store().queue_bounds(&park::retry_topic("ordered", "orders"), 0).is_none());
    assert!(b.receive(&receive("fans", 5 * SECOND, Duration::ZERO)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_client_can_send_a_message_to_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = open(dir.path(), config(), clock.clone());
    b.send(&message("orders", "bad")).await.unwrap();
    let got = b.receive(&receive("g", 30 * SECOND, Duration::ZERO)).await.unwrap();
    b.forward_to_dlq("g", "c1", "orders", &handle(&got[0])).await.unwrap();
    let again = b.forward_to_dlq("g", "c1", "orders", &handle(&got[0])).await.unwrap_err();
    assert_eq!(again.code, Code::InvalidReceiptHandle);
    let dlq = b.store().read_queue(&park::dlq_topic("g"), 0, 0, 10).unwrap().messages;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reconsume_times, 1);
    assert_eq!(b.meta().offset("g", "orders", got[0].system_properties.as_ref().unwrap().queue_id as u32), Some(1));
}

#[tokio::test]
async fn a_receive_refuses_invisible_times_outside_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), BrokerConfig::default(), Arc::new(SystemClock));
    for bad in [Duration::from_secs(9), Duration::from_secs(12 * 3600 + 1)] {
        let err = b.receive(&receive("g", bad, Duration::ZERO)).await.unwrap_err();
        assert_eq!(err.code, Code::IllegalInvisibleTime, "{bad:?}");
    }
    assert!(b.receive(&receive("g", 10 * SECOND, Duration::ZERO)).await.is_ok());
}

fn now_ms() -> i64 {
    SystemClock.now_millis()
}

fn timer_config() -> BrokerConfig {
    BrokerConfig { timer: TimerConfig { precision: Duration::from_millis(50), ..TimerConfig::default() }, ..config() }
}

#[tokio::test]
async fn delayed_messages_arrive_at_their_time_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), timer_config(), Arc::new(SystemClock));
    let background = b.start_background();
    let due = now_ms() + 1_500;
    b.send(&delayed("orders", "later", due)).await.unwrap();
    b.send(&message("orders", "now")).await.unwrap();
    let first = b.receive(&receive("g", 30 * SECOND, SECOND)).await.unwrap();
    assert_eq!(first.len(), 1, "only the undelayed message is visible");
    assert_eq!(&first[0].body[..], b"now");
    let mut got = Vec::new();
    let started = Instant::now();
    while got.is_empty() && started.elapsed() < Duration::from_secs(10) {
        got = b.receive(&receive("g", 30 * SECOND, 5 * SECOND)).await.unwrap();
    }
    let arrived = now_ms();
    assert_eq!(got.len(), 1);
    assert!(arrived >= due, "arrived {} ms early", due - arrived);
    assert!(arrived - due < 1_000, "arrived {} ms late", arrived - due);
    let sys = got[0].system_properties.as_ref().unwrap();
    assert_eq!(sys.message_type, v2::MessageType::Delay as i32);
    assert_eq!(rill_proto::time::timestamp_to_millis(sys.delivery_timestamp.as_ref().unwrap()).unwrap(), due);
    assert_eq!(sys.message_id, "ID-later");
    assert!(got[0].user_properties.keys().all(|k| !props::ALL.contains(&k.as_str())));
    b.stop_serving();
    background.finish().await;
}

#[tokio::test]
async fn delivery_times_beyond_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), timer_config(), Arc::new(SystemClock));
    let far = now_ms() + 41 * 24 * 3600 * 1000;
    let err = b.send(&delayed("orders", "x", far)).await.unwrap_err();
    assert_eq!(err.code, Code::IllegalDeliveryTime);
    assert!(err.message.contains("max_delay"), "{}", err.message);
    // 39 days is fine: no 3-day cap.
    b.send(&delayed("orders", "y", now_ms() + 39 * 24 * 3600 * 1000)).await.unwrap();
}

#[tokio::test]
async fn pending_timers_and_retries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let due = now_ms() + 2_500;
    {
        let b = open(dir.path(), timer_config(), Arc::new(SystemClock));
        let background = b.start_background();
        for i in 0..50 {
            b.send(&delayed("orders", &format!("d{i}"), due)).await.unwrap();
        }
        // A message in retry: received, expired, moved to the retry topic.
        b.send(&message("orders", "r")).await.unwrap();
        let got = b.receive(&receive("g", SECOND, SECOND)).await.unwrap();
        assert_eq!(got.len(), 1);
        // The background revive pass moves it once the second is over.
        let retry = park::retry_topic("g", "orders");
        let mut watch = b.store().dispatch_watch();
        let started = Instant::now();
        while b.store().queue_bounds(&retry, 0).map(|q| q.1) != Some(1) {
            assert!(started.elapsed() < Duration::from_secs(5), "the expired message was not moved");
            let _ = tokio::time::timeout(Duration::from_secs(1), watch.changed()).await;
        }
        b.stop_serving();
        background.finish().await;
        b.persist_offsets().unwrap();
        b.store().close().unwrap();
    }
    let b = open(dir.path(), timer_config(), Arc::new(SystemClock));
    let background = b.start_background();
    let mut bodies = Vec::new();
    let started = Instant::now();
    while bodies.len() < 51 && started.elapsed() < Duration::from_secs(10) {
        for m in b.receive(&receive("g", 30 * SECOND, SECOND)).await.unwrap() {
            if &m.body[..] == b"r" {
                assert_eq!(attempt(&m), 2, "the retry keeps its count across the restart");
            } else {
                assert!(now_ms() >= due, "a timer fired early after the restart");
            }
            bodies.push(String::from_utf8(m.body.to_vec()).unwrap());
            b.ack("g", "c1", "orders", &handle(&m)).unwrap();
        }
    }
    bodies.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("d{i}")).collect();
    want.push("r".into());
    want.sort();
    assert_eq!(bodies, want);
    b.stop_serving();
    background.finish().await;
}

fn grouped(topic: &str, body: &str, group: &str) -> v2::Message {
    let mut m = message(topic, body);
    let sys = m.system_properties.as_mut().unwrap();
    sys.message_group = Some(group.into());
    sys.message_type = v2::MessageType::Fifo as i32;
    m
}

fn bodies(ms: &[v2::Message]) -> Vec<String> {
    let mut b: Vec<String> = ms.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect();
    b.sort();
    b
}

#[tokio::test]
async fn fifo_groups_get_one_message_per_message_group_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = open(dir.path(), config(), clock.clone());
    let mut fifo = GroupConfig::new("ordered");
    fifo.fifo = true;
    b.meta().put_group(fifo).unwrap();
    // One queue, so both message groups share it and must not block each other.
    b.meta().put_topic(rill_store::TopicConfig::new("orders", 1)).unwrap();
    for i in 1..=3 {
        b.send(&grouped("orders", &format!("A{i}"), "A")).await.unwrap();
        b.send(&grouped("orders", &format!("B{i}"), "B")).await.unwrap();
    }
    let recv = || receive("ordered", 10 * SECOND, Duration::ZERO);
    let first = b.receive(&recv()).await.unwrap();
    assert_eq!(bodies(&first), ["A1", "B1"], "one in flight per message group");
    assert!(b.receive(&recv()).await.unwrap().is_empty(), "both groups are busy");
    let a1 = first.iter().find(|m| &m.body[..] == b"A1").unwrap();
    b.ack("ordered", "c1", "orders", &handle(a1)).unwrap();
    // A moves on while B1 is still in flight.
    let next = b.receive(&recv()).await.unwrap();
    assert_eq!(bodies(&next), ["A2"]);
    // B1 fails (its invisible time passes): it comes back in place, before B2.
    clock.advance(11_000);
    assert_eq!(b.revive().await, 0, "a FIFO group's message is not moved to a retry topic");
    b.ack("ordered", "c1", "orders", &handle(&next[0])).unwrap();
    let again = b.receive(&recv()).await.unwrap();
    assert_eq!(bodies(&again), ["A3", "B1"]);
    let b1 = again.iter().find(|m| &m.body[..] == b"B1").unwrap();
    assert_eq!(attempt(b1), 2);
    for m in &again {
        b.ack("ordered", "c1", "orders", &handle(m)).unwrap();
    }
    let rest = b.receive(&recv()).await.unwrap();
    assert_eq!(bodies(&rest), ["B2"]);
    b.ack("ordered", "c1", "orders", &handle(&rest[0])).unwrap();
    let last = b.receive(&recv()).await.unwrap();
    assert_eq!(bodies(&last), ["B3"]);
    b.ack("ordered", "c1", "orders", &handle(&last[0])).unwrap();
    assert_eq!(b.meta().offset("ordered", "orders", 0), Some(6), "everything acknowledged in the end");
}

#[tokio::test]
async fn a_fifo_message_that_keeps_failing_becomes_a_dead_letter_and_unblocks_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = open(dir.path(), config(), clock.clone());
    let mut fifo = GroupConfig::new("ordered");
    fifo.fifo = true;
    fifo.max_retries = 1;
    b.meta().put_group(fifo).unwrap();
    b.send(&grouped("orders", "X1", "X")).await.unwrap();
    b.send(&grouped("orders", "X2", "X")).await.unwrap();
    let recv = || receive("ordered", 10 * SECOND, Duration::ZERO);
    assert_eq!(bodies(&b.receive(&recv()).await.unwrap()), ["X1"]);
    clock.advance(11_000);
    assert_eq!(bodies(&b.receive(&recv()).await.unwrap()), ["X1"], "second attempt, in place");
    clock.advance(11_000);
    assert_eq!(b.revive().await, 1, "attempts used up: dead letter");
    assert_eq!(bodies(&b.receive(&recv()).await.unwrap()), ["X2"]);
    let dlq = b.store().read_queue(&park::dlq_topic("ordered"), 0, 0, 10).unwrap().messages;
    assert_eq!(dlq.len(), 1);
    assert_eq!(&dlq[0].body[..], b"X1");
}

#[tokio::test]
async fn open_transactions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let transactional = |body: &str| {
        let mut m = message("orders", body);
        m.system_properties.as_mut().unwrap().message_type = v2::MessageType::Transaction as i32;
        m
    };
    {
        let b = open(dir.path(), timer_config(), Arc::new(SystemClock));
        let background = b.start_background();
        b.send(&transactional("t1")).await.unwrap();
        b.send(&transactional("t2")).await.unwrap();
        b.end_transaction("ID-t2", rill_broker::txn::Resolution::Rollback).await.unwrap();
        assert_eq!(b.open_transactions(), 1);
        assert!(b.receive(&receive("g", 30 * SECOND, Duration::ZERO)).await.unwrap().is_empty());
        b.stop_serving();
        background.finish().await;
        b.persist_offsets().unwrap();
        b.store().close().unwrap();
    }
    let b = open(dir.path(), timer_config(), Arc::new(SystemClock));
    let background = b.start_background();
    assert_eq!(b.open_transactions(), 1, "t1 is still open, t2 stays rolled back");
    let err = b.end_transaction("ID-t2", rill_broker::txn::Resolution::Commit).await.unwrap_err();
    assert_eq!(err.code, Code::InvalidTransactionId);
    b.end_transaction("ID-t1", rill_broker::txn::Resolution::Commit).await.unwrap();
    let got = b.receive(&receive("g", 30 * SECOND, SECOND)).await.unwrap();
    assert_eq!(bodies(&got), ["t1"]);
    let sys = got[0].system_properties.as_ref().unwrap();
    assert_eq!(sys.message_type, v2::MessageType::Transaction as i32);
    b.stop_serving();
    background.finish().await;
}

/// Waits (bounded) until the trace of `id` has `n` events.
async fn trace_of(b: &Broker, id: &str, n: usize) -> Vec<String> {
    let mut watch = b.store().dispatch_watch();
    let started = Instant::now();
    loop {
        let events: Vec<String> = b.message_trace(id).unwrap().into_iter().map(|e| e.event).collect();
        if events.len() >= n {
            return events;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "trace of {id} stuck at {events:?}");
        let _ = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
    }
}

#[tokio::test]
async fn traces_record_dead_letters_and_transaction_ends() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), timer_config(), Arc::new(SystemClock));
    let background = b.start_background();
    let traced = |body: &str, kind: v2::MessageType| {
        let mut m = message("orders", body);
        m.user_properties.insert("TRACE_ON".into(), "true".into());
        m.system_properties.as_mut().unwrap().message_type = kind as i32;
        m
    };
    b.send(&traced("poison", v2::MessageType::Normal)).await.unwrap();
    let got = b.receive(&receive("g", 30 * SECOND, SECOND)).await.unwrap();
    b.forward_to_dlq("g", "c1", "orders", &handle(&got[0])).await.unwrap();
    assert_eq!(trace_of(&b, "ID-poison", 3).await, ["Pub", "SubBefore", "DeadLetter"]);

    b.send(&traced("paid", v2::MessageType::Transaction)).await.unwrap();
    b.end_transaction("ID-paid", rill_broker::txn::Resolution::Commit).await.unwrap();
    let events = trace_of(&b, "ID-paid", 2).await;
    assert_eq!(events, ["Pub", "EndTransaction"]);
    let detail = b.message_trace("ID-paid").unwrap();
    assert_eq!(detail[1].detail, "COMMIT");
    assert!(detail[0].detail.contains("half message"), "{}", detail[0].detail);
    b.stop_serving();
    background.finish().await;
}

#[tokio::test]
async fn an_expired_invisible_time_waits_the_retry_delay_but_a_nack_does_not_wait_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        retry_delays: vec![Duration::from_millis(700)],
        revive_interval: Duration::from_millis(50),
        ..timer_config()
    };
    let b = open(dir.path(), config, Arc::new(SystemClock));
    let background = b.start_background();
    b.send(&message("orders", "slow")).await.unwrap();
    let first = b.receive(&receive("g", SECOND, SECOND)).await.unwrap();
    let delivered = Instant::now();
    // Not acknowledged: the 1 s invisible time runs out, then the 700 ms retry delay.
    let mut again = Vec::new();
    while again.is_empty() {
        assert!(delivered.elapsed() < Duration::from_secs(10), "never redelivered");
        again = b.receive(&receive("g", 30 * SECOND, 5 * SECOND)).await.unwrap();
    }
    let waited = delivered.elapsed();
    assert!(waited >= Duration::from_millis(1_650), "redelivered after {waited:?}");
    assert_eq!(attempt(&again[0]), 2);
    assert_eq!(again[0].system_properties.as_ref().unwrap().message_type, v2::MessageType::Normal as i32);
    drop(first);
    // A nack (the client sets the wait itself): redelivered when it says.
    let nacked = Instant::now();
    b.change_invisible("g", "c1", "orders", &handle(&again[0]), Duration::from_millis(200)).unwrap();
    let mut third = Vec::new();
    while third.is_empty() {
        assert!(nacked.elapsed() < Duration::from_secs(10), "never redelivered after the nack");
        third = b.receive(&receive("g", 30 * SECOND, 5 * SECOND)).await.unwrap();
    }
    let waited = nacked.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_millis(650), "after {waited:?}");
    assert_eq!(attempt(&third[0]), 3);
    b.stop_serving();
    background.finish().await;
}
