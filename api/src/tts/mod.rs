//! Text-to-speech requests (`/api/v1/tts`): stored, then voiced by the GenerateTTS job on
//! the `tts` queue (the worker and ElevenLabs call come with the queue issue).

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db, queue::jobs::GenerateTts};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
    validate,
};

pub const READ: &str = "tts:read";
pub const WRITE: &str = "tts:write";
const RESOURCE: &str = "TTS request";
pub const STATUSES: &[&str] = &["pending", "processing", "completed", "failed"];
const SOURCE_TYPES: &[&str] = &["presentation", "article", "content", "phone_script", "other"];

pub fn routes() -> Router<AppState> {
    Router::new().route("/tts", get(list).post(create)).route("/tts/{id}", get(show))
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TtsRequest {
    pub id: Uuid,
    pub text: String,
    pub voice_id: String,
    pub model: Option<String>,
    /// pending, processing, completed or failed.
    pub status: String,
    /// Where the audio is, once completed.
    pub audio_url: Option<String>,
    /// Size of the audio in bytes, once completed.
    pub audio_bytes: Option<i64>,
    pub error: Option<String>,
    pub source_type: Option<String>,
    pub source_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, text, voice_id, model, status, audio_url, audio_bytes, error, source_type, source_id, created_at, completed_at";

async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<TtsRequest>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from tts_requests where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TtsListQuery {
    pub status: Option<String>,
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
    let status = query.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let total: i64 = sqlx::query_scalar(
        "select count(*) from tts_requests where tenant_id = $1 and ($2::text is null or status = $2)",
    )
    .bind(tenant)
    .bind(&status)
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<TtsRequest> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from tts_requests where tenant_id = $1 and ($2::text is null or status = $2)
         order by created_at desc, id desc limit $3 offset $4"
    )))
    .bind(tenant)
    .bind(&status)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTtsRequest {
    /// 1 to 10000 characters.
    pub text: Option<String>,
    /// The ElevenLabs voice id.
    pub voice_id: Option<String>,
    pub model: Option<String>,
    /// presentation, article, content, phone_script or other.
    pub source_type: Option<String>,
    pub source_id: Option<Uuid>,
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
    let mut e = FieldErrors::default();
    let text = validate::required_text(body.text, 10_000, "text", &mut e);
    let voice = validate::required_text(body.voice_id, 100, "voice_id", &mut e);
    let model = body.model.map(|m| validate::text(&m, 100, "model", &mut e));
    let source_type = body.source_type.map(|s| validate::one_of(&s, SOURCE_TYPES, "source_type", &mut e));
    if body.source_id.is_some() && source_type.is_none() {
        e.add("source_type", "is required with source_id");
    }
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into tts_requests (tenant_id, text, voice_id, model, source_type, source_id) values ($1, $2, $3, $4, $5, $6) returning id",
    )
    .bind(tenant)
    .bind(text)
    .bind(voice)
    .bind(model)
    .bind(source_type)
    .bind(body.source_id)
    .fetch_one(&mut *tx)
    .await?;
    let request = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
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
    let row = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    row.map(|r| Json(Envelope::data(r))).ok_or(ApiError::NotFound(RESOURCE))
}
