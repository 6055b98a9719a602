//! Presentations and their presenters (`/api/v1/presentations`): slide decks a presenter
//! voice narrates; views count as customer activity when the viewer is known. Handlers
//! here; `input.rs` parses, `store.rs` holds the SQL.

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_platform::{TenantId, db};
use uuid::Uuid;

pub use input::{CreatePresentationRequest, CreatePresenterRequest, STATUSES, UpdatePresentationRequest, ViewRequest};
pub use store::{Presentation, Presenter};

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    state::AppState,
};

pub const READ: &str = "presentations:read";
pub const WRITE: &str = "presentations:write";
const RESOURCE: &str = "presentation";

/// A presenter named by a body must be one of the tenant's (422 otherwise).
async fn check_presenter(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    presenter: Option<Uuid>,
) -> Result<(), ApiError> {
    if let Some(p) = presenter
        && !store::presenter_exists(conn, tenant, p).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("presenter_id", "no such presenter")));
    }
    Ok(())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/presentations", get(list).post(create))
        .route("/presentations/presenters", get(list_presenters).post(create_presenter))
        .route("/presentations/{id}", get(show).put(update).delete(destroy))
        .route("/presentations/{id}/view", post(record_view))
}

#[utoipa::path(get, path = "/api/v1/presentations", tag = "presentations", params(PageQuery),
    responses((status = 200, body = inline(crate::envelope::Envelope<Vec<Presentation>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Presentation>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "presentations", columns: store::COLUMNS, order_by: "created_at desc, id desc" },
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/presentations", tag = "presentations", request_body = CreatePresentationRequest,
    responses((status = 201, body = inline(Envelope<Presentation>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreatePresentationRequest>,
) -> Result<(StatusCode, Json<Envelope<Presentation>>), ApiError> {
    auth.require(WRITE)?;
    let new = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    check_presenter(&mut tx, tenant, new.presenter_id).await?;
    let slug = crate::slugs::free_slug(&mut tx, "presentations", tenant, new.slug.as_str()).await?;
    let id = store::insert(&mut tx, tenant, &slug, &new).await?;
    let row = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Presentation created."))))
}

#[utoipa::path(get, path = "/api/v1/presentations/{id}", tag = "presentations", params(("id" = Uuid, Path, description = "Presentation id")),
    responses((status = 200, body = inline(Envelope<Presentation>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Presentation>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = store::get(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    row.map(|p| Json(Envelope::data(p))).ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(put, path = "/api/v1/presentations/{id}", tag = "presentations", params(("id" = Uuid, Path, description = "Presentation id")),
    request_body = UpdatePresentationRequest,
    responses((status = 200, body = inline(Envelope<Presentation>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdatePresentationRequest>,
) -> Result<Json<Envelope<Presentation>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let changes = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    check_presenter(&mut tx, tenant, changes.presenter_id.flatten()).await?;
    if !store::update(&mut tx, tenant, id, &changes).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let row = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(row, "Presentation updated.")))
}

#[utoipa::path(delete, path = "/api/v1/presentations/{id}", tag = "presentations", params(("id" = Uuid, Path, description = "Presentation id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "presentations", id).await? {
        Ok(Json(Envelope::with_message(None, "Presentation deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

/// Count a view of a published presentation.
#[utoipa::path(post, path = "/api/v1/presentations/{id}/view", tag = "presentations", params(("id" = Uuid, Path, description = "Presentation id")),
    request_body = ViewRequest,
    responses((status = 200, body = inline(Envelope<Presentation>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn record_view(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ViewRequest>,
) -> Result<Json<Envelope<Presentation>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(c) = body.customer_id
        && !customers::store::exists(&mut tx, tenant, c).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("customer_id", "no such customer")));
    }
    if !store::record_view(&mut tx, tenant, id, body.customer_id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let row = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::data(row)))
}

#[utoipa::path(get, path = "/api/v1/presentations/presenters", tag = "presentations", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Presenter>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_presenters(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Presenter>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "presenters", columns: store::PRESENTER_COLUMNS, order_by: "lower(name), id" },
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/presentations/presenters", tag = "presentations", request_body = CreatePresenterRequest,
    responses((status = 201, body = inline(Envelope<Presenter>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_presenter(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreatePresenterRequest>,
) -> Result<(StatusCode, Json<Envelope<Presenter>>), ApiError> {
    auth.require(WRITE)?;
    let new = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row = store::insert_presenter(&mut tx, tenant, &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Presenter created."))))
}
