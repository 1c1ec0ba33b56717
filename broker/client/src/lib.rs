//! Rust client for Rill — and for any RocketMQ 5 gRPC endpoint — over the
//! `apache.rocketmq.v2` protocol: a [`Producer`], a [`SimpleConsumer`]
//! (receive / ack / change invisible duration) and a [`PushConsumer`]
//! (a listener called with bounded concurrency).
//!
//! This crate is the only way the streams runtime and the connectors touch
//! a broker. It depends on the protocol crate only, never on broker
//! internals.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rill_client::Error> {
//! use rill_client::{ClientConfig, Message, Producer};
//!
//! let producer = Producer::connect(ClientConfig::new("127.0.0.1:8081")).await?;
//! let receipt = producer.send(Message::new("orders", "hello").with_tag("created")).await?;
//! println!("stored as {} at offset {}", receipt.message_id, receipt.offset);
//! # Ok(()) }
//! ```

mod acker;
mod connection;
mod consumer;
mod message;
mod pack;
mod producer;
mod reader;
mod request;

pub use connection::{ClientConfig, Credentials, TlsSettings};
pub use consumer::{ConsumeError, FilterExpression, PushConsumer, RetryPolicy, SimpleConsumer};
pub use message::{DELAY_LEVELS, Message, ReceivedMessage, SendReceipt, delay_level};
pub use producer::{Prepared, Producer, Transaction, TransactionChecker, TransactionResolution};
pub use reader::{Pulled, QueueReader, QueueRef, StartFrom};
/// Protocol status codes, as [`Error::code`] reports them.
pub use rill_proto::v2::Code;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The connection could not be set up.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The RPC itself failed (network, timeout, server crash).
    #[error("{rpc} failed: {source}")]
    Rpc {
        /// Which call.
        rpc: &'static str,
        /// gRPC status.
        #[source]
        source: tonic::Status,
    },
    /// The broker refused the request.
    #[error("{rpc} refused by the broker: {code:?} ({message})")]
    Broker {
        /// Which call.
        rpc: &'static str,
        /// Protocol code (as received; unknown codes keep their number).
        code: i32,
        /// The broker's explanation.
        message: String,
    },
    /// No reply came to a request in time.
    #[error("no reply to request {correlation_id} within {timeout:?}")]
    RequestTimeout {
        /// The request's correlation id.
        correlation_id: String,
        /// How long the requester waited.
        timeout: std::time::Duration,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The protocol code of a broker refusal.
    pub fn code(&self) -> Option<rill_proto::v2::Code> {
        match self {
            Error::Broker { code, .. } => rill_proto::v2::Code::try_from(*code).ok(),
            _ => None,
        }
    }

    /// A copy for each of several callers that share one failed request.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Config(m) => Error::Config(m.clone()),
            Error::Connect { endpoint, source } => Error::Config(format!("cannot connect to {endpoint}: {source}")),
            Error::Rpc { rpc, source } => Error::Rpc { rpc, source: source.clone() },
            Error::Broker { rpc, code, message } => Error::Broker { rpc, code: *code, message: message.clone() },
            Error::RequestTimeout { correlation_id, timeout } => {
                Error::RequestTimeout { correlation_id: correlation_id.clone(), timeout: *timeout }
            }
        }
    }

    /// Whether trying again may succeed (transport trouble, overload).
    pub fn is_retryable(&self) -> bool {
        use rill_proto::v2::Code;
        match self {
            Error::Rpc { source, .. } => matches!(
                source.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted
            ),
            Error::Broker { code, .. } => matches!(
                Code::try_from(*code),
                Ok(Code::TooManyRequests | Code::InternalServerError | Code::ProxyTimeout | Code::RequestTimeout)
            ),
            _ => false,
        }
    }
}

/// Hands each caller that shared one request its own result: the entry
/// for it, or a copy of the failure of the whole request.
pub(crate) fn answer_each<T>(replies: Vec<tokio::sync::oneshot::Sender<Result<T>>>, outcome: Result<Vec<Result<T>>>) {
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.duplicate()));
            }
        }
    }
}

/// Turns a reply's status into a result.
pub(crate) fn check(rpc: &'static str, status: Option<rill_proto::v2::Status>) -> Result<()> {
    match status {
        Some(s) if s.code == rill_proto::v2::Code::Ok as i32 => Ok(()),
        Some(s) => Err(Error::Broker { rpc, code: s.code, message: s.message }),
        None => Err(Error::Broker { rpc, code: 0, message: "the reply carried no status".into() }),
    }
}
