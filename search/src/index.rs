//! Rebuilding the knowledge vectors from Postgres, the source of truth
//! (`fibonacco search reindex`): every entry, in batches, across tenants.

use fibonacco_platform::db;
use sqlx::PgPool;
use uuid::Uuid;

use crate::embed::{Embedder, knowledge_text, pgvector_literal};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReindexStats {
    pub total: u64,
    pub embedded: u64,
    /// Entries edited while their batch was embedded; they are pending again and the
    /// scheduler's sweep picks them up.
    pub changed_meanwhile: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Embed(#[from] crate::EmbedError),
    #[error("{model} makes {got}-dimensional vectors; the knowledge index holds {expected}")]
    Dimensions { model: String, got: usize, expected: usize },
}

/// The knowledge index's vector size (`knowledge_base.embedding vector(384)`).
pub const KNOWLEDGE_DIMENSIONS: usize = 384;

/// Re-embeds every knowledge entry with `embedder`, `batch` at a time; `progress` is
/// called after each batch with (done, total).
#[tracing::instrument(name = "search.reindex", skip_all, fields(model = embedder.model()))]
pub async fn reindex(
    pool: &PgPool,
    embedder: &dyn Embedder,
    batch: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReindexStats, IndexError> {
    if embedder.dimensions() != KNOWLEDGE_DIMENSIONS {
        return Err(IndexError::Dimensions {
            model: embedder.model().to_owned(),
            got: embedder.dimensions(),
            expected: KNOWLEDGE_DIMENSIONS,
        });
    }
    let batch = batch.clamp(1, 512) as i64;
    let mut tx = db::begin_system(pool).await?;
    let total: i64 = sqlx::query_scalar("select count(*) from knowledge_base").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    let mut stats = ReindexStats { total: total as u64, ..Default::default() };
    let mut after = Uuid::nil();
    loop {
        let mut tx = db::begin_system(pool).await?;
        let rows: Vec<(Uuid, String, String)> =
            sqlx::query_as("select id, title, content from knowledge_base where id > $1 order by id limit $2")
                .bind(after)
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let Some(last) = rows.last().map(|r| r.0) else { break };
        let texts: Vec<String> = rows.iter().map(|(_, t, c)| knowledge_text(t, c)).collect();
        let vectors = embedder.embed(&texts).await?;
        let mut tx = db::begin_system(pool).await?;
        for ((id, title, content), vector) in rows.iter().zip(vectors) {
            let written = sqlx::query(
                "update knowledge_base set embedding = $2::text::vector, embedding_model = $3,
                    embedding_status = 'completed', embedded_at = now()
                 where id = $1 and title = $4 and content = $5",
            )
            .bind(id)
            .bind(pgvector_literal(&vector))
            .bind(embedder.model())
            .bind(title)
            .bind(content)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if written == 1 {
                stats.embedded += 1;
            } else {
                stats.changed_meanwhile += 1;
            }
        }
        tx.commit().await?;
        after = last;
        progress(stats.embedded + stats.changed_meanwhile, stats.total);
    }
    Ok(stats)
}
