//! A running job's figures in the Prometheus text format, served at
//! `GET /metrics` when [`crate::RunnerConfig::metrics_addr`] is set: messages
//! read, dead letters, checkpoints and their duration, watermark lag, and
//! per operator the rows in and out, late rows, state held and event time.
//!
//! It only reads [`JobStatus`] as the runner publishes it; it never touches
//! the dataflow.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::runner::JobStatus;
use crate::{Error, Result};

/// The content type Prometheus (and OpenMetrics-aware scrapers) expect.
const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    registry.register(name, help, g);
}

/// `status` of the job named `job` in the Prometheus text format.
pub fn render(job: &str, status: &JobStatus) -> String {
    let mut registry =
        Registry::with_prefix_and_labels("rill_job", [("job".into(), job.to_owned().into())].into_iter());
    counter(&mut registry, "messages", "Messages read from the broker", status.messages);
    counter(&mut registry, "dead_letters", "Messages that did not decode into the source's schema", status.dead);
    counter(&mut registry, "checkpoints", "Checkpoints completed", status.checkpoints);
    gauge(&mut registry, "last_checkpoint_ms", "Duration of the last checkpoint", status.last_checkpoint_ms as i64);
    if let Some(lag) = status.watermark_lag_ms {
        gauge(&mut registry, "watermark_lag_ms", "Wall clock minus the job's event time", lag);
    }
    let rows_in = Family::<Labels, Counter>::default();
    let rows_out = Family::<Labels, Counter>::default();
    let late = Family::<Labels, Counter>::default();
    let state = Family::<Labels, Gauge>::default();
    let watermark = Family::<Labels, Gauge>::default();
    for m in &status.operators {
        let labels = vec![("operator", m.name.clone())];
        rows_in.get_or_create(&labels).inc_by(m.rows_in);
        rows_out.get_or_create(&labels).inc_by(m.rows_out);
        late.get_or_create(&labels).inc_by(m.late);
        state.get_or_create(&labels).set(i64::try_from(m.state).unwrap_or(i64::MAX));
        if m.watermark > i64::MIN && m.watermark < i64::MAX {
            watermark.get_or_create(&labels).set(m.watermark);
        }
    }
    registry.register("operator_rows_in", "Rows an operator received", rows_in);
    registry.register("operator_rows_out", "Rows an operator emitted", rows_out);
    registry.register("operator_late_rows", "Rows an operator set aside as late", late);
    registry.register("operator_state", "Keys or windows an operator holds", state);
    registry.register("operator_watermark_ms", "An operator's event time", watermark);
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &registry) {
        tracing::error!(error = %e, "cannot encode the job's metrics");
    }
    out
}

/// Binds `addr` (an error names it when it cannot) and serves the latest
/// `status` at `GET /metrics` until the returned task is aborted.
pub async fn serve(
    job: String,
    addr: SocketAddr,
    status: watch::Receiver<JobStatus>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Plan(format!("metrics address {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Error::Plan(format!("metrics address {addr}: {e}")))?;
    tracing::info!(address = %bound, "serving the job's metrics at /metrics");
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let text = render(&job, &status.borrow());
            async move { ([(CONTENT_TYPE, CONTENT)], text) }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the job's metrics endpoint failed");
        }
    }))
}
