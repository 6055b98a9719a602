//! Training (`/api/v1/training`): modules of ordered lessons and each customer's progress.
//! Handlers here; `input.rs` parses, `store.rs` holds the SQL.

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_platform::db;

pub use input::{CreateModuleRequest, ProgressRequest};
pub use store::{Progress, TrainingModule};

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    state::AppState,
};

pub const READ: &str = "training:read";
pub const WRITE: &str = "training:write";
const RESOURCE: &str = "training module";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/training", get(list).post(create))
        .route("/training/{id}", get(show))
        .route("/training/{id}/progress", post(record_progress))
        .route("/training/{id}/progress/{customer_id}", get(progress))
}

#[utoipa::path(get, path = "/api/v1/training", tag = "training", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<TrainingModule>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<TrainingModule>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "training_modules", columns: store::COLUMNS, order_by: "position, created_at, id" },
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/training", tag = "training", request_body = CreateModuleRequest,
    responses((status = 201, body = inline(Envelope<TrainingModule>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateModuleRequest>,
) -> Result<(StatusCode, Json<Envelope<TrainingModule>>), ApiError> {
    auth.require(WRITE)?;
    let new = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let mut e = FieldErrors::default();
    for (i, id) in &new.knowledge_ids {
        if !store::knowledge_exists(&mut tx, tenant, *id).await? {
            e.add(format!("lessons[{i}].knowledge_id"), "no such knowledge entry");
        }
    }
    e.into_result()?;
    let slug = crate::slugs::free_slug(&mut tx, "training_modules", tenant, new.slug.as_str()).await?;
    let id = store::insert(&mut tx, tenant, &slug, &new).await?;
    let row = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Training module created."))))
}

#[utoipa::path(get, path = "/api/v1/training/{id}", tag = "training", params(("id" = Uuid, Path, description = "Module id")),
    responses((status = 200, body = inline(Envelope<TrainingModule>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<TrainingModule>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = store::get(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    row.map(|m| Json(Envelope::data(m))).ok_or(ApiError::NotFound(RESOURCE))
}

/// Mark a lesson done for a customer; finishing the last one completes the module.
/// Recording the same lesson twice changes nothing.
#[utoipa::path(post, path = "/api/v1/training/{id}/progress", tag = "training", params(("id" = Uuid, Path, description = "Module id")),
    request_body = ProgressRequest,
    responses((status = 200, body = inline(Envelope<Progress>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn record_progress(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProgressRequest>,
) -> Result<Json<Envelope<Progress>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let module = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let count = module.lessons.0.as_array().map_or(0, Vec::len);
    let mut e = FieldErrors::default();
    match body.customer_id {
        None => e.add("customer_id", "is required"),
        Some(c) if !customers::store::exists(&mut tx, tenant, c).await? => e.add("customer_id", "no such customer"),
        Some(_) => {}
    }
    match body.lesson {
        None => e.add("lesson", "is required"),
        Some(l) if l < 0 || usize::try_from(l).is_ok_and(|l| l >= count) => {
            e.add("lesson", format!("must be between 0 and {}", count.saturating_sub(1)))
        }
        Some(_) => {}
    }
    e.into_result()?;
    let (Some(customer), Some(lesson)) = (body.customer_id, body.lesson) else {
        return Err(ApiError::Validation(FieldErrors::single("lesson", "is required")));
    };
    let lesson_count = i32::try_from(count).unwrap_or(i32::MAX);
    let row = store::record_lesson(&mut tx, tenant, id, customer, lesson, lesson_count).await?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(row, "Progress recorded.")))
}

#[utoipa::path(get, path = "/api/v1/training/{id}/progress/{customer_id}", tag = "training",
    params(("id" = Uuid, Path, description = "Module id"), ("customer_id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, body = inline(Envelope<Progress>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn progress(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, customer_id)): Path<(String, String)>,
) -> Result<Json<Envelope<Progress>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let customer = resource_id(&customer_id, "customer")?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = store::progress(&mut tx, auth.0.tenant_id, id, customer).await?;
    tx.commit().await?;
    row.map(|p| Json(Envelope::data(p))).ok_or(ApiError::NotFound("progress"))
}
