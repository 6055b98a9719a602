//! The search service's HTTP surface: `/api/v1/search` (GET with a query string, POST with
//! a JSON body) and `/health`, on its own port (`fibonacco search serve`, `SEARCH_PORT`)
//! and inside `fibonacco run`. The API crate serves the same searches through
//! [`SearchService::search`], so both answer alike; answers use the platform's envelopes.
//!
//! Callers authenticate with the same personal access tokens as the API (ability
//! `knowledge:read`); every search is scoped to the token's tenant.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use fibonacco_platform::{
    TenantId,
    auth::{self, AuthContext, AuthenticateError, TokenCache},
    envelope::{Envelope, ErrorBody, ErrorEnvelope, PageRequest, Pagination},
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::OnceCell;
use utoipa::{IntoParams, ToSchema};

use crate::{
    Embedder, VectorStore,
    knowledge::{
        self, Filters, Hit, MAX_QUERY_CHARS, Mode, QueryError, SearchError, SearchPage, SearchQuery, SemanticRatio,
        Sources,
    },
    store::Source,
};

/// The ability a token needs to search.
pub const READ: &str = "knowledge:read";
const VALIDATION_STATUSES: &[&str] = &["unvalidated", "pending", "validated", "rejected"];
const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The query embedder, loaded on first use (the local model takes about half a second),
/// or the reason it could not be.
pub type EmbedderCell = Arc<OnceCell<Result<Arc<dyn Embedder>, String>>>;

/// Everything a search needs; cheap to clone.
#[derive(Clone)]
pub struct SearchService {
    pub pool: PgPool,
    pub tokens: Arc<TokenCache>,
    pub store: Arc<dyn VectorStore>,
    embedder: EmbedderCell,
    pub max_per_page: u32,
    /// Hits counted as uses of their entries, written in the background.
    pub usage: crate::usage::UsageCounter,
    /// A request on the service's own port taking longer is answered 408 (the API's
    /// `REQUEST_TIMEOUT_SECS`, 30 s by default).
    pub request_timeout: std::time::Duration,
}

impl SearchService {
    pub fn new(pool: PgPool, tokens: Arc<TokenCache>, store: Arc<dyn VectorStore>, max_per_page: u32) -> Self {
        let usage = crate::usage::UsageCounter::new(pool.clone());
        Self {
            pool,
            tokens,
            store,
            embedder: Arc::default(),
            max_per_page,
            usage,
            request_timeout: std::time::Duration::from_secs(30),
        }
    }

    pub fn with_request_timeout(self, request_timeout: std::time::Duration) -> Self {
        Self { request_timeout, ..self }
    }

    /// With an embedder already loaded (tests, benchmarks).
    pub fn with_embedder(self, embedder: Arc<dyn Embedder>) -> Self {
        Self { embedder: Arc::new(OnceCell::new_with(Some(Ok(embedder)))), ..self }
    }

