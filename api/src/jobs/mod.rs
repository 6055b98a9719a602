//! The queue jobs and the worker that runs them.
//!
//! A job is data on a Redis queue (see `fibonacco_platform::queue`); running one means
//! decoding its data and doing its work against Postgres and a provider. Every job is
//! written to be run more than once (delivery is at-least-once): sends claim their
//! recipient with a conditional update first, the others converge on the same row state.

pub mod batch;
pub mod campaign;
pub mod media;
pub mod notify;
pub mod rate;
pub mod worker;

use std::{sync::Arc, time::Duration};

use fibonacco_platform::queue::{self, Queue, QueueError, Reserved};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

use crate::providers::{DeliverySettings, ProviderError, Providers};

/// How a job ended when it did not succeed; this decides between retry and `failed_jobs`.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again after the job kind's backoff (or `after`, when the cause says how long).
    #[error("{reason}")]
    Retry { reason: String, after: Option<Duration> },
    /// Will not heal by waiting: straight to `failed_jobs`.
    #[error("{0}")]
    Fail(String),
}

impl JobError {
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry { reason: reason.into(), after: None }
    }
}

impl From<ProviderError> for JobError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Retryable { .. } => Self::retry(e.to_string()),
            ProviderError::Rejected { .. } | ProviderError::NotConfigured(_) => Self::Fail(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        Self::retry(format!("database: {e}"))
    }
}

impl From<QueueError> for JobError {
    fn from(e: QueueError) -> Self {
        Self::retry(format!("queue: {e}"))
    }
}

/// Reads a job's data; a payload that does not fit fails for good.
pub fn data<T: DeserializeOwned>(job: &Reserved) -> Result<T, JobError> {
    serde_json::from_value(job.payload.data.clone())
        .map_err(|e| JobError::Fail(format!("{} has unreadable data: {e}", job.payload.job)))
}

/// Runs one job. Implemented by the platform's jobs ([`JobContext`]) and by the no-op
/// handler of the queue benchmark.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, job: &'a Reserved) -> BoxFuture<'a, Result<(), JobError>>;
}

/// What the platform's jobs need.
#[derive(Clone)]
pub struct JobContext {
    pub pool: PgPool,
    pub queue: Queue,
    pub providers: Providers,
    pub settings: Arc<DeliverySettings>,
    /// The embedder for GenerateEmbedding: `None` on workers that do not run the
    /// `embeddings` queue, `Some(Err)` with the reason when it could not be loaded.
    pub embedder: Option<Result<Arc<dyn fibonacco_search::Embedder>, String>>,
    /// Where GenerateEmbedding copies vectors besides Postgres (pgvector: nowhere else).
    pub store: Arc<dyn fibonacco_search::VectorStore>,
}

impl Handler for JobContext {
    fn handle<'a>(&'a self, job: &'a Reserved) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            match job.payload.job.as_str() {
                n if n == queue::DISPATCH_CAMPAIGN.name => campaign::dispatch(self, job).await,
                n if n == queue::SEND_EMAIL_CAMPAIGN.name => campaign::send(self, job, campaign::Channel::Email).await,
                n if n == queue::SEND_SMS.name => campaign::send(self, job, campaign::Channel::Sms).await,
                n if n == queue::MAKE_PHONE_CALL.name => campaign::send(self, job, campaign::Channel::Phone).await,
                n if n == queue::GENERATE_TTS.name => media::generate_tts(self, job).await,
                n if n == queue::GENERATE_EMBEDDING.name => media::generate_embedding(self, job).await,
                n if n == queue::SEND_SALES_NOTIFICATION.name => notify::sales_notification(self, job).await,
                other => Err(JobError::Fail(format!("no handler for job `{other}`"))),
            }
        })
    }
}
