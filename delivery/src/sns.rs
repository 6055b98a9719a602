//! Amazon SNS messages over HTTP(S), as SES publishes its events through them: parsing,
//! the text SNS signs, where a signing certificate may come from, and the signature check
//! (`SignatureVersion` 1 is RSA-SHA1, 2 is RSA-SHA256, both PKCS#1 v1.5).
//!
//! A valid signature proves only that *some* SNS topic sent the message: anyone with an
//! AWS account can subscribe this endpoint to a topic of their own. So the topic is
//! checked too (`SNS_TOPIC_ARNS`), and a subscription is confirmed only for a listed topic.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::Url;
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm, alg_id, pem::PemObject,
};
use serde::Deserialize;

/// Why a message is refused. Nothing is changed for any of them.
#[derive(Debug, thiserror::Error)]
pub enum SnsError {
    #[error("the body is not an SNS message: {0}")]
    Malformed(String),
    #[error("the signing certificate URL is not an allowed SNS host")]
    CertHost,
    #[error("the signing certificate could not be fetched or read: {0}")]
    Cert(String),
    #[error("the signature does not match the message")]
    Signature,
    #[error("SignatureVersion `{0}` is not 1 or 2")]
    Version(String),
    #[error("the topic is not one this platform subscribed to")]
    Topic,
    #[error("the message is {0} seconds from now, outside the accepted window")]
    Stale(i64),
}

/// What SNS is telling the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SubscriptionConfirmation,
    Notification,
    UnsubscribeConfirmation,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    topic_arn: String,
    message: String,
    timestamp: String,
    signature_version: String,
    signature: String,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: String,
    subject: Option<String>,
    token: Option<String>,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
}

/// A parsed SNS message: every field its type needs is present and the timestamp is a
/// time. Its signature is not checked yet ([`verify`]).
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    pub message_id: String,
    pub topic_arn: String,
    /// The payload: for SES, the event's JSON.
    pub message: String,
    pub timestamp: DateTime<Utc>,
    timestamp_raw: String,
    signature_version: String,
    signature: String,
    pub signing_cert_url: String,
    subject: Option<String>,
    token: Option<String>,
    /// Visiting it confirms a subscription (confirmations only).
    pub subscribe_url: Option<String>,
}

impl Message {
    pub fn parse(body: &[u8]) -> Result<Self, SnsError> {
        let raw: Raw = serde_json::from_slice(body).map_err(|e| SnsError::Malformed(e.to_string()))?;
        let kind = match raw.kind.as_str() {
            "SubscriptionConfirmation" => Kind::SubscriptionConfirmation,
            "Notification" => Kind::Notification,
            "UnsubscribeConfirmation" => Kind::UnsubscribeConfirmation,
            other => return Err(SnsError::Malformed(format!("unknown Type `{}`", other.escape_debug()))),
        };
        if kind != Kind::Notification && (raw.token.is_none() || raw.subscribe_url.is_none()) {
            return Err(SnsError::Malformed("a confirmation needs Token and SubscribeURL".into()));
        }
        let timestamp = DateTime::parse_from_rfc3339(&raw.timestamp)
            .map_err(|_| SnsError::Malformed("Timestamp is not an RFC 3339 time".into()))?
            .with_timezone(&Utc);
        // It becomes a database key: a NUL would fail the whole batch it lands in.
        if raw.message_id.is_empty() || raw.message_id.len() > 200 || raw.message_id.chars().any(char::is_control) {
            return Err(SnsError::Malformed("MessageId is empty, too long or has control characters".into()));
        }
        Ok(Self {
            kind,
            message_id: raw.message_id,
            topic_arn: raw.topic_arn,
            message: raw.message,
            timestamp,
            timestamp_raw: raw.timestamp,
            signature_version: raw.signature_version,
            signature: raw.signature,
            signing_cert_url: raw.signing_cert_url,
            subject: raw.subject,
            token: raw.token,
            subscribe_url: raw.subscribe_url,
        })
    }