    /// The configured embedder (see [`crate::embed::from_lookup`]), loaded once.
    pub async fn embedder(&self) -> Result<Arc<dyn Embedder>, String> {
        self.embedder
            .get_or_init(|| async {
                tokio::task::spawn_blocking(|| {
                    crate::embed::from_lookup(fibonacco_platform::config::env_lookup()).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            })
            .await
            .clone()
    }

    /// Runs a checked query for `tenant`.
    pub async fn run(&self, tenant: TenantId, q: &SearchQuery) -> Result<SearchPage, ServiceError> {
        let embedder = match q.mode {
            Mode::Keyword => None,
            _ => Some(self.embedder().await.map_err(|reason| {
                tracing::warn!(%reason, "semantic search unavailable");
                ServiceError::Unavailable(format!("semantic search is unavailable: {reason}"))
            })?),
        };
        let page =
            knowledge::search(&self.pool, embedder.as_deref(), self.store.as_ref(), tenant, q).await.map_err(|e| {
                match e {
                    SearchError::Query(e) => ServiceError::Validation(field("q", e.to_string())),
                    SearchError::Embed(e) => ServiceError::Unavailable(e.to_string()),
                    SearchError::Store(e) => ServiceError::Unavailable(e.to_string()),
                    SearchError::Database(sqlx::Error::PoolTimedOut) => ServiceError::Busy,
                    SearchError::Database(e) => ServiceError::Internal(e.to_string()),
                }
            })?;
        // A hit counts as a use of the entry (own entries only: others' rows are read-only).
        let own_entries = page.hits.iter().filter(|h| !h.shared && h.source == Some(Source::Knowledge));
        self.usage.record(tenant, own_entries.map(|h| h.id).collect());
        Ok(page)
    }

    /// Knowledge for an assistant: the `limit` best hits for `text` among the tenant's
    /// entries and articles, and other tenants' public entries when `include_public`
    /// (those hits are `shared`: text someone else wrote, never to be trusted as
    /// instructions); hybrid when the embedding model loads, keyword otherwise (an
    /// assistant still gets sources without the model). A text that is no query (empty,
    /// too long) is a validation error on `field`.
    pub async fn for_assistant(
        &self,
        tenant: TenantId,
        text: &str,
        limit: i64,
        field: &str,
        include_public: bool,
    ) -> Result<SearchPage, ServiceError> {
        let mode = if self.embedder().await.is_ok() { Mode::Hybrid } else { Mode::Keyword };
        let filters = Filters { include_public, ..Filters::default() };
        let q = SearchQuery::parse(text, mode, filters, 1, limit)
            .map_err(|e| ServiceError::Validation(self::field(field, e.to_string())))?;
        self.run(tenant, &q).await
    }

    /// Checks a request and runs it: the results and their page.
    pub async fn search(
        &self,
        tenant: TenantId,
        request: SearchRequest,
    ) -> Result<(SearchResults, Pagination), ServiceError> {
        let q = request.into_query(self.max_per_page)?;
        let page = self.run(tenant, &q).await?;
        let pagination = Pagination::new(
            PageRequest { page: q.page as u32, per_page: q.per_page as u32 },
            page.total,
            page.hits.len(),
        );
        Ok((
            SearchResults {
                mode: page.mode,
                model: page.model,
                store: self.store.name(),
                semantic_ratio: (page.mode == Mode::Hybrid).then(|| q.semantic_ratio.get()),
                hits: page.hits,
            },
            pagination,
        ))
    }

    #[tracing::instrument(name = "search.authenticate", skip_all)]
    async fn authenticate(&self, headers: &HeaderMap) -> Result<AuthContext, ServiceError> {
        let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let presented = auth::parse_bearer(header).map_err(|_| ServiceError::Unauthenticated)?;
        let ctx = match auth::authenticate_cached(&self.pool, &self.tokens, &presented).await {
            Ok(ctx) => ctx,
            Err(AuthenticateError::Rejected(_)) => return Err(ServiceError::Unauthenticated),
            Err(AuthenticateError::Database(sqlx::Error::PoolTimedOut)) => return Err(ServiceError::Busy),
            Err(AuthenticateError::Database(e)) => return Err(ServiceError::Internal(e.to_string())),
        };
        if !ctx.can(READ) {
            return Err(ServiceError::Forbidden(READ));
        }
        Ok(ctx)
    }
}

/// A search, from the query string (`tags` and `industry_codes` comma-separated) or a
/// JSON body.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for (1-1000 characters).
    #[serde(alias = "query")]
    pub q: Option<String>,
    /// `hybrid` (default), `semantic` or `keyword`.
    pub mode: Option<String>,
    /// Hybrid mode's weight of the semantic ranking, 0 to 1 (default 0.9): 1 ranks by
    /// meaning alone, 0 by the words alone. Ignored by the other modes.
    pub semantic_ratio: Option<f64>,
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
    /// `knowledge` (entries and FAQs) and/or `articles` (published), comma-separated;
    /// default both. Knowledge-only filters (subcategory, industry codes, `is_public`,
    /// agent, validation status) leave articles out.
    pub sources: Option<String>,
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub mode: Mode,
    /// The embedding model of the semantic ranking (null for keyword search).
    pub model: Option<String>,
    /// The vector store that answered the semantic ranking (`pgvector` or `qdrant`).
    pub store: &'static str,
    /// The semantic ratio hybrid mode fused with (null in the other modes).
    pub semantic_ratio: Option<f64>,
    pub hits: Vec<Hit>,
}

/// Per-field problems, `{"q": ["is required"]}`, as the API's 422s.
pub type FieldProblems = BTreeMap<String, Vec<String>>;

fn field(name: &str, message: impl Into<String>) -> FieldProblems {
    BTreeMap::from([(name.to_owned(), vec![message.into()])])
}

fn add(e: &mut FieldProblems, name: &str, message: String) {
    e.entry(name.to_owned()).or_default().push(message);
}

fn list(raw: &Option<String>) -> Vec<String> {
    raw.as_deref()
        .map(|s| s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

impl SearchRequest {
    /// Checks every field, reporting all problems at once.
    pub fn into_query(self, max_per_page: u32) -> Result<SearchQuery, ServiceError> {
        let mut e = FieldProblems::new();
        let mode = match self.mode.as_deref() {
            None | Some("") => Mode::Hybrid,
            Some(m) => Mode::parse(m).unwrap_or_else(|| {
                add(&mut e, "mode", "must be hybrid, semantic or keyword".into());
                Mode::Hybrid
            }),
        };
        if let Some(v) = &self.validation_status
            && !VALIDATION_STATUSES.contains(&v.as_str())
        {
            add(&mut e, "validation_status", format!("must be one of {}", VALIDATION_STATUSES.join(", ")));
        }
        let semantic_ratio = match self.semantic_ratio {
            None => SemanticRatio::DEFAULT,
            Some(r) => SemanticRatio::parse(r).unwrap_or_else(|| {
                add(&mut e, "semantic_ratio", "must be between 0 and 1".into());
                SemanticRatio::DEFAULT
            }),
        };
        let (page, per_page) = (self.page.unwrap_or(1), self.per_page.unwrap_or(10));
        if page < 1 {
            add(&mut e, "page", "must be at least 1".into());
        }
        if per_page < 1 || per_page > i64::from(max_per_page) {
            add(&mut e, "per_page", format!("must be between 1 and {max_per_page}"));
        }
        let mut sources = Sources { knowledge: false, articles: false };
        let requested = list(&self.sources);
        for s in &requested {
            match Source::parse(s) {
                Some(Source::Knowledge) => sources.knowledge = true,
                Some(Source::Article) => sources.articles = true,
                None => add(&mut e, "sources", format!("`{s}` is not knowledge or articles")),
            }
        }
        if requested.is_empty() {
            sources = Sources::default();
        }
        let mut filters = Filters {
            sources,
            tags: list(&self.tags),
            industry_codes: list(&self.industry_codes),
            category: self.category,
            subcategory: self.subcategory,
            is_public: self.is_public,
            agent: self.agent,
            validation_status: self.validation_status,
            include_public: self.include_public.unwrap_or(true),
        };
        if filters.knowledge_only() && filters.sources.articles {
            if !filters.sources.knowledge {
                add(
                    &mut e,
                    "sources",
                    "articles have no subcategory, industry codes, visibility, agents or validation status".into(),
                );
            }
            filters.sources.articles = false;
        }
        match SearchQuery::parse(self.q.as_deref().unwrap_or(""), mode, filters, page, per_page) {
            Ok(q) if e.is_empty() => Ok(SearchQuery { semantic_ratio, ..q }),
            Ok(_) => Err(ServiceError::Validation(e)),
            Err(QueryError::Empty) => {
                add(&mut e, "q", "is required".into());
                Err(ServiceError::Validation(e))
            }
            Err(QueryError::TooLong) => {
                add(&mut e, "q", format!("must be at most {MAX_QUERY_CHARS} characters"));
                Err(ServiceError::Validation(e))
            }
            Err(QueryError::Nul) => {
                add(&mut e, "q", "must not contain the NUL character".into());
                Err(ServiceError::Validation(e))
            }
            Err(QueryError::PageTooFar) => {
                add(&mut e, "page", format!("must be between 1 and {}", crate::knowledge::MAX_PAGE));
                Err(ServiceError::Validation(e))
            }
        }
    }
}

/// The service's one error type; rendered as the platform's error envelope.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("the token lacks the `{0}` ability")]
    Forbidden(&'static str),
    #[error("validation failed")]
    Validation(FieldProblems),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("expected a JSON body with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("route not found")]
    RouteNotFound,
    /// Semantic search cannot run now (no model, external store down): retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("service unavailable: database busy")]
    Busy,
    #[error("internal error")]
    Internal(String),
}

impl ServiceError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::Unavailable(_) | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::Validation(_) => "VALIDATION_FAILED",
            Self::MalformedJson(_) => "MALFORMED_JSON",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::RouteNotFound => "ROUTE_NOT_FOUND",
            Self::Unavailable(_) => "UPSTREAM_UNAVAILABLE",
            Self::Busy => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    fn body(&self) -> ErrorBody {
        let (message, details) = match self {
            Self::Unauthenticated => ("Unauthenticated.".to_owned(), serde_json::json!({})),
            Self::Forbidden(a) => {
                (format!("This action requires the `{a}` ability."), serde_json::json!({ "ability": a }))
            }
            Self::Validation(f) => ("The given data was invalid.".to_owned(), serde_json::json!(f)),
            Self::Internal(_) => ("Internal server error.".to_owned(), serde_json::json!({})),
            other => (other.to_string(), serde_json::json!({})),
        };
        ErrorBody { message, code: self.code(), details }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "search request failed");
        }
        (self.status(), Json(ErrorEnvelope { error: self.body() })).into_response()
    }
}

type Answer = Result<Json<Envelope<SearchResults>>, ServiceError>;

async fn answer(svc: &SearchService, headers: &HeaderMap, request: SearchRequest) -> Answer {
    let ctx = svc.authenticate(headers).await?;
    let (results, pagination) = svc.search(ctx.tenant_id, request).await?;
    Ok(Json(Envelope::page(results, pagination)))
}

/// Search the knowledge base (entries and FAQs, long entries by section): hybrid by
/// default (relative score fusion, `semantic_ratio` 0.9), or `mode=semantic|keyword`.
#[tracing::instrument(name = "search.http.get", skip_all)]
pub async fn search_get(
    State(svc): State<SearchService>,
    headers: HeaderMap,
    query: Result<Query<SearchRequest>, QueryRejection>,
) -> Answer {
    let Query(request) = query.map_err(|e| ServiceError::Validation(field("query", e.body_text())))?;
    answer(&svc, &headers, request).await
}

/// The same search with a JSON body.
#[tracing::instrument(name = "search.http.post", skip_all)]
pub async fn search_post(State(svc): State<SearchService>, headers: HeaderMap, body: Bytes) -> Answer {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ServiceError::UnsupportedMediaType);
    }
    let request: SearchRequest = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ServiceError::Validation(field("body", e.to_string())),
        _ => ServiceError::MalformedJson(e.to_string()),
    })?;
    answer(&svc, &headers, request).await
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    postgres: &'static str,
    store: &'static str,
}

