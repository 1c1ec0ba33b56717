//! The sink's connection thread: it buffers actions and sends them as
//! `_bulk` requests when the buffer reaches its count or size, when the
//! oldest action has waited the flush interval, or when asked (a
//! checkpoint). A request that fails as a whole (connection refused, 429,
//! 5xx) is retried with exponential backoff, on the next host if several
//! are given; within a response, items refused with 429 or 5xx are retried
//! the same way, and items refused otherwise (a mapping conflict, a bad
//! index name) become dead letters with the server's reason. A delete of a
//! document that is not there counts as done. It owns the HTTP client and
//! the buffer; turning rows into actions is [`crate::document`]'s.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use rill_streams::{DeadLetter, Origin};
use serde_json::Value;

use crate::document::Action;
use crate::{ElasticsearchConfig, Error, Result};

/// What the sink asks of its thread.
pub(crate) enum Command {
    /// More actions to send.
    Actions(Vec<Action>),
    /// Send everything buffered; answer when it is acknowledged.
    Flush(Sender<Result<()>>),
}

/// What the thread hands back outside a flush's answer.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Actions the server refused for good, waiting to be collected.
    pub rejected: Mutex<Vec<DeadLetter>>,
    /// Actions acknowledged so far.
    pub written: std::sync::atomic::AtomicU64,
}

/// The client, with TLS and credentials as configured.
pub(crate) fn client(config: &ElasticsearchConfig) -> Result<reqwest::Client> {
    let mut builder = crate::http_client_builder().timeout(config.request_timeout);
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| Error::Config(format!("'tls.ca-file' {}: {e}", path.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("'tls.ca-file' {}: not PEM certificates: {e}", path.display())))?;
        if certificates.is_empty() {
            return Err(Error::Config(format!("'tls.ca-file' {}: holds no PEM certificate", path.display())));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if config.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| Error::Config(format!("cannot make an HTTP client: {e}")))
}

/// Runs the thread until the sink is dropped (a last flush on the way out).
pub(crate) fn serve(config: &ElasticsearchConfig, commands: &Receiver<Command>, shared: &Shared) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let (runtime, client) = match (runtime, client(config)) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(e), _) => return refuse(commands, &format!("cannot start a runtime: {e}")),
        (_, Err(e)) => return refuse(commands, &e.to_string()),
    };
    let mut bulk = Bulk { config, client, shared, buffer: Vec::new(), bytes: 0, since: None, host: 0 };
    loop {
        let wait = bulk.since.map_or(Duration::from_secs(3600), |t| config.flush_interval.saturating_sub(t.elapsed()));
        match commands.recv_timeout(wait) {
            Ok(Command::Actions(actions)) => {
                bulk.take(actions);
                if (bulk.buffer.len() >= config.max_actions || bulk.bytes >= config.max_bytes)
                    && let Err(e) = runtime.block_on(bulk.flush())
                {
                    tracing::warn!(error = %e, buffered = bulk.buffer.len(), "bulk write failed; keeping the actions");
                }
            }
            Ok(Command::Flush(done)) => {
                let _ = done.send(runtime.block_on(bulk.flush()));
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = runtime.block_on(bulk.flush()) {
                    tracing::warn!(error = %e, buffered = bulk.buffer.len(), "bulk write failed; keeping the actions");
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = runtime.block_on(bulk.flush()) {
                    tracing::warn!(error = %e, lost = bulk.buffer.len(), "the sink stopped with actions not written");
                }
                return;
            }
        }
    }
}

fn refuse(commands: &Receiver<Command>, why: &str) {
    for c in commands.iter() {
        if let Command::Flush(done) = c {
            let _ = done.send(Err(Error::Config(why.to_owned())));
        }
    }
}

struct Bulk<'a> {
    config: &'a ElasticsearchConfig,
    client: reqwest::Client,
    shared: &'a Shared,
    buffer: Vec<Action>,
    bytes: usize,
    /// When the oldest buffered action came.
    since: Option<Instant>,
    /// The host tried first.
    host: usize,
}

/// How one item of a bulk response ended.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Done,
    Retry(String),
    Refused(String),
}

fn item_outcome(item: &Value) -> Item {
    let Some((action, result)) = item.as_object().and_then(|o| o.iter().next()) else {
        return Item::Refused(format!("unreadable bulk item: {item}"));
    };
    let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
    let reason = || {
        let e = &result["error"];
        let text = match (e.get("type").and_then(Value::as_str), e.get("reason").and_then(Value::as_str)) {
            (Some(t), Some(r)) => format!("{t}: {r}"),
            _ => e.to_string(),
        };
        format!("{action} refused with status {status}: {text}")
    };
    match status {
        200..=299 => Item::Done,
        404 if action == "delete" => Item::Done,
        429 | 500..=599 => Item::Retry(reason()),
        _ => Item::Refused(reason()),
    }
}