    /// The text SNS signs: chosen fields as `name\nvalue\n`, in byte order of the names.
    pub fn string_to_sign(&self) -> String {
        let mut out = String::with_capacity(self.message.len() + 512);
        let mut field = |name: &str, value: &str| {
            out.push_str(name);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        };
        field("Message", &self.message);
        field("MessageId", &self.message_id);
        match self.kind {
            Kind::Notification => {
                if let Some(subject) = &self.subject {
                    field("Subject", subject);
                }
                field("Timestamp", &self.timestamp_raw);
                field("TopicArn", &self.topic_arn);
                field("Type", "Notification");
            }
            Kind::SubscriptionConfirmation | Kind::UnsubscribeConfirmation => {
                field("SubscribeURL", self.subscribe_url.as_deref().unwrap_or_default());
                field("Timestamp", &self.timestamp_raw);
                field("Token", self.token.as_deref().unwrap_or_default());
                field("TopicArn", &self.topic_arn);
                field(
                    "Type",
                    if self.kind == Kind::SubscriptionConfirmation {
                        "SubscriptionConfirmation"
                    } else {
                        "UnsubscribeConfirmation"
                    },
                );
            }
        }
        out
    }
}

/// Whether `url` may be fetched for an SNS purpose (a signing certificate, a subscription
/// confirmation): HTTPS to a host matching one of `patterns`, no user info. A pattern is a
/// host whose `*` stands for one DNS label (`sns.*.amazonaws.com`), optionally with a
/// port; a pattern written `http://host:port` also admits plain HTTP to exactly that host
/// (local tests serve their certificate so).
pub fn url_allowed(url: &str, patterns: &[String]) -> bool {
    let Ok(url) = Url::parse(url) else { return false };
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else { return false };
    patterns.iter().any(|pattern| {
        let (plain_http, pattern) = match pattern.strip_prefix("http://") {
            Some(rest) => (true, rest),
            None => (false, pattern.strip_prefix("https://").unwrap_or(pattern)),
        };
        let scheme_ok = url.scheme() == "https" || (plain_http && url.scheme() == "http");
        let (host_pattern, port) = match pattern.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p.parse::<u16>().ok()),
            _ => (pattern, None),
        };
        scheme_ok && url.port() == port && host_matches(&host, &host_pattern.to_ascii_lowercase())
    })
}

fn host_matches(host: &str, pattern: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let wanted: Vec<&str> = pattern.split('.').collect();
    labels.len() == wanted.len()
        && labels.iter().zip(&wanted).all(|(label, want)| {
            if *want == "*" {
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            } else {
                label == want
            }
        })
}

/// RSA PKCS#1 v1.5 with SHA-1, which SNS's `SignatureVersion` 1 still uses. Only for
/// checking SNS messages: webpki does not offer SHA-1, ring does for legacy use.
#[derive(Debug)]
struct RsaSha1;

impl SignatureVerificationAlgorithm for RsaSha1 {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(message, signature)
        .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        // sha1WithRSAEncryption; only named in errors.
        AlgorithmIdentifier::from_slice(&[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00])
    }
}

/// Checks the message's signature against the certificate (DER) it names.
pub fn verify(message: &Message, cert_der: &[u8]) -> Result<(), SnsError> {
    let algorithm: &dyn SignatureVerificationAlgorithm = match message.signature_version.as_str() {
        "1" => &RsaSha1,
        "2" => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        other => return Err(SnsError::Version(other.chars().take(8).collect())),
    };
    let signature =
        base64::engine::general_purpose::STANDARD.decode(message.signature.trim()).map_err(|_| SnsError::Signature)?;
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| SnsError::Cert(e.to_string()))?;
    cert.verify_signature(algorithm, message.string_to_sign().as_bytes(), &signature).map_err(|_| SnsError::Signature)
}

/// The DER of a PEM certificate (as SNS serves its signing certificates).
pub fn certificate_der(pem: &[u8]) -> Result<Vec<u8>, SnsError> {
    CertificateDer::from_pem_slice(pem)
        .map(|der| der.as_ref().to_vec())
        .map_err(|_| SnsError::Cert("not a PEM certificate".into()))
}

/// Whether the message's time is within `max_age` of `now` (and not from the future by
/// more than a clock's worth of skew): an old message that verifies is a replay.
pub fn check_age(message: &Message, now: DateTime<Utc>, max_age: Duration) -> Result<(), SnsError> {
    let age = (now - message.timestamp).num_seconds();
    if age > max_age.as_secs() as i64 || age < -300 {
        return Err(SnsError::Stale(-age));
    }
    Ok(())
}

