//! AWS SES v2 `SendEmail` with a raw MIME message (so campaigns carry `List-Unsubscribe`
//! headers), through the official SDK. Endpoint, region and credentials come from the
//! environment; tests point the endpoint at moto's emulator, which takes the same calls.

use std::time::Duration;

use aws_sdk_sesv2::{
    Client,
    config::{BehaviorVersion, Credentials, Region, retry::RetryConfig, timeout::TimeoutConfig},
    error::SdkError,
    primitives::Blob,
    types::{Destination, EmailContent, RawMessage},
};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::ProviderError;

const PROVIDER: &str = "SES";

#[derive(Clone)]
pub struct SesSettings {
    /// `SES_ENDPOINT` (or `AWS_ENDPOINT_URL_SESV2`, `AWS_ENDPOINT_URL`); unset = AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for SesSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesSettings").field("endpoint", &self.endpoint).field("region", &self.region).finish()
    }
}

impl SesSettings {
    /// `None` when no AWS credentials are configured.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Option<Self> {
        let v = |k: &str| get(k).filter(|s| !s.trim().is_empty());
        Some(Self {
            endpoint: v("SES_ENDPOINT").or_else(|| v("AWS_ENDPOINT_URL_SESV2")).or_else(|| v("AWS_ENDPOINT_URL")),
            region: v("AWS_REGION").or_else(|| v("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
            access_key_id: v("AWS_ACCESS_KEY_ID")?,
            secret_access_key: v("AWS_SECRET_ACCESS_KEY")?,
            session_token: v("AWS_SESSION_TOKEN"),
        })
    }
}

/// One e-mail ready to go: a complete MIME message and its envelope.
pub struct OutgoingEmail<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub mime: Vec<u8>,
}

pub struct Ses {
    client: Client,
}

impl Ses {
    pub fn new(settings: SesSettings) -> Self {
        let http =
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
        let mut builder = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region))
            .credentials_provider(Credentials::new(
                settings.access_key_id,
                settings.secret_access_key,
                settings.session_token,
                None,
                "fibonacco-env",
            ))
            .http_client(http)
            // The job queue owns retries (with backoff and failed_jobs); the SDK tries once.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(endpoint) = settings.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self { client: Client::from_conf(builder.build()) }
    }

    /// Sends one message and returns SES's message id.
    #[tracing::instrument(name = "ses.send_email", skip_all)]
    pub async fn send(&self, email: OutgoingEmail<'_>) -> Result<String, ProviderError> {
        let raw = RawMessage::builder().data(Blob::new(email.mime)).build().map_err(|e| ProviderError::Rejected {
            provider: PROVIDER,
            reason: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        })?;
        let out = self
            .client
            .send_email()
            .from_email_address(email.from)
            .destination(Destination::builder().to_addresses(email.to).build())
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .map_err(classify)?;
        out.message_id.ok_or_else(|| ProviderError::Ambiguous {
            provider: PROVIDER,
            reason: "SES answered without a message id".into(),
            source: None,
        })
    }
}

fn classify<E: std::error::Error + Send + Sync + 'static>(
    e: SdkError<E, aws_sdk_sesv2::config::http::HttpResponse>,
) -> ProviderError {
    if let SdkError::ServiceError(service) = &e {
        let status = service.raw().status().as_u16();
        let body = service.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
        let detail = aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string();
        return ProviderError::from_status(PROVIDER, status, if body.is_empty() { &detail } else { &body });
    }
    let reason = super::redact_personal(&aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string());
    let construction = matches!(e, SdkError::ConstructionFailure(_));
    // A request that never reached SES (no connection) may be retried.
    let unsent = matches!(e, SdkError::DispatchFailure(_)) && never_connected(&e);
    let source: Option<super::Cause> = Some(std::sync::Arc::new(e));
    if construction {
        ProviderError::Rejected { provider: PROVIDER, reason, source }
    } else if unsent {
        ProviderError::Retryable { provider: PROVIDER, reason, source }
    } else {
        // A timeout, a dropped connection or an unreadable response: SES may have sent it.
        ProviderError::Ambiguous { provider: PROVIDER, reason, source }
    }
}

/// Whether the error's cause is a connection that was never made (refused, unreachable,
/// no route, or the connect timeout): then nothing was sent.
fn never_connected(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable)
        {
            return true;
        }
        let text = err.to_string();
        if text.contains("Connection refused") || text.contains("connect timeout") || text.contains("dns error") {
            return true;
        }
        cause = err.source();
    }
    false
}
