//! The search crate's one test binary: the local embedder against sentence-transformers,
//! and `/api/v1/search` over the real stack (pgvector and the Qdrant engine).

mod qdrant_engine;
mod queries;
mod remote;
mod retrieval;
mod similarity;
mod support;
