//! The search service: turning text into vectors (embedders), the vector stores (pgvector,
//! Qdrant), ranking (semantic, keyword, hybrid), and its HTTP surface (`service`, with the
//! `http` feature), served on its own port by `fibonacco search serve` and mounted by the
//! API. It depends on the platform kernel only, never on the API crate; without `http` it
//! links no web framework (the delivery workers' embedding jobs use it that way).

pub mod chunk;
pub mod embed;
pub mod index;
pub mod knowledge;
pub mod rank;
#[cfg(feature = "http")]
pub mod service;
pub mod store;
pub mod usage;
pub mod vectors;

pub use embed::{EmbedError, Embedder, Embedding};
#[cfg(feature = "http")]
pub use service::SearchService;
pub use store::VectorStore;
