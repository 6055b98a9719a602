//! Content and its publishing workflow (`/api/v1/content`, `/api/v1/publishing`).
//! Every status change goes through [`fibonacco_delivery::publishing::allowed`] and leaves a history row
//! (who, when, from, to, notes). Generating content with an LLM comes with the
//! generation provider.

pub mod generate;
pub mod publishing;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_delivery::publishing::{self as workflow, Step, transition};
use fibonacco_platform::{TenantId, db};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    patch::Patch,
    state::AppState,
    validate,
};

pub const READ: &str = "content:read";
pub const WRITE: &str = "content:write";
const RESOURCE: &str = "content";
pub const CONTENT_TYPES: &[&str] =
    &["article", "blog_post", "social_post", "email", "newsletter", "landing_page", "ad_copy", "video_script", "other"];

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

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContentListQuery {
    pub status: Option<String>,
    pub content_type: Option<String>,
    /// Case-insensitive substring of the title.
    pub search: Option<String>,
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
    let status =
        query.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, workflow::STATUSES, "status", &mut e));
    let kind = query
        .content_type
        .filter(|s| !s.is_empty())
        .map(|s| validate::one_of(&s, CONTENT_TYPES, "content_type", &mut e));
    let search = query
        .search
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .map(|s| format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let filter =
        "g.tenant_id = $1 and ($2::text is null or w.status = $2) and ($3::text is null or g.content_type = $3)
        and ($4::text is null or g.title ilike $4)";
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from generated_content g join content_workflow w on w.content_type = 'generated_content' and w.content_id = g.id where {filter}"
    )))
    .bind(tenant)
    .bind(&status)
    .bind(&kind)
    .bind(&search)
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<Content> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} where {filter} order by g.created_at desc, g.id desc limit $5 offset $6"
    )))
    .bind(tenant)
    .bind(&status)
    .bind(&kind)
    .bind(&search)
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
pub struct CreateContentRequest {
    pub title: Option<String>,
    /// article (default), blog_post, social_post, email, newsletter, landing_page, ad_copy, video_script, other.
    pub content_type: Option<String>,
    pub body: Option<String>,
    pub excerpt: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
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
    let mut e = FieldErrors::default();
    let title = validate::required_text(body.title, 500, "title", &mut e);
    let kind =
        validate::one_of(body.content_type.as_deref().unwrap_or("article"), CONTENT_TYPES, "content_type", &mut e);
    let text = body.body.map(|b| validate::text(&b, 200_000, "body", &mut e)).unwrap_or_default();
    let excerpt = body.excerpt.map(|x| validate::text(&x, 2000, "excerpt", &mut e));
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let new = NewContent {
        title: &title,
        content_type: &kind,
        body: &text,
        excerpt: excerpt.as_deref(),
        prompt: None,
        model: None,
        metadata: &metadata,
        author: auth.0.user_id,
    };
    let id = insert(&mut tx, tenant, &new).await?;
    let content = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(content, "Content created."))))
}

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

/// Inserts content with its workflow row (draft) and the first history entry.
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContentRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub body: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub excerpt: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub content_type: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
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
    let mut e = FieldErrors::default();
    let title = body.title.non_null("title", &mut e).map(|t| validate::required_text(Some(t), 500, "title", &mut e));
    let text = match body.body {
        Patch::Missing => None,
        Patch::Null => Some(String::new()),
        Patch::Value(b) => Some(validate::text(&b, 200_000, "body", &mut e)),
    };
    let excerpt = validate::optional_text(body.excerpt, 2000, "excerpt", &mut e);
    let kind = body
        .content_type
        .non_null("content_type", &mut e)
        .map(|k| validate::one_of(&k, CONTENT_TYPES, "content_type", &mut e));
    let metadata = match body.metadata {
        Patch::Missing => None,
        Patch::Null => Some(Map::new()),
        Patch::Value(v) => Some(validate::object(Some(v), "metadata", &mut e)),
    };
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let status = lock_status(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if status != "draft" && status != "review" {
        return Err(ApiError::Conflict {
            message: format!("The content is {status}; only drafts and content in review can be edited."),
            field: None,
        });
    }
    sqlx::query(
        "update generated_content set title = coalesce($3, title), body = coalesce($4, body),
            excerpt = case when $5 then $6 else excerpt end, content_type = coalesce($7, content_type),
            metadata = coalesce($8, metadata)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(title)
    .bind(text)
    .bind(excerpt.is_some())
    .bind(excerpt.flatten())
    .bind(kind)
    .bind(metadata.map(SqlJson))
    .execute(&mut *tx)
    .await?;
    let content = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(content, "Content updated.")))
}

/// Locks the content's workflow row and returns its status.
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// The status to move to.
    pub status: Option<String>,
    /// Required (and in the future) when moving to `scheduled`.
    pub scheduled_publish_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
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
    let mut e = FieldErrors::default();
    let to = validate::required_text(body.status, 20, "status", &mut e);
    if !to.is_empty() {
        validate::one_of(&to, workflow::STATUSES, "status", &mut e);
    }
    let notes = body.notes.map(|n| validate::text(&n, 5000, "notes", &mut e));
    if to == "scheduled" {
        match body.scheduled_publish_at {
            None => e.add("scheduled_publish_at", "is required to schedule"),
            Some(t) if t <= Utc::now() => e.add("scheduled_publish_at", "must be in the future"),
            Some(_) => {}
        }
    }
    e.into_result()?;
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
            scheduled_publish_at: body.scheduled_publish_at,
            actor: auth.0.user_id,
            notes: notes.as_deref(),
            action: "status_change",
        },
    )
    .await?;
    let content = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(content, format!("Content moved from {from} to {to}."))))
}

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
    let rows = sqlx::query_as(
        "select h.id, h.action, h.from_status, h.to_status, h.performed_by, h.performed_at, h.notes
         from content_workflow_history h join content_workflow w on w.id = h.workflow_id
         where h.tenant_id = $1 and w.content_type = 'generated_content' and w.content_id = $2
         order by h.performed_at, h.id",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(rows)))
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

#[utoipa::path(get, path = "/api/v1/content/templates", tag = "content", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<ContentTemplate>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<ContentTemplate>>>, ApiError> {
    auth.require(READ)?;
    let listing = Listing {
        from: "content_templates",
        columns: "id, name, content_type, prompt_template, variables, structure, created_at",
        order_by: "lower(name), id",
    };
    page_of(&state, &auth, page, &listing).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContentTemplate {
    pub name: Option<String>,
    pub content_type: Option<String>,
    /// The prompt, with `{{ placeholders }}` filled at generation time.
    pub prompt_template: Option<String>,
    /// Expected sections or fields of the output.
    #[schema(value_type = Option<Object>)]
    pub structure: Option<Value>,
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
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let kind =
        validate::one_of(body.content_type.as_deref().unwrap_or("article"), CONTENT_TYPES, "content_type", &mut e);
    let prompt = validate::required_text(body.prompt_template, 20_000, "prompt_template", &mut e);
    let structure = validate::object(body.structure, "structure", &mut e);
    e.into_result()?;
    let variables = fibonacco_delivery::templates::placeholders(&[&prompt]);
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row: ContentTemplate = sqlx::query_as(
        "insert into content_templates (tenant_id, name, content_type, prompt_template, variables, structure)
         values ($1, $2, $3, $4, $5, $6) returning id, name, content_type, prompt_template, variables, structure, created_at",
    )
    .bind(tenant)
    .bind(name)
    .bind(kind)
    .bind(prompt)
    .bind(variables)
    .bind(SqlJson(structure))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Content template created."))))
}
