//! Embedders behind one trait: the local sentence-transformers model run with candle
//! ([`local::MiniLm`]) and any OpenAI-compatible embeddings endpoint ([`remote::Remote`]).
//!
//! Every vector carries the model name and its dimensions, so vectors from two models
//! are never mixed in one index.

pub mod local;
pub mod remote;

use std::{future::Future, pin::Pin};

/// One text's vector and the model that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub model: String,
    pub vector: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model files are missing or unreadable (a set-up problem, not a retry).
    #[error("embedding model unavailable: {0}")]
    ModelUnavailable(String),
    /// The input cannot be embedded as given.
    #[error("cannot embed this input: {0}")]
    BadInput(String),
    /// A remote embedder failed in a way that may heal (5xx, 429, timeout).
    #[error("embedding service unavailable: {0}")]
    Unavailable(String),
    /// A remote embedder refused the request (4xx) or answered nonsense.
    #[error("embedding service rejected the request: {0}")]
    Rejected(String),
}

pub type EmbedFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'a>>;

/// Turns texts into unit-length vectors of `dimensions()` floats, in input order.
pub trait Embedder: Send + Sync {
    /// A stable name stored next to every vector (e.g. `all-MiniLM-L6-v2`).
    fn model(&self) -> &str;
    fn dimensions(&self) -> usize;
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a>;
}

/// Cosine similarity of two vectors (plain dot product for unit vectors, but safe for any).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

/// The embedder this deployment uses: a remote OpenAI-compatible endpoint when
/// `EMBEDDING_BASE_URL` is set, else the local MiniLM from `EMBEDDING_MODEL_DIR` (default
/// `models/all-MiniLM-L6-v2`, fetched by `scripts/models.sh`) on the engine
/// `EMBEDDING_RUNTIME` names (default: ONNX Runtime when present, else candle).
pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<std::sync::Arc<dyn Embedder>, EmbedError> {
    if let Some(settings) = remote::RemoteSettings::from_lookup(&get)? {
        return Ok(std::sync::Arc::new(remote::Remote::new(settings)));
    }
    let dir = get("EMBEDDING_MODEL_DIR")
        .filter(|d| !d.trim().is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(local::MiniLm::default_dir);
    let choice = local::RuntimeChoice::parse(get("EMBEDDING_RUNTIME").as_deref())?;
    let library = local::default_library(&dir, &get);
    let model = local::MiniLm::load_with(&dir, choice, &library)?;
    tracing::info!(runtime = model.runtime().as_str(), "local embedding model loaded");
    Ok(std::sync::Arc::new(model))
}

/// The vector size the configured embedder makes (without loading a local model): what a
/// Qdrant collection is created for.
pub fn configured_dimensions(get: impl Fn(&str) -> Option<String>) -> Result<usize, EmbedError> {
    Ok(remote::RemoteSettings::from_lookup(&get)?.map_or(local::DIMENSIONS, |s| s.dimensions))
}

/// The text of a knowledge entry that its vector stands for.
pub fn knowledge_text(title: &str, content: &str) -> String {
    format!("{title}\n\n{content}")
}

/// pgvector's text form (`[0.1,0.2,…]`), bound as text and cast with `::vector`.
pub fn pgvector_literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 11 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}
