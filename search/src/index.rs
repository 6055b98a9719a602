//! Rebuilding the knowledge vectors from Postgres, the source of truth
//! (`fibonacco search reindex`): every entry, in batches, across tenants.

use fibonacco_platform::{TenantId, db};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    chunk,
    embed::{Embedder, pgvector_literal},
    store::{Point, Source, StoreError, VectorMeta, VectorStore},
    vectors::Dims,
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReindexStats {
    pub total: u64,
    pub embedded: u64,
    /// Published articles embedded (not counted in `total`).
    pub articles: u64,
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
    #[error("{model} made a {got}-dimensional vector; it announces {expected}")]
    Dimensions { model: String, got: usize, expected: usize },
    #[error("{model} makes {got}-dimensional vectors; pgvector indexes at most {}", crate::vectors::MAX_DIMENSIONS)]
    Unindexable { model: String, got: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

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

/// Embeds each entry's texts (chunk 0 and the sections of long content, see [`chunk`]) in
/// one call to the embedder; the vectors come back grouped per entry.
pub async fn embed_entries(
    embedder: &dyn Embedder,
    entries: &[(String, String)],
) -> Result<Vec<Vec<Vec<f32>>>, IndexError> {
    let expected = indexable(embedder)?.get();
    let per_entry: Vec<Vec<String>> = entries.iter().map(|(t, c)| chunk::entry_texts(t, c)).collect();
    let flat: Vec<String> = per_entry.iter().flatten().cloned().collect();
    let mut vectors = embedder.embed(&flat).await?.into_iter();
    if let Some(bad) = vectors.as_slice().iter().find(|v| v.len() != expected) {
        return Err(IndexError::Dimensions { model: embedder.model().to_owned(), got: bad.len(), expected });
    }
    if vectors.len() != flat.len() {
        return Err(crate::EmbedError::Rejected(format!("{} vectors for {} texts", vectors.len(), flat.len())).into());
    }
    Ok(per_entry.iter().map(|texts| vectors.by_ref().take(texts.len()).collect()).collect())
}

/// The embedder's vector size, if pgvector can index it.
fn indexable(embedder: &dyn Embedder) -> Result<Dims, IndexError> {
    Dims::new(embedder.dimensions())
        .ok_or_else(|| IndexError::Unindexable { model: embedder.model().to_owned(), got: embedder.dimensions() })
}

/// The size of `vectors` (all one model's), with its indexes in place; `None` for a size
/// pgvector cannot index, which [`embed_entries`] never hands out.
async fn prepare(conn: &mut PgConnection, vectors: &[Vec<f32>], tables: &[&str]) -> Result<Option<Dims>, sqlx::Error> {
    let Some(dims) = vectors.first().and_then(|v| Dims::new(v.len())) else { return Ok(None) };
    crate::vectors::ensure_indexes(conn, dims, tables).await?;
    Ok(Some(dims))
}

/// One point per vector (chunk 0 first), for an external store.
fn points(source: Source, id: Uuid, model: &str, vectors: &[Vec<f32>], meta: &VectorMeta) -> Vec<Point> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            source,
            entry: id,
            chunk: i as i32,
            model: model.to_owned(),
            vector: v.clone(),
            meta: meta.clone(),
        })
        .collect()
}

/// The filterable fields of an entry, copied into an external store's payload.
#[derive(sqlx::FromRow)]
struct MetaRow {
    is_public: bool,
    category: Option<String>,
    subcategory: Option<String>,
    tags: Vec<String>,
    industry_codes: Vec<String>,
    allowed_agents: Vec<String>,
    validation_status: String,
}

