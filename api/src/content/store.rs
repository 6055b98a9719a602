//! Content, workflow-history and content-template SQL. Status moves themselves go through
//! `fibonacco_delivery::publishing::transition`.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{ContentChanges, ContentFilter, NewContentTemplate};
use crate::envelope::PageRequest;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Content {
    pub id: Uuid,
    pub title: String,
    pub content_type: String,
    pub body: String,
    pub excerpt: Option<String>,
    pub learning_campaign_id: Option<Uuid>,
    pub template_id: Option<Uuid>,
    pub prompt: Option<String>,
    pub model: Option<String>,
    /// Workflow status: draft, review, approved, scheduled, published, archived.
    pub status: String,
    pub scheduled_publish_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const SELECT: &str =
    "select g.id, g.title, g.content_type, g.body, g.excerpt, g.learning_campaign_id, g.template_id,
        g.prompt, g.model, w.status, w.scheduled_publish_at, w.published_at, g.metadata, g.created_by, g.created_at,
        greatest(g.updated_at, w.updated_at) as updated_at
     from generated_content g
     join content_workflow w on w.content_type = 'generated_content' and w.content_id = g.id";

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub performed_by: Option<Uuid>,
    pub performed_at: DateTime<Utc>,
    pub notes: Option<String>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ContentTemplate {
    pub id: Uuid,
    pub name: String,
    pub content_type: String,
    pub prompt_template: String,
    pub variables: Vec<String>,
    #[schema(value_type = Object)]
    pub structure: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
}

pub const TEMPLATE_COLUMNS: &str = "id, name, content_type, prompt_template, variables, structure, created_at";

/// Content ready to insert.
pub(crate) struct NewContent<'a> {
    pub title: &'a str,
    pub content_type: &'a str,
    pub body: &'a str,
    pub excerpt: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub model: Option<&'a str>,
    pub metadata: &'a Map<String, Value>,
    pub author: Option<Uuid>,
}

#[tracing::instrument(name = "content.get", skip(conn), fields(tenant_id = %tenant), err)]
pub(crate) async fn get_one(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Content>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} where g.tenant_id = $1 and g.id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// One page of matching content, newest first, and the total.
#[tracing::instrument(name = "content.list", skip_all, fields(tenant_id = %tenant), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    f: &ContentFilter,
    page: PageRequest,
) -> Result<(Vec<Content>, i64), sqlx::Error> {
    let matching =
        "g.tenant_id = $1 and ($2::text is null or w.status = $2) and ($3::text is null or g.content_type = $3)
        and ($4::text is null or g.title ilike $4)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from generated_content g join content_workflow w on w.content_type = 'generated_content' and w.content_id = g.id where {matching}"
    )))
    .bind(tenant)
    .bind(&f.status)
    .bind(&f.content_type)
    .bind(&f.title_like)
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} where {matching} order by g.created_at desc, g.id desc limit $5 offset $6"
    )))
    .bind(tenant)
    .bind(&f.status)
    .bind(&f.content_type)
    .bind(&f.title_like)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

/// Inserts content with its workflow row (draft) and the first history entry.
#[tracing::instrument(name = "content.insert", skip_all, fields(tenant_id = %tenant), err)]
pub(crate) async fn insert(conn: &mut PgConnection, tenant: TenantId, c: &NewContent<'_>) -> Result<Uuid, sqlx::Error> {
    let id: Uuid = sqlx::query_scalar(
        "insert into generated_content (tenant_id, title, content_type, body, excerpt, prompt, model, metadata, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id",
    )
    .bind(tenant)
    .bind(c.title)
    .bind(c.content_type)
    .bind(c.body)
    .bind(c.excerpt)
    .bind(c.prompt)
    .bind(c.model)
    .bind(SqlJson(c.metadata))
    .bind(c.author)
    .fetch_one(&mut *conn)
    .await?;
    let workflow: Uuid = sqlx::query_scalar(
        "insert into content_workflow (tenant_id, content_id, content_type, status) values ($1, $2, 'generated_content', 'draft')
         returning id",
    )
    .bind(tenant)
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "insert into content_workflow_history (tenant_id, workflow_id, action, from_status, to_status, performed_by)
         values ($1, $2, 'created', null, 'draft', $3)",
    )
    .bind(tenant)
    .bind(workflow)
    .bind(c.author)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Applies `changes` to the content's text (its status is the workflow's).
#[tracing::instrument(name = "content.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(conn: &mut PgConnection, tenant: TenantId, id: Uuid, c: ContentChanges) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update generated_content set title = coalesce($3, title), body = coalesce($4, body),
            excerpt = case when $5 then $6 else excerpt end, content_type = coalesce($7, content_type),
            metadata = coalesce($8, metadata)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(c.title)
    .bind(c.body)
    .bind(c.excerpt.is_some())
    .bind(c.excerpt.flatten())
    .bind(c.content_type)
    .bind(c.metadata.map(SqlJson))
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the content's workflow row and returns its status.
#[tracing::instrument(name = "content.lock_status", skip(conn), fields(tenant_id = %tenant), err)]
pub(crate) async fn lock_status(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select status from content_workflow where tenant_id = $1 and content_type = 'generated_content' and content_id = $2 for update",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The content's workflow history, oldest first.
#[tracing::instrument(name = "content.history", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn history(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    sqlx::query_as(
        "select h.id, h.action, h.from_status, h.to_status, h.performed_by, h.performed_at, h.notes
         from content_workflow_history h join content_workflow w on w.id = h.workflow_id
         where h.tenant_id = $1 and w.content_type = 'generated_content' and w.content_id = $2
         order by h.performed_at, h.id",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(conn)
    .await
}

#[tracing::instrument(name = "content.insert_template", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert_template(
    conn: &mut PgConnection,
    tenant: TenantId,
    t: NewContentTemplate,
) -> Result<ContentTemplate, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into content_templates (tenant_id, name, content_type, prompt_template, variables, structure)
         values ($1, $2, $3, $4, $5, $6) returning {TEMPLATE_COLUMNS}"
    )))
    .bind(tenant)
    .bind(t.name)
    .bind(t.content_type)
    .bind(t.prompt_template)
    .bind(t.variables)
    .bind(SqlJson(t.structure))
    .fetch_one(conn)
    .await
}
