//! The name server over gRPC, as brokers and tools meet it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rill_common::SystemClock;
use rill_namesrv::{BrokerKey, DEFAULT_BROKER_TIMEOUT, NameServerClient, Registry};
use rill_proto::namesrv as pb;

fn registration(name: &str, port: u16, topics: &[&str]) -> pb::RegisterBrokerRequest {
    pb::RegisterBrokerRequest {
        cluster: "DefaultCluster".into(),
        broker_name: name.into(),
        broker_id: 0,
        grpc_addr: format!("127.0.0.1:{port}"),
        topics: topics
            .iter()
            .map(|t| pb::TopicQueues {
                topic: (*t).into(),
                read_queues: 4,
                write_queues: 4,
                perm: 6,
                message_type: "NORMAL".into(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn brokers_register_and_routes_span_them() {
    let registry = Arc::new(Registry::new(Arc::new(SystemClock), DEFAULT_BROKER_TIMEOUT));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rill_namesrv::service::serve(registry, listener, async {
        let _ = stopped.await;
    }));

    let client = NameServerClient::new(&addr, Duration::from_secs(3)).unwrap();
    let timeout = client.register(registration("broker-a", 1001, &["orders", "audit"])).await.unwrap();
    assert_eq!(timeout, Duration::from_secs(120));
    client.register(registration("broker-b", 1002, &["orders"])).await.unwrap();

    let route = client.route("orders").await.unwrap();
    let addrs: Vec<&str> = route.iter().map(|b| b.grpc_addr.as_str()).collect();
    assert_eq!(addrs, ["127.0.0.1:1001", "127.0.0.1:1002"]);
    assert_eq!(client.route("audit").await.unwrap().len(), 1);
    assert!(client.route("missing").await.unwrap().is_empty(), "an unknown topic has an empty route");
    assert_eq!(client.brokers().await.unwrap().len(), 2);

    let bad = client.register(registration("broker-c", 1003, &[""])).await.unwrap_err().to_string();
    assert!(bad.contains("topics.topic"), "{bad}");

    let key = BrokerKey { cluster: "DefaultCluster".into(), broker_name: "broker-a".into(), broker_id: 0 };
    assert!(client.unregister(&key).await.unwrap());
    assert_eq!(client.route("orders").await.unwrap().len(), 1);
    assert!(client.route("audit").await.unwrap().is_empty());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn unusable_addresses_are_named() {
    let e = NameServerClient::new("localhost", Duration::from_secs(1)).unwrap_err().to_string();
    assert!(e.contains("localhost") && e.contains("HOST:PORT"), "{e}");
    let e = NameServerClient::new("h:port", Duration::from_secs(1)).unwrap_err().to_string();
    assert!(e.contains("port"), "{e}");
}
