//! What every handler can reach.

use std::sync::Arc;

use fibonacco_platform::Config;
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
}