/// Fetches what SNS messages point at: signing certificates, cached by URL, and
/// subscription confirmations. SNS names each certificate by a URL that changes when AWS
/// rotates it, so a fetched certificate stays valid for its URL; a failed fetch is
/// remembered for a minute, so a flood of messages naming a bad URL costs one request.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    entries: Mutex<HashMap<String, Entry>>,
    /// Fetches in the current minute: messages naming ever new certificate URLs (on an
    /// allowed host, for a listed topic) cannot make this process fetch without end.
    fetches: Mutex<(Instant, u32)>,
    /// One fetch at a time: requests that miss the cache together wait for the first one's
    /// fetch and then find its certificate, instead of each fetching it.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
enum Entry {
    Good(Arc<[u8]>),
    Bad(Instant, String),
}

/// At most this many certificates are kept (AWS uses a handful per region).
const CACHE_ENTRIES: usize = 64;
/// A PEM certificate is about 2 KiB.
const CERT_MAX_BYTES: usize = 16 * 1024;
const RETRY_BAD_AFTER: Duration = Duration::from_secs(60);
/// Certificate fetches per minute at most (AWS rotates a region's certificate rarely).
const FETCHES_PER_MINUTE: u32 = 10;

impl Default for Client {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            // A redirect could leave the allowed hosts.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            entries: Mutex::new(HashMap::new()),
            fetches: Mutex::new((Instant::now(), 0)),
            fetching: tokio::sync::Mutex::new(()),
        }
    }
}

