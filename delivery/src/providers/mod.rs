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

use std::{sync::Arc, time::Duration};

use fibonacco_platform::config::Secret;

/// The error underneath a provider failure (the HTTP client's, the SDK's), kept as an
/// error with its own sources; it is formatted to text only where it is stored
/// (`failed_jobs`) or logged. `Arc` so a `ProviderError` stays `Clone`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Certainly not acted on, and worth trying again later (429, 5xx, a connection that
    /// could not be made).
    #[error("{provider} is unavailable: {reason}")]
    Retryable {
        provider: &'static str,
        reason: String,
        #[source]
        source: Option<Cause>,
    },
    /// The request went out and no readable answer came back (a timeout, a dropped
    /// connection, a success without the message id): the provider may have acted on it.
    /// A send never retries this; its recipient becomes `unknown`.
    #[error("{provider} may have sent it: {reason}")]
    Ambiguous {
        provider: &'static str,
        reason: String,
        #[source]
        source: Option<Cause>,
    },
    /// Will fail the same way next time until someone changes something.
    #[error("{provider} rejected the request: {reason}")]
    Rejected {
        provider: &'static str,
        reason: String,
        #[source]
        source: Option<Cause>,
    },
    /// The provider has no configuration on this deployment.
    #[error("{0} is not configured on this deployment")]
    NotConfigured(&'static str),
}

impl ProviderError {
    /// Classifies an HTTP status from a provider.
    pub fn from_status(provider: &'static str, status: u16, body: &str) -> Self {
        // Bodies echo personal data ("The 'To' number +1555… is not valid"): reasons go to
        // logs and `failed_jobs`, so numbers and addresses are masked, and the rest cut short.
        let reason = format!("HTTP {status}: {}", redact_personal(&body.chars().take(300).collect::<String>()));
        if status == 408 || status == 429 || status >= 500 {
            Self::Retryable { provider, reason, source: None }
        } else {
            Self::Rejected { provider, reason, source: None }
        }
    }

    /// Classifies a transport error from reqwest: a request that never left (no
    /// connection) may be retried; one that left and got no answer is ambiguous.
    pub fn from_reqwest(provider: &'static str, e: reqwest::Error) -> Self {
        if let Some(status) = e.status() {
            return Self::from_status(provider, status.as_u16(), "");
        }
        // The error's URL may carry a phone number (lookups): the kept cause drops it, and
        // the reason's text is masked.
        let text = redact_personal(&e.to_string());
        let (builder, connect) = (e.is_builder(), e.is_connect());
        let source: Option<Cause> = Some(Arc::new(e.without_url()));
        if builder {
            return Self::Rejected { provider, reason: format!("invalid request: {text}"), source };
        }
        if connect {
            return Self::Retryable { provider, reason: format!("no connection: {text}"), source };
        }
        Self::Ambiguous { provider, reason: format!("no answer: {text}"), source }
    }

    /// Whether retrying could send a second message.
    pub fn may_have_been_sent(&self) -> bool {
        matches!(self, Self::Ambiguous { .. })
    }
}

/// Masks what looks like personal data in a provider's text: e-mail addresses become
/// `[address]`, runs of six or more digits (phone numbers, with `+`, spaces, dashes,
/// dots or brackets between them, or URL-encoded `%2B`) become `[number]`. Error codes
/// (Twilio's five-digit `21211`, HTTP statuses) stay readable.
pub fn redact_personal(text: &str) -> String {
    let text = text.replace("%2B", "+").replace("%2b", "+");
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if let Some(at) = word.find('@')
            && at > 0
            && word[at + 1..].contains('.')
        {
            // Keep surrounding punctuation readable: `<a@b.c>,` → `<[address]>,`.
            let start = word.find(|c: char| c.is_alphanumeric()).unwrap_or(0);
            let end = word.rfind(|c: char| c.is_alphanumeric()).map_or(word.len(), |e| e + 1);
            out.push_str(&word[..start]);
            out.push_str("[address]");
            out.push_str(&word[end.max(start)..]);
        } else {
            out.push_str(word);
        }
    }
    mask_numbers(&out)
}

fn mask_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let joins = |c: char| matches!(c, ' ' | '-' | '.' | '(' | ')' | '+');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() || (chars[i] == '+' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // The longest run of digits and joining characters from here.
            let mut j = i;
            let mut digits = 0;
            let mut last_digit = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || joins(chars[j])) {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    last_digit = j;
                }
                j += 1;
            }
            if digits >= 6 {
                out.push_str("[number]");
                i = last_digit + 1;
                continue;
            }
            out.extend(&chars[i..=last_digit]);
            i = last_digit + 1;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
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
    /// `SEND_BATCH_SIZE` (1-100, default 25): recipients per campaign send job. A job claims
    /// them in one statement, calls the provider for them concurrently and records their
    /// outcomes in one statement; never more than the channel's per-second cap, so a job
    /// does not hold claims while it waits for the cap.
    pub send_batch: usize,
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
            send_batch: match number(&get, "SEND_BATCH_SIZE", 25usize)? {
                n @ 1..=100 => n,
                n => {
                    return Err(SettingsError {
                        name: "SEND_BATCH_SIZE",
                        reason: format!("{n} is not between 1 and 100"),
                    });
                }
            },
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
    /// Outgoing webhooks' HTTP client and settings (`WEBHOOK_*`).
    pub webhooks: Arc<crate::webhooks::sender::Sender>,
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
            webhooks: Arc::new(crate::webhooks::sender::Sender::from_lookup(&get)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_transport_failure_keeps_its_cause_chain() {
        fibonacco_platform::install_tls_provider();
        let err =
            reqwest::Client::new().get("http://127.0.0.1:1/v1/PhoneNumbers/+15551234567").send().await.unwrap_err();
        let e = ProviderError::from_reqwest("twilio", err);
        assert!(matches!(e, ProviderError::Retryable { .. }), "{e}");
        let mut chain = Vec::new();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            chain.push(c.to_string());
            cause = c.source();
        }
        assert!(chain.len() >= 2, "the HTTP client's error and what it wraps: {chain:?}");
        assert!(chain.iter().all(|c| !c.contains("5551234567")), "the kept cause drops the URL: {chain:?}");
        assert!(!e.to_string().contains("5551234567"), "{e}");
    }

    #[test]
    fn provider_reasons_keep_no_numbers_or_addresses() {
        let twilio = r#"{"code": 21211, "message": "The 'To' number +1 (555) 123-4567 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;
        let e = ProviderError::from_status("twilio", 400, twilio);
        let text = e.to_string();
        assert!(!text.contains("4567") && !text.contains("555"), "{text}");
        assert!(text.contains("21211") && text.contains("[number]") && text.contains("HTTP 400"), "{text}");
        let ses = "MessageRejected: Email address is not verified. The following identities failed the check in region US-EAST-1: <Bob.Smith@example.com>, ann@shop.co.uk";
        let text = ProviderError::from_status("ses", 400, ses).to_string();
        assert!(!text.contains("Bob.Smith") && !text.contains("ann@"), "{text}");
        assert!(text.contains("<[address]>,") && text.contains("US-EAST-1"), "{text}");
        assert_eq!(
            redact_personal("/v1/PhoneNumbers/%2B15551234567?Type=carrier"),
            "/v1/PhoneNumbers/[number]?Type=carrier"
        );
        assert_eq!(redact_personal("HTTP 503 after 30 s"), "HTTP 503 after 30 s");
    }
}
