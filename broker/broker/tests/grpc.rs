//! The broker as a gRPC client meets it: a real tonic server on a loopback
//! port and the generated `apache.rocketmq.v2` client.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_broker::{Broker, BrokerConfig};
use rill_proto::v2::messaging_service_client::MessagingServiceClient;
use rill_proto::v2::{self, Code};
use rill_store::{MetaStore, Store, StoreConfig};
use tonic::transport::Channel;

struct Server {
    client: MessagingServiceClient<Channel>,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server(config: BrokerConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut store_cfg = StoreConfig::new(dir.path().join("data"));
    store_cfg.segment_size = 8 << 20;
    let store = Store::open(store_cfg).unwrap();
    let meta = MetaStore::open(dir.path().join("data/meta")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = Broker::new(store, meta, BrokerConfig { store_host: addr, ..config });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(rill_broker::service::serve(Arc::clone(&broker), addr, listener, None, async move {
        let _ = stopped.await;
    }));
    let client = MessagingServiceClient::connect(format!("http://{addr}")).await.unwrap();
    Server { client, broker, _dir: dir, _stop: stop }
}

fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource { resource_namespace: String::new(), name: name.into() })
}

fn message(topic: &str, tag: &str, body: &str) -> v2::Message {
    v2::Message {
        topic: resource(topic),
        user_properties: Default::default(),
        system_properties: Some(v2::SystemProperties {
            tag: Some(tag.into()),
            message_id: format!("ID-{body}"),
            ..Default::default()
        }),
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
    }
}

async fn send(c: &mut MessagingServiceClient<Channel>, msgs: Vec<v2::Message>) -> v2::SendMessageResponse {
    c.send_message(v2::SendMessageRequest { messages: msgs }).await.unwrap().into_inner()
}

struct Received {
    status: v2::Status,
    messages: Vec<v2::Message>,
}

