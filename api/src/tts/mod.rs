//! Text-to-speech requests (`/api/v1/tts`): stored, then voiced by the GenerateTTS job on
//! the `tts` queue. Handlers here; `input.rs` parses, `store.rs` holds the SQL.

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use fibonacco_platform::{db, queue::jobs::GenerateTts};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub use input::{CreateTtsRequest, STATUSES, TtsListQuery};
pub use store::TtsRequest;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
};

pub const READ: &str = "tts:read";
pub const WRITE: &str = "tts:write";
const RESOURCE: &str = "TTS request";

pub fn routes() -> Router<AppState> {
    Router::new().route("/tts", get(list).post(create)).route("/tts/{id}", get(show))
}

#[utoipa::path(get, path = "/api/v1/tts", tag = "tts", params(PageQuery, TtsListQuery),
    responses((status = 200, body = inline(Envelope<Vec<TtsRequest>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<TtsListQuery>,
) -> Result<Json<Envelope<Vec<TtsRequest>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let status = query.status(&mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (rows, total) = store::list(&mut tx, tenant, status.as_deref(), page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TtsQueued {
    #[serde(flatten)]
    pub request: TtsRequest,
    /// The GenerateTTS job on the `tts` queue.
    pub job_id: Uuid,
}

/// Ask for audio: the request is stored `pending` and a GenerateTTS job is queued.
#[utoipa::path(post, path = "/api/v1/tts", tag = "tts", request_body = CreateTtsRequest,
    responses((status = 202, body = inline(Envelope<TtsQueued>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 503, description = "Queue unreachable; nothing stored", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateTtsRequest>,
) -> Result<(StatusCode, Json<Envelope<TtsQueued>>), ApiError> {
    auth.require(WRITE)?;
    let new = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let id = store::insert(&mut tx, tenant, &new).await?;
    let request = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    // Queue first, commit after: a request the queue never heard of would stay pending
    // forever, so if the push fails nothing is stored. A job that arrives before the
    // commit finds no row yet and is retried by the worker.
    let job_id =
        state.queue.enqueue(&GenerateTts { tenant_id: tenant.as_uuid(), tts_request_id: id }).await.map_err(|err| {
            tracing::warn!(error = %err, "could not queue GenerateTTS");
            ApiError::Unavailable("queue unreachable; the request was not stored, try again")
        })?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(Envelope::with_message(TtsQueued { request, job_id }, "Speech generation queued."))))
}

#[utoipa::path(get, path = "/api/v1/tts/{id}", tag = "tts", params(("id" = Uuid, Path, description = "TTS request id")),
    responses((status = 200, body = inline(Envelope<TtsRequest>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<TtsRequest>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = store::get(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    row.map(|r| Json(Envelope::data(r))).ok_or(ApiError::NotFound(RESOURCE))
}