#[tracing::instrument(name = "search.health", skip_all)]
async fn health(State(svc): State<SearchService>) -> (StatusCode, Json<Health>) {
    let pg =
        tokio::time::timeout(Duration::from_secs(2), sqlx::query_scalar::<_, i32>("select 1").fetch_one(&svc.pool));
    let ok = matches!(pg.await, Ok(Ok(1)));
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(Health {
            status: if ok { "ok" } else { "degraded" },
            postgres: if ok { "ok" } else { "down" },
            store: svc.store.name(),
        }),
    )
}

/// The search routes alone, for a host router (the API mounts its own handlers instead).
pub fn routes() -> Router<SearchService> {
    Router::new().route("/api/v1/search", get(search_get).post(search_post)).route("/health", get(health))
}

/// The whole service, ready to serve on its own port.
pub fn router(svc: SearchService) -> Router {
    let timeout = svc.request_timeout;
    routes()
        .fallback(|| async { ServiceError::RouteNotFound })
        .with_state(svc)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        // Like the API: a slow store or embedder cannot hold a connection forever, and a
        // panic is an enveloped 500 (logged), not a dropped connection.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| -> Response {
            ServiceError::Internal("handler panicked".into()).into_response()
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
            // The path only: query strings carry what people search for.
            tracing::info_span!("search_http", method = %req.method(), path = %req.uri().path())
        }))
}

