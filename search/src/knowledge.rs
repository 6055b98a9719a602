//! Search over the knowledge base (entries and FAQs) and the tenant's published articles:
//! semantic (the vector store), keyword (Postgres full text) and hybrid (both, fused by
//! relative scores with a semantic ratio; see [`SemanticRatio`]).
//!
//! Every query runs in the tenant's transaction and filters by tenant explicitly; public
//! entries of other tenants are visible, as the seed intends, and can be excluded.

use std::collections::HashMap;

use fibonacco_platform::{TenantId, db};
use serde::Serialize;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{
    embed::Embedder,
    rank::{Fusion, fuse},
    store::{Source, StoreError, VectorStore, best_per_entry},
};

/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
/// Candidates each ranking contributes before fusion and paging.
const CANDIDATES: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Semantic,
    Keyword,
    Hybrid,
}

impl Mode {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "semantic" => Some(Self::Semantic),
            "keyword" => Some(Self::Keyword),
            "hybrid" => Some(Self::Hybrid),
            _ => None,
        }
    }
}

/// What to look for; built by the caller after validation (see [`SearchQuery::parse`]).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub category: Option<String>,
    pub subcategory: Option<String>,
    /// Entries carrying any of these tags.
    pub tags: Vec<String>,
    /// Entries for any of these industries.
    pub industry_codes: Vec<String>,
    pub is_public: Option<bool>,
    /// Entries this agent may use (entries with no `allowed_agents` are open to all).
    pub agent: Option<String>,
    pub validation_status: Option<String>,
    /// Include other tenants' public entries (default true).
    pub include_public: bool,
    /// Which kinds of content to search.
    pub sources: Sources,
}

/// Knowledge entries and FAQs, published articles, or both (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    pub knowledge: bool,
    pub articles: bool,
}

impl Default for Sources {
    fn default() -> Self {
        Self { knowledge: true, articles: true }
    }
}

impl Filters {
    /// Whether a filter that only knowledge entries carry is set (subcategory, industry,
    /// `is_public`, agent, validation status): articles cannot match it.
    pub fn knowledge_only(&self) -> bool {
        self.subcategory.is_some()
            || !self.industry_codes.is_empty()
            || self.is_public.is_some()
            || self.agent.is_some()
            || self.validation_status.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: String,
    pub mode: Mode,
    pub filters: Filters,
    pub page: i64,
    pub per_page: i64,
    /// How hybrid mode weighs the semantic ranking against the keyword one.
    pub semantic_ratio: SemanticRatio,
}

/// The share of the semantic ranking in hybrid mode, 0 (keyword alone decides) to 1
/// (semantic alone decides, keyword-only hits after): each list's scores are min-max
/// normalised over its candidates and mixed `ratio · semantic + (1 − ratio) · keyword`.
/// The default, 0.9, was chosen on the labelled set (`fixtures/retrieval_set.json`,
/// docs/metrics.md): equal-weight reciprocal rank fusion let a weak keyword list (a
/// paraphrase shares one common word with many entries) pull good semantic hits down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemanticRatio(f64);

impl SemanticRatio {
    pub const DEFAULT: Self = Self(0.9);

    pub fn parse(value: f64) -> Option<Self> {
        (0.0..=1.0).contains(&value).then_some(Self(value))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for SemanticRatio {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("the query is empty")]
    Empty,
    #[error("the query is longer than {MAX_QUERY_CHARS} characters")]
    TooLong,
    #[error("page must be between 1 and {MAX_PAGE}")]
    PageTooFar,
    #[error("the query contains the NUL character")]
    Nul,
}

/// Pages beyond this hold nothing (results are ranked from a bounded candidate set), and
/// a larger page would overflow the offset.
pub const MAX_PAGE: i64 = 10_000;

impl SearchQuery {
    /// Checks the text: trimmed, 1..=1000 characters.
    pub fn parse(text: &str, mode: Mode, filters: Filters, page: i64, per_page: i64) -> Result<Self, QueryError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(QueryError::Empty);
        }
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        if page > MAX_PAGE {
            return Err(QueryError::PageTooFar);
        }
        // Postgres text cannot hold it: the query would fail (a 500) rather than match nothing.
        if text.contains('\0') {
            return Err(QueryError::Nul);
        }
        Ok(Self {
            text: text.to_owned(),
            mode,
            filters,
            page: page.max(1),
            per_page: per_page.clamp(1, 100),
            semantic_ratio: SemanticRatio::DEFAULT,
        })
    }
}

