//! AI personalities and which customer talks to which (`/api/v1/personalities`). Handlers
//! here; `input.rs` parses, `store.rs` holds the SQL.

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_platform::db;

pub use input::{AssignRequest, PersonalityRequest, UpdatePersonalityRequest};
pub use store::{Assignment, Personality};

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    state::AppState,
};

pub const READ: &str = "personalities:read";
pub const WRITE: &str = "personalities:write";
const RESOURCE: &str = "personality";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/personalities", get(list).post(create))
        .route("/personalities/assignments", get(assignments))
        .route("/personalities/assign", post(assign))
        .route("/personalities/customers/{customer_id}/personality", get(customer_personality))
        .route("/personalities/{id}", get(show).put(update).delete(destroy))
}

#[utoipa::path(get, path = "/api/v1/personalities", tag = "personalities", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Personality>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Personality>>>, ApiError> {
    auth.require(READ)?;
    let listing = Listing { from: "ai_personalities p", columns: store::LIST_COLUMNS, order_by: "lower(p.name), p.id" };
    page_of(&state, &auth, page, &listing).await
}

#[utoipa::path(post, path = "/api/v1/personalities", tag = "personalities", request_body = PersonalityRequest,
    responses((status = 201, body = inline(Envelope<Personality>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<PersonalityRequest>,
) -> Result<(StatusCode, Json<Envelope<Personality>>), ApiError> {
    auth.require(WRITE)?;
    let personality = body.parse(&state.config.ai)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let id = store::insert(&mut tx, tenant, personality).await?;
    let p = store::get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(p, "Personality created."))))
}

#[utoipa::path(get, path = "/api/v1/personalities/{id}", tag = "personalities", params(("id" = Uuid, Path, description = "Personality id")),
    responses((status = 200, body = inline(Envelope<Personality>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Personality>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let p = store::get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    p.map(|p| Json(Envelope::data(p))).ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(put, path = "/api/v1/personalities/{id}", tag = "personalities", params(("id" = Uuid, Path, description = "Personality id")),
    request_body = UpdatePersonalityRequest,
    responses((status = 200, body = inline(Envelope<Personality>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdatePersonalityRequest>,
) -> Result<Json<Envelope<Personality>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let changes = body.parse(&state.config.ai)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !store::update(&mut tx, tenant, id, changes).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let p = store::get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(p, "Personality updated.")))
}

/// Delete a personality; its assignments go with it.
#[utoipa::path(delete, path = "/api/v1/personalities/{id}", tag = "personalities", params(("id" = Uuid, Path, description = "Personality id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "ai_personalities", id).await? {
        Ok(Json(Envelope::with_message(None, "Personality deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

#[utoipa::path(get, path = "/api/v1/personalities/assignments", tag = "personalities", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Assignment>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn assignments(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Assignment>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    e.into_result()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let (rows, total) = store::assignments(&mut tx, auth.0.tenant_id, page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

/// Give a customer a personality; a customer has one at a time, so this replaces any other.
#[utoipa::path(post, path = "/api/v1/personalities/assign", tag = "personalities", request_body = AssignRequest,
    responses((status = 200, body = inline(Envelope<Assignment>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn assign(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<AssignRequest>,
) -> Result<Json<Envelope<Assignment>>, ApiError> {
    auth.require(WRITE)?;
    let (personality, customer) = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let mut e = FieldErrors::default();
    if store::get_one(&mut tx, tenant, personality).await?.is_none() {
        e.add("personality_id", "no such personality");
    }
    if !customers::store::exists(&mut tx, tenant, customer).await? {
        e.add("customer_id", "no such customer");
    }
    e.into_result()?;
    let a = store::assign(&mut tx, tenant, personality, customer, auth.0.user_id).await?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(a, "Personality assigned.")))
}

/// The personality assigned to a customer (404 when the customer has none).
#[utoipa::path(get, path = "/api/v1/personalities/customers/{customer_id}/personality", tag = "personalities",
    params(("customer_id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, body = inline(Envelope<Personality>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn customer_personality(
    State(state): State<AppState>,
    auth: Auth,
    Path(customer_id): Path<String>,
) -> Result<Json<Envelope<Personality>>, ApiError> {
    auth.require(READ)?;
    let customer = resource_id(&customer_id, "customer")?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !customers::store::exists(&mut tx, tenant, customer).await? {
        return Err(ApiError::NotFound("customer"));
    }
    let p = store::of_customer(&mut tx, tenant, customer).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::data(p)))
}