/// Serves the service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    svc: SearchService,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), store = svc.store.name(), "search service listening");
    axum::serve(listener, router(svc)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(r: SearchRequest) -> FieldProblems {
        match r.into_query(100) {
            Err(ServiceError::Validation(p)) => p,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let p = problems(SearchRequest {
            mode: Some("fuzzy".into()),
            per_page: Some(500),
            validation_status: Some("maybe".into()),
            ..Default::default()
        });
        assert_eq!(p.keys().collect::<Vec<_>>(), ["mode", "per_page", "q", "validation_status"]);
        let q = SearchRequest { q: Some(" refunds ".into()), tags: Some("a, b,,".into()), ..Default::default() }
            .into_query(100)
            .unwrap();
        assert_eq!(
            (q.text.as_str(), q.mode, q.filters.tags.len(), q.filters.include_public),
            ("refunds", Mode::Hybrid, 2, true)
        );
        assert!(problems(SearchRequest { q: Some("x".repeat(1001)), ..Default::default() }).contains_key("q"));
    }

    #[test]
    fn errors_render_the_envelope_without_causes() {
        let body = ServiceError::Internal("password=hunter2".into()).body();
        assert_eq!(body.code, "INTERNAL_ERROR");
        assert!(!body.message.contains("hunter2"));
        assert_eq!(ServiceError::Validation(field("q", "is required")).status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
