//! The server commands: `rill namesrv` (the name server), `rill broker`
//! (store + RocketMQ 5 gRPC broker, registered with a name server) and
//! `rill standalone` (both in one process on an embedded data directory).
//! Each serves until SIGINT or SIGTERM; a broker then unregisters, saves
//! consumer offsets and closes the store cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rill_broker::{Broker, BrokerConfig};
use rill_namesrv::{NameServerClient, Registry};

use crate::config::RillConfig;

/// How often consumer offsets are written to disk.
const OFFSET_FLUSH: Duration = Duration::from_secs(5);

/// Which server a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Name server and broker in one process.
    Standalone,
    /// A broker that registers with a name server.
    Broker,
    /// The name server alone.
    NameServer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Broker => "broker",
            Role::NameServer => "namesrv",
        }
    }
}

/// Runs `role` until a shutdown signal arrives.
pub fn run(config: &RillConfig, role: Role, json: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start runtime")?;
    runtime.block_on(async {
        // Listen before anything is reported, so an early signal is not fatal.
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let shutdown = shutdown_signal()?;
        tokio::spawn(async move {
            shutdown.await;
            stop_tx.send_replace(true);
        });
        let started = std::time::Instant::now();
        let mut report = serde_json::Map::new();

        let mut namesrv = None;
        let mut namesrv_addr = config.namesrv.addr.clone();
        // The name server stops after the broker, so the broker can unregister.
        let (ns_stop_tx, ns_stop) = tokio::sync::watch::channel(false);
        if role != Role::Broker {
            let listener = bind("namesrv.addr", &config.namesrv.addr).await?;
            let addr = listener.local_addr().context("cannot read the name server's address")?;
            namesrv_addr = addr.to_string();
            let registry = Arc::new(Registry::new(
                Arc::new(rill_common::SystemClock),
                Duration::from_secs(config.namesrv.broker_timeout_secs),
            ));
            namesrv = Some(tokio::spawn(rill_namesrv::service::serve(registry, listener, stopped(ns_stop))));
            report.insert("namesrv_addr".into(), namesrv_addr.clone().into());
        }

        let broker = if role == Role::NameServer {
            None
        } else {
            Some(start_broker(config, role, &namesrv_addr, stop.clone(), &mut report).await?)
        };

        if json {
            println!("{}", serde_json::Value::Object(report.clone()));
        } else {
            print_summary(role, &report);
        }
        tracing::info!(
            namesrv = %namesrv_addr,
            grpc = %report.get("grpc_addr").and_then(|v| v.as_str()).unwrap_or("-"),
            data_dir = %report.get("data_dir").and_then(|v| v.as_str()).unwrap_or("-"),
            ready_ms = started.elapsed().as_millis() as u64,
            "rill {} listening; press Ctrl-C to stop",
            role.name()
        );

        let finished = match broker {
            Some(running) => running.finish().await,
            None => {
                stopped(stop).await;
                Ok(())
            }
        };
        ns_stop_tx.send_replace(true);
        finished?;
        if let Some(ns) = namesrv {
            ns.await.context("the name server task failed")?.context("the name server failed")?;
        }
        Ok(())
    })
}