/// What a search shows of a knowledge entry (`kb`), in [`Hit`]'s order from `title` to
/// `is_public` (`shared` follows, per caller); the vector query and the re-read both
/// select it, so a hit reads the same whichever of them brought it.
pub(crate) const ENTRY_SHOWN: &str =
    "kb.title, left(kb.content, 240) as snippet, kb.category, kb.subcategory, kb.tags, kb.is_public";
/// The same of an article (`a`): its excerpt or the start of its body; never public.
pub(crate) const ARTICLE_SHOWN: &str = "a.title, left(coalesce(nullif(a.excerpt, ''), a.body), 240) as snippet, \
     a.category, null::text as subcategory, a.tags, false as is_public";

/// One result with the scores that placed it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Hit {
    /// `knowledge` (an entry or FAQ) or `article`.
    #[sqlx(skip)]
    pub source: Option<Source>,
    pub id: Uuid,
    pub title: String,
    /// The start of the entry's content.
    pub snippet: String,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub tags: Vec<String>,
    pub is_public: bool,
    /// True when the entry belongs to another tenant (a public entry).
    #[sqlx(default)]
    pub shared: bool,
    /// Cosine similarity to the query (semantic and hybrid modes, when ranked by it).
    #[sqlx(skip)]
    pub semantic_score: Option<f64>,
    /// Full-text rank (keyword and hybrid modes, when matched).
    #[sqlx(skip)]
    pub keyword_score: Option<f64>,
    /// The score the results are ordered by.
    #[sqlx(skip)]
    pub score: f64,
    /// The section of a long entry that matched the query best (semantic ranking), when
    /// it was a section rather than the entry's opening.
    #[sqlx(skip)]
    pub chunk: Option<MatchedChunk>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct MatchedChunk {
    /// 1-based section number within the entry.
    pub index: i32,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchPage {
    pub hits: Vec<Hit>,
    /// Results across all pages, bounded by the candidate pool of each ranking. Semantic
    /// mode ranks on demand: it counts the results up to the page asked for, so a client
    /// pages on while pages come back full.
    pub total: i64,
    pub mode: Mode,
    /// The embedding model the semantic ranking used, if any.
    pub model: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Embed(#[from] crate::EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The visibility and filter conditions on `knowledge_base kb`, shared by every ranking
/// and by the final fetch (so a stale external index can never widen what is shown).
pub(crate) fn push_filters(qb: &mut QueryBuilder<Postgres>, tenant: TenantId, f: &Filters) {
    qb.push(" and (kb.tenant_id = ").push_bind(tenant);
    if f.include_public {
        qb.push(" or kb.is_public");
    }
    qb.push(")");
    if let Some(c) = &f.category {
        qb.push(" and kb.category = ").push_bind(c.clone());
    }
    if let Some(c) = &f.subcategory {
        qb.push(" and kb.subcategory = ").push_bind(c.clone());
    }
    if !f.tags.is_empty() {
        qb.push(" and kb.tags && ").push_bind(f.tags.clone());
    }
    if !f.industry_codes.is_empty() {
        qb.push(" and kb.industry_codes && ").push_bind(f.industry_codes.clone());
    }
    if let Some(p) = f.is_public {
        qb.push(" and kb.is_public = ").push_bind(p);
    }
    if let Some(a) = &f.agent {
        qb.push(" and (cardinality(kb.allowed_agents) = 0 or ").push_bind(a.clone()).push(" = any(kb.allowed_agents))");
    }
    if let Some(v) = &f.validation_status {
        qb.push(" and kb.validation_status = ").push_bind(v.clone());
    }
}

/// Visibility and filters on `articles a`: the tenant's own published articles only.
pub(crate) fn push_article_filters(qb: &mut QueryBuilder<Postgres>, tenant: TenantId, f: &Filters) {
    qb.push(" and a.tenant_id = ").push_bind(tenant).push(" and a.status = 'published'");
    if let Some(c) = &f.category {
        qb.push(" and a.category = ").push_bind(c.clone());
    }
    if !f.tags.is_empty() {
        qb.push(" and a.tags && ").push_bind(f.tags.clone());
    }
}

#[tracing::instrument(name = "search.keyword", skip_all, fields(tenant_id = %tenant))]
async fn keyword(
    conn: &mut PgConnection,
    tenant: TenantId,
    text: &str,
    f: &Filters,
    limit: i64,
) -> Result<Vec<(Source, Uuid, f64)>, sqlx::Error> {
    // Search syntax ("phrases", -exclusions, or) is honoured as written. A plain question
    // matches entries with any of its words, ranked by how many and how close: requiring
    // all of them (plainto/websearch's AND) misses most answers to natural questions.
    let tsquery = if explicit_syntax(text) {
        "websearch_to_tsquery('english', "
    } else {
        "to_tsquery('english', replace(plainto_tsquery('english', "
    };
    let close = if explicit_syntax(text) { ")" } else { ")::text, ' & ', ' | '))" };
    let mut qb = QueryBuilder::new(
        "select source, id, score from (select null::text as source, null::uuid as id, 0::float8 as score where false",
    );
    // The matches come from functions that can use the full-text indexes (migration 37:
    // under row-level security a plain `search_vector @@ q` reads every row of the
    // tenant); their ids are joined back under this transaction's RLS and the filters.
    if f.sources.knowledge {
        qb.push(format!(" union all (select 'knowledge', kb.id, m.score from app_knowledge_matches({tsquery}"));
        qb.push_bind(text.to_owned()).push(close).push(", ").push_bind(f.include_public);
        qb.push(") m join knowledge_base kb on kb.id = m.id where true");
        push_filters(&mut qb, tenant, f);
        qb.push(" order by m.score desc, kb.id limit ").push_bind(limit).push(")");
    }
    if f.sources.articles {
        qb.push(format!(" union all (select 'article', a.id, m.score from app_article_matches({tsquery}"));
        qb.push_bind(text.to_owned()).push(close);
        qb.push(") m join articles a on a.id = m.id where true");
        push_article_filters(&mut qb, tenant, f);
        qb.push(" order by m.score desc, a.id limit ").push_bind(limit).push(")");
    }
    qb.push(") k order by score desc, id limit ").push_bind(limit);
    let rows: Vec<(String, Uuid, f64)> = qb.build_query_as().fetch_all(conn).await?;
    Ok(rows.into_iter().filter_map(|(s, id, score)| Some((Source::parse(&s)?, id, score))).collect())
}

/// Whether the text uses web-search syntax: quotes, a `-word` exclusion or ` or `.
fn explicit_syntax(text: &str) -> bool {
    text.contains('"')
        || text.split_whitespace().any(|w| w.starts_with('-') && w.len() > 1)
        || text.to_lowercase().contains(" or ")
}

/// Runs a query. The embedder is needed for semantic and hybrid modes only; the store
/// answers the semantic ranking.
#[tracing::instrument(name = "search.knowledge", skip_all, fields(tenant_id = %tenant, mode = ?q.mode, store = store.name()))]
pub async fn search(
    pool: &sqlx::PgPool,
    embedder: Option<&dyn Embedder>,
    store: &dyn VectorStore,
    tenant: TenantId,
    q: &SearchQuery,
) -> Result<SearchPage, SearchError> {
    let vector = match (q.mode, embedder) {
        (Mode::Keyword, _) => None,
        (_, Some(e)) => Some((e.embed(std::slice::from_ref(&q.text)).await?.remove(0), e.model().to_owned())),
        (_, None) => return Err(crate::EmbedError::ModelUnavailable("no embedder is loaded".into()).into()),
    };
    // A filtered HNSW scan costs about in proportion to the rows asked for (pgvector's
    // iterative scan walks until that many pass the filter), so ask for what the answer
    // needs: semantic mode, the entries up to this page; hybrid, a pool three pages deep
    // to fuse (keyword candidates are cheap and stay at CANDIDATES). When sections of one
    // entry crowd the answer, ask again for more.
    let wanted = match q.mode {
        Mode::Semantic => q.page.saturating_mul(q.per_page).min(CANDIDATES),
        _ => q.page.saturating_mul(q.per_page).saturating_mul(3).clamp(30, CANDIDATES),
    };
    // pgvector answers inside the search's one tenant transaction; an external store
    // before it opens (its call is a network round trip).
    let mut tx = if store.in_database() {
        Some(db::begin_tenant_with(pool, tenant, crate::store::pgvector::QUERY_SETTINGS).await?)
    } else {
        None
    };
    // For semantic mode's first page pgvector's query also returns each neighbour's row
    // (same statement, visibility and filters), so the page needs no re-read:
    // `found_rows` by id, `found_sections` by (id, section). Hybrid mode ranks a pool
    // three pages deep and shows one page of it, so it reads only ids and re-reads the
    // page below.
    let columns = match q.mode {
        // Page 1 only: a later page asks for every row up to it and shows the last few.
        Mode::Semantic if q.page == 1 => crate::store::pgvector::Columns::Shown,
        _ => crate::store::pgvector::Columns::Ids,
    };
    let mut found_rows: HashMap<Uuid, Hit> = HashMap::new();
    let mut found_sections: HashMap<(Uuid, i32), String> = HashMap::new();
    let sem = match &vector {
        Some((v, model)) => {
            let mut limit = wanted;
            loop {
                let found = match tx.as_mut() {
                    Some(tx) => {
                        let found =
                            crate::store::pgvector::nearest_hits_in(tx, tenant, v, model, &q.filters, limit, columns)
                                .await?;
                        found_rows.clear();
                        found_sections.clear();
                        let mut neighbours = Vec::with_capacity(found.len());
                        for f in found {
                            if let Some(text) = f.chunk_text {
                                found_sections.insert((f.neighbour.entry, f.neighbour.chunk), text);
                            }
                            if let Some(hit) = f.hit {
                                found_rows.insert(f.neighbour.entry, hit);
                            }
                            neighbours.push(f.neighbour);
                        }
                        neighbours
                    }
                    None => store.nearest(tenant, v, model, &q.filters, limit).await?,
                };
                let exhausted = (found.len() as i64) < limit;
                let entries = best_per_entry(found);
                if entries.len() as i64 >= wanted || exhausted || limit >= wanted * 4 {
                    break entries;
                }
                limit *= 2;
            }
        }
        None => Vec::new(),
    };
    let sem: Vec<_> = sem.into_iter().take(wanted as usize).collect();
    let mut tx = match tx {
        Some(tx) => tx,
        None => db::begin_tenant(pool, tenant).await?,
    };
    let key = match q.mode {
        Mode::Semantic => Vec::new(),
        _ => keyword(&mut tx, tenant, &q.text, &q.filters, CANDIDATES).await?,
    };
    // Ids are UUIDs, unique across entries and articles; each remembers its source.
    let mut source: HashMap<Uuid, Source> = sem.iter().map(|n| (n.entry, n.source)).collect();
    source.extend(key.iter().map(|(s, id, _)| (*id, *s)));
    let sem_scores: HashMap<Uuid, (f64, i32)> = sem.iter().map(|n| (n.entry, (n.score, n.chunk))).collect();
    let key_scores: HashMap<Uuid, f64> = key.iter().map(|(_, id, score)| (*id, *score)).collect();
    let ranked: Vec<(Uuid, f64)> = match q.mode {
        Mode::Semantic => sem.iter().map(|n| (n.entry, n.score)).collect(),
        Mode::Keyword => key.iter().map(|(_, id, score)| (*id, *score)).collect(),
        Mode::Hybrid => fuse(
            Fusion::Relative { semantic_ratio: q.semantic_ratio.get() },
            &sem.iter().map(|n| (n.entry, n.score)).collect::<Vec<_>>(),
            &key.iter().map(|(_, id, score)| (*id, *score)).collect::<Vec<_>>(),
        ),
    };
    let total = ranked.len() as i64;
    let start = usize::try_from((q.page - 1).saturating_mul(q.per_page)).unwrap_or(usize::MAX);
    let page: Vec<(Uuid, f64)> = ranked.into_iter().skip(start).take(q.per_page as usize).collect();
    let mut rows: Vec<Hit> = page.iter().filter_map(|(id, _)| found_rows.remove(id)).collect();
    let known: std::collections::HashSet<Uuid> = rows.iter().map(|h| h.id).collect();
    let of = |wanted: Source| -> Vec<Uuid> {
        page.iter().map(|(id, _)| *id).filter(|id| source.get(id) == Some(&wanted) && !known.contains(id)).collect()
    };
    let (entry_ids, article_ids) = (of(Source::Knowledge), of(Source::Article));
    // Every other hit (an external store's, the keyword ranking's) is re-read under the
    // request's visibility and filters: an external store that lags behind Postgres can
    // narrow the answer, never widen it.
    if !entry_ids.is_empty() {
        let mut fetch = QueryBuilder::new(format!("select kb.id, {ENTRY_SHOWN}, kb.tenant_id <> "));
        fetch
            .push_bind(tenant)
            .push(" as shared from knowledge_base kb where kb.id = any(")
            .push_bind(entry_ids)
            .push(")");
        push_filters(&mut fetch, tenant, &q.filters);
        rows.extend(fetch.build_query_as::<Hit>().fetch_all(&mut *tx).await?.into_iter().map(|mut h| {
            h.source = Some(Source::Knowledge);
            h
        }));
    }
    if !article_ids.is_empty() {
        let mut fetch = QueryBuilder::new(format!(
            "select a.id, {ARTICLE_SHOWN}, false as shared from articles a where a.id = any("
        ));
        fetch.push_bind(article_ids).push(")");
        push_article_filters(&mut fetch, tenant, &q.filters);
        rows.extend(fetch.build_query_as::<Hit>().fetch_all(&mut *tx).await?.into_iter().map(|mut h| {
            h.source = Some(Source::Article);
            h
        }));
    }
    // The section that matched, for hits ranked by one of their sections (read here
    // unless the vector query brought it).
    let mut chunk_text: HashMap<Uuid, MatchedChunk> = HashMap::new();
    let chunk_keys: Vec<(Uuid, i32)> = page
        .iter()
        .filter_map(|(id, _)| sem_scores.get(id).filter(|(_, c)| *c > 0).map(|(_, c)| (*id, *c)))
        .filter(|(id, index)| match found_sections.remove(&(*id, *index)) {
            Some(text) => {
                chunk_text.insert(*id, MatchedChunk { index: *index, text });
                false
            }
            None => true,
        })
        .collect();
    let chunks: Vec<(Uuid, i32, String)> = if chunk_keys.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "select c.knowledge_id, c.chunk_index, c.content from knowledge_chunks c
             join unnest($1::uuid[], $2::int[]) as k(id, idx) on c.knowledge_id = k.id and c.chunk_index = k.idx
             union all
             select c.article_id, c.chunk_index, c.content from article_chunks c
             join unnest($1::uuid[], $2::int[]) as k(id, idx) on c.article_id = k.id and c.chunk_index = k.idx",
        )
        .bind(chunk_keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(chunk_keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
    };
    tx.commit().await?;
    let mut by_id: HashMap<Uuid, Hit> = rows.into_iter().map(|h| (h.id, h)).collect();
    chunk_text.extend(chunks.into_iter().map(|(id, index, text)| (id, MatchedChunk { index, text })));
    let hits = page
        .into_iter()
        .filter_map(|(id, score)| {
            let mut h = by_id.remove(&id)?;
            h.score = score;
            h.semantic_score = sem_scores.get(&id).map(|(s, _)| *s);
            h.keyword_score = key_scores.get(&id).copied();
            h.chunk = chunk_text.remove(&id);
            Some(h)
        })
        .collect();
    Ok(SearchPage { hits, total, mode: q.mode, model: vector.map(|(_, m)| m) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_web_search_syntax() {
        assert!(explicit_syntax("\"opening hours\""));
        assert!(explicit_syntax("refund -gift"));
        assert!(explicit_syntax("refund or return"));
        assert!(!explicit_syntax("how do I get my money back"));
        assert!(!explicit_syntax("state-of-the-art - tools"));
    }

    #[test]
    fn queries_are_trimmed_and_bounded() {
        let f = Filters::default;
        assert_eq!(SearchQuery::parse("   ", Mode::Hybrid, f(), 1, 10).unwrap_err(), QueryError::Empty);
        assert_eq!(SearchQuery::parse(&"x".repeat(1001), Mode::Hybrid, f(), 1, 10).unwrap_err(), QueryError::TooLong);
        assert_eq!(SearchQuery::parse("a\0b", Mode::Hybrid, f(), 1, 10).unwrap_err(), QueryError::Nul);
        assert_eq!(SearchQuery::parse("ok", Mode::Hybrid, f(), i64::MAX, 10).unwrap_err(), QueryError::PageTooFar);
        let q = SearchQuery::parse("  refunds ", Mode::Keyword, f(), 0, 1000).unwrap();
        assert_eq!((q.text.as_str(), q.page, q.per_page), ("refunds", 1, 100));
    }
}
