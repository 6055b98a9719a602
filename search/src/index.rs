//! Rebuilding the knowledge vectors from Postgres, the source of truth
//! (`fibonacco search reindex`): every entry, in batches, across tenants.

use fibonacco_platform::{TenantId, db};
use sqlx::{PgConnection, PgPool};
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

/// Stores an entry's vector and model, marking it completed, but only if its title and
/// content are still the text the vector was made from (an edit meanwhile left it pending
/// for the next sweep). Returns whether it was stored.
pub async fn store_knowledge_vector(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    vector: &[f32],
    model: &str,
    title: &str,
    content: &str,
) -> Result<bool, sqlx::Error> {
    let written = sqlx::query(
        "update knowledge_base set embedding = $3::text::vector, embedding_model = $4,
            embedding_status = 'completed', embedded_at = now()
         where tenant_id = $1 and id = $2 and title = $5 and content = $6",
    )
    .bind(tenant)
    .bind(id)
    .bind(pgvector_literal(vector))
    .bind(model)
    .bind(title)
    .bind(content)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(written == 1)
}

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
        let rows: Vec<(Uuid, Uuid, String, String)> = sqlx::query_as(
            "select id, tenant_id, title, content from knowledge_base where id > $1 order by id limit $2",
        )
        .bind(after)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(last) = rows.last().map(|r| r.0) else { break };
        let texts: Vec<String> = rows.iter().map(|(_, _, t, c)| knowledge_text(t, c)).collect();
        let vectors = embedder.embed(&texts).await?;
        let mut tx = db::begin_system(pool).await?;
        for ((id, tenant, title, content), vector) in rows.iter().zip(vectors) {
            let tenant = TenantId::from_uuid(*tenant);
            let written =
                store_knowledge_vector(&mut tx, tenant, *id, &vector, embedder.model(), title, content).await?;
            if written {
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
