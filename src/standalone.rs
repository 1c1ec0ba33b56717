//! `rill standalone`: the store and the RocketMQ 5 gRPC broker in one
//! process on an embedded data directory; serves until SIGINT or SIGTERM,
//! then saves consumer offsets and closes the store cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rill_broker::{Broker, BrokerConfig};

use crate::config::RillConfig;

/// How often consumer offsets are written to disk.
const OFFSET_FLUSH: Duration = Duration::from_secs(5);

/// Runs until a shutdown signal arrives.
pub fn run(config: &RillConfig, json: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start runtime")?;
    runtime.block_on(async {
        // Listen before anything is reported, so an early signal is not fatal.
        let shutdown = shutdown_signal()?;
        let started = std::time::Instant::now();
        let grpc_addr: SocketAddr = config
            .broker
            .grpc_addr
            .parse()
            .with_context(|| format!("broker.grpc_addr {:?} is not HOST:PORT", config.broker.grpc_addr))?;
        let listener = tokio::net::TcpListener::bind(grpc_addr)
            .await
            .with_context(|| format!("cannot listen on {grpc_addr} (is another broker running there?)"))?;
        let grpc_addr = listener.local_addr().context("cannot read the listening address")?;
        let store = rill_store::Store::open(config.store.clone())
            .with_context(|| format!("cannot open the store in {}", config.store.data_dir.display()))?;
        let meta_dir = config.store.data_dir.join("meta");
        let meta = rill_store::MetaStore::open(&meta_dir)
            .with_context(|| format!("cannot open the metadata in {}", meta_dir.display()))?;
        let broker_config = BrokerConfig {
            auto_create_topics: config.broker.auto_create_topics,
            default_queues: config.broker.default_queues,
            store_host: grpc_addr,
            ..BrokerConfig::default()
        };
        let broker = Broker::new(store, meta, broker_config);
        let state = broker.store().state();
        if json {
            let mut value = serde_json::to_value(&state)?;
            value["grpc_addr"] = serde_json::Value::String(grpc_addr.to_string());
            value["topics"] = serde_json::to_value(broker.meta().topics())?;
            value["groups"] = serde_json::to_value(broker.meta().groups())?;
            println!("{value}");
        } else {
            print_summary(&state, &broker, grpc_addr);
        }
        tracing::info!(
            grpc = %grpc_addr,
            data_dir = %state.data_dir.display(),
            ready_ms = started.elapsed().as_millis() as u64,
            "rill standalone listening; press Ctrl-C to stop"
        );
        let flusher = tokio::spawn(flush_offsets(Arc::clone(&broker)));
        rill_broker::service::serve(Arc::clone(&broker), grpc_addr, listener, shutdown)
            .await
            .context("the gRPC service failed")?;
        tracing::info!("shutting down");
        flusher.abort();
        broker.persist_offsets().context("cannot save consumer offsets")?;
        broker.store().close().context("clean shutdown failed")?;
        Ok(())
    })
}

/// Writes changed consumer offsets every few seconds.
async fn flush_offsets(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(OFFSET_FLUSH);
    loop {
        tick.tick().await;
        if let Err(e) = broker.persist_offsets() {
            tracing::error!(error = %e, "cannot save consumer offsets");
        }
    }
}

fn print_summary(s: &rill_store::StoreState, broker: &Broker, grpc_addr: SocketAddr) {
    let meta = broker.meta();
    println!("rill standalone");
    println!("  gRPC (RocketMQ 5) {grpc_addr}");
    println!("  data directory    {}", s.data_dir.display());
    println!("  flush             {}", if s.sync_flush { "sync (group commit)" } else { "async" });
    println!("  commit log        {} segment(s), offsets {}..{}", s.segments, s.min_offset, s.committed);
    println!("  topics            {} configured, {} group(s)", meta.topics().len(), meta.groups().len());
    println!("  queues            {} with data", s.queues.len());
    let r = &s.recovery;
    if r.unclean_shutdown {
        println!(
            "  recovery          unclean stop: replayed {} record(s) from offset {}{}",
            r.records_replayed,
            r.replayed_from,
            r.truncated_at.map_or(String::new(), |t| format!(", cut a torn record at {t}"))
        );
    } else {
        println!("  recovery          previous stop was clean");
    }
}

/// Registers SIGINT and SIGTERM handlers now; the future resolves on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
