//! An in-process broker on a loopback port for the client's tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use rill_broker::{Broker, BrokerConfig};
use rill_store::{MetaStore, Store, StoreConfig};

/// A serving broker; it stops when dropped.
pub struct Server {
    /// `host:port` to give clients.
    pub endpoint: String,
    /// The broker, for looking behind the protocol.
    pub broker: Arc<Broker>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves a fresh broker with `config` on `127.0.0.1:0`.
pub async fn server_with(config: BrokerConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path().join("data"));
    cfg.segment_size = 8 << 20;
    let store = Store::open(cfg).unwrap();
    let meta = MetaStore::open(dir.path().join("data/meta")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = Broker::new(store, meta, BrokerConfig { store_host: addr, ..config });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(rill_broker::service::serve(Arc::clone(&broker), addr, listener, None, async move {
        let _ = stopped.await;
    }));
    Server { endpoint: addr.to_string(), broker, _dir: dir, _stop: stop }
}
