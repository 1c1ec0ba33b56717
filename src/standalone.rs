//! `rill standalone`: opens the embedded store, reports its state, serves
//! until SIGINT or SIGTERM, then closes cleanly.

use anyhow::{Context, Result};

use crate::config::RillConfig;

/// Runs until a shutdown signal arrives.
pub fn run(config: &RillConfig, json: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start runtime")?;
    runtime.block_on(async {
        // Listen before anything is reported, so an early signal is not fatal.
        let shutdown = shutdown_signal()?;
        let started = std::time::Instant::now();
        let store = rill_store::Store::open(config.store.clone())
            .with_context(|| format!("cannot open the store in {}", config.store.data_dir.display()))?;
        let meta_dir = config.store.data_dir.join("meta");
        let meta = rill_store::MetaStore::open(&meta_dir)
            .with_context(|| format!("cannot open the metadata in {}", meta_dir.display()))?;
        let state = store.state();
        if json {
            let mut value = serde_json::to_value(&state)?;
            value["topics"] = serde_json::to_value(meta.topics())?;
            value["groups"] = serde_json::to_value(meta.groups())?;
            println!("{value}");
        } else {
            print_summary(&state, &meta);
        }
        tracing::info!(
            data_dir = %state.data_dir.display(),
            ready_ms = started.elapsed().as_millis() as u64,
            "rill standalone ready; press Ctrl-C to stop"
        );
        shutdown.await;
        tracing::info!("shutting down");
        meta.flush_offsets().context("cannot save consumer offsets")?;
        store.close().context("clean shutdown failed")?;
        Ok(())
    })
}

fn print_summary(s: &rill_store::StoreState, meta: &rill_store::MetaStore) {
    println!("rill standalone");
    println!("  data directory   {}", s.data_dir.display());
    println!("  flush            {}", if s.sync_flush { "sync (group commit)" } else { "async" });
    println!("  commit log       {} segment(s), offsets {}..{}", s.segments, s.min_offset, s.committed);
    println!("  topics           {} configured, {} group(s)", meta.topics().len(), meta.groups().len());
    println!("  queues           {} with data", s.queues.len());
    let r = &s.recovery;
    if r.unclean_shutdown {
        println!(
            "  recovery         unclean stop: replayed {} record(s) from offset {}{}",
            r.records_replayed,
            r.replayed_from,
            r.truncated_at.map_or(String::new(), |t| format!(", cut a torn record at {t}"))
        );
    } else {
        println!("  recovery         previous stop was clean");
    }
}

/// Registers SIGINT and SIGTERM handlers now; the future resolves on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
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
