//! Training (`/api/v1/training`): modules of ordered lessons and each customer's progress.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db, domain::Slug};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    state::AppState,
    validate,
};

pub const READ: &str = "training:read";
pub const WRITE: &str = "training:write";
const RESOURCE: &str = "training module";
const MAX_LESSONS: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/training", get(list).post(create))
        .route("/training/{id}", get(show))
        .route("/training/{id}/progress", post(record_progress))
        .route("/training/{id}/progress/{customer_id}", get(progress))
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TrainingModule {
    pub id: Uuid,
    pub title: String,
    pub slug: String,
    pub description: Option<String>,
    /// Ordered lessons: `{title, content, knowledge_id?}`.
    #[schema(value_type = Vec<Object>)]
    pub lessons: SqlJson<Value>,
    pub status: String,
    pub position: i32,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, title, slug, description, lessons, status, position, created_at";

async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<TrainingModule>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from training_modules where tenant_id = $1 and id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

#[utoipa::path(get, path = "/api/v1/training", tag = "training", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<TrainingModule>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<TrainingModule>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "training_modules", columns: COLUMNS, order_by: "position, created_at, id" },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModuleRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    /// `{title, content, knowledge_id?}` in order; a `knowledge_id` must name an entry of this tenant.
    #[schema(value_type = Option<Vec<Object>>)]
    pub lessons: Option<Vec<Value>>,
    /// draft (default) or published.
    pub status: Option<String>,
    pub position: Option<i32>,
}

#[utoipa::path(post, path = "/api/v1/training", tag = "training", request_body = CreateModuleRequest,
    responses((status = 201, body = inline(Envelope<TrainingModule>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateModuleRequest>,
) -> Result<(StatusCode, Json<Envelope<TrainingModule>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let title = validate::required_text(body.title, 300, "title", &mut e);
    let description = body.description.map(|d| validate::text(&d, 5000, "description", &mut e));
    let status = validate::one_of(body.status.as_deref().unwrap_or("draft"), &["draft", "published"], "status", &mut e);
    let lessons = body.lessons.unwrap_or_default();
    if lessons.len() > MAX_LESSONS {
        e.add("lessons", format!("at most {MAX_LESSONS} lessons"));
    }
    let mut knowledge_ids = Vec::new();
    for (i, lesson) in lessons.iter().enumerate() {
        let Some(obj) = lesson.as_object() else {
            e.add(format!("lessons[{i}]"), "must be an object");
            continue;
        };
        if obj.get("title").and_then(Value::as_str).is_none_or(|t| t.trim().is_empty()) {
            e.add(format!("lessons[{i}].title"), "is required");
        }
        match obj.get("knowledge_id") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                Some(id) => knowledge_ids.push((i, id)),
                None => e.add(format!("lessons[{i}].knowledge_id"), "must be a UUID"),
            },
        }
    }
    let slug = Slug::from_text(&title);
    if slug.is_none() && !title.is_empty() {
        e.add("title", "must contain letters or digits");
    }
    e.into_result()?;
    let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("title", "is required")))?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let mut e = FieldErrors::default();
    for (i, id) in knowledge_ids {
        let found: bool =
            sqlx::query_scalar("select exists (select 1 from knowledge_base where tenant_id = $1 and id = $2)")
                .bind(tenant)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if !found {
            e.add(format!("lessons[{i}].knowledge_id"), "no such knowledge entry");
        }
    }
    e.into_result()?;
    let slug = crate::slugs::free_slug(&mut tx, "training_modules", tenant, slug.as_str()).await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into training_modules (tenant_id, title, slug, description, lessons, status, position)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(tenant)
    .bind(title)
    .bind(slug)
    .bind(description)
    .bind(SqlJson(Value::Array(lessons)))
    .bind(status)
    .bind(body.position.unwrap_or(0))
    .fetch_one(&mut *tx)
    .await?;
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Training module created."))))
}

