//! Pop bookkeeping over time: broadcast members' state goes when they
//! leave or fall silent, receives on many queues run side by side, and an
//! expired message comes back through the retry topic under its filter.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rill_broker::{Broker, BrokerConfig, Filter, ReceiveRequest};
use rill_common::ManualClock;
use rill_proto::v2;
use rill_store::{GroupConfig, MetaStore, Store, StoreConfig};

fn broker(dir: &std::path::Path, clock: Arc<ManualClock>) -> Arc<Broker> {
    let mut cfg = StoreConfig::new(dir.join("data"));
    cfg.segment_size = 8 << 20;
    let store = Store::open(cfg).unwrap();
    let meta = MetaStore::open(dir.join("data/meta")).unwrap();
    let config = BrokerConfig {
        default_queues: 4,
        client_timeout: Duration::from_secs(120),
        retry_delays: vec![Duration::ZERO],
        ..BrokerConfig::default()
    };
    Broker::with_clock(store, meta, config, clock)
}

fn message(topic: &str, body: &str) -> v2::Message {
    tagged(topic, body, None)
}

fn tagged(topic: &str, body: &str, tag: Option<&str>) -> v2::Message {
    v2::Message {
        topic: Some(v2::Resource { resource_namespace: String::new(), name: topic.into() }),
        system_properties: Some(v2::SystemProperties {
            message_id: format!("ID-{body}"),
            tag: tag.map(str::to_owned),
            ..Default::default()
        }),
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        ..Default::default()
    }
}

fn receive(group: &str, client: &str) -> ReceiveRequest {
    ReceiveRequest {
        group: group.into(),
        client_id: client.into(),
        topic: "news".into(),
        namespace: String::new(),
        queue: None,
        filter: Filter::All,
        batch: 32,
        invisible: Duration::from_secs(30),
        long_polling: Duration::ZERO,
    }
}

#[tokio::test]
async fn broadcast_state_goes_when_members_leave_or_fall_silent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = broker(dir.path(), Arc::clone(&clock));
    let mut group = GroupConfig::new("fans");
    group.broadcast = true;
    b.meta().put_group(group).unwrap();
    for r in b.send_batch(&[message("news", "a"), message("news", "b")]).await {
        r.unwrap();
    }
    assert_eq!(b.receive(&receive("fans", "c1")).await.unwrap().len(), 2);
    assert_eq!(b.receive(&receive("fans", "c2")).await.unwrap().len(), 2);
    assert_eq!(b.pop_states(), 8, "one state per member and queue");

    // c1 says goodbye: its state goes at once.
    b.client_left("fans", "c1");
    assert_eq!(b.pop_states(), 4);

    // c2 falls silent: nothing happens before the timeout, everything after.
    clock.advance(120_000);
    assert_eq!(b.expire_members(), 0);
    assert_eq!(b.pop_states(), 4);
    clock.advance(1);
    assert_eq!(b.expire_members(), 1);
    assert_eq!(b.pop_states(), 0);
    assert!(b.group_members("fans").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_receives_hand_out_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path(), Arc::new(ManualClock::new(1_000_000)));
    let msgs: Vec<v2::Message> = (0..400).map(|i| message("news", &format!("m{i}"))).collect();
    for r in b.send_batch(&msgs).await {
        r.unwrap();
    }
    let mut tasks = Vec::new();
    for c in 0..8 {
        let b = Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let mut req = receive("workers", &format!("c{c}"));
                req.batch = 7;
                let batch = b.receive(&req).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|m| m.body));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 400, "every message handed out");
    assert_eq!(unique.len(), 400, "none twice");
}

#[tokio::test]
async fn an_expired_message_comes_back_through_the_retry_topic_under_the_same_filter() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = broker(dir.path(), Arc::clone(&clock));
    b.send(&tagged("news", "sport-1", Some("sport"))).await.unwrap();
    let mut sport = receive("g", "c1");
    sport.filter = Filter::tags("sport").unwrap();
    let got = b.receive(&sport).await.unwrap();
    assert_eq!(got.len(), 1);

    // Its invisible time passes without an ack: the revive pass moves it to
    // the group's retry topic, where it keeps its tag.
    clock.advance(31_000);
    assert_eq!(b.revive().await, 1);
    let again = b.receive(&sport).await.unwrap();
    assert_eq!(again.len(), 1, "the message is still due, not dropped");
    assert_eq!(again[0].body, got[0].body);
    let attempt = again[0].system_properties.as_ref().and_then(|s| s.delivery_attempt);
    assert_eq!(attempt, Some(2));
}
