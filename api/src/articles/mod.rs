//! Articles of the learning center (`/api/v1/articles`): write, publish, read by slug,
//! count views (and record them as customer activity when the reader is known). Handlers
//! here; `input.rs` parses, `store.rs` holds the SQL.

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_platform::{TenantId, db, domain::Slug, queue::jobs::GenerateEmbedding};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub use input::{ArticleListQuery, CreateArticleRequest, STATUSES, UpdateArticleRequest, ViewRequest};
pub use store::Article;

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
};

pub const READ: &str = "articles:read";
pub const WRITE: &str = "articles:write";
const RESOURCE: &str = "article";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/articles", get(list).post(create))
        .route("/articles/slug/{slug}", get(show_by_slug))
        .route("/articles/{id}", get(show).put(update).delete(destroy))
        .route("/articles/{id}/view", post(record_view))
}

/// Articles: with `search` best matches first, else the most recently published first.
#[utoipa::path(get, path = "/api/v1/articles", tag = "articles", params(PageQuery, ArticleListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Article>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<ArticleListQuery>,
) -> Result<Json<Envelope<Vec<Article>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let filter = query.parse(&mut e);
    e.into_result()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let (rows, total) = store::list(&mut tx, auth.0.tenant_id, &filter, page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

#[utoipa::path(post, path = "/api/v1/articles", tag = "articles", request_body = CreateArticleRequest,
    responses((status = 201, body = inline(Envelope<Article>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateArticleRequest>,
) -> Result<(StatusCode, Json<Envelope<Article>>), ApiError> {
    auth.require(WRITE)?;
    let article = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let slug = if article.derived {
        crate::slugs::free_slug(&mut tx, "articles", tenant, article.slug.as_str()).await?
    } else {
        article.slug.as_str().to_owned()
    };
    let id = store::insert(&mut tx, tenant, auth.0.user_id, &slug, article).await?;
    let article = store::find(&mut tx, tenant, Some(id), None).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    if article.status == "published" {
        queue_embedding(&state, tenant, id).await;
    }
    Ok((StatusCode::CREATED, Json(Envelope::with_message(article, "Article created."))))
}

#[utoipa::path(get, path = "/api/v1/articles/{id}", tag = "articles", params(("id" = Uuid, Path, description = "Article id")),
    responses((status = 200, body = inline(Envelope<Article>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Article>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let article = store::find(&mut tx, auth.0.tenant_id, Some(id), None).await?;
    tx.commit().await?;
    article.map(|a| Json(Envelope::data(a))).ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(get, path = "/api/v1/articles/slug/{slug}", tag = "articles", params(("slug" = String, Path, description = "Article slug")),
    responses((status = 200, body = inline(Envelope<Article>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show_by_slug(
    State(state): State<AppState>,
    auth: Auth,
    Path(slug): Path<String>,
) -> Result<Json<Envelope<Article>>, ApiError> {
    auth.require(READ)?;
    let slug = Slug::parse(&slug).map_err(|_| ApiError::NotFound(RESOURCE))?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let article = store::find(&mut tx, auth.0.tenant_id, None, Some(slug.as_str())).await?;
    tx.commit().await?;
    article.map(|a| Json(Envelope::data(a))).ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(put, path = "/api/v1/articles/{id}", tag = "articles", params(("id" = Uuid, Path, description = "Article id")), request_body = UpdateArticleRequest,
    responses((status = 200, body = inline(Envelope<Article>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateArticleRequest>,
) -> Result<Json<Envelope<Article>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let changes = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !store::update(&mut tx, tenant, id, changes).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let article = store::find(&mut tx, tenant, Some(id), None).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    // Published: (re-)embed; unpublished: the job takes its vectors out of search.
    queue_embedding(&state, tenant, id).await;
    Ok(Json(Envelope::with_message(article, "Article updated.")))
}

#[utoipa::path(delete, path = "/api/v1/articles/{id}", tag = "articles", params(("id" = Uuid, Path, description = "Article id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "articles", id).await? {
        // Postgres vectors went with the row; an external store's copy goes now (best
        // effort: search re-reads every hit from Postgres, so a leftover is never shown).
        if let Err(e) = state.search.store.remove(&[id]).await {
            tracing::warn!(error = %e, "could not remove the article's vectors from the store");
        }
        Ok(Json(Envelope::with_message(None, "Article deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

/// Queues GenerateEmbedding for an article after its change is committed. If Redis is
/// unreachable the article is not lost: the `embeddings:*` sweep finds articles whose
/// vectors are missing or stale.
async fn queue_embedding(state: &AppState, tenant: TenantId, id: Uuid) {
    if let Err(e) = state.queue.enqueue(&GenerateEmbedding::article(tenant, id)).await {
        tracing::warn!(error = %e, "could not queue the article's embedding; the sweep will");
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ViewCount {
    pub view_count: i64,
}

/// Count a read of a published article.
#[utoipa::path(post, path = "/api/v1/articles/{id}/view", tag = "articles", params(("id" = Uuid, Path, description = "Article id")), request_body = ViewRequest,
    responses((status = 200, body = inline(Envelope<ViewCount>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, description = "No such published article", body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn record_view(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ViewRequest>,
) -> Result<Json<Envelope<ViewCount>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(c) = body.customer_id
        && !customers::store::exists(&mut tx, tenant, c).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("customer_id", "no such customer")));
    }
    let count = store::record_view(&mut tx, tenant, id, body.customer_id).await?;
    let view_count = count.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::data(ViewCount { view_count })))
}
