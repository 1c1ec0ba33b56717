//! The HTTP ingest source over real HTTP: each body format, answers only
//! after the events are acknowledged, the token, the limits and their 4xx
//! reasons, 429 with Retry-After when the queue is full, CORS preflight,
//! and 503 for requests left waiting when the source stops.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rill_http::{Ack, HttpConfig, HttpIngest};

/// An HTTP client (rustls needs its crypto provider chosen once).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn config() -> HttpConfig {
    HttpConfig::new("127.0.0.1:0".parse().unwrap())
}

async fn post(
    url: String,
    content_type: &str,
    body: &'static [u8],
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let r = client().post(url).header("content-type", content_type).body(body).send().await.unwrap();
    let (code, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)), headers)
}

/// Takes `n` events from queued requests (20 s at most).
async fn take(ingest: &mut HttpIngest, n: usize) -> Vec<rill_http::Beacon> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(std::time::Instant::now() < deadline, "{} of {n} events queued", got.len());
        got.extend(ingest.next(100, Duration::from_millis(500)).await);
    }
    got
}

#[tokio::test]
async fn requests_are_answered_once_their_events_are_acknowledged() {
    let mut c = config();
    c.key_field = Some("session".into());
    let mut ingest = HttpIngest::start(c).await.unwrap();
    let url = format!("http://{}/ingest/beacons", ingest.local_addr());
    let json = tokio::spawn(post(url.clone(), "text/plain", br#"[{"session": "s1", "ms": 12}, {"session": 7}]"#));
    let got = take(&mut ingest, 2).await;
    assert!(!json.is_finished(), "answered before the broker acknowledged");
    ingest.acknowledged();
    let (code, body, _) = json.await.unwrap();
    assert_eq!((code, body), (200, serde_json::json!({"accepted": 2})));
    assert_eq!(got[0].topic, "beacons");
    assert_eq!(got[0].key.as_deref(), Some("s1"));
    assert_eq!(got[1].key.as_deref(), Some("7"));
    assert_eq!(got[0].client.as_deref(), Some("127.0.0.1"));
    let v: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(v["ms"], 12);

    let lines = tokio::spawn(post(url.clone(), "application/x-ndjson", b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3}\n"));
    let form = tokio::spawn(post(url.clone(), "application/x-www-form-urlencoded", b"page=%2Fcart&lcp=1800"));
    let got = take(&mut ingest, 4).await;
    ingest.acknowledged();
    assert_eq!(lines.await.unwrap().0, 200);
    assert_eq!(form.await.unwrap().0, 200);
    let bodies: Vec<serde_json::Value> = got.iter().map(|b| serde_json::from_slice(&b.body).unwrap()).collect();
    assert!(bodies.contains(&serde_json::json!({"page": "/cart", "lcp": "1800"})), "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| b.get("a").is_some()).count(), 3);
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_the_reason() {
    let mut c = config();
    c.token = Some("s3cret".into());
    c.topics = Some(vec!["beacons".into()]);
    c.max_body_bytes = 64;
    c.ack = Ack::Immediate;
    let ingest = HttpIngest::start(c).await.unwrap();
    let base = format!("http://{}", ingest.local_addr());
    let (code, body, headers) = post(format!("{base}/ingest/beacons"), "application/json", b"{}").await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let ok = format!("{base}/ingest/beacons?token=s3cret");
    let (code, body, _) = post(ok.clone(), "application/x-ndjson", b"{\"a\": 1}\n[2]\n").await;
    assert_eq!(code, 400);
    assert_eq!(body["error"], "line 2: a JSON array where an object was expected");
    let (code, body, _) = post(ok.clone(), "application/xml", b"<a/>").await;
    assert_eq!(code, 415, "{body}");
    let (code, _, _) = post(ok.clone(), "application/json", &[b' '; 100]).await;
    assert_eq!(code, 413);
    let (code, body, _) = post(format!("{base}/ingest/other?token=s3cret"), "application/json", b"{}").await;
    assert_eq!(code, 404);
    assert_eq!(body["error"], "topic 'other' is not taken here; topics: beacons");
    let r = client()
        .post(format!("{base}/ingest/beacons"))
        .header("authorization", "Bearer s3cret")
        .body("{\"fine\": true}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "immediate answers are 202");
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let mut c = config();
    c.queue = 1;
    c.ack = Ack::Immediate;
    c.retry_after = Duration::from_secs(3);
    let mut ingest = HttpIngest::start(c).await.unwrap();
    let url = format!("http://{}/ingest/beacons", ingest.local_addr());
    assert_eq!(post(url.clone(), "application/json", b"{\"n\": 1}").await.0, 202);
    let (code, body, headers) = post(url.clone(), "application/json", b"{\"n\": 2}").await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(headers["retry-after"], "3");
    // Once the queue drains, requests are taken again.
    assert_eq!(ingest.next(10, Duration::from_secs(5)).await.len(), 1);
    assert_eq!(post(url, "application/json", b"{\"n\": 3}").await.0, 202);
}

#[tokio::test]
async fn browsers_of_allowed_origins_pass_the_cors_preflight() {
    let mut c = config();
    c.allowed_origins = vec!["https://shop.example".into()];
    let ingest = HttpIngest::start(c).await.unwrap();
    let url = format!("http://{}/ingest/beacons", ingest.local_addr());
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, url.clone())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("https://shop.example").await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://shop.example");
    assert!(r.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn requests_left_waiting_when_the_source_stops_get_503() {
    let mut ingest = HttpIngest::start(config()).await.unwrap();
    let url = format!("http://{}/ingest/beacons", ingest.local_addr());
    let waiting = tokio::spawn(post(url, "application/json", b"{\"n\": 1}"));
    assert_eq!(ingest.next(10, Duration::from_secs(10)).await.len(), 1);
    drop(ingest);
    let (code, body, _) = waiting.await.unwrap();
    assert_eq!(code, 503);
    assert!(body["error"].as_str().unwrap().contains("stopped before the broker acknowledged"), "{body}");
}
