//! What every handler can reach.

use std::sync::Arc;

use fibonacco_platform::{Config, auth::TokenCache, llm::LlmProvider, queue::Queue};
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

/// A provider's model list and when it was read.
pub type ModelList = (std::time::Instant, Vec<String>);

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
    /// The search service (vector store, query embedder loaded on first use), shared
    /// with the search routes, AI chat and AI context.
    pub search: fibonacco_search::SearchService,
    /// SNS signing certificates (cached) and subscription confirmations.
    pub sns: Arc<fibonacco_delivery::sns::Client>,
    /// The chat provider's model list and when it was read (`/ai/models`).
    pub provider_models: Arc<std::sync::Mutex<Option<ModelList>>>,
    /// Stripe's API (`STRIPE_SECRET`, `STRIPE_API_BASE`); `None` without a secret key.
    pub stripe: Option<Arc<crate::stripe::client::Client>>,
    /// Writes SES events in batches; started by the first event.
    pub ses_sink: Arc<std::sync::OnceLock<fibonacco_delivery::ses_sink::Sink>>,
}

impl AppState {
    /// The Stripe client, or 503 `PAYMENTS_NOT_CONFIGURED`.
    pub fn stripe(&self) -> Result<&crate::stripe::client::Client, crate::ApiError> {
        self.stripe.as_deref().ok_or(crate::ApiError::PaymentsNotConfigured)
    }

    /// With the default vector store (pgvector in the same database).
    pub fn new(pool: PgPool, redis: ConnectionManager, config: Config) -> Self {
        let store = Arc::new(fibonacco_search::store::pgvector::PgVector::new(pool.clone()));
        Self::with_store(pool, redis, config, store)
    }

    pub fn with_store(
        pool: PgPool,
        redis: ConnectionManager,
        config: Config,
        store: Arc<dyn fibonacco_search::VectorStore>,
    ) -> Self {
        let tokens = Arc::new(TokenCache::new(config.auth_cache_ttl, 100_000));
        let search = fibonacco_search::SearchService::new(pool.clone(), tokens.clone(), store, config.max_per_page)
            .with_request_timeout(config.request_timeout);
        let stripe = config
            .stripe_secret
            .clone()
            .map(|secret| Arc::new(crate::stripe::client::Client::new(&config.stripe_api_base, secret)));
        Self {
            stripe,
            pool,
            queue: Queue::new(redis.clone(), config.queue_prefix.clone()),
            redis,
            config: Arc::new(config),
            metrics: crate::observability::prometheus(),
            tokens,
            llm: Arc::new(LlmProvider::from_env()),
            search,
            sns: Arc::new(fibonacco_delivery::sns::Client::default()),
            ses_sink: Arc::default(),
            provider_models: Arc::default(),
        }
    }
}
