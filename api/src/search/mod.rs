//! `/api/v1/search` on the API's port: the API's extractors and error envelope around the
//! search service ([`fibonacco_search::SearchService`]), which also serves the same
//! searches on its own port.

use axum::{Json, Router, extract::State, routing::get};
use fibonacco_platform::envelope::Envelope;
use fibonacco_search::service::{READ, SearchRequest, SearchResults};

use crate::{
    ApiError,
    error::ErrorEnvelope,
    extract::{Auth, JsonBody, QueryParams},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/search", get(search_get).post(search_post))
}

async fn run(state: AppState, auth: Auth, request: SearchRequest) -> Result<Json<Envelope<SearchResults>>, ApiError> {
    auth.require(READ)?;
    let (results, pagination) = state.search.search(auth.0.tenant_id, request).await?;
    Ok(Json(Envelope::page(results, pagination)))
}

/// Search the knowledge base (entries and FAQs; long entries by section): hybrid by
/// default (reciprocal rank fusion, k = 60, of semantic and keyword rankings), or
/// `mode=semantic|keyword`. Own and public entries; each hit counts as a use of the entry.
#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchRequest),
    responses((status = 200, body = inline(Envelope<SearchResults>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, description = "Empty or oversized query, bad filter", body = ErrorEnvelope),
        (status = 503, description = "No embedding model or vector store for semantic search", body = ErrorEnvelope)),
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
