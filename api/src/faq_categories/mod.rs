//! FAQ categories: a per-tenant tree (`parent_id`), cycles refused (`/api/v1/faq-categories`).

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use fibonacco_platform::db;
use serde_json::Value;

pub use input::{CategoryListQuery, CreateCategoryRequest, UpdateCategoryRequest};

use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    knowledge,
    state::AppState,
};
use store::{CategoryNode, FaqCategory};

const RESOURCE: &str = "FAQ category";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/faq-categories", get(list).post(create))
        .route("/faq-categories/{id}", get(show).put(update).delete(destroy))
}

/// All categories, ordered by `display_order` then name; flat or as a tree.
#[utoipa::path(get, path = "/api/v1/faq-categories", tag = "knowledge",
    params(CategoryListQuery),
    responses((status = 200, description = "Flat list, or nested nodes with `children` when tree=true", body = inline(Envelope<Vec<FaqCategory>>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<CategoryListQuery>,
) -> Result<Json<Envelope<Value>>, ApiError> {
    auth.require(knowledge::READ)?;
    let tree = query.parse()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let rows = store::list(&mut tx, auth.0.tenant_id).await?;
    tx.commit().await?;
    let data = if tree { serde_json::to_value(CategoryNode::forest(rows)) } else { serde_json::to_value(rows) }
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(Envelope::data(data)))
}

fn conflict(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some("faq_categories_tenant_slug_key") => {
            ApiError::Conflict { message: "A FAQ category with this slug already exists.".into(), field: Some("slug") }
        }
        _ => err.into(),
    }
}

#[utoipa::path(post, path = "/api/v1/faq-categories", tag = "knowledge",
    request_body = CreateCategoryRequest,
    responses((status = 201, body = inline(Envelope<FaqCategory>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateCategoryRequest>,
) -> Result<(StatusCode, Json<Envelope<FaqCategory>>), ApiError> {
    auth.require(knowledge::WRITE)?;
    let draft = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(parent) = draft.parent_id
        && !store::exists(&mut tx, tenant, parent).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("parent_id", "no such FAQ category")));
    }
    let slug = if draft.derived {
        crate::slugs::free_slug(&mut tx, "faq_categories", tenant, draft.slug.as_str()).await?
    } else {
        draft.slug.into_inner()
    };
    let new = store::NewCategory {
        name: draft.name,
        slug,
        parent_id: draft.parent_id,
        display_order: draft.display_order,
        metadata: draft.metadata,
    };
    let category = store::insert(&mut tx, tenant, &new).await.map_err(conflict)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(category, "FAQ category created."))))
}

#[utoipa::path(get, path = "/api/v1/faq-categories/{id}", tag = "knowledge",
    params(("id" = Uuid, Path, description = "Category id")),
    responses((status = 200, body = inline(Envelope<FaqCategory>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<FaqCategory>>, ApiError> {
    auth.require(knowledge::READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let category = store::get(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    category.map(|c| Json(Envelope::data(c))).ok_or(ApiError::NotFound(RESOURCE))
}

/// Partial update; moving a category under itself or one of its descendants is a 422.
#[utoipa::path(put, path = "/api/v1/faq-categories/{id}", tag = "knowledge",
    params(("id" = Uuid, Path, description = "Category id")),
    request_body = UpdateCategoryRequest,
    responses((status = 200, body = inline(Envelope<FaqCategory>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateCategoryRequest>,
) -> Result<Json<Envelope<FaqCategory>>, ApiError> {
    auth.require(knowledge::WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let changes = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    // Lock the tree so two concurrent moves cannot together form a cycle.
    store::lock_tree(&mut tx, tenant).await?;
    if !store::exists(&mut tx, tenant, id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    if let Some(Some(parent)) = changes.parent_id {
        if !store::exists(&mut tx, tenant, parent).await? {
            return Err(ApiError::Validation(FieldErrors::single("parent_id", "no such FAQ category")));
        }
        if store::would_cycle(&mut tx, tenant, id, parent).await? {
            return Err(ApiError::Validation(FieldErrors::single(
                "parent_id",
                "would make the category its own ancestor",
            )));
        }
    }
    let category =
        store::update(&mut tx, tenant, id, &changes).await.map_err(conflict)?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(category, "FAQ category updated.")))
}

/// Delete a category. Its children become roots and its entries keep existing without a
/// category.
#[utoipa::path(delete, path = "/api/v1/faq-categories/{id}", tag = "knowledge",
    params(("id" = Uuid, Path, description = "Category id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(knowledge::WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let deleted = store::delete(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    if deleted {
        Ok(Json(Envelope::with_message(None, "FAQ category deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}
