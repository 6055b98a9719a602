//! FAQ categories: a per-tenant tree (`parent_id`), cycles refused (`/api/v1/faq-categories`).

pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use fibonacco_platform::{db, domain::Slug};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    knowledge,
    patch::Patch,
    state::AppState,
    validate,
};
use store::{CategoryNode, FaqCategory};

const RESOURCE: &str = "FAQ category";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/faq-categories", get(list).post(create))
        .route("/faq-categories/{id}", get(show).put(update).delete(destroy))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CategoryListQuery {
    /// `true` returns the categories nested under their parents.
    pub tree: Option<String>,
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
    let tree = match query.tree.as_deref() {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return Err(ApiError::Validation(FieldErrors::single("tree", "must be true or false"))),
    };
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let rows = store::list(&mut tx, auth.0.tenant_id).await?;
    tx.commit().await?;
    let data = if tree { serde_json::to_value(CategoryNode::forest(rows)) } else { serde_json::to_value(rows) }
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(Envelope::data(data)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCategoryRequest {
    pub name: Option<String>,
    /// Unique in the tenant; derived from the name when omitted.
    pub slug: Option<String>,
    pub parent_id: Option<Uuid>,
    pub display_order: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCategoryRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub slug: Patch<String>,
    /// `null` makes it a root; a category can never sit under itself or its descendants.
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub parent_id: Patch<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<i32>)]
    pub display_order: Patch<i32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
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
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let (slug, derived) = match body.slug {
        Some(s) => (Slug::parse(s.trim()).map_err(|err| e.add("slug", err.0)).ok(), false),
        None => (Slug::from_text(&name), true),
    };
    if slug.is_none() && derived && !name.is_empty() {
        e.add("slug", "cannot be derived from the name; give one");
    }
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("slug", "is required")))?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(parent) = body.parent_id
        && !store::exists(&mut tx, tenant, parent).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("parent_id", "no such FAQ category")));
    }
    let slug = if derived {
        crate::slugs::free_slug(&mut tx, "faq_categories", tenant, slug.as_str()).await?
    } else {
        slug.into_inner()
    };
    let new = store::NewCategory {
        name,
        slug,
        parent_id: body.parent_id,
        display_order: body.display_order.unwrap_or(0),
        metadata,
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
    let mut e = FieldErrors::default();
    let mut changes = store::CategoryChanges::default();
    match body.name {
        Patch::Missing => {}
        Patch::Null => e.add("name", "cannot be null"),
        Patch::Value(n) => changes.name = Some(validate::required_text(Some(n), 200, "name", &mut e)),
    }
    match body.slug {
        Patch::Missing => {}
        Patch::Null => e.add("slug", "cannot be null"),
        Patch::Value(s) => {
            changes.slug = Slug::parse(s.trim()).map_err(|err| e.add("slug", err.0)).ok().map(Slug::into_inner)
        }
    }
    changes.parent_id = body.parent_id.nullable();
    match body.display_order {
        Patch::Missing => {}
        Patch::Null => e.add("display_order", "cannot be null"),
        Patch::Value(o) => changes.display_order = Some(o),
    }
    match body.metadata {
        Patch::Missing => {}
        Patch::Null => changes.metadata = Some(Default::default()),
        Patch::Value(v) => changes.metadata = Some(validate::object(Some(v), "metadata", &mut e)),
    }
    e.into_result()?;
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
