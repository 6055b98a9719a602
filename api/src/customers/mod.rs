//! Customers: the CRM's core records (`/api/v1/customers`).
//!
//! `input` turns request bodies into checked values, `store` runs the SQL inside a
//! tenant-scoped transaction, and the handlers here only wire the two together.

pub mod consents;
pub mod erasure;
pub mod export;
pub mod export_job;
pub mod export_parquet;
pub mod import;
pub mod input;
pub mod personal_data;
pub mod scores;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, put},
};
use fibonacco_platform::{db, domain::Slug};

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
};
use input::{BusinessContextRequest, CreateCustomerRequest, CustomerListQuery, UpdateCustomerRequest};
use store::{AiContext, Customer};

pub const READ: &str = "customers:read";
pub const WRITE: &str = "customers:write";
const RESOURCE: &str = "customer";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list).post(create))
        .route("/customers/slug/{slug}", get(show_by_slug))
        .route("/customers/export", get(export::export))
        .route("/customers/exports", axum::routing::post(export_job::create))
        .route("/customers/exports/{id}", get(export_job::show))
        .route("/customers/exports/{id}/download", get(export_job::download))
        .route("/customers/{id}", get(show).put(update).delete(destroy))
        .route("/customers/{id}/business-context", put(update_business_context))
        .route("/customers/{id}/ai-context", get(ai_context))
        .route("/customers/{id}/export-personal-data", axum::routing::post(personal_data::export))
        .route("/customers/{id}/erase", axum::routing::post(erasure::erase))
        .route("/erasures/{id}", get(erasure::show))
        .route(
            "/customers/import",
            axum::routing::post(import::create)
                .layer(axum::extract::DefaultBodyLimit::max(import::MAX_FILE_BYTES + 1024 * 1024)),
        )
        .route("/customers/{id}/consents", get(consents::list))
        .route("/customers/{id}/consents/{channel}", put(consents::record))
        .route("/imports/{id}", get(import::show))
        .route("/imports/{id}/errors", get(import::errors))
}

/// The filter with its segment's rule read (a 422 on `segment_id` when the tenant has no
/// such segment).
pub async fn with_segment(
    conn: &mut sqlx::PgConnection,
    tenant: fibonacco_platform::TenantId,
    mut filter: input::CustomerFilter,
) -> Result<input::CustomerFilter, ApiError> {
    let Some(id) = filter.segment_id else { return Ok(filter) };
    let rule = fibonacco_delivery::segments::load(conn, tenant, id).await?;
    filter.segment =
        Some(rule.ok_or_else(|| ApiError::Validation(FieldErrors::single("segment_id", "no such segment")))?);
    Ok(filter)
}

/// List customers, newest first, with search and filters.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers",
    params(PageQuery, CustomerListQuery),
    responses(
        (status = 200, description = "A page of customers", body = inline(Envelope<Vec<Customer>>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<CustomerListQuery>,
) -> Result<Json<Envelope<Vec<Customer>>>, ApiError> {
    auth.require(READ)?;
    let mut errors = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut errors);
    let filter = query.parse(&mut errors);
    errors.into_result()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let filter = with_segment(&mut tx, auth.0.tenant_id, filter).await?;
    let (rows, total) = store::list(&mut tx, auth.0.tenant_id, &filter, page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

/// Create a customer. The slug is derived from the name when omitted.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers",
    request_body = CreateCustomerRequest,
    responses(
        (status = 201, description = "Created", body = inline(Envelope<Customer>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, description = "Slug or e-mail already used in this tenant", body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateCustomerRequest>,
) -> Result<(StatusCode, Json<Envelope<Customer>>), ApiError> {
    auth.require(WRITE)?;
    let new = body.parse()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let customer = store::insert(&mut tx, auth.0.tenant_id, &new).await.map_err(store::conflict)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(customer, "Customer created."))))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = uuid::Uuid, Path, description = "Customer id")),
    responses(
        (status = 200, body = inline(Envelope<Customer>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Customer>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    // A single-statement read: no explicit transaction, one round trip (db::fetch_scoped).
    let mut conn = state.pool.acquire().await?;
    let customer = store::get(&mut conn, auth.0.tenant_id, id).await?;
    customer.map(|c| Json(Envelope::data(c))).ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(get, path = "/api/v1/customers/slug/{slug}", tag = "customers",
    params(("slug" = String, Path, description = "Customer slug")),
    responses(
        (status = 200, body = inline(Envelope<Customer>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show_by_slug(
    State(state): State<AppState>,
    auth: Auth,
    Path(slug): Path<String>,
) -> Result<Json<Envelope<Customer>>, ApiError> {
    auth.require(READ)?;
    // Text that is not a slug cannot name a customer.
    let slug = Slug::parse(&slug).map_err(|_| ApiError::NotFound(RESOURCE))?;
    let mut conn = state.pool.acquire().await?;
    let customer = store::get_by_slug(&mut conn, auth.0.tenant_id, &slug).await?;
    customer.map(|c| Json(Envelope::data(c))).ok_or(ApiError::NotFound(RESOURCE))
}

/// Partial update: fields left out keep their value; `null` clears an optional field.
#[utoipa::path(put, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = uuid::Uuid, Path, description = "Customer id")),
    request_body = UpdateCustomerRequest,
    responses(
        (status = 200, body = inline(Envelope<Customer>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateCustomerRequest>,
) -> Result<Json<Envelope<Customer>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let changes = body.parse()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let customer = store::update(&mut tx, auth.0.tenant_id, id, &changes).await.map_err(store::conflict)?;
    let customer = customer.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(customer, "Customer updated.")))
}

#[utoipa::path(delete, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = uuid::Uuid, Path, description = "Customer id")),
    responses(
        (status = 200, description = "Deleted; `data` is null", body = inline(Envelope<Option<String>>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let deleted = store::delete(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    if deleted {
        Ok(Json(Envelope::with_message(None, "Customer deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

/// Replace the customer's business context (a JSON object the AI assistant reads).
#[utoipa::path(put, path = "/api/v1/customers/{id}/business-context", tag = "customers",
    params(("id" = uuid::Uuid, Path, description = "Customer id")),
    request_body = BusinessContextRequest,
    responses(
        (status = 200, body = inline(Envelope<Customer>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update_business_context(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<BusinessContextRequest>,
) -> Result<Json<Envelope<Customer>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let context = body.parse()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let customer = store::set_business_context(&mut tx, auth.0.tenant_id, id, &context).await?;
    let customer = customer.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(customer, "Business context updated.")))
}

/// What an AI assistant should know about the customer: the record, its business
/// context and recent conversations with their latest messages.
#[utoipa::path(get, path = "/api/v1/customers/{id}/ai-context", tag = "customers",
    params(("id" = uuid::Uuid, Path, description = "Customer id")),
    responses(
        (status = 200, body = inline(Envelope<AiContext>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn ai_context(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<AiContext>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let context = store::ai_context(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    context.map(|c| Json(Envelope::data(c))).ok_or(ApiError::NotFound(RESOURCE))
}
