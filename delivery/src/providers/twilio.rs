//! Twilio REST (Messages and Calls; form-encoded, basic auth) and the `X-Twilio-Signature`
//! check on the status callbacks Twilio sends back.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha1::Sha1;

use super::ProviderError;
use fibonacco_platform::config::Secret;

const PROVIDER: &str = "Twilio";

#[derive(Clone, Debug)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: Secret,
    /// The number messages and calls come from (`TWILIO_FROM`, or the seed's name for it,
    /// `TWILIO_PHONE_NUMBER`; `TWILIO_FROM` wins when both are set).
    pub from: String,
    /// `TWILIO_BASE_URL`: `https://api.twilio.com` unless pointed elsewhere.
    pub base_url: String,
}

impl TwilioSettings {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Option<Self> {
        let v = |k: &str| get(k).filter(|s| !s.trim().is_empty());
        Some(Self {
            account_sid: v("TWILIO_ACCOUNT_SID")?,
            auth_token: Secret::new(v("TWILIO_AUTH_TOKEN")?),
            from: v("TWILIO_FROM").or_else(|| v("TWILIO_PHONE_NUMBER")).unwrap_or_default(),
            base_url: v("TWILIO_BASE_URL")
                .unwrap_or_else(|| "https://api.twilio.com".into())
                .trim_end_matches('/')
                .into(),
        })
    }
}

pub struct Twilio {
    settings: TwilioSettings,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

impl Twilio {
    pub fn new(settings: TwilioSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { settings, http }
    }

    pub fn auth_token(&self) -> &Secret {
        &self.settings.auth_token
    }

    async fn create(&self, resource: &str, form: &[(&str, &str)]) -> Result<String, ProviderError> {
        if self.settings.from.is_empty() {
            return Err(ProviderError::Rejected {
                provider: PROVIDER,
                reason: "TWILIO_FROM is not set".into(),
                source: None,
            });
        }
        let url =
            format!("{}/2010-04-01/Accounts/{}/{resource}.json", self.settings.base_url, self.settings.account_sid);
        let res = self
            .http
            .post(url)
            .basic_auth(&self.settings.account_sid, Some(self.settings.auth_token.expose()))
            .form(form)
            .send()
            .await
            .map_err(|e| ProviderError::from_reqwest(PROVIDER, e))?;
        let status = res.status();
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            return Err(ProviderError::from_status(PROVIDER, status.as_u16(), &body));
        }
        // A success whose body cannot be read or parsed was still a success at Twilio: the
        // message exists there, so this is ambiguous, never retryable.
        let body = res.text().await.map_err(|e| ProviderError::Ambiguous {
            provider: PROVIDER,
            reason: format!("the answer to a {status} could not be read: {e}"),
            source: Some(std::sync::Arc::new(e)),
        })?;
        serde_json::from_str::<Created>(&body).map(|c| c.sid).map_err(|e| ProviderError::Ambiguous {
            provider: PROVIDER,
            reason: format!("unreadable answer to a {status}: {e}"),
            source: Some(std::sync::Arc::new(e)),
        })
    }

    /// Sends an SMS; returns the message sid.
    #[tracing::instrument(name = "twilio.send_sms", skip_all)]
    pub async fn send_sms(&self, to: &str, body: &str, status_callback: &str) -> Result<String, ProviderError> {
        let from = self.settings.from.clone();
        self.create("Messages", &[("To", to), ("From", &from), ("Body", body), ("StatusCallback", status_callback)])
            .await
    }

    /// Places a call that speaks `twiml`; returns the call sid.
    #[tracing::instrument(name = "twilio.make_call", skip_all)]
    pub async fn make_call(&self, to: &str, twiml: &str, status_callback: &str) -> Result<String, ProviderError> {
        let from = self.settings.from.clone();
        self.create(
            "Calls",
            &[
                ("To", to),
                ("From", &from),
                ("Twiml", twiml),
                ("StatusCallback", status_callback),
                ("StatusCallbackEvent", "completed"),
                ("MachineDetection", "Enable"),
            ],
        )
        .await
    }
}

/// Twilio's request signature: base64 of HMAC-SHA1 over the full URL followed by every
/// POST parameter's name and value, sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = String::from(url);
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `X-Twilio-Signature` in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = signature(auth_token, url, params);
    expected.as_bytes().ct_eq(given.trim().as_bytes()).into()
}

