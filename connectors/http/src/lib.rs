//! Rill's `http` ingest source: front-end beacons and other events POSTed
//! to `/ingest/{topic}` as JSON (an object or an array of them), NDJSON or
//! a form, checked and queued for the connect runtime, which sends them to
//! the broker. A request is answered once the broker acknowledged its
//! events (or at once, with `ack = immediate`); when the queue is full —
//! the broker is slower than the callers — it is refused with 429 and a
//! `Retry-After`. Optional bearer token (header or `?token=` for browser
//! beacons), CORS for the allowed origins, a body size limit; every
//! refusal is a 4xx whose JSON names the reason.
//!
//! - [`HttpConfig`]: the options ([`OPTIONS`]).
//! - [`HttpIngest`]: the running server and its queue.
//! - [`decode`]: request bodies → events.
//!
//! It knows nothing of the broker: sending is the connect runtime's.

pub mod decode;
mod server;

use std::net::SocketAddr;
use std::time::Duration;

use rill_sql::{OptionSpec, Options, opt};

pub use decode::Beacon;
pub use server::HttpIngest;

/// Errors of the HTTP ingest source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option is wrong.
    #[error("{0}")]
    Config(String),
    /// The server could not start.
    #[error("http ingest on {addr}: {reason}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// When a request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// After the broker acknowledged its events (200).
    Broker,
    /// As soon as its events are queued (202).
    Immediate,
}

/// The HTTP ingest source's settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The bearer token callers must give (none: open).
    pub token: Option<String>,
    /// Origins browsers may post from (`*`: any); none: no CORS headers.
    pub allowed_origins: Vec<String>,
    /// The largest request body.
    pub max_body_bytes: usize,
    /// Requests queued before callers get 429.
    pub queue: usize,
    /// When requests are answered.
    pub ack: Ack,
    /// The topics that may be posted to (none: any).
    pub topics: Option<Vec<String>>,
    /// A field whose value becomes the message key.
    pub key_field: Option<String>,
    /// The messages' tag.
    pub tag: Option<String>,
    /// The `Retry-After` of a 429.
    pub retry_after: Duration,
    /// How long a request waits for the broker before 503.
    pub timeout: Duration,
}

impl HttpConfig {
    /// Defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            token: None,
            allowed_origins: Vec::new(),
            max_body_bytes: 1 << 20,
            queue: 1024,
            ack: Ack::Broker,
            topics: None,
            key_field: None,
            tag: None,
            retry_after: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
        }
    }

    /// The config the checked `http` options describe.
    pub fn from_options(options: &Options) -> Result<Self> {
        let get = |k: &str| options.get(k);
        let listen = get("listen").unwrap_or("127.0.0.1:8090");
        let listen = listen
            .parse()
            .map_err(|_| Error::Config(format!("listen '{listen}' is not an address such as 127.0.0.1:8090")))?;
        let mut c = Self::new(listen);
        c.token = get("token").filter(|t| !t.is_empty()).map(str::to_owned);
        c.allowed_origins = list(get("cors.allowed-origins"));
        c.topics = get("topics").map(|t| list(Some(t)));
        c.key_field = get("key.field").map(str::to_owned);
        c.tag = get("tag").map(str::to_owned);
        if let Some(s) = get("max-body-bytes") {
            c.max_body_bytes = rill_sql::parse_size(s)
                .ok_or_else(|| Error::Config(format!("max-body-bytes '{s}' is not a size such as 1mb or 65536")))?;
        }
        if let Some(s) = get("queue") {
            c.queue = s
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::Config(format!("queue '{s}' is not a positive number")))?;
        }
        c.ack = if get("ack") == Some("immediate") { Ack::Immediate } else { Ack::Broker };
        let duration = |k: &str, default: Duration| -> Result<Duration> {
            get(k).map_or(Ok(default), |s| {
                rill_sql::parse_duration(s)
                    .ok_or_else(|| Error::Config(format!("{k} '{s}' is not a duration such as 500 ms or 5 s")))
            })
        };
        c.retry_after = duration("retry-after", c.retry_after)?;
        c.timeout = duration("timeout", c.timeout)?;
        Ok(c)
    }
}

fn list(text: Option<&str>) -> Vec<String> {
    text.map(|t| t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()).unwrap_or_default()
}

/// The options of the `http` source.
pub const OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("listen", false, &[]),
    opt("token", false, &[]),
    opt("cors.allowed-origins", false, &[]),
    opt("max-body-bytes", false, &[]),
    opt("queue", false, &[]),
    opt("ack", false, &["broker", "immediate"]),
    opt("topics", false, &[]),
    opt("key.field", false, &[]),
    opt("tag", false, &[]),
    opt("retry-after", false, &[]),
    opt("timeout", false, &[]),
];
