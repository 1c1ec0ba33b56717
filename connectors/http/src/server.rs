//! The HTTP side: the routes (`POST /ingest/{topic}`, `GET /health`),
//! token and topic checks, CORS, the body limit, and the bounded queue
//! between requests and the connect runtime with the answer each request
//! waits for. It owns the server's lifetime: dropping [`HttpIngest`]
//! stops it, and requests still waiting get 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::decode::{Beacon, Format, key_of, objects};
use crate::{Ack, Error, HttpConfig, Result};

type Answer = oneshot::Sender<std::result::Result<(), String>>;

/// The events of one request, and where its answer goes.
struct Submission {
    beacons: Vec<Beacon>,
    answer: Option<Answer>,
}

#[derive(Clone)]
struct Shared {
    config: Arc<HttpConfig>,
    queue: mpsc::Sender<Submission>,
}

/// The running server and the events its requests queued.
#[derive(Debug)]
pub struct HttpIngest {
    addr: SocketAddr,
    queue: mpsc::Receiver<Submission>,
    /// Events handed out so far.
    handed: u64,
    /// Answers of the requests whose events went out of [`HttpIngest::next`],
    /// each with the count of events handed out once its last one was.
    waiting: std::collections::VecDeque<(u64, Answer)>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission").field("beacons", &self.beacons.len()).finish()
    }
}

impl HttpIngest {
    /// Listens on `config.listen` and serves until dropped.
    pub async fn start(config: HttpConfig) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Listen { addr: config.listen.to_string(), reason: e.to_string() })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Listen { addr: config.listen.to_string(), reason: e.to_string() })?;
        let (tx, rx) = mpsc::channel(config.queue);
        let (stop, stopped) = oneshot::channel::<()>();
        let limit = config.max_body_bytes;
        let cors = cors(&config.allowed_origins)?;
        let shared = Shared { config: Arc::new(config), queue: tx };
        let mut app = axum::Router::new()
            .route("/ingest/{topic}", post(ingest))
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .with_state(shared)
            .layer(DefaultBodyLimit::max(limit));
        if let Some(cors) = cors {
            app = app.layer(cors);
        }
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let served = axum::serve(listener, service).with_graceful_shutdown(async {
                stopped.await.ok();
            });
            if let Err(e) = served.await {
                tracing::error!(%addr, error = %e, "http ingest stopped");
            }
        });
        tracing::info!(%addr, "http ingest listening");
        Ok(Self { addr, queue: rx, handed: 0, waiting: Default::default(), stop: Some(stop) })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The events of queued requests, about `max` at most (whole requests),
    /// waiting up to `wait` for the first.
    pub async fn next(&mut self, max: usize, wait: Duration) -> Vec<Beacon> {
        let mut out = Vec::new();
        let first = tokio::time::timeout(wait, self.queue.recv()).await;
        let Ok(Some(first)) = first else { return out };
        self.take(first, &mut out);
        while out.len() < max {
            match self.queue.try_recv() {
                Ok(s) => self.take(s, &mut out),
                Err(_) => break,
            }
        }
        out
    }

    fn take(&mut self, s: Submission, out: &mut Vec<Beacon>) {
        self.handed += s.beacons.len() as u64;
        out.extend(s.beacons);
        if let Some(answer) = s.answer {
            self.waiting.push_back((self.handed, answer));
        }
    }

    /// How many events [`HttpIngest::next`] handed out so far.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// Every event [`HttpIngest::next`] handed out is acknowledged by the
    /// broker: their requests are answered.
    pub fn acknowledged(&mut self) {
        self.acknowledge_through(self.handed);
    }

    /// The first `n` events handed out are safe: the requests they all
    /// belong to are answered.
    pub fn acknowledge_through(&mut self, n: u64) {
        while self.waiting.front().is_some_and(|(end, _)| *end <= n) {
            if let Some((_, answer)) = self.waiting.pop_front() {
                let _ = answer.send(Ok(()));
            }
        }
    }
}

impl Drop for HttpIngest {
    fn drop(&mut self) {
        for (_, answer) in self.waiting.drain(..) {
            let _ = answer.send(Err("the connector stopped before the broker acknowledged".into()));
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn cors(origins: &[String]) -> Result<Option<tower_http::cors::CorsLayer>> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| Error::Config(format!("cors.allowed-origins: '{o}' is not an origin")))
            })
            .collect::<Result<Vec<_>>>()?;
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .max_age(Duration::from_secs(3600)),
    ))
}

fn refuse(code: StatusCode, reason: impl Into<String>) -> Response {
    (code, Json(json!({ "error": reason.into() }))).into_response()
}

/// Equal texts, compared without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorised(config: &HttpConfig, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(token) = &config.token else { return true };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim(), token));
    let query =
        uri.query().is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "token" && same(&v, token)));
    bearer || query
}

/// RocketMQ's topic names: letters, digits, `-`, `_`, `%`, `|`; 127 at most.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 127
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'%' | b'|'))
}

async fn ingest(
    State(s): State<Shared>,
    Path(topic): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let config = &s.config;
    if !authorised(config, &headers, &uri) {
        let mut r = refuse(StatusCode::UNAUTHORIZED, "a valid token is needed (Authorization: Bearer …, or ?token=…)");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if !valid_topic(&topic) {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("'{topic}' is not a topic name (letters, digits, -, _, %, |; 127 at most)"),
        );
    }
    if let Some(allowed) = &config.topics
        && !allowed.contains(&topic)
    {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("topic '{topic}' is not taken here; topics: {}", allowed.join(", ")),
        );
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let format = match Format::of(content_type) {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, e),
    };
    let items = match objects(format, &body) {
        Ok(items) => items,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut beacons = Vec::with_capacity(items.len());
    for item in items {
        let key = config.key_field.as_deref().and_then(|f| key_of(&item, f));
        let body = match serde_json::to_vec(&item) {
            Ok(b) => b,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
        };
        beacons.push(Beacon {
            topic: topic.clone(),
            body,
            key,
            client: Some(peer.ip().to_string()),
            user_agent: agent.clone(),
        });
    }
    let n = beacons.len();
    let (answer, answered) = oneshot::channel();
    let answer = (config.ack == Ack::Broker).then_some(answer);
    match s.queue.try_send(Submission { beacons, answer }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            let mut r = refuse(StatusCode::TOO_MANY_REQUESTS, "the broker is behind; try again later");
            let secs = config.retry_after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the connector is stopping");
        }
    }
    if config.ack == Ack::Immediate {
        return (StatusCode::ACCEPTED, Json(json!({ "accepted": n }))).into_response();
    }
    match tokio::time::timeout(config.timeout, answered).await {
        Ok(Ok(Ok(()))) => (StatusCode::OK, Json(json!({ "accepted": n }))).into_response(),
        Ok(Ok(Err(reason))) => refuse(StatusCode::SERVICE_UNAVAILABLE, reason),
        Ok(Err(_)) => refuse(StatusCode::SERVICE_UNAVAILABLE, "the connector stopped before the broker acknowledged"),
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the broker did not acknowledge within {:?}; the events may still arrive", config.timeout),
        ),
    }
}
