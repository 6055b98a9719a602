//! Any OpenAI-compatible embeddings endpoint (OpenAI, Azure, Ollama, TEI):
//! `POST {base}/embeddings` with `{model, input: [...]}`.

use std::time::Duration;

use fibonacco_platform::config::Secret;
use serde::Deserialize;

use super::{EmbedError, EmbedFuture, Embedder};
use crate::vectors::MAX_DIMENSIONS;

#[derive(Clone, Debug)]
pub struct RemoteSettings {
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub model: String,
    pub dimensions: usize,
}

impl RemoteSettings {
    /// `EMBEDDING_BASE_URL` (required), `EMBEDDING_API_KEY` (else `OPENAI_API_KEY`),
    /// `EMBEDDING_MODEL` (default `text-embedding-3-small`), `EMBEDDING_DIMENSIONS`.
    /// `None` when no base URL is set.
    ///
    /// The index takes the model's own size: OpenAI's models are known (1536 for
    /// `text-embedding-3-small` and `ada-002`, 3072 for `-3-large`); any other model needs
    /// `EMBEDDING_DIMENSIONS`. With it, OpenAI's v3 models are asked for that size (they
    /// shorten their vectors on request). A size pgvector cannot index is refused here,
    /// with the reason, rather than by every embedding job.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, EmbedError> {
        let v = |k: &str| get(k).filter(|s| !s.trim().is_empty());
        let Some(base_url) = v("EMBEDDING_BASE_URL") else { return Ok(None) };
        let model =
            v("EMBEDDING_MODEL").map(|m| m.trim().to_owned()).unwrap_or_else(|| "text-embedding-3-small".into());
        let dimensions = match v("EMBEDDING_DIMENSIONS") {
            Some(d) => d.trim().parse().ok().filter(|d| *d > 0).ok_or_else(|| {
                EmbedError::ModelUnavailable(format!("EMBEDDING_DIMENSIONS `{d}` is not a positive number"))
            })?,
            None => native_dimensions(&model).ok_or_else(|| {
                EmbedError::ModelUnavailable(format!(
                    "the vector size of `{model}` is not known: set EMBEDDING_DIMENSIONS to the size it returns"
                ))
            })?,
        };
        if dimensions > MAX_DIMENSIONS {
            return Err(EmbedError::ModelUnavailable(format!(
                "EMBEDDING_DIMENSIONS is {dimensions}; pgvector indexes at most {MAX_DIMENSIONS} \
                 (OpenAI's text-embedding-3 models return fewer on request)"
            )));
        }
        Ok(Some(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: v("EMBEDDING_API_KEY").or_else(|| v("OPENAI_API_KEY")).map(Secret::new),
            model,
            dimensions,
        }))
    }
}

/// The size OpenAI's embedding models return when not asked for another.
fn native_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

pub struct Remote {
    settings: RemoteSettings,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

impl Remote {
    pub fn new(settings: RemoteSettings) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap_or_default();
        Self { settings, http }
    }

    #[tracing::instrument(name = "embed.remote", skip_all, fields(model = %self.settings.model, texts = texts.len()))]
    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = serde_json::json!({ "model": self.settings.model, "input": texts });
        // Only models that can shorten their output accept `dimensions`; send it when the
        // configured size is not the model's natural one (OpenAI's v3 models).
        if self.settings.model.starts_with("text-embedding-3")
            && native_dimensions(&self.settings.model) != Some(self.settings.dimensions)
        {
            body["dimensions"] = self.settings.dimensions.into();
        }
        let mut req = self.http.post(format!("{}/embeddings", self.settings.base_url)).json(&body);
        if let Some(key) = &self.settings.api_key {
            req = req.bearer_auth(key.expose());
        }
        let res = req.send().await.map_err(|e| EmbedError::Unavailable(e.to_string()))?;
        let status = res.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(EmbedError::Unavailable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(EmbedError::Rejected(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())));
        }
        let answer: Answer = res.json().await.map_err(|e| EmbedError::Rejected(format!("unreadable answer: {e}")))?;
        let mut out = vec![Vec::new(); texts.len()];
        for item in answer.data {
            if item.index >= out.len() || item.embedding.len() != self.settings.dimensions {
                return Err(EmbedError::Rejected(format!(
                    "answer item {} has {} dimensions, expected {}",
                    item.index,
                    item.embedding.len(),
                    self.settings.dimensions
                )));
            }
            out[item.index] = normalise(item.embedding);
        }
        if out.iter().any(Vec::is_empty) {
            return Err(EmbedError::Rejected("the answer is missing some inputs".into()));
        }
        Ok(out)
    }
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

impl Embedder for Remote {
    fn model(&self) -> &str {
        &self.settings.model
    }

    fn dimensions(&self) -> usize {
        self.settings.dimensions
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(self.call(texts))
    }
}
