//! Conversations with customers and their messages (`/api/v1/conversations`).

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_platform::db;

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
};
use input::{
    AddMessageRequest, ConversationListQuery, CreateConversationRequest, EndConversationRequest,
    UpdateConversationRequest,
};
use store::{Conversation, Message};

pub const READ: &str = "conversations:read";
pub const WRITE: &str = "conversations:write";
const RESOURCE: &str = "conversation";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list).post(create))
        .route("/conversations/{id}", get(show).put(update).delete(destroy))
        .route("/conversations/{id}/end", post(end))
        .route("/conversations/{id}/messages", get(messages).post(add_message))
}

/// List conversations, newest first; filter by customer, status and channel.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations",
    params(PageQuery, ConversationListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Conversation>>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<ConversationListQuery>,
) -> Result<Json<Envelope<Vec<Conversation>>>, ApiError> {
    auth.require(READ)?;
    let mut errors = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut errors);
    let filter = query.parse(&mut errors);
    errors.into_result()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let (rows, total) = store::list(&mut tx, auth.0.tenant_id, &filter, page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations",
    request_body = CreateConversationRequest,
    responses((status = 201, body = inline(Envelope<Conversation>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateConversationRequest>,
) -> Result<(StatusCode, Json<Envelope<Conversation>>), ApiError> {
    auth.require(WRITE)?;
    let new = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(customer) = new.customer_id
        && !customers::store::exists(&mut tx, tenant, customer).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("customer_id", "no such customer")));
    }
    let id = store::insert(&mut tx, tenant, &new).await?;
    let conversation = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(conversation, "Conversation created."))))
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = inline(Envelope<Conversation>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Conversation>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let conversation = store::get(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    conversation.map(|c| Json(Envelope::data(c))).ok_or(ApiError::NotFound(RESOURCE))
}

/// Partial update of channel, status (active/archived), summary, outcome, follow-up, metadata.
#[utoipa::path(put, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = UpdateConversationRequest,
    responses((status = 200, body = inline(Envelope<Conversation>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateConversationRequest>,
) -> Result<Json<Envelope<Conversation>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let changes = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !store::update(&mut tx, tenant, id, &changes).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let conversation = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(conversation, "Conversation updated.")))
}

#[utoipa::path(delete, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    responses((status = 200, description = "Deleted with its messages", body = inline(Envelope<Option<String>>)),
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
        Ok(Json(Envelope::with_message(None, "Conversation deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

/// End an active conversation: records the outcome, summary and follow-up. Ending one
/// that has already ended is a 409.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/end", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = EndConversationRequest,
    responses((status = 200, body = inline(Envelope<Conversation>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn end(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EndConversationRequest>,
) -> Result<Json<Envelope<Conversation>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let ending = body.parse(chrono::Utc::now())?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    match store::lock_status(&mut tx, tenant, id).await?.as_deref() {
        None => return Err(ApiError::NotFound(RESOURCE)),
        Some("active") => {}
        Some(other) => {
            return Err(ApiError::Conflict {
                message: format!("The conversation is {other}, not active."),
                field: None,
            });
        }
    }
    store::end(&mut tx, tenant, id, &ending).await?;
    let conversation = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(conversation, "Conversation ended.")))
}

/// Add a message. Only active conversations take messages (409 otherwise).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = AddMessageRequest,
    responses((status = 201, body = inline(Envelope<Message>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn add_message(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AddMessageRequest>,
) -> Result<(StatusCode, Json<Envelope<Message>>), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let message = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    // The row lock orders this against a concurrent `end`.
    match store::lock_status(&mut tx, tenant, id).await?.as_deref() {
        None => return Err(ApiError::NotFound(RESOURCE)),
        Some("active") => {}
        Some(other) => {
            return Err(ApiError::Conflict {
                message: format!("The conversation is {other}; messages can only be added to active ones."),
                field: None,
            });
        }
    }
    let saved = store::add_message(&mut tx, tenant, id, &message).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(saved, "Message added."))))
}

/// Messages in the order they were added (oldest first), paginated.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id"), PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Message>>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn messages(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Message>>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut errors = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut errors);
    errors.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !store::exists(&mut tx, tenant, id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let (rows, total) = store::messages(&mut tx, tenant, id, page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}
