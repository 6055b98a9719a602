//! What every handler can reach.

use std::sync::Arc;

use fibonacco_platform::{Config, auth::TokenCache, llm::LlmProvider, queue::Queue};
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    /// The job queues (same Redis, keys under `QUEUE_PREFIX`).
    pub queue: Queue,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub tokens: Arc<TokenCache>,
    /// Text generation: OpenAI-compatible when a key is configured, else local.
    pub llm: Arc<LlmProvider>,
    /// The query embedder of semantic search, loaded on first use (or the reason it
    /// could not be).
    pub embedder: Arc<tokio::sync::OnceCell<Result<Arc<dyn fibonacco_search::Embedder>, String>>>,
}

impl AppState {
    pub fn new(pool: PgPool, redis: ConnectionManager, config: Config) -> Self {
        let tokens = Arc::new(TokenCache::new(config.auth_cache_ttl, 100_000));
        Self {
            pool,
            queue: Queue::new(redis.clone(), config.queue_prefix.clone()),
            redis,
            config: Arc::new(config),
            metrics: crate::observability::prometheus(),
            tokens,
            llm: Arc::new(LlmProvider::from_env()),
            embedder: Arc::default(),
        }
    }
}