#[utoipa::path(get, path = "/api/v1/training/{id}", tag = "training", params(("id" = Uuid, Path, description = "Module id")),
    responses((status = 200, body = inline(Envelope<TrainingModule>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<TrainingModule>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    row.map(|m| Json(Envelope::data(m))).ok_or(ApiError::NotFound(RESOURCE))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Progress {
    pub module_id: Uuid,
    pub customer_id: Uuid,
    /// Indexes (0-based) of the lessons done.
    pub completed_lessons: Vec<i32>,
    pub lesson_count: i32,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    pub customer_id: Option<Uuid>,
    /// The 0-based index of the lesson finished.
    pub lesson: Option<i32>,
}

const PROGRESS: &str = "select p.module_id, p.customer_id, p.completed_lessons, jsonb_array_length(m.lessons) as lesson_count, p.completed_at
     from training_progress p join training_modules m on m.id = p.module_id";

/// Mark a lesson done for a customer; finishing the last one completes the module.
/// Recording the same lesson twice changes nothing.
#[utoipa::path(post, path = "/api/v1/training/{id}/progress", tag = "training", params(("id" = Uuid, Path, description = "Module id")),
    request_body = ProgressRequest,
    responses((status = 200, body = inline(Envelope<Progress>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn record_progress(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProgressRequest>,
) -> Result<Json<Envelope<Progress>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let module = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let count = module.lessons.0.as_array().map_or(0, Vec::len);
    let mut e = FieldErrors::default();
    match body.customer_id {
        None => e.add("customer_id", "is required"),
        Some(c) if !customers::store::exists(&mut tx, tenant, c).await? => e.add("customer_id", "no such customer"),
        Some(_) => {}
    }
    match body.lesson {
        None => e.add("lesson", "is required"),
        Some(l) if l < 0 || usize::try_from(l).is_ok_and(|l| l >= count) => {
            e.add("lesson", format!("must be between 0 and {}", count.saturating_sub(1)))
        }
        Some(_) => {}
    }
    e.into_result()?;
    let (Some(customer), Some(lesson)) = (body.customer_id, body.lesson) else {
        return Err(ApiError::Validation(FieldErrors::single("lesson", "is required")));
    };
    sqlx::query(
        "insert into training_progress (tenant_id, module_id, customer_id, completed_lessons) values ($1, $2, $3, array[$4])
         on conflict (module_id, customer_id) do update set completed_lessons =
            case when $4 = any(training_progress.completed_lessons) then training_progress.completed_lessons
                 else array(select unnest(training_progress.completed_lessons || $4) order by 1) end",
    )
    .bind(tenant)
    .bind(id)
    .bind(customer)
    .bind(lesson)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update training_progress set completed_at = coalesce(completed_at, now())
         where tenant_id = $1 and module_id = $2 and customer_id = $3 and cardinality(completed_lessons) >= $4",
    )
    .bind(tenant)
    .bind(id)
    .bind(customer)
    .bind(i32::try_from(count).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    let row: Progress = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PROGRESS} where p.tenant_id = $1 and p.module_id = $2 and p.customer_id = $3"
    )))
    .bind(tenant)
    .bind(id)
    .bind(customer)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(row, "Progress recorded.")))
}

#[utoipa::path(get, path = "/api/v1/training/{id}/progress/{customer_id}", tag = "training",
    params(("id" = Uuid, Path, description = "Module id"), ("customer_id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, body = inline(Envelope<Progress>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn progress(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, customer_id)): Path<(String, String)>,
) -> Result<Json<Envelope<Progress>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let customer = resource_id(&customer_id, "customer")?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row: Option<Progress> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PROGRESS} where p.tenant_id = $1 and p.module_id = $2 and p.customer_id = $3"
    )))
    .bind(auth.0.tenant_id)
    .bind(id)
    .bind(customer)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(|p| Json(Envelope::data(p))).ok_or(ApiError::NotFound("progress"))
}
