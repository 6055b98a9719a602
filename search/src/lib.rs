//! The search service: turning text into vectors (embedders), the vector stores (pgvector,
//! Qdrant), ranking (semantic, keyword, hybrid), and its HTTP surface (`service`), served
//! on its own port by `fibonacco search serve` and mounted by the API. It depends on the
//! platform kernel only, never on the API crate.

pub mod chunk;
pub mod embed;
pub mod index;
pub mod knowledge;
pub mod rank;
pub mod service;
pub mod store;
pub mod usage;

pub use embed::{EmbedError, Embedder, Embedding};
pub use service::SearchService;
pub use store::VectorStore;
