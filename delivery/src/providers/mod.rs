//! Clients of the outside services the workers call: AWS SES v2 (e-mail), Twilio (SMS and
//! calls), ElevenLabs (speech) and the object store that keeps generated audio.
//!
//! Every client classifies what went wrong the same way, because that decides whether a
//! job is retried: a rejection that will not heal (bad address, unverified sender, bad
//! credentials) fails the job now; throttling, 5xx and timeouts are retried with backoff.

#[cfg(feature = "runtime")]
pub mod elevenlabs;
#[cfg(feature = "runtime")]
pub mod ses;
#[cfg(feature = "runtime")]
pub mod storage;
pub mod twilio;

#[cfg(feature = "runtime")]
use std::sync::Arc;
use std::time::Duration;

use fibonacco_platform::config::Secret;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Certainly not acted on, and worth trying again later (429, 5xx, a connection that
    /// could not be made).
    #[error("{provider} is unavailable: {reason}")]
    Retryable { provider: &'static str, reason: String },
    /// The request went out and no readable answer came back (a timeout, a dropped
    /// connection, a success without the message id): the provider may have acted on it.
    /// A send never retries this; its recipient becomes `unknown`.
    #[error("{provider} may have sent it: {reason}")]
    Ambiguous { provider: &'static str, reason: String },
    /// Will fail the same way next time until someone changes something.
    #[error("{provider} rejected the request: {reason}")]
    Rejected { provider: &'static str, reason: String },
    /// The provider has no configuration on this deployment.
    #[error("{0} is not configured on this deployment")]
    NotConfigured(&'static str),
}

impl ProviderError {
    /// Classifies an HTTP status from a provider.
    pub fn from_status(provider: &'static str, status: u16, body: &str) -> Self {
        // Bodies can echo personal data (numbers, addresses); keep a short prefix only.
        let reason = format!("HTTP {status}: {}", body.chars().take(200).collect::<String>());
        if status == 408 || status == 429 || status >= 500 {
            Self::Retryable { provider, reason }
        } else {
            Self::Rejected { provider, reason }
        }
    }

    /// Classifies a transport error from reqwest: a request that never left (no
    /// connection) may be retried; one that left and got no answer is ambiguous.
    pub fn from_reqwest(provider: &'static str, e: &reqwest::Error) -> Self {
        if let Some(status) = e.status() {
            return Self::from_status(provider, status.as_u16(), "");
        }
        if e.is_builder() {
            return Self::Rejected { provider, reason: format!("invalid request: {e}") };
        }
        if e.is_connect() {
            return Self::Retryable { provider, reason: format!("no connection: {e}") };
        }
        Self::Ambiguous { provider, reason: format!("no answer: {e}") }
    }

    /// Whether retrying could send a second message.
    pub fn may_have_been_sent(&self) -> bool {
        matches!(self, Self::Ambiguous { .. })
    }
}

/// Settings every sender reads, from the environment (`.env` too).
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Public base URL for tracking links and provider callbacks.
    pub app_url: String,
    /// Signs tracking links (`APP_KEY`); links stay valid while the key does.
    pub app_key: Secret,
    /// `MAIL_FROM`: the verified SES sender of campaigns and notifications.
    pub mail_from: String,
    /// `SALES_NOTIFICATION_EMAIL`: who hears about learning-center leads.
    pub sales_email: Option<String>,
    /// Per-second send caps shared by all workers (`SES_RATE_PER_SEC`, `TWILIO_RATE_PER_SEC`).
    pub ses_rate_per_sec: u32,
    pub twilio_rate_per_sec: u32,
    /// `QUEUE_BACKOFF_BASE_MS`: overrides every job kind's first-retry wait (tests, drills).
    pub backoff_base: Option<Duration>,
    /// A recipient claimed by a send that has not finished within this time (the queue's
    /// `retry_after`) may be claimed again: its worker died.
    pub claim_lease: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct SettingsError {
    pub name: &'static str,
    pub reason: String,
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, SettingsError>
where
    T::Err: std::fmt::Display,
{
    match get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| SettingsError { name, reason: e.to_string() }),
    }
}

impl DeliverySettings {
    pub fn from_lookup(
        app_url: &str,
        app_key: Secret,
        claim_lease: Duration,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let backoff_ms: u64 = number(&get, "QUEUE_BACKOFF_BASE_MS", 0)?;
        Ok(Self {
            app_url: app_url.trim_end_matches('/').to_owned(),
            app_key,
            mail_from: non_empty("MAIL_FROM").unwrap_or_else(|| "campaigns@fibonacco.local".into()),
            sales_email: non_empty("SALES_NOTIFICATION_EMAIL"),
            ses_rate_per_sec: number(&get, "SES_RATE_PER_SEC", 14)?,
            twilio_rate_per_sec: number(&get, "TWILIO_RATE_PER_SEC", 1)?,
            backoff_base: (backoff_ms > 0).then(|| Duration::from_millis(backoff_ms)),
            claim_lease,
        })
    }
}

#[cfg(feature = "runtime")]
/// The provider clients a worker holds; `None` where the deployment has no credentials
/// (jobs for that provider then fail with a clear reason and can be retried later).
#[derive(Clone)]
pub struct Providers {
    pub ses: Option<Arc<ses::Ses>>,
    pub twilio: Option<Arc<twilio::Twilio>>,
    pub elevenlabs: Option<Arc<elevenlabs::ElevenLabs>>,
    pub storage: Arc<storage::AudioStore>,
}

#[cfg(feature = "runtime")]
impl Providers {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            ses: ses::SesSettings::from_lookup(&get).map(|s| Arc::new(ses::Ses::new(s))),
            twilio: twilio::TwilioSettings::from_lookup(&get).map(|s| Arc::new(twilio::Twilio::new(s))),
            elevenlabs: elevenlabs::ElevenLabsSettings::from_lookup(&get)
                .map(|s| Arc::new(elevenlabs::ElevenLabs::new(s))),
            storage: Arc::new(storage::AudioStore::from_lookup(&get)?),
        })
    }
}
