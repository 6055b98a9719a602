//! `/api/v1/search`: semantic, keyword and hybrid search over the knowledge base
//! (entries and FAQs). Thin: parsing and errors here, ranking in `fibonacco_search`.

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::get};
use fibonacco_search::{
    Embedder,
    knowledge::{self, Filters, Hit, Mode, QueryError, SearchError, SearchQuery},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError,
    envelope::{Envelope, PageRequest, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams},
    knowledge::READ,
    state::AppState,
    validate,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/search", get(search_get).post(search_post))
}

const VALIDATION_STATUSES: &[&str] = &["unvalidated", "pending", "validated", "rejected"];

/// A search, from the query string (`tags` and `industry_codes` comma-separated) or a
/// JSON body.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for (1-1000 characters).
    #[serde(alias = "query")]
    pub q: Option<String>,
    /// `hybrid` (default), `semantic` or `keyword`.
    pub mode: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    /// Entries with any of these tags (comma-separated in the query string).
    pub tags: Option<String>,
    /// Entries for any of these industry codes (comma-separated in the query string).
    pub industry_codes: Option<String>,
    pub is_public: Option<bool>,
    /// Only entries this agent may use.
    pub agent: Option<String>,
    pub validation_status: Option<String>,
    /// Include other tenants' public entries (default true).
    pub include_public: Option<bool>,
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub mode: Mode,
    /// The embedding model of the semantic ranking (null for keyword search).
    pub model: Option<String>,
    pub hits: Vec<Hit>,
}

fn list(raw: &Option<String>) -> Vec<String> {
    raw.as_deref()
        .map(|s| s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn parse(r: SearchRequest, max_per_page: u32) -> Result<SearchQuery, ApiError> {
    let mut e = FieldErrors::default();
    let mode = match r.mode.as_deref() {
        None | Some("") => Mode::Hybrid,
        Some(m) => Mode::parse(m).unwrap_or_else(|| {
            e.add("mode", "must be hybrid, semantic or keyword");
            Mode::Hybrid
        }),
    };
    if let Some(v) = &r.validation_status {
        validate::one_of(v, VALIDATION_STATUSES, "validation_status", &mut e);
    }
    let (page, per_page) = (r.page.unwrap_or(1), r.per_page.unwrap_or(10));
    if page < 1 {
        e.add("page", "must be at least 1");
    }
    if per_page < 1 || per_page > i64::from(max_per_page) {
        e.add("per_page", format!("must be between 1 and {max_per_page}"));
    }
    let filters = Filters {
        tags: list(&r.tags),
        industry_codes: list(&r.industry_codes),
        category: r.category,
        subcategory: r.subcategory,
        is_public: r.is_public,
        agent: r.agent,
        validation_status: r.validation_status,
        include_public: r.include_public.unwrap_or(true),
    };
    let query = SearchQuery::parse(r.q.as_deref().unwrap_or(""), mode, filters, page, per_page);
    match query {
        Ok(q) => {
            e.into_result()?;
            Ok(q)
        }
        Err(QueryError::Empty) => {
            e.add("q", "is required");
            Err(ApiError::Validation(e))
        }
        Err(QueryError::TooLong) => {
            e.add("q", format!("must be at most {} characters", knowledge::MAX_QUERY_CHARS));
            Err(ApiError::Validation(e))
        }
    }
}

/// The query embedder, loaded on first use (the local model takes about half a second).
pub async fn query_embedder(state: &AppState) -> Result<Arc<dyn Embedder>, ApiError> {
    let loaded = state
        .embedder
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                fibonacco_search::embed::from_lookup(fibonacco_platform::config::env_lookup())
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        })
        .await;
    loaded.clone().map_err(|reason| {
        tracing::warn!(%reason, "semantic search unavailable");
        ApiError::UpstreamUnavailable(format!("semantic search is unavailable: {reason}"))
    })
}

async fn run(state: AppState, auth: Auth, request: SearchRequest) -> Result<Json<Envelope<SearchResults>>, ApiError> {
    auth.require(READ)?;
    let q = parse(request, state.config.max_per_page)?;
    let embedder = match q.mode {
        Mode::Keyword => None,
        _ => Some(query_embedder(&state).await?),
    };
    let page =
        knowledge::search(&state.pool, embedder.as_deref(), auth.0.tenant_id, &q).await.map_err(|e| match e {
            SearchError::Database(e) => ApiError::from(e),
            SearchError::Embed(e) => ApiError::UpstreamUnavailable(e.to_string()),
            SearchError::Query(e) => ApiError::Validation(FieldErrors::single("q", e.to_string())),
        })?;
    let request = PageRequest { page: q.page as u32, per_page: q.per_page as u32 };
    let pagination = Pagination::new(request, page.total, page.hits.len());
    Ok(Json(Envelope::page(SearchResults { mode: page.mode, model: page.model, hits: page.hits }, pagination)))
}

/// Search the knowledge base (entries and FAQs): hybrid by default (reciprocal rank
/// fusion, k = 60, of semantic and keyword rankings), or `mode=semantic|keyword`. Own and
/// public entries; each hit counts as a use of the entry.
#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchRequest),
    responses((status = 200, body = inline(Envelope<SearchResults>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, description = "Empty or oversized query, bad filter", body = ErrorEnvelope),
        (status = 503, description = "No embedding model for semantic search", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn search_get(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(request): QueryParams<SearchRequest>,
) -> Result<Json<Envelope<SearchResults>>, ApiError> {
    run(state, auth, request).await
}

/// The same search with a JSON body.
#[utoipa::path(post, path = "/api/v1/search", tag = "search", request_body = SearchRequest,
    responses((status = 200, body = inline(Envelope<SearchResults>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn search_post(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<SearchRequest>,
) -> Result<Json<Envelope<SearchResults>>, ApiError> {
    run(state, auth, request).await
}