/// Stores an entry's vectors (chunk 0 on its row, the sections in `knowledge_chunks`),
/// unless its text changed since it was read. Returns the points for an external store,
/// or `None` when the entry changed or is gone (it is pending again for the next sweep).
#[allow(clippy::too_many_arguments)]
pub async fn store_entry(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    title: &str,
    content: &str,
    vectors: &[Vec<f32>],
    model: &str,
) -> Result<Option<Vec<Point>>, sqlx::Error> {
    let Some(first) = vectors.first() else { return Ok(None) };
    if prepare(conn, vectors, &["knowledge_base", "knowledge_chunks"]).await?.is_none() {
        return Ok(None);
    }
    if !store_knowledge_vector(&mut *conn, tenant, id, first, model, title, content).await? {
        return Ok(None);
    }
    sqlx::query("delete from knowledge_chunks where knowledge_id = $1").bind(id).execute(&mut *conn).await?;
    let sections = chunk::sections(content);
    for (i, (section, vector)) in sections.iter().zip(&vectors[1..]).enumerate() {
        sqlx::query(
            "insert into knowledge_chunks (knowledge_id, chunk_index, tenant_id, content, embedding, embedding_model)
             values ($1, $2, $3, $4, $5::text::vector, $6)",
        )
        .bind(id)
        .bind(i as i32 + 1)
        .bind(tenant)
        .bind(section)
        .bind(pgvector_literal(vector))
        .bind(model)
        .execute(&mut *conn)
        .await?;
    }
    let row: MetaRow = sqlx::query_as(
        "select is_public, category, subcategory, tags, industry_codes, allowed_agents, validation_status
         from knowledge_base where id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let meta = VectorMeta {
        tenant,
        is_public: row.is_public,
        category: row.category,
        subcategory: row.subcategory,
        tags: row.tags,
        industry_codes: row.industry_codes,
        allowed_agents: row.allowed_agents,
        validation_status: row.validation_status,
    };
    Ok(Some(points(Source::Knowledge, id, model, vectors, &meta)))
}

/// The text of an article that its vectors stand for (after its title): the excerpt,
/// then the body.
pub fn article_content(excerpt: Option<&str>, body: &str) -> String {
    match excerpt.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => format!("{e}\n\n{body}"),
        None => body.to_owned(),
    }
}

/// Stores a published article's vectors (chunk 0 its opening, 1.. its sections) unless
/// it changed or was unpublished since it was read. Returns the points for an external
/// store, or `None` (nothing written).
#[allow(clippy::too_many_arguments)]
pub async fn store_article(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    title: &str,
    excerpt: Option<&str>,
    body: &str,
    vectors: &[Vec<f32>],
    model: &str,
) -> Result<Option<Vec<Point>>, sqlx::Error> {
    // `source_md5` is the digest of the text embedded, as the sweep recomputes it.
    let current: Option<(Option<String>, Vec<String>, String)> = sqlx::query_as(
        "select category, tags, md5(title || coalesce(excerpt, '') || body) from articles
         where tenant_id = $1 and id = $2 and status = 'published' and title = $3
           and coalesce(excerpt, '') = $4 and body = $5
         for update",
    )
    .bind(tenant)
    .bind(id)
    .bind(title)
    .bind(excerpt.unwrap_or(""))
    .bind(body)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((category, tags, digest)) = current else { return Ok(None) };
    if prepare(conn, vectors, &["article_chunks"]).await?.is_none() {
        return Ok(None);
    }
    sqlx::query("delete from article_chunks where article_id = $1").bind(id).execute(&mut *conn).await?;
    let texts = chunk::entry_texts(title, &article_content(excerpt, body));
    for (i, (text, vector)) in texts.iter().zip(vectors).enumerate() {
        sqlx::query(
            "insert into article_chunks (article_id, chunk_index, tenant_id, content, embedding, embedding_model, source_md5)
             values ($1, $2, $3, $4, $5::text::vector, $6, $7)",
        )
        .bind(id)
        .bind(i as i32)
        .bind(tenant)
        // What a reader sees as the matching section: the text without the title prefix.
        .bind(text.split_once("\n\n").map_or(text.as_str(), |(_, rest)| rest))
        .bind(pgvector_literal(vector))
        .bind(model)
        .bind(&digest)
        .execute(&mut *conn)
        .await?;
    }
    let meta = VectorMeta {
        tenant,
        is_public: false,
        category,
        subcategory: None,
        tags,
        industry_codes: Vec::new(),
        allowed_agents: Vec::new(),
        validation_status: String::new(),
    };
    Ok(Some(points(Source::Article, id, model, vectors, &meta)))
}

