//! The default store: vectors in Postgres (`knowledge_base.embedding` for an entry's chunk
//! 0, `knowledge_chunks` for the sections of long entries, `article_chunks` for published
//! articles), HNSW cosine indexes, filtered
//! in SQL with iterative index scans so a tenant filter still returns `limit` rows.

use fibonacco_platform::{TenantId, db};
use sqlx::{PgConnection, PgPool, QueryBuilder};
use uuid::Uuid;

use super::{Neighbour, Point, Source, StoreFuture, VectorStore};
use crate::{
    embed::pgvector_literal,
    knowledge::{ARTICLE_SHOWN, ENTRY_SHOWN, Filters, Hit},
    vectors::Dims,
};

/// Transaction-local settings of every vector query:
/// - iterative scans: with a filter, HNSW alone could return fewer than `limit` rows, so
///   the scan keeps walking the graph until enough rows pass (pgvector 0.8);
/// - `ef_search` 200 rather than 40: recall@10 with a tenant filter at 100k vectors goes
///   from about 0.94 to above 0.95 (`fibonacco bench search`);
/// - custom plans: a cached generic plan does not know the tenant or the limit and can
///   pick a filtered exact scan, three times slower than the HNSW index at 100k rows.
pub const QUERY_SETTINGS: &[(&str, &str)] =
    &[("hnsw.iterative_scan", "relaxed_order"), ("hnsw.ef_search", "200"), ("plan_cache_mode", "force_custom_plan")];

#[derive(Clone)]
pub struct PgVector {
    pool: PgPool,
}

impl PgVector {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl VectorStore for PgVector {
    fn name(&self) -> &'static str {
        "pgvector"
    }

    fn in_database(&self) -> bool {
        true
    }

    fn nearest<'a>(
        &'a self,
        tenant: TenantId,
        vector: &'a [f32],
        model: &'a str,
        filters: &'a Filters,
        limit: i64,
    ) -> StoreFuture<'a, Vec<Neighbour>> {
        Box::pin(async move { Ok(nearest(&self.pool, tenant, vector, model, filters, limit).await?) })
    }

    fn replace<'a>(&'a self, _entry: Uuid, _points: &'a [Point]) -> StoreFuture<'a, ()> {
        // The rows the indexer wrote are this store's index.
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, _entries: &'a [Uuid]) -> StoreFuture<'a, ()> {
        // Deleting the entry deletes its vectors and (by cascade) its chunks.
        Box::pin(async { Ok(()) })
    }

    fn reset<'a>(&'a self, _model: &'a str) -> StoreFuture<'a, ()> {
        // The reindex overwrites every row in place; searches keep working throughout.
        Box::pin(async { Ok(()) })
    }
}

async fn nearest(
    pool: &PgPool,
    tenant: TenantId,
    vector: &[f32],
    model: &str,
    f: &Filters,
    limit: i64,
) -> Result<Vec<Neighbour>, sqlx::Error> {
    let mut tx = db::begin_tenant_with(pool, tenant, QUERY_SETTINGS).await?;
    let found = nearest_hits_in(&mut tx, tenant, vector, model, f, limit, Columns::Ids).await?;
    tx.commit().await?;
    Ok(found.into_iter().map(|f| f.neighbour).collect())
}

/// What the vector query reads besides each neighbour's distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// Only which rows are nearest: for a caller that ranks a pool deeper than the page it
    /// shows (hybrid search), or that needs no row at all.
    Ids,
    /// Also what the search shows for each (title, snippet, filters' columns, a section's
    /// text): worth it when about every row returned is shown, as on semantic mode's
    /// first page, where it saves the re-read of the page.
    Shown,
}

/// A neighbour with the row it found when asked ([`Columns::Shown`]): what the search
/// shows for it, read by the vector query itself (the same statement, visibility and
/// filters), so the search needs no second read of its hits.
#[derive(Debug, Clone)]
pub struct Found {
    pub neighbour: Neighbour,
    pub hit: Option<Hit>,
    /// The section's text when the neighbour is a section (chunk > 0) and rows were asked.
    pub chunk_text: Option<String>,
}

#[derive(sqlx::FromRow)]
struct FoundRow {
    source: String,
    chunk: i32,
    /// The cosine similarity (`Hit::score` is not read from rows).
    score: f64,
    chunk_text: Option<String>,
    #[sqlx(flatten)]
    hit: Hit,
}

