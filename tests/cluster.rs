//! `rill namesrv` and two `rill broker` processes configured by files:
//! registration, routes spanning both brokers, `rill admin cluster list`,
//! metrics over HTTP, unregistering on a clean stop; and TLS on the gRPC port.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{admin, broker_config, rill, spawn, stop, wait_for_brokers};
use rill_client::{ClientConfig, Message, Producer};

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn two_brokers_register_with_a_name_server_and_share_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (namesrv, ns_state) = spawn(&["namesrv", "--namesrv-addr", "127.0.0.1:0"]);
    let ns = ns_state["namesrv_addr"].as_str().unwrap().to_owned();

    let a_cfg = broker_config(dir.path(), "broker-a", &ns, "metrics_addr = \"127.0.0.1:0\"\n");
    let b_cfg = broker_config(dir.path(), "broker-b", &ns, "");
    let (a, a_state) = spawn(&["broker", "--config", a_cfg.to_str().unwrap()]);
    let (b, b_state) = spawn(&["broker", "--config", b_cfg.to_str().unwrap()]);
    let a_addr = a_state["grpc_addr"].as_str().unwrap().to_owned();
    let b_addr = b_state["grpc_addr"].as_str().unwrap().to_owned();
    assert_eq!(a_state["broker_name"], "broker-a");

    let cluster = wait_for_brokers(&a_addr, 2);
    let names: Vec<&str> = cluster.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["broker-a", "broker-b"]);
    assert_eq!(cluster[1]["address"], b_addr.as_str());

    admin(&a_addr, &["topic", "create", "shared", "--queues", "2"]);
    admin(&b_addr, &["topic", "create", "shared", "--queues", "2"]);
    // A topic change is registered at once; wait until the name server has it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while admin(&a_addr, &["cluster", "list"])[1]["topics"] != 1 {
        assert!(Instant::now() < deadline, "broker-b's new topic never reached the name server");
        std::thread::sleep(Duration::from_millis(50));
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Brokers started with `rill broker` do not create topics on first use.
        let producer = Producer::connect(ClientConfig::new(&a_addr)).await.unwrap();
        let err = producer.send(Message::new("unknown", "x")).await.unwrap_err();
        assert_eq!(err.code(), Some(rill_client::Code::TopicNotFound), "{err}");
        // The route reaches both brokers once broker-b's topic change is registered.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            for i in 0..8 {
                producer.send(Message::new("shared", format!("m{i}"))).await.unwrap();
            }
            let on_b: u64 = admin(&b_addr, &["topic", "describe", "shared"])["queues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| q["max_offset"].as_u64().unwrap())
                .sum();
            if on_b > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no message ever reached broker-b through broker-a's route");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    for addr in [&a_addr, &b_addr] {
        for q in admin(addr, &["topic", "describe", "shared"])["queues"].as_array().unwrap() {
            assert!(q["max_offset"].as_u64().unwrap() > 0, "every queue of {addr} got messages: {q}");
        }
    }

    let metrics = http_get(a_state["metrics_addr"].as_str().unwrap(), "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let sent = metrics
        .lines()
        .find(|l| l.starts_with("rill_messages_sent_total{") && l.contains("topic=\"shared\""))
        .unwrap_or_else(|| panic!("no sent counter for 'shared' in:\n{metrics}"));
    assert!(sent.rsplit(' ').next().unwrap().parse::<f64>().unwrap() >= 4.0, "{sent}");
    assert!(metrics.contains("rill_commitlog_max_offset"), "{metrics}");

    // A clean stop unregisters at once (no 120 s wait).
    stop(b);
    wait_for_brokers(&a_addr, 1);
    stop(a);
    stop(namesrv);
}

#[test]
fn the_grpc_port_speaks_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let (child, state) = common::start(
        &dir.path().join("data"),
        &["--tls-cert", cert_file.to_str().unwrap(), "--tls-key", key_file.to_str().unwrap()],
    );
    assert_eq!(state["tls"], true);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let secure = ClientConfig::new(&addr).with_tls(cert.cert.pem(), "localhost");
        let producer = Producer::connect(secure).await.unwrap();
        producer.send(Message::new("secure", "over tls")).await.unwrap();
        let plain = ClientConfig::new(&addr).with_request_timeout(Duration::from_secs(2));
        assert!(Producer::connect(plain).await.is_err(), "plaintext is refused on a TLS port");
    });
    stop(child);

    // Half a TLS configuration is a clear error.
    let out = rill()
        .args(["standalone", "--grpc-addr", "127.0.0.1:0", "--namesrv-addr", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert_file)
        .arg("--data-dir")
        .arg(dir.path().join("data2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls_key"), "{err}");
}
