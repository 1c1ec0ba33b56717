//! Rill's name server: brokers register the topics and queues they serve
//! and repeat the registration as their heartbeat; a broker silent for
//! longer than the timeout (120 s by default, as in RocketMQ) is dropped.
//! Brokers ask it for a topic's route across every live broker and hand
//! that route to clients in `QueryRoute`.
//!
//! Layout: [`Registry`] holds the state and the rules (no network);
//! [`service`] serves it as the `rill.namesrv.v1.NameServer` gRPC service;
//! [`NameServerClient`] is what a broker (or a tool) uses to talk to one.
//!
//! It must not touch message storage or the client protocol: it knows
//! brokers, topics and queue counts, nothing else.

mod client;
mod registry;
pub mod service;

pub use client::NameServerClient;
pub use registry::{BrokerKey, DEFAULT_BROKER_TIMEOUT, Registry};

use std::net::SocketAddr;

/// Errors of the name server crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request was malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The gRPC server failed.
    #[error("name server on {addr}: {source}")]
    Serve {
        /// Where it listened.
        addr: SocketAddr,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The name server address is unusable.
    #[error("name server address {addr:?}: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A call to the name server failed.
    #[error("name server {addr}: {rpc} failed: {source}")]
    Rpc {
        /// The name server.
        addr: String,
        /// Which call.
        rpc: &'static str,
        /// gRPC status.
        #[source]
        source: tonic::Status,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
