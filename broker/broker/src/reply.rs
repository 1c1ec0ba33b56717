//! Request–reply: replies go straight to the requester that waits for
//! them, never through the store.
//!
//! A request is an ordinary message whose user properties carry
//! `CORRELATION_ID`, `REPLY_TO_CLIENT` (the requester's client id),
//! `MSG_TYPE = request` and a `TTL` in milliseconds (RocketMQ's names). The
//! replier sends a message with `MSG_TYPE = reply` and the same correlation
//! id and reply-to client to [`REPLY_TOPIC`] on the broker that delivered
//! the request; this module puts it in the requester's mailbox (kept for
//! the TTL) instead of storing it. The requester long-polls its mailbox with
//! ReceiveMessage as group `%REPLY%<client id>` on [`REPLY_TOPIC`].
//!
//! It owns the mailboxes only; matching replies to requests by correlation
//! id is the requester's job.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rill_proto::v2::{self, Code};

use crate::Broker;
use crate::convert::Rejection;

/// Topic replies are sent to and requesters poll.
pub const REPLY_TOPIC: &str = "RILL_REPLY_TOPIC";
/// Group prefix a requester polls its mailbox with (`%REPLY%<client id>`).
pub const REPLY_GROUP_PREFIX: &str = "%REPLY%";
/// Replies one requester may have waiting.
const MAX_WAITING: usize = 10_000;
/// How long a reply waits for its requester without a TTL.
const DEFAULT_TTL_MS: i64 = 60_000;

/// User property names of requests and replies.
pub mod props {
    /// Pairs a reply with its request.
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    /// Client id of the requester.
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    /// `request` or `reply`.
    pub const MSG_TYPE: &str = "MSG_TYPE";
    /// How long the requester waits, in milliseconds.
    pub const TTL: &str = "TTL";
}

#[derive(Debug, Default)]
struct Mailbox {
    waiting: VecDeque<(i64, v2::Message)>,
    notify: Arc<tokio::sync::Notify>,
}

/// Every requester's mailbox.
#[derive(Debug, Default)]
pub struct Replies {
    boxes: Mutex<HashMap<String, Mailbox>>,
}

/// Requesters with a mailbox at most; beyond it, empty mailboxes are dropped.
const MAX_MAILBOXES: usize = 10_000;

/// Whether a wire message is a reply (sent to the reply topic as one).
pub fn is_reply(m: &v2::Message) -> bool {
    m.topic.as_ref().is_some_and(|t| t.name == REPLY_TOPIC)
        && m.user_properties.get(props::MSG_TYPE).is_some_and(|t| t == "reply")
}

impl Broker {
    /// Puts a reply in its requester's mailbox; answers its message id.
    pub(crate) fn route_reply(&self, m: &v2::Message) -> Result<(String, i64), Rejection> {
        let field = |k: &str| m.user_properties.get(k).filter(|v| !v.is_empty()).cloned();
        let (Some(_), Some(client)) = (field(props::CORRELATION_ID), field(props::REPLY_TO_CLIENT)) else {
            return Err(Rejection::new(
                Code::BadRequest,
                "a reply needs the request's CORRELATION_ID and REPLY_TO_CLIENT properties",
            ));
        };
        if m.body.len() > self.config.max_body_size {
            return Err(Rejection::new(
                Code::MessageBodyTooLarge,
                format!("reply body is {} bytes; the limit is {}", m.body.len(), self.config.max_body_size),
            ));
        }
        let now = self.clock.now_millis();
        let ttl = field(props::TTL).and_then(|t| t.parse::<i64>().ok()).unwrap_or(DEFAULT_TTL_MS).clamp(1, 3_600_000);
        let mut reply = m.clone();
        let sys = reply.system_properties.get_or_insert_with(Default::default);
        sys.store_timestamp = Some(rill_proto::time::timestamp_from_millis(now));
        sys.store_host = self.config.store_host.to_string();
        sys.receipt_handle = Some("reply".into());
        sys.delivery_attempt = Some(1);
        let id = sys.message_id.clone();
        let mut boxes = self.replies.boxes.lock();
        if boxes.len() >= MAX_MAILBOXES {
            // Replies nobody collected expire; mailboxes nobody polls go.
            for b in boxes.values_mut() {
                b.waiting.retain(|(expires, _)| *expires > now);
            }
            boxes.retain(|_, b| !b.waiting.is_empty() || Arc::strong_count(&b.notify) > 1);
            if boxes.len() >= MAX_MAILBOXES && !boxes.contains_key(&client) {
                return Err(Rejection::new(
                    Code::TooManyRequests,
                    format!("{MAX_MAILBOXES} requesters have replies waiting; try again later"),
                ));
            }
        }
        let mailbox = boxes.entry(client.clone()).or_default();
        mailbox.waiting.retain(|(expires, _)| *expires > now);
        if mailbox.waiting.len() >= MAX_WAITING {
            return Err(Rejection::new(
                Code::TooManyRequests,
                format!("requester {client} has {MAX_WAITING} replies it has not collected"),
            ));
        }
        mailbox.waiting.push_back((now + ttl, reply));
        mailbox.notify.notify_waiters();
        Ok((id, -1))
    }

    /// Waits up to `wait` for replies to `client`; returns at most `max`.
    pub async fn receive_replies(&self, client: &str, wait: Duration, max: usize) -> Vec<v2::Message> {
        let deadline = tokio::time::Instant::now() + wait.min(self.config.max_long_polling);
        let mut stopping = self.stopping();
        loop {
            let notify = {
                let mut boxes = self.replies.boxes.lock();
                let now = self.clock.now_millis();
                let mailbox = boxes.entry(client.to_owned()).or_default();
                mailbox.waiting.retain(|(expires, _)| *expires > now);
                let n = mailbox.waiting.len().min(max.max(1));
                let got: Vec<v2::Message> = mailbox.waiting.drain(..n).map(|(_, m)| m).collect();
                if !got.is_empty() {
                    return got;
                }
                boxes.retain(|_, b| !b.waiting.is_empty() || Arc::strong_count(&b.notify) > 1);
                Arc::clone(&boxes.entry(client.to_owned()).or_default().notify)
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A reply may have landed between the check and `enable`.
            if self.replies.boxes.lock().get(client).is_some_and(|b| !b.waiting.is_empty()) {
                continue;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return Vec::new(),
                _ = stopping.wait_for(|s| *s) => return Vec::new(),
            }
        }
    }
}