/// Removes an article's vectors from Postgres (an unpublished article is not searched).
pub async fn remove_article(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("delete from article_chunks where tenant_id = $1 and article_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected())
}

/// Published articles whose vectors are missing or stale, and unpublished ones that still
/// have vectors: what the embedding sweep queues.
pub async fn articles_needing_embedding(conn: &mut PgConnection, limit: i64) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "select a.tenant_id, a.id from articles a
         left join article_chunks c on c.article_id = a.id and c.chunk_index = 0
         where (a.status = 'published'
                and (c.article_id is null or c.source_md5 <> md5(a.title || coalesce(a.excerpt, '') || a.body)))
            or (a.status <> 'published' and c.article_id is not null)
         order by a.updated_at limit $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One row to re-embed: a knowledge entry (no excerpt; `body` is its content) or a
/// published article.
#[derive(sqlx::FromRow)]
struct IndexRow {
    id: Uuid,
    tenant_id: Uuid,
    title: String,
    excerpt: Option<String>,
    body: String,
}

/// Re-embeds the next `batch` rows of `source` after `after`; returns the last id, or
/// `None` when there are no more.
async fn reindex_batch(
    pool: &PgPool,
    embedder: &dyn Embedder,
    store: &dyn VectorStore,
    source: Source,
    after: Uuid,
    batch: i64,
    stats: &mut ReindexStats,
) -> Result<Option<Uuid>, IndexError> {
    let sql = match source {
        Source::Knowledge => {
            "select id, tenant_id, title, null::text as excerpt, content as body from knowledge_base
             where id > $1 order by id limit $2"
        }
        Source::Article => {
            "select id, tenant_id, title, excerpt, body from articles
             where status = 'published' and id > $1 order by id limit $2"
        }
    };
    let mut tx = db::begin_system(pool).await?;
    let rows: Vec<IndexRow> = sqlx::query_as(sql).bind(after).bind(batch).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let Some(last) = rows.last().map(|r| r.id) else { return Ok(None) };
    let texts: Vec<(String, String)> = rows
        .iter()
        .map(|r| match source {
            Source::Knowledge => (r.title.clone(), r.body.clone()),
            Source::Article => (r.title.clone(), article_content(r.excerpt.as_deref(), &r.body)),
        })
        .collect();
    let vectors = embed_entries(embedder, &texts).await?;
    let model = embedder.model();
    let mut tx = db::begin_system(pool).await?;
    let mut external = Vec::new();
    for (r, vectors) in rows.iter().zip(vectors) {
        let tenant = TenantId::from_uuid(r.tenant_id);
        let stored = match source {
            Source::Knowledge => store_entry(&mut tx, tenant, r.id, &r.title, &r.body, &vectors, model).await?,
            Source::Article => {
                store_article(&mut tx, tenant, r.id, &r.title, r.excerpt.as_deref(), &r.body, &vectors, model).await?
            }
        };
        match (stored, source) {
            (Some(points), Source::Knowledge) => {
                stats.embedded += 1;
                external.push((r.id, points));
            }
            (Some(points), Source::Article) => {
                stats.articles += 1;
                external.push((r.id, points));
            }
            (None, _) => stats.changed_meanwhile += 1,
        }
    }
    tx.commit().await?;
    for (id, points) in &external {
        store.replace(*id, points).await?;
    }
    Ok(Some(last))
}

/// Re-embeds every knowledge entry, then every published article, with `embedder`,
/// `batch` at a time, writing Postgres
/// and, for an external store, the store; `progress` is called after each batch with
/// (done, total). An external store's collection for the model is dropped first and
/// rebuilt, so nothing deleted from Postgres survives in it (searches meanwhile see the
/// entries indexed so far).
#[tracing::instrument(name = "search.reindex", skip_all, fields(model = embedder.model(), store = store.name()))]
pub async fn reindex(
    pool: &PgPool,
    embedder: &dyn Embedder,
    store: &dyn VectorStore,
    batch: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReindexStats, IndexError> {
    indexable(embedder)?;
    let batch = batch.clamp(1, 512) as i64;
    let mut tx = db::begin_system(pool).await?;
    let total: i64 = sqlx::query_scalar("select count(*) from knowledge_base").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    let mut stats = ReindexStats { total: total as u64, ..Default::default() };
    store.reset(embedder.model()).await?;
    for source in [Source::Knowledge, Source::Article] {
        let mut after = Uuid::nil();
        while let Some(last) = reindex_batch(pool, embedder, store, source, after, batch, &mut stats).await? {
            after = last;
            progress(stats.embedded + stats.changed_meanwhile, stats.total);
        }
    }
    Ok(stats)
}
