//! The HTTP side of a delivery: one signed POST, its answer read at most
//! [`RESPONSE_KEPT`] bytes deep, every failure turned into a reason that names no URL.

use std::{sync::Arc, time::Instant};

use chrono::Utc;

use super::{
    WebhookSettings,
    attempts::{Due, Endpoint, Outcome},
    signature::SigningSecret,
    target::{self, PublicResolver},
};

/// How much of a receiver's answer is kept in the delivery log.
pub const RESPONSE_KEPT: usize = 1024;

/// The deliveries' HTTP client (no redirects, the public-only resolver, the timeout).
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    pub settings: WebhookSettings,
}

impl Sender {
    pub fn new(settings: WebhookSettings) -> Result<Self, reqwest::Error> {
        fibonacco_platform::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicResolver { allow_private: settings.allow_private }))
            .user_agent(concat!("Fibonacco-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, settings })
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Ok(Self::new(WebhookSettings::from_lookup(get)?)?)
    }

    /// Posts one delivery. Never fails: what went wrong is the outcome's `error`.
    #[tracing::instrument(name = "webhook.post", skip_all, fields(endpoint = %endpoint.id, delivery = %due.id))]
    pub async fn post(&self, endpoint: &Endpoint, due: &Due) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            status_code: None,
            error: Some(error),
            response: None,
            duration_ms: started.elapsed().as_millis() as i32,
        };
        // Checked again here: the URL may have been saved under another rule, or by SQL.
        let url = match target::parse(&endpoint.url, self.settings.allow_private) {
            Ok(url) => url,
            Err(e) => return failed(format!("the endpoint's URL {e}")),
        };
        let Ok(secret) = SigningSecret::parse(&endpoint.secret) else {
            return failed("the endpoint's signing secret is unreadable".into());
        };
        let timestamp = Utc::now().timestamp();
        let mut signature = secret.sign(&due.event_id, timestamp, due.body.as_bytes());
        // During a rotation the old secret signs too: a receiver still on it verifies.
        if let Some(previous) = endpoint.previous_secret.as_deref().and_then(|s| SigningSecret::parse(s).ok()) {
            signature.push(' ');
            signature.push_str(&previous.sign(&due.event_id, timestamp, due.body.as_bytes()));
        }
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &due.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(due.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return failed(self.describe(e)),
        };
        let status = response.status();
        let mut kept = Vec::new();
        // The rest of a long answer is never read: the connection is dropped instead.
        while kept.len() < RESPONSE_KEPT {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_KEPT - kept.len())]),
                Ok(None) | Err(_) => break,
            }
        }
        let text: String =
            String::from_utf8_lossy(&kept).chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect();
        Outcome {
            status_code: Some(status.as_u16()),
            error: (!status.is_success()).then(|| format!("HTTP {}", status.as_u16())),
            response: (!text.trim().is_empty()).then_some(text),
            duration_ms: started.elapsed().as_millis() as i32,
        }
    }

    fn describe(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("no answer within {} s", self.settings.timeout.as_secs());
        }
        let e = e.without_url();
        let mut text = if e.is_connect() { "could not connect".to_owned() } else { "request failed".to_owned() };
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}
