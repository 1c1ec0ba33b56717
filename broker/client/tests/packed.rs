//! Packed batches end to end: the Rust producer packs a batch into one
//! message, the broker stores one record, and consumers, key queries and
//! id lookups see each message on its own; what cannot go packed goes
//! message by message; a broken packed body is refused with the reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{Server, server_with};
use rill_broker::BrokerConfig;
use rill_client::{ClientConfig, FilterExpression, Message, Producer, SimpleConsumer};
use rill_proto::v2;

async fn server() -> Server {
    server_with(BrokerConfig::default()).await
}

async fn reader(endpoint: &str, group: &str, topic: &str, filter: FilterExpression) -> SimpleConsumer {
    let subscription: HashMap<String, FilterExpression> = [(topic.to_owned(), filter)].into_iter().collect();
    SimpleConsumer::connect(ClientConfig::new(endpoint), group, subscription, Duration::from_millis(300)).await.unwrap()
}

/// Messages the broker's queues of `topic` hold.
fn stored(s: &Server, topic: &str) -> u64 {
    let state = s.broker.store().state();
    state.queues.iter().filter(|q| q.topic == topic).map(|q| q.max_offset - q.min_offset).sum()
}

fn line(topic: &str, i: usize) -> Message {
    let tag = if i.is_multiple_of(2) { "even" } else { "odd" };
    Message::new(topic, format!("line {i}")).with_tag(tag).with_key(format!("k{i}")).with_property("i", i.to_string())
}

