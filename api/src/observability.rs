//! Request metrics for Prometheus and the `/metrics` route.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{ApiError, state::AppState};

/// Installs the global recorder once per process and returns its handle; later calls
/// (tests build many apps) reuse it.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("http_request_duration_seconds".into()), &buckets)
                .expect("static buckets are valid");
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (e.g. by an embedding program): keep a
                // private one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Counts requests and observes latency by method, matched route and status. The route
/// template (not the raw path) keeps label cardinality bounded.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    response
}

/// Who may scrape: the holder of `METRICS_TOKEN`, or anyone on a local or testing
/// deployment without one (see [`fibonacco_platform::Config::metrics_token`]).
fn may_scrape(config: &fibonacco_platform::Config, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let Some(token) = &config.metrics_token else {
        return if matches!(config.app_env.as_str(), "local" | "testing") {
            Ok(())
        } else {
            Err(ApiError::Forbidden("metrics:read"))
        };
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthenticated)
    }
}

pub async fn render(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    may_scrape(&state.config, &headers)?;
    // Pool gauges are sampled at scrape time.
    metrics::gauge!("db_pool_connections").set(f64::from(state.pool.size()));
    metrics::gauge!("db_pool_idle_connections").set(state.pool.num_idle() as f64);
    // Slot gauges are read at scrape time, so they move even while the capture is stopped
    // (the very case they exist for).
    match tokio::time::timeout(std::time::Duration::from_secs(2), fibonacco_platform::replication::slots(&state.pool))
        .await
    {
        Ok(Ok(slots)) => fibonacco_platform::replication::record_gauges(&slots),
        _ => tracing::warn!("could not read the replication slots for /metrics"),
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()))
}