/// A broker being served, and what its shutdown must wait for.
struct RunningBroker {
    broker: Arc<Broker>,
    serve: tokio::task::JoinHandle<Result<(), rill_broker::Error>>,
    registration: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningBroker {
    /// Waits for the gRPC service to stop, then shuts down cleanly.
    async fn finish(self) -> Result<()> {
        self.serve.await.context("the gRPC task failed")?.context("the gRPC service failed")?;
        tracing::info!("shutting down");
        // Unregistering is bounded by the name server client's timeout.
        let _ = self.registration.await;
        for task in self.background {
            task.abort();
        }
        self.broker.persist_offsets().context("cannot save consumer offsets")?;
        self.broker.store().close().context("clean shutdown failed")?;
        Ok(())
    }
}

async fn start_broker(
    config: &RillConfig,
    role: Role,
    namesrv_addr: &str,
    stop: tokio::sync::watch::Receiver<bool>,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<RunningBroker> {
    let b = &config.broker;
    let listener = bind("broker.grpc_addr", &b.grpc_addr).await?;
    let grpc_addr = listener.local_addr().context("cannot read the listening address")?;
    let metrics_listener = match &b.metrics_addr {
        Some(addr) => Some(bind("broker.metrics_addr", addr).await?),
        None => None,
    };
    let tls = crate::tls::load(b.tls_cert.as_deref(), b.tls_key.as_deref())?;
    let store = rill_store::Store::open(config.store.clone())
        .with_context(|| format!("cannot open the store in {}", config.store.data_dir.display()))?;
    let meta_dir = config.store.data_dir.join("meta");
    let meta = rill_store::MetaStore::open(&meta_dir)
        .with_context(|| format!("cannot open the metadata in {}", meta_dir.display()))?;
    if b.retry_delays_ms.is_empty() || b.retry_delays_ms.contains(&0) {
        anyhow::bail!("broker.retry_delays_ms: give at least one delay, each above 0 ms");
    }
    if b.min_invisible_secs == 0 || b.min_invisible_secs > 12 * 3600 {
        anyhow::bail!("broker.min_invisible_secs: {} is outside 1..=43200", b.min_invisible_secs);
    }
    let broker_config = BrokerConfig {
        broker_name: b.broker_name.clone(),
        cluster_name: b.cluster_name.clone(),
        auto_create_topics: b.auto_create_topics.unwrap_or(role == Role::Standalone),
        default_queues: b.default_queues,
        store_host: grpc_addr,
        max_retries: b.max_retries,
        retry_delays: b.retry_delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
        min_invisible: Duration::from_secs(b.min_invisible_secs),
        timer: rill_broker::TimerConfig {
            max_delay: Duration::from_secs(b.max_delay_days.saturating_mul(24 * 3600)),
            ..rill_broker::TimerConfig::default()
        },
        transactions: rill_broker::txn::TxnConfig {
            check_after: Duration::from_millis(b.transaction_check_after_ms),
            check_interval: Duration::from_millis(b.transaction_check_interval_ms.max(1)),
            max_checks: b.transaction_max_checks,
        },
        ..BrokerConfig::default()
    };
    let broker = Broker::new(store, meta, broker_config);
    let namesrv = NameServerClient::new(namesrv_addr, Duration::from_secs(3))
        .with_context(|| format!("namesrv.addr {namesrv_addr:?}"))?;
    broker.attach_name_server(namesrv);
    let registration = tokio::spawn(rill_broker::cluster::keep_registered(
        Arc::clone(&broker),
        grpc_addr.to_string(),
        rill_broker::cluster::REGISTER_EVERY,
    ));

    let state = broker.store().state();
    let mut value = serde_json::to_value(&state)?;
    if let serde_json::Value::Object(map) = &mut value {
        report.append(map);
    }
    report.insert("grpc_addr".into(), grpc_addr.to_string().into());
    report.insert("tls".into(), tls.is_some().into());
    report.insert("broker_name".into(), broker.config().broker_name.clone().into());
    report.insert("topics".into(), serde_json::to_value(broker.meta().topics())?);
    report.insert("groups".into(), serde_json::to_value(broker.meta().groups())?);

    let mut background = vec![tokio::spawn(flush_offsets(Arc::clone(&broker)))];
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr().context("cannot read the metrics address")?;
        report.insert("metrics_addr".into(), addr.to_string().into());
        background.push(tokio::spawn(crate::metrics::serve(Arc::clone(&broker), listener)));
    }
    let serve = tokio::spawn(rill_broker::service::serve(Arc::clone(&broker), grpc_addr, listener, tls, stopped(stop)));
    Ok(RunningBroker { broker, serve, registration, background })
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Binds `addr` (from configuration key `key`), naming both on failure.
async fn bind(key: &str, addr: &str) -> Result<tokio::net::TcpListener> {
    let parsed: SocketAddr = addr.parse().with_context(|| format!("{key} {addr:?} is not HOST:PORT"))?;
    tokio::net::TcpListener::bind(parsed)
        .await
        .with_context(|| format!("cannot listen on {parsed} ({key}; is another server running there?)"))
}

/// Writes changed consumer offsets and drops silent clients every few seconds.
async fn flush_offsets(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(OFFSET_FLUSH);
    loop {
        tick.tick().await;
        if let Err(e) = broker.persist_offsets() {
            tracing::error!(error = %e, "cannot save consumer offsets");
        }
        broker.expire_members();
    }
}

fn print_summary(role: Role, r: &serde_json::Map<String, serde_json::Value>) {
    let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
    let num = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let len = |k: &str| r.get(k).and_then(|v| v.as_array()).map_or(0, |a| a.len());
    println!("rill {}", role.name());
    if r.contains_key("namesrv_addr") {
        println!("  name server       {}", text("namesrv_addr"));
    }
    if role == Role::NameServer {
        return;
    }
    let tls = if r.get("tls").and_then(|v| v.as_bool()) == Some(true) { " (TLS)" } else { "" };
    println!("  gRPC (RocketMQ 5) {}{tls}  broker {}", text("grpc_addr"), text("broker_name"));
    if r.contains_key("metrics_addr") {
        println!("  metrics           http://{}/metrics", text("metrics_addr"));
    }
    println!("  data directory    {}", text("data_dir"));
    let sync = r.get("sync_flush").and_then(|v| v.as_bool()) == Some(true);
    println!("  flush             {}", if sync { "sync (group commit)" } else { "async" });
    println!("  commit log        {} segment(s), offsets {}..{}", num("segments"), num("min_offset"), num("committed"));
    println!("  topics            {} configured, {} group(s)", len("topics"), len("groups"));
    let recovery = r.get("recovery").cloned().unwrap_or_default();
    if recovery.get("unclean_shutdown").and_then(|v| v.as_bool()) == Some(true) {
        println!(
            "  recovery          unclean stop: replayed {} record(s) from offset {}",
            recovery.get("records_replayed").and_then(|v| v.as_u64()).unwrap_or(0),
            recovery.get("replayed_from").and_then(|v| v.as_u64()).unwrap_or(0),
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
