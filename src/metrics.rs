//! `--metrics-addr`: serves the broker's metrics in the Prometheus text
//! format at `GET /metrics`.

use std::sync::Arc;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use rill_broker::Broker;

/// The content type Prometheus (and OpenMetrics-aware scrapers) expect.
const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until the task is aborted; failures are logged.
pub async fn serve(broker: Arc<Broker>, listener: tokio::net::TcpListener) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let broker = Arc::clone(&broker);
            async move { ([(CONTENT_TYPE, CONTENT)], broker.metrics().render(&broker)).into_response() }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics endpoint failed");
    }
}