impl Bulk<'_> {
    fn take(&mut self, actions: Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        self.bytes += actions.iter().map(Action::len).sum::<usize>();
        self.buffer.extend(actions);
    }

    /// Sends the buffer in requests of at most the configured count and size.
    async fn flush(&mut self) -> Result<()> {
        while !self.buffer.is_empty() {
            let (mut n, mut size) = (0, 0);
            while n < self.buffer.len() && n < self.config.max_actions && (n == 0 || size < self.config.max_bytes) {
                size += self.buffer[n].len();
                n += 1;
            }
            let chunk: Vec<Action> = self.buffer[..n].to_vec();
            self.send(chunk).await?;
            self.buffer.drain(..n);
            self.bytes = self.bytes.saturating_sub(size);
        }
        self.since = None;
        self.bytes = 0;
        Ok(())
    }

    /// One request's actions until every one is done or refused for good.
    async fn send(&mut self, mut actions: Vec<Action>) -> Result<()> {
        let mut delay = self.config.backoff;
        let mut attempt = 0;
        loop {
            let outcome = self.request(&actions).await;
            let retry: Vec<Action>;
            let why: String;
            match outcome {
                Ok(items) => {
                    let mut again = Vec::new();
                    let mut last = String::new();
                    for (action, item) in actions.into_iter().zip(items) {
                        match item {
                            Item::Done => {
                                self.shared.written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Item::Retry(reason) => {
                                last = reason;
                                again.push(action);
                            }
                            Item::Refused(reason) => {
                                tracing::debug!(reason, "document refused");
                                let letter = DeadLetter {
                                    origin: Origin::Sink(self.config.name.clone()),
                                    reason,
                                    body: action.body(),
                                };
                                self.shared
                                    .rejected
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .push(letter);
                            }
                        }
                    }
                    if again.is_empty() {
                        return Ok(());
                    }
                    retry = again;
                    why = last;
                }
                Err(Failure::Transient(e)) => {
                    retry = actions;
                    why = e;
                    self.host = (self.host + 1) % self.config.hosts.len();
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
            if attempt >= self.config.max_retries {
                return Err(Error::Server(format!(
                    "{} actions not accepted after {} retries: {why}",
                    retry.len(),
                    self.config.max_retries
                )));
            }
            tracing::warn!(attempt, actions = retry.len(), reason = why, "bulk write to be retried");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(Duration::from_secs(30));
            attempt += 1;
            actions = retry;
        }
    }

    /// One `_bulk` request: each action's outcome, in order.
    async fn request(&self, actions: &[Action]) -> std::result::Result<Vec<Item>, Failure> {
        let mut body = String::with_capacity(actions.iter().map(Action::len).sum());
        for a in actions {
            body.push_str(&a.meta);
            body.push('\n');
            if let Some(doc) = &a.doc {
                body.push_str(doc);
                body.push('\n');
            }
        }
        let host = &self.config.hosts[self.host];
        let mut url = format!("{}/_bulk", host.trim_end_matches('/'));
        if let Some(refresh) = &self.config.refresh {
            url.push_str(&format!("?refresh={refresh}"));
        }
        let mut request = self.client.post(&url).header("content-type", "application/x-ndjson").body(body);
        if let Some(user) = &self.config.username {
            request = request.basic_auth(user, self.config.password.as_ref());
        }
        let response = request.send().await.map_err(|e| Failure::Transient(format!("{host}: {e}")))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| Failure::Transient(format!("{host}: {e}")))?;
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Failure::Transient(format!("{host} answered {status}: {}", clip(&text))));
        }
        if !status.is_success() {
            return Err(Failure::Fatal(Error::Server(format!("{host} answered {status}: {}", clip(&text)))));
        }
        let reply: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::Fatal(Error::Server(format!("{host}: the bulk answer is not JSON ({e}): {}", clip(&text))))
        })?;
        let items =
            reply["items"].as_array().map(|i| i.iter().map(item_outcome).collect::<Vec<_>>()).unwrap_or_default();
        if items.len() != actions.len() {
            return Err(Failure::Fatal(Error::Server(format!(
                "{host}: {} actions sent, {} results back",
                actions.len(),
                items.len()
            ))));
        }
        Ok(items)
    }
}

enum Failure {
    /// Worth another try (the connection, an overloaded or failing server).
    Transient(String),
    /// Not (a refused request, credentials).
    Fatal(Error),
}

fn clip(text: &str) -> &str {
    let end = text.char_indices().nth(300).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_done_retried_or_refused_by_status() {
        let item = |text: &str| item_outcome(&serde_json::from_str(text).unwrap());
        assert_eq!(item(r#"{"index":{"status":201}}"#), Item::Done);
        assert_eq!(item(r#"{"delete":{"status":404,"result":"not_found"}}"#), Item::Done);
        assert!(
            matches!(item(r#"{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}}"#), Item::Retry(r) if r.contains("busy"))
        );
        let refused = item(
            r#"{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [x]"}}}"#,
        );
        assert_eq!(
            refused,
            Item::Refused("index refused with status 400: mapper_parsing_exception: failed to parse field [x]".into())
        );
        assert!(matches!(item(r#"{"index":{"status":404}}"#), Item::Refused(_)), "only deletes may miss");
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        let text = "é".repeat(400);
        assert_eq!(clip(&text).chars().count(), 300);
        assert_eq!(clip("short"), "short");
    }
}
