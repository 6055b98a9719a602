//! The knowledge base (`/api/v1/knowledge`): entries, helpfulness votes, and requests
//! for embeddings (the embeddings queue's worker comes with the queue and search work).

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_platform::{db, queue::jobs::GenerateEmbedding};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    faq_categories,
    state::AppState,
};
use input::{CreateKnowledgeRequest, KnowledgeListQuery, UpdateKnowledgeRequest, VoteRequest};
use store::{KnowledgeEntry, VoteTally};

pub const READ: &str = "knowledge:read";
pub const WRITE: &str = "knowledge:write";
/// Voting is what a help-center visitor does, so it has its own ability.
pub const VOTE: &str = "knowledge:vote";
const RESOURCE: &str = "knowledge entry";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/knowledge", get(list).post(create))
        .route("/knowledge/{id}", get(show).put(update).delete(destroy))
        .route("/knowledge/{id}/vote", post(vote))
        .route("/knowledge/{id}/generate-embedding", post(generate_embedding))
}

async fn check_category(
    conn: &mut sqlx::PgConnection,
    tenant: fibonacco_platform::TenantId,
    id: Option<uuid::Uuid>,
) -> Result<(), ApiError> {
    if let Some(id) = id
        && !faq_categories::store::exists(conn, tenant, id).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("faq_category_id", "no such FAQ category")));
    }
    Ok(())
}

/// List entries; `search` ranks by full-text relevance, otherwise newest first.
#[utoipa::path(get, path = "/api/v1/knowledge", tag = "knowledge",
    params(PageQuery, KnowledgeListQuery),
    responses((status = 200, body = inline(Envelope<Vec<KnowledgeEntry>>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<KnowledgeListQuery>,
) -> Result<Json<Envelope<Vec<KnowledgeEntry>>>, ApiError> {
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

/// Create an entry; its embedding starts `pending`.
#[utoipa::path(post, path = "/api/v1/knowledge", tag = "knowledge",
    request_body = CreateKnowledgeRequest,
    responses((status = 201, body = inline(Envelope<KnowledgeEntry>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateKnowledgeRequest>,
) -> Result<(StatusCode, Json<Envelope<KnowledgeEntry>>), ApiError> {
    auth.require(WRITE)?;
    let new = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    check_category(&mut tx, tenant, new.faq_category_id).await?;
    let id = store::insert(&mut tx, tenant, &new, auth.0.user_id).await?;
    let entry = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(entry, "Knowledge entry created."))))
}

#[utoipa::path(get, path = "/api/v1/knowledge/{id}", tag = "knowledge",
    params(("id" = uuid::Uuid, Path, description = "Entry id")),
    responses((status = 200, body = inline(Envelope<KnowledgeEntry>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<KnowledgeEntry>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let entry = store::get(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    entry.map(|e| Json(Envelope::data(e))).ok_or(ApiError::NotFound(RESOURCE))
}

/// Partial update. A new title or content marks the embedding `pending` again.
#[utoipa::path(put, path = "/api/v1/knowledge/{id}", tag = "knowledge",
    params(("id" = uuid::Uuid, Path, description = "Entry id")),
    request_body = UpdateKnowledgeRequest,
    responses((status = 200, body = inline(Envelope<KnowledgeEntry>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateKnowledgeRequest>,
) -> Result<Json<Envelope<KnowledgeEntry>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let changes = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    check_category(&mut tx, tenant, changes.faq_category_id.flatten()).await?;
    if !store::update(&mut tx, tenant, id, &changes, auth.0.user_id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let entry = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    if changes.title.is_some() || changes.content.is_some() {
        forget_vectors(&state, id).await;
    } else if state.search.store.name() != "pgvector" && entry.embedding_status == "completed" {
        // An external store filters on a copy of the entry's fields (visibility, category,
        // tags, …): re-running the embedding job rewrites that copy. pgvector filters the
        // row itself, so it needs nothing.
        if let Err(e) = state.queue.enqueue(&GenerateEmbedding::knowledge(tenant, id)).await {
            tracing::warn!(error = %e, "could not queue the refresh of the store's copy; reindex will");
        }
    }
    Ok(Json(Envelope::with_message(entry, "Knowledge entry updated.")))
}

#[utoipa::path(delete, path = "/api/v1/knowledge/{id}", tag = "knowledge",
    params(("id" = uuid::Uuid, Path, description = "Entry id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)),
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
        forget_vectors(&state, id).await;
        Ok(Json(Envelope::with_message(None, "Knowledge entry deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

/// Takes a deleted or rewritten entry out of an external vector store (pgvector rows go
/// with the entry). Best effort: search re-checks every hit against Postgres, so a copy
/// left behind is never shown, and `fibonacco search reindex` clears it.
async fn forget_vectors(state: &AppState, id: uuid::Uuid) {
    if let Err(e) = state.search.store.remove(&[id]).await {
        tracing::warn!(error = %e, store = state.search.store.name(), "could not remove vectors from the store");
    }
}

/// Vote on helpfulness. One vote per voter per entry; voting again replaces the vote and
/// the counters move accordingly, atomically.
#[utoipa::path(post, path = "/api/v1/knowledge/{id}/vote", tag = "knowledge",
    params(("id" = uuid::Uuid, Path, description = "Entry id")),
    request_body = VoteRequest,
    responses((status = 200, body = inline(Envelope<VoteTally>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn vote(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VoteRequest>,
) -> Result<Json<Envelope<VoteTally>>, ApiError> {
    auth.require(VOTE).or_else(|_| auth.require(WRITE))?;
    let id = resource_id(&id, RESOURCE)?;
    let default_voter = match auth.0.user_id {
        Some(user) => format!("user:{user}"),
        None => format!("token:{}", auth.0.token_id),
    };
    let (helpful, voter) = body.parse(default_voter)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let tally =
        store::vote(&mut tx, auth.0.tenant_id, id, &voter, helpful).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(tally, "Vote recorded.")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingRequested {
    pub id: uuid::Uuid,
    pub embedding_status: &'static str,
    /// The queued job's id on the `embeddings` queue.
    pub job_id: uuid::Uuid,
}

/// Ask for (re)computing the entry's embedding: marks it `pending` and queues a
/// GenerateEmbedding job on the `embeddings` queue.
#[utoipa::path(post, path = "/api/v1/knowledge/{id}/generate-embedding", tag = "knowledge",
    params(("id" = uuid::Uuid, Path, description = "Entry id")),
    responses((status = 202, body = inline(Envelope<EmbeddingRequested>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 503, description = "Queue unreachable; the entry stays pending for the scheduled sweep", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn generate_embedding(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Envelope<EmbeddingRequested>>), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !store::mark_embedding_pending(&mut tx, tenant, id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    // Commit before queueing so the worker never sees the entry's old state.
    tx.commit().await?;
    let job_id = state.queue.enqueue(&GenerateEmbedding::knowledge(tenant, id)).await.map_err(|e| {
        tracing::warn!(error = %e, "could not queue GenerateEmbedding; the scheduled sweep will pick the entry up");
        ApiError::Unavailable("queue unreachable; the entry is pending and will be picked up by the scheduled sweep")
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Envelope::with_message(
            EmbeddingRequested { id, embedding_status: "pending", job_id },
            "Embedding generation queued.",
        )),
    ))
}
