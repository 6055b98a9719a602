//! What every handler can reach.

use std::sync::Arc;

use fibonacco_platform::{Config, auth::TokenCache, llm::LlmProvider};
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub tokens: Arc<TokenCache>,
    /// Text generation: OpenAI-compatible when a key is configured, else local.
    pub llm: Arc<LlmProvider>,
}

impl AppState {
    pub fn new(pool: PgPool, redis: ConnectionManager, config: Config) -> Self {
        let tokens = Arc::new(TokenCache::new(config.auth_cache_ttl, 100_000));
        Self {
            pool,
            redis,
            config: Arc::new(config),
            metrics: crate::observability::prometheus(),
            tokens,
            llm: Arc::new(LlmProvider::from_env()),
        }
    }
}