/// The `limit` nearest vectors of each source the filters allow, each with its row when
/// `columns` asks for it. The caller's transaction must be `tenant`'s and carry
/// [`QUERY_SETTINGS`] (the search runs its vector query, keyword query and any re-read in
/// one transaction).
#[tracing::instrument(name = "search.pgvector.nearest", skip_all, fields(tenant_id = %tenant, limit, columns = ?columns))]
pub async fn nearest_hits_in(
    conn: &mut PgConnection,
    tenant: TenantId,
    vector: &[f32],
    model: &str,
    f: &Filters,
    limit: i64,
    columns: Columns,
) -> Result<Vec<Found>, sqlx::Error> {
    // Vectors of another size cannot be near this one (and no index holds both).
    let Some(dims) = Dims::new(vector.len()) else { return Ok(Vec::new()) };
    let literal = pgvector_literal(vector);
    let cast = dims.cast();
    let shown = columns == Columns::Shown;
    // Without rows, constants of the columns' types keep one row shape (and decoder);
    // they cost nothing to compute or send.
    const NO_ROW: &str = "'', '', null::text, null::text, '{}'::text[], false, false, null::text";
    // An empty first branch types the columns, so each source's branch is a plain
    // `union all` whichever sources the filters ask for. Each branch orders by the indexed
    // expression under the index's predicate (`dims` is a number, not input), and selects
    // what the search shows (as its re-read of an external store's hits does).
    let mut qb = QueryBuilder::new(
        "select source, id, chunk, score, title, snippet, category, subcategory, tags, is_public, shared, chunk_text \
         from (select null::text as source, null::uuid as id, 0 as chunk, 0::float8 as score, null::text as title, \
         null::text as snippet, null::text as category, null::text as subcategory, null::text[] as tags, \
         false as is_public, false as shared, null::text as chunk_text where false",
    );
    // ` union all (select <head>, <score>, <row…>` up to the FROM clause; returns the
    // indexed expression to order by.
    let branch = |qb: &mut QueryBuilder<sqlx::Postgres>, head: &str, column: &str| {
        let expr = dims.expr(column);
        qb.push(format!(" union all (select {head}, 1 - ({expr} <=> "));
        qb.push_bind(literal.clone()).push(format!("{cast})"));
        expr
    };
    // An entry's columns, then the section text (`text`) when rows are asked.
    let entry_row = |qb: &mut QueryBuilder<sqlx::Postgres>, text: &str| {
        if shown {
            qb.push(format!(", {ENTRY_SHOWN}, kb.tenant_id <> "));
            qb.push_bind(tenant).push(format!(", {text}"));
        } else {
            qb.push(format!(", {NO_ROW}"));
        }
    };
    if f.sources.knowledge {
        let expr = branch(&mut qb, "'knowledge', kb.id, 0", "kb.embedding");
        entry_row(&mut qb, "null::text");
        qb.push(format!(" from knowledge_base kb where {} and ", dims.predicate("kb.embedding")));
        qb.push("kb.embedding_model = ").push_bind(model.to_owned());
        crate::knowledge::push_filters(&mut qb, tenant, f);
        qb.push(format!(" order by {expr} <=> "))
            .push_bind(literal.clone())
            .push(format!("{cast} limit "))
            .push_bind(limit);
        qb.push(")");
        let expr = branch(&mut qb, "'knowledge', c.knowledge_id, c.chunk_index", "c.embedding");
        entry_row(&mut qb, "c.content");
        qb.push(format!(
            " from knowledge_chunks c join knowledge_base kb on kb.id = c.knowledge_id where {} and ",
            dims.predicate("c.embedding")
        ));
        qb.push("c.embedding_model = ").push_bind(model.to_owned());
        crate::knowledge::push_filters(&mut qb, tenant, f);
        qb.push(format!(" order by {expr} <=> "))
            .push_bind(literal.clone())
            .push(format!("{cast} limit "))
            .push_bind(limit);
        qb.push(")");
    }
    if f.sources.articles {
        let expr = branch(&mut qb, "'article', ac.article_id, ac.chunk_index", "ac.embedding");
        qb.push(if shown {
            format!(", {ARTICLE_SHOWN}, false, case when ac.chunk_index > 0 then ac.content end")
        } else {
            format!(", {NO_ROW}")
        });
        qb.push(format!(
            " from article_chunks ac join articles a on a.id = ac.article_id where {} and ",
            dims.predicate("ac.embedding")
        ));
        qb.push("ac.embedding_model = ").push_bind(model.to_owned());
        crate::knowledge::push_article_filters(&mut qb, tenant, f);
        qb.push(format!(" order by {expr} <=> ")).push_bind(literal).push(format!("{cast} limit ")).push_bind(limit);
        qb.push(")");
    }
    qb.push(") n");
    let rows: Vec<FoundRow> = qb.build_query_as().fetch_all(conn).await?;
    // relaxed_order may return near-ties slightly out of order; the caller ranks.
    Ok(rows
        .into_iter()
        .filter_map(|FoundRow { source, chunk, score, chunk_text, mut hit }| {
            let source = Source::parse(&source)?;
            hit.source = Some(source);
            Some(Found {
                neighbour: Neighbour { source, entry: hit.id, chunk, score },
                chunk_text: chunk_text.filter(|_| shown && chunk > 0),
                hit: shown.then_some(hit),
            })
        })
        .collect())
}
