//! Presentation and presenter SQL.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{NewPresentation, NewPresenter, PresentationChanges};

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Presentation {
    pub id: Uuid,
    pub title: String,
    pub slug: String,
    pub description: Option<String>,
    /// Slides in order: `{title, content, notes}`.
    #[schema(value_type = Vec<Object>)]
    pub slides: SqlJson<Value>,
    pub presenter_id: Option<Uuid>,
    pub audio_url: Option<String>,
    pub status: String,
    pub is_template: bool,
    pub view_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const COLUMNS: &str = "id, title, slug, description, slides, presenter_id, audio_url, status, is_template, view_count, created_at, updated_at";

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Presenter {
    pub id: Uuid,
    pub name: String,
    pub bio: Option<String>,
    pub avatar_url: Option<String>,
    /// Text-to-speech voice.
    pub voice_id: Option<String>,
    #[schema(value_type = Object)]
    pub voice_settings: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
}

pub const PRESENTER_COLUMNS: &str = "id, name, bio, avatar_url, voice_id, voice_settings, created_at";

#[tracing::instrument(name = "presentations.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Presentation>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from presentations where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(name = "presentations.presenter_exists", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn presenter_exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from presenters where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

#[tracing::instrument(name = "presentations.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    slug: &str,
    new: &NewPresentation,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into presentations (tenant_id, title, slug, description, slides, presenter_id, is_template)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(tenant)
    .bind(&new.title)
    .bind(slug)
    .bind(&new.description)
    .bind(SqlJson(Value::Array(new.slides.clone())))
    .bind(new.presenter_id)
    .bind(new.is_template)
    .fetch_one(conn)
    .await
}

/// Applies the changes; false when the presentation does not exist.
#[tracing::instrument(name = "presentations.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    c: &PresentationChanges,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "update presentations set title = coalesce($3, title), slides = coalesce($4, slides),
            presenter_id = case when $5 then $6 else presenter_id end, status = coalesce($7, status)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(&c.title)
    .bind(c.slides.clone().map(|s| SqlJson(Value::Array(s))))
    .bind(c.presenter_id.is_some())
    .bind(c.presenter_id.flatten())
    .bind(&c.status)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Counts a view of a published presentation, and the viewer's `presentation_view`
/// activity when known; false when there is no such published presentation.
#[tracing::instrument(name = "presentations.record_view", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn record_view(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    customer: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "update presentations set view_count = view_count + 1 where tenant_id = $1 and id = $2 and status = 'published'",
    )
    .bind(tenant)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(customer) = customer {
        crate::customers::store::record_web_activity(conn, tenant, customer, "presentation_view", "presentation", id)
            .await?;
    }
    Ok(true)
}

#[tracing::instrument(name = "presentations.insert_presenter", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert_presenter(
    conn: &mut PgConnection,
    tenant: TenantId,
    new: &NewPresenter,
) -> Result<Presenter, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into presenters (tenant_id, name, bio, avatar_url, voice_id, voice_settings) values ($1, $2, $3, $4, $5, $6)
         returning {PRESENTER_COLUMNS}"
    )))
    .bind(tenant)
    .bind(&new.name)
    .bind(&new.bio)
    .bind(&new.avatar_url)
    .bind(&new.voice_id)
    .bind(SqlJson(&new.voice_settings))
    .fetch_one(conn)
    .await
}
