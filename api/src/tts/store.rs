//! TTS request SQL.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::NewTts;
use crate::envelope::PageRequest;

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

#[tracing::instrument(name = "tts.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<TtsRequest>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from tts_requests where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// One page of the tenant's requests (newest first) and the total, optionally by status.
#[tracing::instrument(name = "tts.list", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    status: Option<&str>,
    page: PageRequest,
) -> Result<(Vec<TtsRequest>, i64), sqlx::Error> {
    let total: i64 = sqlx::query_scalar(
        "select count(*) from tts_requests where tenant_id = $1 and ($2::text is null or status = $2)",
    )
    .bind(tenant)
    .bind(status)
    .fetch_one(&mut *conn)
    .await?;
    let rows: Vec<TtsRequest> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from tts_requests where tenant_id = $1 and ($2::text is null or status = $2)
         order by created_at desc, id desc limit $3 offset $4"
    )))
    .bind(tenant)
    .bind(status)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

#[tracing::instrument(name = "tts.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, new: &NewTts) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into tts_requests (tenant_id, text, voice_id, model, source_type, source_id) values ($1, $2, $3, $4, $5, $6) returning id",
    )
    .bind(tenant)
    .bind(&new.text)
    .bind(&new.voice_id)
    .bind(&new.model)
    .bind(&new.source_type)
    .bind(new.source_id)
    .fetch_one(conn)
    .await
}
