//! ElevenLabs text-to-speech: `POST /v1/text-to-speech/{voice_id}` answers with MP3 bytes.

use std::time::Duration;

use bytes::Bytes;
use fibonacco_platform::config::Secret;

use super::ProviderError;

const PROVIDER: &str = "ElevenLabs";

#[derive(Clone, Debug)]
pub struct ElevenLabsSettings {
    pub api_key: Secret,
    /// `ELEVENLABS_BASE_URL`: `https://api.elevenlabs.io` unless pointed elsewhere.
    pub base_url: String,
    /// `ELEVENLABS_MODEL`: used when a request names no model.
    pub default_model: String,
}

impl ElevenLabsSettings {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Option<Self> {
        let v = |k: &str| get(k).filter(|s| !s.trim().is_empty());
        Some(Self {
            api_key: Secret::new(v("ELEVENLABS_API_KEY")?),
            base_url: v("ELEVENLABS_BASE_URL")
                .unwrap_or_else(|| "https://api.elevenlabs.io".into())
                .trim_end_matches('/')
                .into(),
            default_model: v("ELEVENLABS_MODEL").unwrap_or_else(|| "eleven_multilingual_v2".into()),
        })
    }
}

pub struct ElevenLabs {
    settings: ElevenLabsSettings,
    http: reqwest::Client,
}

impl ElevenLabs {
    pub fn new(settings: ElevenLabsSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { settings, http }
    }

    /// Speaks `text` with `voice_id`; returns the audio (MP3).
    #[tracing::instrument(name = "elevenlabs.tts", skip(self, text), fields(chars = text.chars().count()))]
    pub async fn synthesize(&self, voice_id: &str, model: Option<&str>, text: &str) -> Result<Bytes, ProviderError> {
        // The voice id lands in the path: refuse anything that could change it.
        if voice_id.is_empty() || !voice_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(ProviderError::Rejected {
                provider: PROVIDER,
                reason: "voice id has unexpected characters".into(),
                source: None,
            });
        }
        let url = format!("{}/v1/text-to-speech/{voice_id}", self.settings.base_url);
        let body = serde_json::json!({
            "text": text,
            "model_id": model.unwrap_or(&self.settings.default_model),
        });
        let res = self
            .http
            .post(url)
            .header("xi-api-key", self.settings.api_key.expose())
            .header(reqwest::header::ACCEPT, "audio/mpeg")
            .json(&body)
            .send()
            .await
            .map_err(|e| ProviderError::from_reqwest(PROVIDER, e))?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(ProviderError::from_status(PROVIDER, status.as_u16(), &text));
        }
        let audio = res.bytes().await.map_err(|e| ProviderError::from_reqwest(PROVIDER, e))?;
        if audio.is_empty() {
            return Err(ProviderError::Retryable { provider: PROVIDER, reason: "empty audio".into(), source: None });
        }
        Ok(audio)
    }
}