/// The TwiML that reads a script aloud.
pub fn say_twiml(script: &str) -> String {
    let escaped = script.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!("<Response><Say>{escaped}</Say></Response>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_phone_number_setting_names_the_sender_too() {
        let from = |pairs: &[(&str, &str)]| {
            TwilioSettings::from_lookup(&|k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
                .unwrap()
                .from
        };
        let sid = ("TWILIO_ACCOUNT_SID", "AC1");
        let token = ("TWILIO_AUTH_TOKEN", "t");
        let phone = ("TWILIO_PHONE_NUMBER", "+15550001111");
        assert_eq!(from(&[sid, token, phone]), "+15550001111");
        assert_eq!(from(&[sid, token, phone, ("TWILIO_FROM", "+15550002222")]), "+15550002222");
        assert_eq!(from(&[sid, token]), "");
    }

    fn doc_params(caller: &str) -> Vec<(String, String)> {
        // Given out of order on purpose: the signature sorts them.
        [
            ("To", "+18005551212"),
            ("From", caller),
            ("Digits", "1234"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", caller),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    // The worked examples of Twilio's security documentation and its SDKs' test suites.
    #[test]
    fn matches_twilios_documented_examples() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(signature("12345", url, &doc_params("+14158675309")), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let params = doc_params("+14158675310");
        let sig = signature("12345", url, &params);
        assert_eq!(sig, "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert!(verify("12345", url, &params, &sig));
        assert!(!verify("12345", url, &params, "GvWf1cFY/Q7PnoempGyD5oXAezd="));
        assert!(!verify("54321", url, &params, &sig));
    }

    #[test]
    fn twiml_escapes_markup() {
        assert_eq!(say_twiml("a < b & c"), "<Response><Say>a &lt; b &amp; c</Say></Response>");
    }
}

/// A message or call Twilio has on record, as its list endpoints answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub sid: String,
    pub status: String,
    #[serde(default)]
    pub from: Option<String>,
    /// RFC 2822, e.g. `Mon, 30 Nov 2026 11:00:00 +0000`.
    #[serde(default)]
    pub date_created: Option<String>,
    /// Calls only: `machine_start`, `human`, … when detection ran.
    #[serde(default)]
    pub answered_by: Option<String>,
}

impl Record {
    pub fn created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.date_created
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
    }
}

#[derive(Deserialize)]
struct MessagePage {
    #[serde(default)]
    messages: Vec<Record>,
}

#[derive(Deserialize)]
struct CallPage {
    #[serde(default)]
    calls: Vec<Record>,
}

impl Twilio {
    /// The number messages and calls come from.
    pub fn from_number(&self) -> &str {
        &self.settings.from
    }

    /// The latest messages to `to` (newest first), for reconciling a send whose answer was
    /// lost. Not filtered by date at Twilio: a message still queued there has no send date.
    #[tracing::instrument(name = "twilio.find_messages", skip_all)]
    pub async fn find_messages(&self, to: &str) -> Result<Vec<Record>, ProviderError> {
        let page: MessagePage = self.list("Messages", &[("To", to), ("PageSize", "50")]).await?;
        Ok(page.messages)
    }

    /// The latest calls to `to` (newest first).
    #[tracing::instrument(name = "twilio.find_calls", skip_all)]
    pub async fn find_calls(&self, to: &str) -> Result<Vec<Record>, ProviderError> {
        let page: CallPage = self.list("Calls", &[("To", to), ("PageSize", "50")]).await?;
        Ok(page.calls)
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        resource: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ProviderError> {
        let query = serde_urlencoded::to_string(query).map_err(|e| ProviderError::Rejected {
            provider: PROVIDER,
            reason: format!("invalid lookup: {e}"),
            source: Some(std::sync::Arc::new(e)),
        })?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}.json?{query}",
            self.settings.base_url, self.settings.account_sid
        );
        let res = self
            .http
            .get(url)
            .basic_auth(&self.settings.account_sid, Some(self.settings.auth_token.expose()))
            .send()
            .await
            .map_err(|e| ProviderError::from_reqwest(PROVIDER, e))?;
        let status = res.status();
        let body = res.text().await.map_err(|e| ProviderError::from_reqwest(PROVIDER, e))?;
        if !status.is_success() {
            return Err(ProviderError::from_status(PROVIDER, status.as_u16(), &body));
        }
        serde_json::from_str(&body).map_err(|e| ProviderError::Retryable {
            provider: PROVIDER,
            reason: format!("unreadable list: {e}"),
            source: Some(std::sync::Arc::new(e)),
        })
    }
}
