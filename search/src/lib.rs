//! The search service: turning text into vectors (embedders) and, on top, the vector
//! stores and ranking. It depends on the platform kernel only, never on the API crate.

pub mod embed;
pub mod index;
pub mod knowledge;
pub mod rank;

pub use embed::{EmbedError, Embedder, Embedding};