/// Everything a consumer of `group` gets until a receive comes back empty, acknowledged.
async fn drain(consumer: &SimpleConsumer) -> Vec<rill_client::ReceivedMessage> {
    let mut out = Vec::new();
    loop {
        let got = consumer.receive(32, Duration::from_secs(30)).await.unwrap();
        if got.is_empty() {
            return out;
        }
        for m in got {
            consumer.ack(&m).await.unwrap();
            out.push(m);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_batch_is_one_record_but_reaches_consumers_message_by_message() {
    let s = server().await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let mut batch = producer.prepare((0..100).map(|i| line("packed", i)).collect()).unwrap();
    assert!(batch.is_packed(), "a Rill broker takes packed batches");
    assert_eq!(batch.len(), 100);
    let receipts = producer.send_prepared(&mut batch).await.unwrap();
    assert_eq!(receipts.len(), 100);
    let offsets: Vec<i64> = receipts.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (offsets[0]..offsets[0] + 100).collect::<Vec<_>>(), "one offset each, in order");
    let ids: BTreeMap<String, usize> = receipts.iter().enumerate().map(|(i, r)| (r.message_id.clone(), i)).collect();
    assert_eq!(ids.len(), 100, "each message has an id of its own");

    // The broker stored one record holding them all.
    assert_eq!(stored(&s, "packed"), 100);
    let first = s.broker.store().message_by_id(&receipts[0].message_id).unwrap().unwrap();
    let record = s.broker.store().read(first.physical_offset).unwrap();
    assert_eq!(record.properties.get("INNER_NUM"), Some("100"), "one record packs them");

    // A tag filter picks single messages out of the packed record.
    let evens = drain(&reader(&s.endpoint, "evens", "packed", FilterExpression::Tag("even".into())).await).await;
    let mut seen: Vec<usize> = evens.iter().map(|m| m.properties["i"].parse().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).step_by(2).collect::<Vec<_>>());
    for m in &evens {
        let i: usize = m.properties["i"].parse().unwrap();
        assert_eq!(m.tag.as_deref(), Some("even"));
        assert_eq!(m.keys, [format!("k{i}")]);
        assert_eq!(&m.body[..], format!("line {i}").as_bytes());
        assert_eq!(ids.get(&m.message_id), Some(&i), "the id the producer was given");
        assert_eq!(m.queue_offset, receipts[i].offset, "the offset the producer was given");
        assert!(!m.properties.contains_key("INNER_NUM"), "the packing does not show");
    }
    let all = drain(&reader(&s.endpoint, "everyone", "packed", FilterExpression::all()).await).await;
    assert_eq!(all.len(), 100);

    // Keys and ids of packed messages are indexed.
    let store = s.broker.store();
    let by_key = store.query_by_key("packed", "k41", 0, i64::MAX, 10).unwrap();
    assert_eq!(by_key.iter().map(|m| &m.body[..]).collect::<Vec<_>>(), [b"line 41"]);
    let by_id = store.message_by_id(&receipts[77].message_id).unwrap().unwrap();
    assert_eq!((&by_id.body[..], by_id.queue_offset as i64), (&b"line 77"[..], receipts[77].offset));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_go_packed_goes_message_by_message() {
    let s = server().await;
    let unpacking = Producer::connect(ClientConfig::new(&s.endpoint).without_packing()).await.unwrap();
    let batch = unpacking.prepare((0..3).map(|i| line("plain", i)).collect()).unwrap();
    assert!(!batch.is_packed(), "packing was turned off");
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let delayed = vec![line("plain", 0), line("plain", 1).with_delay(Duration::from_secs(1))];
    assert!(!producer.prepare(delayed).unwrap().is_packed(), "a delay message is not packed");
    let groups = vec![line("plain", 0).with_message_group("a"), line("plain", 1).with_message_group("b")];
    assert!(!producer.prepare(groups).unwrap().is_packed(), "two message groups are not packed");
    assert!(!producer.prepare(vec![line("plain", 0)]).unwrap().is_packed(), "one message is sent as it is");
    let one_group = (0..4).map(|i| line("plain", i).with_message_group("g")).collect();
    assert!(producer.prepare(one_group).unwrap().is_packed(), "one message group packs");

    // A message the broker would refuse keeps the batch unpacked, so it gets its own answer.
    let bad = vec![line("plain", 0), Message::new("plain", "x").with_tag("a|b")];
    assert!(!producer.prepare(bad.clone()).unwrap().is_packed());
    let err = producer.send_batch(bad).await.unwrap_err();
    assert_eq!(err.code(), Some(v2::Code::IllegalMessageTag), "{err}");
}

/// Sends one hand-made packed message over gRPC; the status the broker answered.
async fn send_raw(endpoint: &str, body: Vec<u8>, inner_num: &str, tag: Option<&str>) -> v2::Status {
    let mut client =
        v2::messaging_service_client::MessagingServiceClient::connect(format!("http://{endpoint}")).await.unwrap();
    let message = v2::Message {
        topic: Some(v2::Resource { resource_namespace: String::new(), name: "raw".into() }),
        user_properties: HashMap::from([("INNER_NUM".to_owned(), inner_num.to_owned())]),
        system_properties: Some(v2::SystemProperties {
            message_id: "01RAW".into(),
            tag: tag.map(str::to_owned),
            ..Default::default()
        }),
        body: body.into(),
    };
    let reply = client.send_message(v2::SendMessageRequest { messages: vec![message] }).await.unwrap().into_inner();
    reply.entries.into_iter().next().and_then(|e| e.status).or(reply.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_packed_body_is_refused_with_what_is_wrong() {
    let s = server().await;
    let mut p = rill_common::packed::Packer::default();
    p.push(0, b"first", [("TAGS", "a")]).unwrap();
    p.push(0, b"second", [("TAGS", "b")]).unwrap();
    let (good, _) = p.finish();

    let status = send_raw(&s.endpoint, good.clone(), "3", None).await;
    assert_eq!(status.code, v2::Code::BadRequest as i32);
    assert!(status.message.contains("holds 2 messages") && status.message.contains("says 3"), "{}", status.message);

    let mut cut = good.clone();
    cut.truncate(good.len() - 3);
    let status = send_raw(&s.endpoint, cut, "2", None).await;
    assert_eq!(status.code, v2::Code::BadRequest as i32);
    assert!(status.message.contains("packed message 1"), "{}", status.message);

    let status = send_raw(&s.endpoint, good.clone(), "two", None).await;
    assert!(status.message.contains("INNER_NUM") && status.message.contains("\"two\""), "{}", status.message);

    let status = send_raw(&s.endpoint, good.clone(), "2", Some("outer")).await;
    assert!(status.message.contains("not on itself"), "{}", status.message);

    let mut p = rill_common::packed::Packer::default();
    p.push(0, b"fine", []).unwrap();
    p.push(0, b"reserved", [("__SHARDINGKEY", "sneaky")]).unwrap();
    let status = send_raw(&s.endpoint, p.finish().0, "2", None).await;
    assert_eq!(status.code, v2::Code::IllegalMessagePropertyKey as i32);
    assert!(
        status.message.contains("packed message 1") && status.message.contains("__SHARDINGKEY"),
        "{}",
        status.message
    );

    // Nothing of the refused batches was stored; a good one is.
    assert_eq!(stored(&s, "raw"), 0);
    let status = send_raw(&s.endpoint, good, "2", None).await;
    assert_eq!(status.code, v2::Code::Ok as i32, "{}", status.message);
    let got = drain(&reader(&s.endpoint, "raw-readers", "raw", FilterExpression::all()).await).await;
    let bodies: Vec<&[u8]> = got.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, [&b"first"[..], b"second"]);
    assert_eq!(got[1].tag.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_sends_go_packed_and_a_refused_one_fails_alone() {
    let s = server().await;
    let producer = Producer::connect(ClientConfig::new(&s.endpoint)).await.unwrap();
    let sends: Vec<_> = (0..500).map(|i| producer.send_async(line("singles", i))).collect();
    // A property the broker reserves, in the middle of the stream: refused on its own.
    let reserved = producer.send_async(line("singles", 999).with_property("__SHARDINGKEY", "sneaky"));
    let more: Vec<_> = (500..600).map(|i| producer.send_async(line("singles", i))).collect();
    let mut receipts = BTreeMap::new();
    for (i, s) in sends.into_iter().chain(more).enumerate() {
        let r = s.await.unwrap().unwrap();
        receipts.insert(r.message_id.clone(), i);
    }
    assert_eq!(receipts.len(), 600, "every send has its own receipt and id");
    let err = reserved.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(v2::Code::IllegalMessagePropertyKey), "{err}");
    assert_eq!(stored(&s, "singles"), 600, "each stored once, the refused one not at all");
    let got = drain(&reader(&s.endpoint, "singles-readers", "singles", FilterExpression::all()).await).await;
    assert_eq!(got.len(), 600);
    for m in &got {
        let i = receipts[&m.message_id];
        assert_eq!(m.properties["i"], i.to_string(), "the id the sender was given names its message");
    }
    // Coalesced sends went packed: fewer records than messages.
    let records: std::collections::BTreeSet<u64> =
        got.iter().map(|m| s.broker.store().message_by_id(&m.message_id).unwrap().unwrap().physical_offset).collect();
    assert!(records.len() < 600, "{} records for 600 messages", records.len());
}
