//! The pgvector columns of every embedding model's size. The columns are `vector` without
//! a dimension (migration 23), so switching the embedder never fails a write; each size in
//! use gets its own HNSW index, over the expression `embedding::vector(D)` (`halfvec(D)`
//! past 2,000 dimensions, pgvector's limit for `vector` in HNSW) and partial on
//! `vector_dims(embedding) = D`. Queries spell the same expression and predicate with D as
//! a literal, which is what lets the planner match the partial index.

use sqlx::PgConnection;

/// The largest vector pgvector can index (HNSW on `halfvec`).
pub const MAX_DIMENSIONS: usize = 4000;
/// The largest `vector` (4-byte floats) HNSW takes; above it the index stores halfvec.
const MAX_FULL_PRECISION: usize = 2000;

/// The tables that hold vectors, each with an `embedding` column.
pub const TABLES: [&str; 3] = ["knowledge_base", "knowledge_chunks", "article_chunks"];

/// A vector size the index can hold: 1 to [`MAX_DIMENSIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dims(usize);

impl Dims {
    pub fn new(n: usize) -> Option<Self> {
        (1..=MAX_DIMENSIONS).contains(&n).then_some(Self(n))
    }

    pub fn get(self) -> usize {
        self.0
    }

    fn kind(self) -> &'static str {
        if self.0 > MAX_FULL_PRECISION { "halfvec" } else { "vector" }
    }

    /// `{column}::vector(D)`: the indexed expression.
    pub fn expr(self, column: &str) -> String {
        format!("{column}::{}({})", self.kind(), self.0)
    }

    /// `vector_dims({column}) = D`: the index's predicate, to repeat in every query.
    pub fn predicate(self, column: &str) -> String {
        format!("vector_dims({column}) = {}", self.0)
    }

    /// The cast of a bound pgvector literal (`$n::text`) to the indexed type.
    pub fn cast(self) -> String {
        format!("::text::{}({})", self.kind(), self.0)
    }

    pub fn index_name(self, table: &str) -> String {
        format!("{table}_embedding_{}_idx", self.0)
    }

    /// The HNSW index of `table` for this size.
    pub fn create_index(self, table: &str) -> String {
        format!(
            "create index if not exists {} on {table} using hnsw (({}) {}_cosine_ops) where {}",
            self.index_name(table),
            self.expr("embedding"),
            self.kind(),
            self.predicate("embedding"),
        )
    }
}

/// Creates the HNSW indexes of `tables` for `dims` where they are missing, in the caller's
/// transaction. The first write of a new model's size builds them (on a table holding
/// none of its vectors yet, so it is quick); after that this is one catalog lookup.
#[tracing::instrument(name = "search.vectors.ensure_indexes", skip(conn), fields(dims = dims.get()), err)]
pub async fn ensure_indexes(conn: &mut PgConnection, dims: Dims, tables: &[&str]) -> Result<(), sqlx::Error> {
    let names: Vec<String> = tables.iter().map(|t| dims.index_name(t)).collect();
    let present: i64 = sqlx::query_scalar("select count(*) from pg_class where relkind = 'i' and relname = any($1)")
        .bind(&names)
        .fetch_one(&mut *conn)
        .await?;
    if present as usize == tables.len() {
        return Ok(());
    }
    for table in tables {
        debug_assert!(TABLES.contains(table), "{table} holds no vectors");
        sqlx::query(sqlx::AssertSqlSafe(dims.create_index(table))).execute(&mut *conn).await?;
    }
    tracing::info!(dims = dims.get(), "vector indexes created for a new embedding size");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_two_thousand_are_indexed_as_halfvec_and_past_four_thousand_refused() {
        let small = Dims::new(384).unwrap();
        assert_eq!(small.expr("kb.embedding"), "kb.embedding::vector(384)");
        assert_eq!(small.cast(), "::text::vector(384)");
        assert_eq!(
            small.create_index("knowledge_base"),
            "create index if not exists knowledge_base_embedding_384_idx on knowledge_base using hnsw \
             ((embedding::vector(384)) vector_cosine_ops) where vector_dims(embedding) = 384"
        );
        assert_eq!(Dims::new(3072).unwrap().expr("e"), "e::halfvec(3072)");
        assert_eq!((Dims::new(0), Dims::new(4001)), (None, None));
    }
}
