//! A Rill broker run inside the benchmark process, on its own runtime
//! threads (as if in its own process) and a loopback port.

use std::net::SocketAddr;
use std::path::Path;

use rill_broker::{Broker, BrokerConfig};
use rill_store::{FlushConfig, MetaStore, Store, StoreConfig};

use crate::{Error, Result};

/// A running broker; [`LocalBroker::shutdown`] stops it and closes its store.
#[derive(Debug)]
pub struct LocalBroker {
    server: tokio::runtime::Runtime,
    store: Store,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::result::Result<(), rill_broker::Error>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl LocalBroker {
    /// Opens a store in `dir` and serves it on `127.0.0.1:0`.
    pub fn start(dir: &Path, sync: bool) -> Result<Self> {
        let mut config = StoreConfig::new(dir.join("data"));
        if sync {
            config.flush = FlushConfig::Sync {};
        }
        let store = Store::open(config)?;
        let meta = MetaStore::open(dir.join("data/meta"))?;
        let io = |op| move |source| Error::Io { op, path: dir.to_path_buf(), source };
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rill-bench-broker")
            .enable_all()
            .build()
            .map_err(io("start a runtime in"))?;
        let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).map_err(io("listen for"))?;
        let addr = listener.local_addr().map_err(io("listen for"))?;
        let broker = Broker::new(store.clone(), meta, BrokerConfig { store_host: addr, ..BrokerConfig::default() });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = server.spawn(rill_broker::service::serve(broker, addr, listener, None, async move {
            let _ = stopped.await;
        }));
        Ok(Self { server, store, stop, served, addr })
    }

    /// Messages the queues of `topic` hold.
    pub fn stored(&self, topic: &str) -> u64 {
        self.store.state().queues.iter().filter(|q| q.topic == topic).map(|q| q.max_offset - q.min_offset).sum()
    }

    /// Stops serving and closes the store cleanly.
    pub fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(());
        let _ = self.server.block_on(self.served);
        self.store.close()?;
        Ok(())
    }
}
