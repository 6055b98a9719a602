//! Vector stores behind one trait: pgvector (the default; the vectors live in Postgres
//! next to the rows) and Qdrant (an external index kept in step from Postgres).
//!
//! Postgres stays the source of truth either way: vectors are written there first, and an
//! external store holds a copy that `fibonacco search reindex --backend qdrant` can rebuild.

pub mod pgvector;
pub mod qdrant;

use std::{future::Future, pin::Pin};

use fibonacco_platform::TenantId;
use uuid::Uuid;

use crate::knowledge::Filters;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The external store failed or is unreachable.
    #[error("vector store {store}: {reason}")]
    Backend { store: &'static str, reason: String },
}

/// What a vector stands for: a knowledge entry (or FAQ) or a published article.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Knowledge,
    Article,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Knowledge => "knowledge",
            Self::Article => "article",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "knowledge" => Some(Self::Knowledge),
            "article" | "articles" => Some(Self::Article),
            _ => None,
        }
    }
}

/// What a store needs to filter a vector like the rows it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorMeta {
    pub tenant: TenantId,
    pub is_public: bool,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub tags: Vec<String>,
    pub industry_codes: Vec<String>,
    pub allowed_agents: Vec<String>,
    pub validation_status: String,
}

/// One vector: a knowledge entry or article (chunk 0 is its opening) or one of its
/// sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub source: Source,
    pub entry: Uuid,
    pub chunk: i32,
    pub model: String,
    pub vector: Vec<f32>,
    pub meta: VectorMeta,
}

/// A nearest neighbour: the entry or article, which of its chunks matched, and the cosine
/// similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub source: Source,
    pub entry: Uuid,
    pub chunk: i32,
    pub score: f64,
}

/// A searchable copy of the knowledge vectors.
pub trait VectorStore: Send + Sync {
    /// `pgvector` or `qdrant`, for logs and responses.
    fn name(&self) -> &'static str;

    /// Whether the vectors are in the search's own database (pgvector), so the search can
    /// ask for them inside its tenant transaction ([`pgvector::nearest_hits_in`]). An external
    /// store is asked before that transaction opens: no network call while a pooled
    /// connection is held.
    fn in_database(&self) -> bool {
        false
    }

    /// The `limit` nearest chunks visible to `tenant` under `filters` (own entries, plus
    /// other tenants' public ones when the filters allow), best first.
    fn nearest<'a>(
        &'a self,
        tenant: TenantId,
        vector: &'a [f32],
        model: &'a str,
        filters: &'a Filters,
        limit: i64,
    ) -> StoreFuture<'a, Vec<Neighbour>>;

    /// Makes `entry`'s vectors exactly `points` (older chunks beyond them are removed).
    /// pgvector does nothing here: the rows written by the caller are its index.
    fn replace<'a>(&'a self, entry: Uuid, points: &'a [Point]) -> StoreFuture<'a, ()>;

    /// Removes every vector of these entries.
    fn remove<'a>(&'a self, entries: &'a [Uuid]) -> StoreFuture<'a, ()>;

    /// Empties the store for `model` before a rebuild (`fibonacco search reindex`).
    fn reset<'a>(&'a self, model: &'a str) -> StoreFuture<'a, ()>;
}

/// The store this deployment uses: `VECTOR_STORE=pgvector` (default) or `qdrant` (with
/// `QDRANT_URL`).
pub fn from_lookup(
    pool: sqlx::PgPool,
    get: impl Fn(&str) -> Option<String>,
    dimensions: usize,
) -> Result<std::sync::Arc<dyn VectorStore>, StoreError> {
    let invalid = |reason: String| StoreError::Backend { store: "config", reason };
    match get("VECTOR_STORE").filter(|v| !v.trim().is_empty()).as_deref().unwrap_or("pgvector") {
        "pgvector" => Ok(std::sync::Arc::new(pgvector::PgVector::new(pool))),
        "qdrant" => {
            let settings = qdrant::QdrantSettings::from_lookup(&get)
                .map_err(invalid)?
                .ok_or_else(|| invalid("VECTOR_STORE=qdrant needs QDRANT_URL (the gRPC address, port 6334)".into()))?;
            Ok(std::sync::Arc::new(qdrant::QdrantStore::connect(&settings, dimensions)?))
        }
        other => Err(invalid(format!("VECTOR_STORE `{other}` is not pgvector or qdrant"))),
    }
}

/// Best score per entry, keeping the chunk that earned it, best first (ties by id).
pub fn best_per_entry(neighbours: Vec<Neighbour>) -> Vec<Neighbour> {
    let mut best: std::collections::HashMap<Uuid, Neighbour> = std::collections::HashMap::new();
    for n in neighbours {
        best.entry(n.entry)
            .and_modify(|b| {
                if n.score > b.score {
                    *b = n
                }
            })
            .or_insert(n);
    }
    let mut out: Vec<Neighbour> = best.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.entry.cmp(&b.entry)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_ranks_by_its_best_chunk() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let n = |entry, chunk, score| Neighbour { source: Source::Knowledge, entry, chunk, score };
        let out = best_per_entry(vec![n(a, 0, 0.5), n(b, 2, 0.7), n(a, 3, 0.9), n(b, 0, 0.6)]);
        assert_eq!(out, vec![n(a, 3, 0.9), n(b, 2, 0.7)]);
    }
}
