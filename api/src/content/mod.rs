//! Content and its publishing workflow (`/api/v1/content`, `/api/v1/publishing`).
//! Every status change goes through [`fibonacco_delivery::publishing::allowed`] and leaves a history row
//! (who, when, from, to, notes). Handlers here; `input.rs` parses, `store.rs` holds the
//! SQL, `generate.rs` drafts content with the LLM provider, `publishing.rs` serves the
//! calendar and publishes.

pub mod generate;
pub mod input;
pub mod publishing;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_delivery::publishing::{self as workflow, Step, transition};
use fibonacco_platform::db;

pub use input::{
    CONTENT_TYPES, ContentListQuery, CreateContentRequest, CreateContentTemplate, StatusRequest, UpdateContentRequest,
};
pub use store::{Content, ContentTemplate, HistoryEntry};
pub(crate) use store::{NewContent, SELECT, get_one, insert, lock_status};

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    state::AppState,
};

pub const READ: &str = "content:read";
pub const WRITE: &str = "content:write";
const RESOURCE: &str = "content";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/content", get(list).post(create))
        .route("/content/templates", get(list_templates).post(create_template))
        .route("/content/generate", post(generate::generate))
        .route("/content/generate-from-campaign", post(generate::generate_from_campaign))
        .route("/content/{id}", get(show).put(update))
        .route("/content/{id}/status", post(change_status))
        .route("/content/{id}/history", get(history))
        .route("/publishing/dashboard", get(publishing::dashboard))
        .route("/publishing/calendar", get(publishing::calendar))
        .route("/publishing/analytics", get(publishing::analytics))
        .route("/publishing/content/{id}/publish", post(publishing::publish))
}

#[utoipa::path(get, path = "/api/v1/content", tag = "content", params(PageQuery, ContentListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Content>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<ContentListQuery>,
) -> Result<Json<Envelope<Vec<Content>>>, ApiError> {
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

/// Write content by hand (generated content arrives through the generate endpoints);
/// it starts as a draft.
#[utoipa::path(post, path = "/api/v1/content", tag = "content", request_body = CreateContentRequest,
    responses((status = 201, body = inline(Envelope<Content>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateContentRequest>,
) -> Result<(StatusCode, Json<Envelope<Content>>), ApiError> {
    auth.require(WRITE)?;
    let draft = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let new = NewContent {
        title: &draft.title,
        content_type: &draft.content_type,
        body: &draft.body,
        excerpt: draft.excerpt.as_deref(),
        prompt: None,
        model: None,
        metadata: &draft.metadata,
        author: auth.0.user_id,
    };
    let id = insert(&mut tx, tenant, &new).await?;
    let content = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(content, "Content created."))))
}

#[utoipa::path(get, path = "/api/v1/content/{id}", tag = "content", params(("id" = Uuid, Path, description = "Content id")),
    responses((status = 200, body = inline(Envelope<Content>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Content>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let content = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    content.map(|c| Json(Envelope::data(c))).ok_or(ApiError::NotFound(RESOURCE))
}

/// Edit content while it is a draft or in review (409 once approved: move it back by
/// archiving and recreating, so what was approved is what gets published).
#[utoipa::path(put, path = "/api/v1/content/{id}", tag = "content", params(("id" = Uuid, Path, description = "Content id")),
    request_body = UpdateContentRequest,
    responses((status = 200, body = inline(Envelope<Content>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateContentRequest>,
) -> Result<Json<Envelope<Content>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let changes = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let status = lock_status(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if status != "draft" && status != "review" {
        return Err(ApiError::Conflict {
            message: format!("The content is {status}; only drafts and content in review can be edited."),
            field: None,
        });
    }
    store::update(&mut tx, tenant, id, changes).await?;
    let content = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(content, "Content updated.")))
}

/// Move content along the workflow. An illegal step is a 422 naming the legal ones, and
/// nothing changes.
#[utoipa::path(post, path = "/api/v1/content/{id}/status", tag = "content", params(("id" = Uuid, Path, description = "Content id")),
    request_body = StatusRequest,
    responses((status = 200, body = inline(Envelope<Content>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn change_status(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<StatusRequest>,
) -> Result<Json<Envelope<Content>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let step = body.parse()?;
    let to = step.to;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let from = lock_status(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if !workflow::allowed(&from, &to) {
        let next = workflow::next_steps(&from);
        let message = if next.is_empty() {
            format!("cannot move from {from} to {to}: {from} is final")
        } else {
            format!("cannot move from {from} to {to}; allowed: {}", next.join(", "))
        };
        return Err(ApiError::Validation(FieldErrors::single("status", message)));
    }
    transition(
        &mut tx,
        tenant,
        id,
        &Step {
            from: &from,
            to: &to,
            scheduled_publish_at: step.scheduled_publish_at,
            actor: auth.0.user_id,
            notes: step.notes.as_deref(),
            action: "status_change",
        },
    )
    .await?;
    let content = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(content, format!("Content moved from {from} to {to}."))))
}

/// Who moved the content, when, from what to what, with which notes (oldest first).
#[utoipa::path(get, path = "/api/v1/content/{id}/history", tag = "content", params(("id" = Uuid, Path, description = "Content id")),
    responses((status = 200, body = inline(Envelope<Vec<HistoryEntry>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Vec<HistoryEntry>>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if get_one(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let rows = store::history(&mut tx, tenant, id).await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(rows)))
}

#[utoipa::path(get, path = "/api/v1/content/templates", tag = "content", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<ContentTemplate>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<ContentTemplate>>>, ApiError> {
    auth.require(READ)?;
    let listing = Listing { from: "content_templates", columns: store::TEMPLATE_COLUMNS, order_by: "lower(name), id" };
    page_of(&state, &auth, page, &listing).await
}

#[utoipa::path(post, path = "/api/v1/content/templates", tag = "content", request_body = CreateContentTemplate,
    responses((status = 201, body = inline(Envelope<ContentTemplate>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_template(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateContentTemplate>,
) -> Result<(StatusCode, Json<Envelope<ContentTemplate>>), ApiError> {
    auth.require(WRITE)?;
    let template = body.parse()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = store::insert_template(&mut tx, auth.0.tenant_id, template).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Content template created."))))
}