impl Client {
    /// The certificate (DER) at `url`, which the caller has checked with [`url_allowed`].
    #[tracing::instrument(name = "sns.certificate", skip(self), err)]
    pub async fn certificate(&self, url: &str) -> Result<Arc<[u8]>, SnsError> {
        if let Some(found) = self.cached(url) {
            return found;
        }
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(found) = self.cached(url) {
            return found;
        }
        {
            let mut fetches = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
            if fetches.0.elapsed() >= Duration::from_secs(60) {
                *fetches = (Instant::now(), 0);
            }
            if fetches.1 >= FETCHES_PER_MINUTE {
                return Err(SnsError::Cert("too many certificate fetches this minute; try again".into()));
            }
            fetches.1 += 1;
        }
        let fetched = self.fetch(url).await;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_ENTRIES && !entries.contains_key(url) {
            // Failures go first; then any entry (a needed one is fetched again).
            let victim = entries
                .iter()
                .find(|(_, e)| matches!(e, Entry::Bad(..)))
                .or_else(|| entries.iter().next())
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                entries.remove(&victim);
            }
        }
        match fetched {
            Ok(der) => {
                entries.insert(url.to_owned(), Entry::Good(der.clone()));
                Ok(der)
            }
            Err(why) => {
                entries.insert(url.to_owned(), Entry::Bad(Instant::now(), why.clone()));
                Err(SnsError::Cert(why))
            }
        }
    }

    /// Confirms a subscription by visiting its `SubscribeURL` (checked by the caller with
    /// [`url_allowed`]).
    #[tracing::instrument(name = "sns.confirm", skip_all, err)]
    pub async fn confirm(&self, url: &str) -> Result<(), String> {
        let response =
            self.http.get(url).send().await.map_err(|e| format!("confirmation failed: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("the subscription URL answered {}", response.status()));
        }
        Ok(())
    }

    /// The cache's answer for `url`: a certificate, a recent failure, or nothing yet.
    fn cached(&self, url: &str) -> Option<Result<Arc<[u8]>, SnsError>> {
        match self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(url) {
            Some(Entry::Good(der)) => Some(Ok(der.clone())),
            Some(Entry::Bad(at, why)) if at.elapsed() < RETRY_BAD_AFTER => Some(Err(SnsError::Cert(why.clone()))),
            _ => None,
        }
    }

    async fn fetch(&self, url: &str) -> Result<Arc<[u8]>, String> {
        let response = self.http.get(url).send().await.map_err(|e| format!("request failed: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        // Read in pieces and stop past the bound: a body without a length is not taken whole.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(piece) = response.chunk().await.map_err(|e| format!("reading failed: {}", e.without_url()))? {
            body.extend_from_slice(&piece);
            if body.len() > CERT_MAX_BYTES {
                return Err("the certificate is too large".into());
            }
        }
        let der = certificate_der(&body).map_err(|_| "not a PEM certificate".to_owned())?;
        webpki::EndEntityCert::try_from(&CertificateDer::from(der.as_slice()))
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        Ok(Arc::from(der))
    }
}

/// Signs SNS messages with the test key in `delivery/fixtures` (its certificate is
/// `sns-test-cert.pem`), for the tests and the benchmark. The key is public: it verifies
/// only where that certificate's URL is allow-listed, which no production setting does.
/// ring signs with SHA-256 only, so messages are `SignatureVersion` 2; a version 1
/// message signed by OpenSSL with the same key is the fixture `sns-v1-notification.json`.
pub mod test_signer {
    use base64::Engine;
    use serde_json::{Value, json};

    pub const CERT_PEM: &[u8] = include_bytes!("../fixtures/sns-test-cert.pem");
    pub const V1_NOTIFICATION: &str = include_str!("../fixtures/sns-v1-notification.json");
    const KEY_PKCS8: &[u8] = include_bytes!("../fixtures/sns-test-key.pk8");

    /// A signed SNS message (as SNS would post it) of `kind` with `message` as payload.
    pub fn message(
        kind: &str,
        message_id: &str,
        topic_arn: &str,
        message: &str,
        timestamp: &str,
        cert_url: &str,
    ) -> Value {
        let mut body = json!({
            "Type": kind, "MessageId": message_id, "TopicArn": topic_arn, "Message": message,
            "Timestamp": timestamp, "SignatureVersion": "2", "SigningCertURL": cert_url,
        });
        if kind != "Notification" {
            body["Token"] = json!("token-0123456789");
            body["SubscribeURL"] = json!(format!("{cert_url}?Action=ConfirmSubscription"));
        }
        sign(&mut body);
        body
    }

    /// Signs (or re-signs) `body` in place, as `SignatureVersion` 2.
    pub fn sign(body: &mut Value) {
        body["SignatureVersion"] = json!("2");
        body["Signature"] = json!("");
        let parsed = super::Message::parse(body.to_string().as_bytes()).expect("a well-formed SNS message");
        let key = ring::signature::RsaKeyPair::from_pkcs8(KEY_PKCS8).expect("the fixture key");
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            parsed.string_to_sign().as_bytes(),
            &mut signature,
        )
        .expect("signing");
        body["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(signature));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT_URL: &str = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem";
    const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:ses-events";

    fn cert_der() -> Vec<u8> {
        certificate_der(test_signer::CERT_PEM).unwrap()
    }

    fn signed() -> serde_json::Value {
        test_signer::message(
            "Notification",
            "m-1",
            TOPIC,
            "{\"eventType\":\"Delivery\"}",
            "2026-11-30T12:00:00.000Z",
            CERT_URL,
        )
    }

    #[test]
    fn both_signature_versions_verify_and_any_change_breaks_them() {
        let v1: serde_json::Value = serde_json::from_str(test_signer::V1_NOTIFICATION).unwrap();
        for body in [v1, signed()] {
            let message = Message::parse(body.to_string().as_bytes()).unwrap();
            verify(&message, &cert_der()).unwrap();
            for (field, value) in [
                ("Message", "{\"eventType\":\"Bounce\"}"),
                ("TopicArn", "arn:x"),
                ("MessageId", "m-2"),
                ("Timestamp", "2026-11-30T12:00:01.000Z"),
                ("Subject", "changed"),
            ] {
                let mut forged = body.clone();
                forged[field] = serde_json::json!(value);
                let forged = Message::parse(forged.to_string().as_bytes()).unwrap();
                assert!(
                    matches!(verify(&forged, &cert_der()), Err(SnsError::Signature)),
                    "{field} {}",
                    body["SignatureVersion"]
                );
            }
            // A v1 signature presented as v2 (or the reverse) does not verify either.
            let mut swapped = body.clone();
            swapped["SignatureVersion"] = serde_json::json!(if body["SignatureVersion"] == "1" { "2" } else { "1" });
            assert!(verify(&Message::parse(swapped.to_string().as_bytes()).unwrap(), &cert_der()).is_err());
        }
        let mut v3 = signed();
        v3["SignatureVersion"] = serde_json::json!("3");
        assert!(matches!(
            verify(&Message::parse(v3.to_string().as_bytes()).unwrap(), &cert_der()),
            Err(SnsError::Version(_))
        ));
    }

    #[test]
    fn confirmations_sign_their_token_and_subscribe_url() {
        let body =
            test_signer::message("SubscriptionConfirmation", "m-3", TOPIC, "confirm", "2026-11-30T12:00:00Z", CERT_URL);
        let message = Message::parse(body.to_string().as_bytes()).unwrap();
        assert!(message.string_to_sign().contains("\nToken\ntoken-0123456789\n"));
        verify(&message, &cert_der()).unwrap();
        let mut forged = body.clone();
        forged["SubscribeURL"] = serde_json::json!("https://evil.example/");
        assert!(verify(&Message::parse(forged.to_string().as_bytes()).unwrap(), &cert_der()).is_err());
        let mut nul = body.clone();
        nul["MessageId"] = serde_json::json!("m-\u{0}");
        assert!(matches!(Message::parse(nul.to_string().as_bytes()), Err(SnsError::Malformed(_))));
        let mut missing = body;
        missing.as_object_mut().unwrap().remove("Token");
        assert!(matches!(Message::parse(missing.to_string().as_bytes()), Err(SnsError::Malformed(_))));
    }

    #[test]
    fn certificate_urls_must_be_https_on_an_allowed_host() {
        let defaults = vec!["sns.*.amazonaws.com".to_owned(), "sns.*.amazonaws.com.cn".to_owned()];
        assert!(url_allowed(CERT_URL, &defaults));
        assert!(url_allowed("https://sns.cn-north-1.amazonaws.com.cn/x.pem", &defaults));
        for bad in [
            "http://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.a.b.amazonaws.com/x.pem",
            "https://user@sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
            "https://s3.amazonaws.com/x.pem",
            "not a url",
        ] {
            assert!(!url_allowed(bad, &defaults), "{bad}");
        }
        let local = vec!["http://127.0.0.1:4010".to_owned()];
        assert!(url_allowed("http://127.0.0.1:4010/cert.pem", &local));
        assert!(!url_allowed("http://127.0.0.1:4011/cert.pem", &local));
        assert!(!url_allowed("http://127.0.0.1/cert.pem", &local));
    }

    #[tokio::test]
    async fn certificates_are_fetched_once_and_at_most_ten_a_minute() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        fibonacco_platform::install_tls_provider();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let body = test_signer::CERT_PEM;
                    let head =
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(body).await;
                });
            }
        });
        let client = Client::default();
        let url = |i: usize| format!("http://{addr}/cert-{i}.pem");
        for _ in 0..3 {
            client.certificate(&url(0)).await.unwrap();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "cached after the first fetch");
        for i in 1..FETCHES_PER_MINUTE as usize {
            client.certificate(&url(i)).await.unwrap();
        }
        assert!(matches!(client.certificate(&url(99)).await, Err(SnsError::Cert(_))));
        assert_eq!(hits.load(Ordering::SeqCst), FETCHES_PER_MINUTE as usize, "the eleventh was never requested");
        client.certificate(&url(3)).await.expect("cached ones still serve");
    }

    #[test]
    fn old_and_future_messages_are_stale() {
        let message = Message::parse(signed().to_string().as_bytes()).unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let hour = Duration::from_secs(3600);
        assert!(check_age(&message, at("2026-11-30T12:30:00Z"), hour).is_ok());
        assert!(check_age(&message, at("2026-11-30T11:56:00Z"), hour).is_ok());
        assert!(matches!(check_age(&message, at("2026-11-30T13:00:01Z"), hour), Err(SnsError::Stale(_))));
        assert!(matches!(check_age(&message, at("2026-11-30T11:50:00Z"), hour), Err(SnsError::Stale(_))));
    }
}
