//! Rill's `mqtt` source: subscribes to topic filters on an MQTT broker
//! (QoS 1 by default, in a persistent session), and hands each message
//! on with the variables its MQTT topic gives (`devices/{device}/{kind}`
//! → `device`, `kind`) for the broker topic, key and tag. A QoS 1 message
//! is acknowledged to the MQTT broker only after Rill's broker
//! acknowledged it, so a crash loses nothing: the MQTT broker sends it
//! again. Lost connections are retried with backoff; subscriptions are
//! renewed when the MQTT broker forgot the session.
//!
//! - [`MqttConfig`]: the options ([`OPTIONS`]).
//! - [`TopicPattern`]: MQTT topic → variables.
//! - [`MqttSource`]: the session and the messages it received.

mod pattern;
mod session;

use std::time::Duration;

use rill_sql::{OptionSpec, Options, opt};

pub use pattern::TopicPattern;
pub use session::{MqttMessage, MqttSource};

/// Errors of the MQTT source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option is wrong.
    #[error("{0}")]
    Config(String),
    /// The MQTT broker cannot be reached or refused the session.
    #[error("mqtt {url}: {reason}")]
    Connect {
        /// The broker.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The MQTT source's settings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The MQTT broker's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The client id (the persistent session's name).
    pub client_id: String,
    /// Topic filters subscribed to (`devices/+/events`).
    pub filters: Vec<String>,
    /// 0 (at most once) or 1 (at least once).
    pub qos: u8,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Start with a fresh session (messages sent while away are lost).
    pub clean_session: bool,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Names the levels of MQTT topics.
    pub pattern: Option<TopicPattern>,
    /// The message key, a template over the pattern's names (`{device}`).
    pub key: Option<String>,
    /// The tag, a template over the pattern's names.
    pub tag: Option<String>,
}

impl MqttConfig {
    /// QoS 1 in a persistent session named `client_id`, on `host:port`, for `filters`.
    pub fn new(host: &str, port: u16, client_id: &str, filters: Vec<String>) -> Self {
        Self {
            host: host.to_owned(),
            port,
            client_id: client_id.to_owned(),
            filters,
            qos: 1,
            credentials: None,
            clean_session: false,
            keep_alive: Duration::from_secs(30),
            pattern: None,
            key: None,
            tag: None,
        }
    }

    /// `mqtt://host:port`.
    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host, self.port)
    }

    /// The config the checked `mqtt` options describe.
    pub fn from_options(options: &Options) -> Result<Self> {
        let get = |k: &str| options.get(k);
        let url = get("url").unwrap_or("mqtt://127.0.0.1:1883");
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| Error::Config(format!("url '{url}' is not like mqtt://host:1883")))?;
        let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
            Some((h, p)) => {
                (h, p.parse::<u16>().map_err(|_| Error::Config(format!("url '{url}': '{p}' is not a port")))?)
            }
            None => (rest.trim_end_matches('/'), 1883),
        };
        let filters: Vec<String> = get("topics")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        if filters.is_empty() {
            return Err(Error::Config("topics: at least one MQTT topic filter (devices/+/events)".into()));
        }
        for f in &filters {
            check_filter(f)?;
        }
        let client_id = get("client-id").ok_or_else(|| Error::Config("option 'client-id' is required".into()))?;
        let mut c = Self::new(host, port, client_id, filters);
        c.qos = match get("qos").unwrap_or("1") {
            "0" => 0,
            "1" => 1,
            q => return Err(Error::Config(format!("qos '{q}' is not 0 or 1"))),
        };
        c.credentials = match (get("username"), get("password")) {
            (Some(u), p) => Some((u.to_owned(), p.unwrap_or_default().to_owned())),
            (None, Some(_)) => return Err(Error::Config("password needs username".into())),
            (None, None) => None,
        };
        c.clean_session = get("clean-session") == Some("true");
        if let Some(k) = get("keep-alive") {
            c.keep_alive = rill_sql::parse_duration(k)
                .filter(|d| d.as_secs() >= 1)
                .ok_or_else(|| Error::Config(format!("keep-alive '{k}' is not a duration of a second or more")))?;
        }
        c.pattern = get("topic-pattern").map(TopicPattern::parse).transpose().map_err(Error::Config)?;
        c.key = get("key").map(str::to_owned);
        c.tag = get("tag").map(str::to_owned);
        for (name, template) in [("key", &c.key), ("tag", &c.tag)] {
            if let Some(t) = template {
                let names = c.pattern.as_ref().map(TopicPattern::names).unwrap_or_default();
                pattern::check_template(t, &names).map_err(|e| Error::Config(format!("{name}: {e}")))?;
            }
        }
        Ok(c)
    }
}

/// A topic filter's wildcards stand alone in their level; `#` comes last.
fn check_filter(f: &str) -> Result<()> {
    let levels: Vec<&str> = f.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        let bad = (l.contains('+') && *l != "+") || (l.contains('#') && (*l != "#" || i + 1 != levels.len()));
        if bad {
            return Err(Error::Config(format!(
                "topics: '{f}' is not an MQTT topic filter (+ and # take a whole level, # only the last)"
            )));
        }
    }
    Ok(())
}

/// The options of the `mqtt` source.
pub const OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("url", false, &[]),
    opt("topics", true, &[]),
    opt("client-id", true, &[]),
    opt("qos", false, &["0", "1"]),
    opt("username", false, &[]),
    opt("password", false, &[]),
    opt("clean-session", false, &["true", "false"]),
    opt("keep-alive", false, &[]),
    opt("topic-pattern", false, &[]),
    opt("key", false, &[]),
    opt("tag", false, &[]),
];
