//! Any OpenAI-compatible embeddings endpoint (OpenAI, Azure, Ollama, TEI):
//! `POST {base}/embeddings` with `{model, input: [...]}`.

use std::time::Duration;

use fibonacco_platform::config::Secret;
use serde::Deserialize;

use super::{EmbedError, EmbedFuture, Embedder};
use crate::index::KNOWLEDGE_DIMENSIONS;

#[derive(Clone, Debug)]
pub struct RemoteSettings {
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub model: String,
    pub dimensions: usize,
}

impl RemoteSettings {
    /// `EMBEDDING_BASE_URL` (required), `EMBEDDING_API_KEY` (else `OPENAI_API_KEY`),
    /// `EMBEDDING_MODEL`, `EMBEDDING_DIMENSIONS`. `None` when no base URL is set.
    ///
    /// The knowledge index holds vectors of [`KNOWLEDGE_DIMENSIONS`]; a remote model is
    /// asked for that size (OpenAI's `text-embedding-3-*` shorten their vectors on request)
    /// unless `EMBEDDING_DIMENSIONS` says otherwise, and a size the index cannot hold is
    /// refused here, with the reason, rather than by every embedding job.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, EmbedError> {
        let v = |k: &str| get(k).filter(|s| !s.trim().is_empty());
        let Some(base_url) = v("EMBEDDING_BASE_URL") else { return Ok(None) };
        let dimensions = match v("EMBEDDING_DIMENSIONS") {
            None => KNOWLEDGE_DIMENSIONS,
            Some(d) => d.trim().parse().ok().filter(|d| *d > 0).ok_or_else(|| {
                EmbedError::ModelUnavailable(format!("EMBEDDING_DIMENSIONS `{d}` is not a positive number"))
            })?,
        };
        if dimensions != KNOWLEDGE_DIMENSIONS {
            return Err(EmbedError::ModelUnavailable(format!(
                "EMBEDDING_DIMENSIONS is {dimensions} but the knowledge index holds {KNOWLEDGE_DIMENSIONS}-dimensional vectors: \
                 use a model that can return {KNOWLEDGE_DIMENSIONS} (text-embedding-3-small or -large do on request) or the local embedder"
            )));
        }
        Ok(Some(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: v("EMBEDDING_API_KEY").or_else(|| v("OPENAI_API_KEY")).map(Secret::new),
            model: v("EMBEDDING_MODEL").unwrap_or_else(|| "text-embedding-3-small".into()),
            dimensions,
        }))
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
        if self.settings.model.starts_with("text-embedding-3") {
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
