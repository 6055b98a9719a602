//! The platform's job handlers, run by the worker loop of `fibonacco_platform::queue`.
//!
//! A job is data on a Redis queue (its typed payload in `queue::jobs`); running one means
//! decoding its data and doing its work against Postgres and a provider. Every job is
//! written to be run more than once (delivery is at-least-once): sends claim their
//! recipient with a conditional update first, the others converge on the same row state.

pub mod campaign;
pub mod media;
pub mod notify;
pub mod rate;
pub mod webhooks;

use std::sync::Arc;

use fibonacco_platform::queue::{self, Handler, JobError, Reserved};
use futures_util::future::BoxFuture;
use sqlx::PgPool;

use crate::{
    campaigns::Channel,
    providers::{DeliverySettings, ProviderError, Providers},
};

impl From<ProviderError> for JobError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Retryable { .. } | ProviderError::Ambiguous { .. } => JobError::retry_because(e),
            ProviderError::Rejected { .. } | ProviderError::NotConfigured(_) => JobError::fail_because(e),
        }
    }
}

/// What the platform's jobs need.
#[derive(Clone)]
pub struct JobContext {
    pub pool: PgPool,
    pub queue: queue::Queue,
    pub providers: Providers,
    pub settings: Arc<DeliverySettings>,
    /// The embedder for GenerateEmbedding: `None` on workers that do not run the
    /// `embeddings` queue, `Some(Err)` with the reason when it could not be loaded.
    pub embedder: Option<Result<Arc<dyn fibonacco_search::Embedder>, String>>,
    /// Where GenerateEmbedding copies vectors besides Postgres (pgvector: nowhere else).
    pub store: Arc<dyn fibonacco_search::VectorStore>,
    /// Campaign templates, read once a minute rather than once a send.
    pub templates: Arc<campaign::Templates>,
}

impl Handler for JobContext {
    fn handle<'a>(&'a self, job: &'a Reserved) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            match job.payload.job.as_str() {
                n if n == queue::DISPATCH_CAMPAIGN.name => campaign::dispatch(self, job).await,
                n if n == queue::SEND_EMAIL_CAMPAIGN.name => campaign::send(self, job, Channel::Email).await,
                n if n == queue::SEND_SMS.name => campaign::send(self, job, Channel::Sms).await,
                n if n == queue::MAKE_PHONE_CALL.name => campaign::send(self, job, Channel::Phone).await,
                n if n == queue::GENERATE_TTS.name => media::generate_tts(self, job).await,
                n if n == queue::GENERATE_EMBEDDING.name => media::generate_embedding(self, job).await,
                n if n == queue::SEND_SALES_NOTIFICATION.name => notify::sales_notification(self, job).await,
                n if n == queue::DELIVER_WEBHOOKS.name => webhooks::deliver(self, job).await,
                other => Err(JobError::fail(format!("no handler for job `{other}`"))),
            }
        })
    }
}