async fn receive(
    c: &mut MessagingServiceClient<Channel>,
    group: &str,
    topic: &str,
    filter: (v2::FilterType, &str),
    invisible: Duration,
    polling: Duration,
) -> Received {
    use tokio_stream::StreamExt;
    let req = v2::ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(v2::MessageQueue { topic: resource(topic), id: -1, ..Default::default() }),
        filter_expression: Some(v2::FilterExpression { r#type: filter.0 as i32, expression: filter.1.into() }),
        batch_size: 32,
        invisible_duration: Some(rill_proto::time::from_duration(invisible)),
        auto_renew: false,
        long_polling_timeout: Some(rill_proto::time::from_duration(polling)),
        attempt_id: None,
    };
    let mut stream = c.receive_message(req).await.unwrap().into_inner();
    let mut out = Received { status: v2::Status::default(), messages: Vec::new() };
    while let Some(item) = stream.next().await {
        match item.unwrap().content {
            Some(v2::receive_message_response::Content::Status(s)) => out.status = s,
            Some(v2::receive_message_response::Content::Message(m)) => out.messages.push(m),
            _ => {}
        }
    }
    out
}

fn handle(m: &v2::Message) -> String {
    m.system_properties.as_ref().unwrap().receipt_handle.clone().unwrap()
}

async fn ack(c: &mut MessagingServiceClient<Channel>, group: &str, topic: &str, receipt: &str) -> i32 {
    let req = v2::AckMessageRequest {
        group: resource(group),
        topic: resource(topic),
        entries: vec![v2::AckMessageEntry {
            message_id: String::new(),
            receipt_handle: receipt.into(),
            lite_topic: None,
        }],
    };
    c.ack_message(req).await.unwrap().into_inner().entries[0].status.as_ref().unwrap().code
}

const TAG: v2::FilterType = v2::FilterType::Tag;

#[tokio::test]
async fn tag_filtered_receive_ack_and_nothing_left() {
    let mut s = server(BrokerConfig::default()).await;
    let c = &mut s.client;
    let sent = send(c, vec![message("t", "A", "a1"), message("t", "B", "b1"), message("t", "A", "a2")]).await;
    assert_eq!(sent.status.unwrap().code, Code::Ok as i32);
    assert_eq!(sent.entries.len(), 3);
    assert_eq!(sent.entries[1].message_id, "ID-b1");

    let got = receive(c, "g", "t", (TAG, "A"), Duration::from_secs(30), Duration::from_secs(1)).await;
    assert_eq!(got.status.code, Code::Ok as i32);
    let mut bodies: Vec<_> = got.messages.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect();
    bodies.sort();
    assert_eq!(bodies, ["a1", "a2"]);
    for m in &got.messages {
        let sys = m.system_properties.as_ref().unwrap();
        assert_eq!(sys.delivery_attempt, Some(1));
        assert_eq!(sys.body_digest.as_ref().unwrap().checksum, rill_broker::convert::md5_upper_hex(&m.body));
        assert_eq!(ack(c, "g", "t", &handle(m)).await, Code::Ok as i32);
    }
    let again = receive(c, "g", "t", (TAG, "A"), Duration::from_secs(30), Duration::from_millis(300)).await;
    assert_eq!(again.status.code, Code::MessageNotFound as i32);
    // Another group starts from the beginning.
    let other = receive(c, "g2", "t", (TAG, "*"), Duration::from_secs(30), Duration::from_secs(1)).await;
    assert_eq!(other.messages.len(), 3);
}

#[tokio::test]
async fn unacknowledged_messages_come_back_and_old_handles_go_stale() {
    let config = BrokerConfig {
        min_invisible: Duration::from_secs(1),
        revive_interval: Duration::from_millis(100),
        retry_delays: vec![Duration::from_millis(100)],
        ..BrokerConfig::default()
    };
    let mut s = server(config).await;
    let c = &mut s.client;
    send(c, vec![message("t", "A", "x")]).await;
    let first = receive(c, "g", "t", (TAG, "*"), Duration::from_secs(1), Duration::from_secs(1)).await;
    assert_eq!(first.messages.len(), 1);
    let old = handle(&first.messages[0]);
    // Not acknowledged: it becomes visible again after one second; the
    // long poll returns when it does.
    let started = Instant::now();
    let second = receive(c, "g", "t", (TAG, "*"), Duration::from_secs(30), Duration::from_secs(5)).await;
    assert_eq!(second.messages.len(), 1, "redelivered after the invisible time");
    assert!(started.elapsed() < Duration::from_secs(4));
    let sys = second.messages[0].system_properties.as_ref().unwrap();
    assert_eq!(sys.delivery_attempt, Some(2));
    assert_eq!(ack(c, "g", "t", &old).await, Code::InvalidReceiptHandle as i32);
    // Extending the invisible time gives a new handle and retires the old one.
    let current = handle(&second.messages[0]);
    let changed = c
        .change_invisible_duration(v2::ChangeInvisibleDurationRequest {
            group: resource("g"),
            topic: resource("t"),
            receipt_handle: current.clone(),
            invisible_duration: Some(rill_proto::time::from_duration(Duration::from_secs(60))),
            message_id: String::new(),
            lite_topic: None,
            suspend: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.status.unwrap().code, Code::Ok as i32);
    assert_eq!(ack(c, "g", "t", &current).await, Code::InvalidReceiptHandle as i32);
    assert_eq!(ack(c, "g", "t", &changed.receipt_handle).await, Code::Ok as i32);
    assert_eq!(ack(c, "g", "t", "not-a-handle").await, Code::InvalidReceiptHandle as i32);
}

#[tokio::test]
async fn a_waiting_receive_wakes_up_when_a_message_arrives() {
    let s = server(BrokerConfig::default()).await;
    let mut c = s.client.clone();
    // Create the topic, then wait on it.
    send(&mut c, vec![message("t", "A", "first")]).await;
    let mut drain = s.client.clone();
    let first = receive(&mut drain, "g", "t", (TAG, "*"), Duration::from_secs(60), Duration::from_secs(1)).await;
    assert_eq!(first.messages.len(), 1);
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let got = receive(&mut drain, "g", "t", (TAG, "*"), Duration::from_secs(60), Duration::from_secs(20)).await;
        (got.messages.len(), started.elapsed())
    });
    // Once the waiter is parked in its long poll, this send must wake it.
    let parked = Instant::now();
    while s.broker.waiting_receives() == 0 {
        assert!(parked.elapsed() < Duration::from_secs(10), "the receive never started waiting");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    send(&mut c, vec![message("t", "A", "second")]).await;
    let (n, waited) = waiter.await.unwrap();
    assert_eq!(n, 1);
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
}

#[tokio::test]
async fn bad_requests_get_protocol_codes() {
    let mut s = server(BrokerConfig { auto_create_topics: false, ..BrokerConfig::default() }).await;
    let c = &mut s.client;
    let route = c
        .query_route(v2::QueryRouteRequest { topic: resource("missing"), endpoints: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(route.status.unwrap().code, Code::TopicNotFound as i32);
    let bad_name = send(c, vec![message("bad topic", "A", "x")]).await;
    assert_eq!(bad_name.entries[0].status.as_ref().unwrap().code, Code::IllegalTopic as i32);
    let missing = send(c, vec![message("missing", "A", "x")]).await;
    assert_eq!(missing.entries[0].status.as_ref().unwrap().code, Code::TopicNotFound as i32);
    let empty = send(c, vec![]).await;
    assert_eq!(empty.status.unwrap().code, Code::BadRequest as i32);

    let mut s = server(BrokerConfig::default()).await;
    let c = &mut s.client;
    let mut no_body = message("t", "A", "");
    no_body.body.clear();
    let r = send(c, vec![no_body]).await;
    assert_eq!(r.entries[0].status.as_ref().unwrap().code, Code::MessageBodyEmpty as i32);
    let sql =
        receive(c, "g", "t", (v2::FilterType::Sql, "a > > 1"), Duration::from_secs(30), Duration::from_secs(1)).await;
    assert_eq!(sql.status.code, Code::IllegalFilterExpression as i32);
    assert!(sql.status.message.contains("SQL filter, column 5"), "{}", sql.status.message);
}

#[tokio::test]
async fn routes_echo_the_access_point_and_telemetry_completes_settings() {
    use tokio_stream::StreamExt;
    let mut s = server(BrokerConfig::default()).await;
    let c = &mut s.client;
    let access = v2::Endpoints {
        scheme: v2::AddressScheme::DomainName as i32,
        addresses: vec![v2::Address { host: "rill.example".into(), port: 9000 }],
    };
    let route = c
        .query_route(v2::QueryRouteRequest { topic: resource("t"), endpoints: Some(access.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(route.message_queues.len(), 8);
    let q = &route.message_queues[0];
    assert_eq!(q.permission, v2::Permission::ReadWrite as i32);
    assert_eq!(q.broker.as_ref().unwrap().endpoints.as_ref(), Some(&access));
    assert!(q.accept_message_types.contains(&(v2::MessageType::Normal as i32)));

    let settings = v2::TelemetryCommand {
        status: None,
        command: Some(v2::telemetry_command::Command::Settings(v2::Settings {
            client_type: Some(v2::ClientType::Producer as i32),
            pub_sub: Some(v2::settings::PubSub::Publishing(v2::Publishing {
                topics: vec![v2::Resource { resource_namespace: String::new(), name: "t".into() }],
                ..Default::default()
            })),
            ..Default::default()
        })),
    };
    let mut replies = c.telemetry(tokio_stream::iter(vec![settings])).await.unwrap().into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    assert_eq!(reply.status.unwrap().code, Code::Ok as i32);
    let Some(v2::telemetry_command::Command::Settings(s)) = reply.command else { panic!("no settings") };
    let Some(v2::settings::PubSub::Publishing(p)) = s.pub_sub else { panic!("no publishing") };
    assert_eq!(p.max_body_size, 4 * 1024 * 1024);
    assert!(s.backoff_policy.is_some() && s.metric.is_some());
}

fn as_client<T>(client_id: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("x-mq-client-id", client_id.parse().unwrap());
    r
}

async fn receive_as(c: &mut MessagingServiceClient<Channel>, client_id: &str, group: &str, topic: &str) -> Vec<String> {
    use tokio_stream::StreamExt;
    let req = v2::ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(v2::MessageQueue { topic: resource(topic), id: -1, ..Default::default() }),
        filter_expression: None,
        batch_size: 32,
        invisible_duration: Some(rill_proto::time::from_duration(Duration::from_secs(60))),
        auto_renew: false,
        long_polling_timeout: Some(rill_proto::time::from_duration(Duration::from_millis(300))),
        attempt_id: None,
    };
    let mut stream = c.receive_message(as_client(client_id, req)).await.unwrap().into_inner();
    let mut bodies = Vec::new();
    while let Some(item) = stream.next().await {
        if let Some(v2::receive_message_response::Content::Message(m)) = item.unwrap().content {
            bodies.push(String::from_utf8(m.body.to_vec()).unwrap());
        }
    }
    bodies.sort();
    bodies
}

#[tokio::test]
async fn broadcast_groups_give_every_member_everything_clustering_groups_share() {
    let mut s = server(BrokerConfig::default()).await;
    let c = &mut s.client;
    let mut bcast = rill_store::GroupConfig::new("bcast");
    bcast.broadcast = true;
    s.broker.meta().put_group(bcast).unwrap();
    send(c, vec![message("t", "A", "m1"), message("t", "A", "m2")]).await;
    assert_eq!(receive_as(c, "c1", "bcast", "t").await, ["m1", "m2"]);
    assert_eq!(receive_as(c, "c2", "bcast", "t").await, ["m1", "m2"], "every broadcast member gets everything");
    let first = receive_as(c, "c1", "shared", "t").await;
    let second = receive_as(c, "c2", "shared", "t").await;
    assert_eq!(first.len() + second.len(), 2, "clustering members share the messages: {first:?} {second:?}");
}

#[tokio::test]
async fn heartbeats_make_members_and_termination_removes_them() {
    let mut s = server(BrokerConfig::default()).await;
    let c = &mut s.client;
    for id in ["c1", "c2"] {
        let hb = v2::HeartbeatRequest { group: resource("g"), client_type: v2::ClientType::PushConsumer as i32 };
        let reply = c.heartbeat(as_client(id, hb)).await.unwrap().into_inner();
        assert_eq!(reply.status.unwrap().code, Code::Ok as i32);
    }
    let members = s.broker.group_members("g");
    assert_eq!(members.iter().map(|m| m.client_id.as_str()).collect::<Vec<_>>(), ["c1", "c2"]);
    assert_eq!(members[0].client_type, "PUSH_CONSUMER");
    c.notify_client_termination(as_client("c1", v2::NotifyClientTerminationRequest { group: resource("g") }))
        .await
        .unwrap();
    assert_eq!(s.broker.group_members("g").len(), 1);
}

#[tokio::test]
async fn garbage_and_hostile_requests_do_not_hurt_the_broker() {
    use tokio::io::AsyncWriteExt;
    let mut s = server(BrokerConfig::default()).await;
    let addr = s.broker.config().store_host;
    // Bytes that are not HTTP/2 at all, then a connection that hangs up mid-preface.
    for junk in [vec![0xFFu8; 4096], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x40\x04".to_vec()] {
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = raw.write_all(&junk).await;
        drop(raw);
    }
    let c = &mut s.client;
    // Thousands of invalid messages in one request: one status each, no crash.
    let bad: Vec<v2::Message> = (0..5000).map(|_| message("", "A", "x")).collect();
    let reply = send(c, bad).await;
    assert_eq!(reply.entries.len(), 5000);
    assert!(reply.entries.iter().all(|e| e.status.as_ref().unwrap().code == Code::IllegalTopic as i32));
    // Nonsense numbers in a receive.
    let req = v2::ReceiveMessageRequest {
        group: resource("g"),
        message_queue: Some(v2::MessageQueue { topic: resource("t"), id: i32::MIN, ..Default::default() }),
        filter_expression: None,
        batch_size: i32::MAX,
        invisible_duration: Some(prost_types::Duration { seconds: -5, nanos: 0 }),
        auto_renew: true,
        long_polling_timeout: Some(prost_types::Duration { seconds: i64::MAX, nanos: 999_999_999 }),
        attempt_id: None,
    };
    use tokio_stream::StreamExt;
    let mut stream = c.receive_message(req).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    let Some(v2::receive_message_response::Content::Status(st)) = first.content else { panic!("status first") };
    assert_eq!(st.code, Code::BadRequest as i32, "{}", st.message);
    // Missing everything.
    let empty = c.receive_message(v2::ReceiveMessageRequest::default()).await.unwrap().into_inner();
    let items: Vec<_> = empty.collect().await;
    assert_eq!(items.len(), 1);
    // And the broker still works.
    send(c, vec![message("t", "A", "still-alive")]).await;
    let got = receive(c, "g", "t", (TAG, "*"), Duration::from_secs(30), Duration::from_secs(1)).await;
    assert_eq!(got.messages.len(), 1);
}

#[tokio::test]
async fn an_unknown_handle_neither_acks_nor_moves_where_the_group_reads() {
    let mut s = server(BrokerConfig::default()).await;
    let c = &mut s.client;
    send(c, vec![message("t", "A", "m0"), message("t", "A", "m1"), message("t", "A", "m2")]).await;
    // As if from before a restart: queue 0, offset 5, any nonce.
    assert_eq!(ack(c, "g", "t", "r1:0:5:1").await, Code::InvalidReceiptHandle as i32);
    let got = receive(c, "g", "t", (TAG, "*"), Duration::from_secs(30), Duration::from_secs(1)).await;
    assert_eq!(got.messages.len(), 3, "nothing was skipped");
    // Invisible durations outside 1 s – 12 h are refused.
    let zero = receive(c, "g2", "t", (TAG, "*"), Duration::ZERO, Duration::from_secs(1)).await;
    assert_eq!(zero.status.code, Code::IllegalInvisibleTime as i32);
    let huge = receive(c, "g2", "t", (TAG, "*"), Duration::from_secs(13 * 3600), Duration::from_secs(1)).await;
    assert_eq!(huge.status.code, Code::IllegalInvisibleTime as i32);
}

#[tokio::test]
async fn routes_still_answer_quickly_when_the_name_server_is_down() {
    let mut s = server(BrokerConfig::default()).await;
    // A name server address where nothing listens.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    s.broker
        .attach_name_server(rill_namesrv::NameServerClient::new(&closed.to_string(), Duration::from_secs(3)).unwrap());
    for _ in 0..3 {
        let started = Instant::now();
        let reply = s
            .client
            .query_route(v2::QueryRouteRequest { topic: resource("orders"), endpoints: None })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status.unwrap().code, Code::Ok as i32);
        assert_eq!(reply.message_queues.len(), 8, "this broker's own queues");
        assert!(started.elapsed() < Duration::from_secs(2), "answered in {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn sql92_filters_deliver_only_matching_messages() {
    let mut s = server(BrokerConfig::default()).await;
    let c = &mut s.client;
    let mut msgs = Vec::new();
    for (i, (region, price)) in
        [("eu", "5"), ("eu", "15"), ("us", "15"), ("eu", "cheap"), ("eu", "30")].iter().enumerate()
    {
        let mut m = message("shop", if i % 2 == 0 { "A" } else { "B" }, &format!("m{i}"));
        m.user_properties.insert("region".into(), (*region).into());
        m.user_properties.insert("price".into(), (*price).into());
        msgs.push(m);
    }
    msgs.push(message("shop", "A", "no-props"));
    send(c, msgs).await;
    const SQL: v2::FilterType = v2::FilterType::Sql;
    let got = receive(
        c,
        "eu-mid",
        "shop",
        (SQL, "region = 'eu' AND price BETWEEN 10 AND 20"),
        Duration::from_secs(30),
        Duration::from_secs(1),
    )
    .await;
    let bodies: Vec<_> = got.messages.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect();
    assert_eq!(bodies, ["m1"], "'cheap' is not a number, a missing property is not a match");
    // The tag is visible to SQL as TAGS.
    let got = receive(
        c,
        "tag-a",
        "shop",
        (SQL, "TAGS = 'A' AND region IS NOT NULL"),
        Duration::from_secs(30),
        Duration::from_secs(1),
    )
    .await;
    let mut bodies: Vec<_> = got.messages.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect();
    bodies.sort();
    assert_eq!(bodies, ["m0", "m2", "m4"]);
    // A broken expression is refused with where and what.
    let bad =
        receive(c, "bad", "shop", (SQL, "region = 'eu' AND"), Duration::from_secs(30), Duration::from_millis(100))
            .await;
    assert_eq!(bad.status.code, Code::IllegalFilterExpression as i32);
    assert!(bad.status.message.contains("column 18"), "{}", bad.status.message);
}
