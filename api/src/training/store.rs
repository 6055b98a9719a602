//! Training module and progress SQL.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::NewModule;

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

pub const COLUMNS: &str = "id, title, slug, description, lessons, status, position, created_at";

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Progress {
    pub module_id: Uuid,
    pub customer_id: Uuid,
    /// Indexes (0-based) of the lessons done.
    pub completed_lessons: Vec<i32>,
    pub lesson_count: i32,
    pub completed_at: Option<DateTime<Utc>>,
}

const PROGRESS: &str = "select p.module_id, p.customer_id, p.completed_lessons, jsonb_array_length(m.lessons) as lesson_count, p.completed_at
     from training_progress p join training_modules m on m.id = p.module_id";

#[tracing::instrument(name = "training.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<TrainingModule>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from training_modules where tenant_id = $1 and id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Whether a knowledge entry of the tenant exists (lessons may point at one).
#[tracing::instrument(name = "training.knowledge_exists", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn knowledge_exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from knowledge_base where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

#[tracing::instrument(name = "training.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    slug: &str,
    new: &NewModule,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into training_modules (tenant_id, title, slug, description, lessons, status, position)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(tenant)
    .bind(&new.title)
    .bind(slug)
    .bind(&new.description)
    .bind(SqlJson(Value::Array(new.lessons.clone())))
    .bind(&new.status)
    .bind(new.position)
    .fetch_one(conn)
    .await
}

/// Marks `lesson` done for the customer (twice changes nothing); once every one of the
/// module's `lesson_count` lessons is done, the module is complete.
#[tracing::instrument(name = "training.record_lesson", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn record_lesson(
    conn: &mut PgConnection,
    tenant: TenantId,
    module: Uuid,
    customer: Uuid,
    lesson: i32,
    lesson_count: i32,
) -> Result<Progress, sqlx::Error> {
    sqlx::query(
        "insert into training_progress (tenant_id, module_id, customer_id, completed_lessons) values ($1, $2, $3, array[$4])
         on conflict (module_id, customer_id) do update set completed_lessons =
            case when $4 = any(training_progress.completed_lessons) then training_progress.completed_lessons
                 else array(select unnest(training_progress.completed_lessons || $4) order by 1) end",
    )
    .bind(tenant)
    .bind(module)
    .bind(customer)
    .bind(lesson)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "update training_progress set completed_at = coalesce(completed_at, now())
         where tenant_id = $1 and module_id = $2 and customer_id = $3 and cardinality(completed_lessons) >= $4",
    )
    .bind(tenant)
    .bind(module)
    .bind(customer)
    .bind(lesson_count)
    .execute(&mut *conn)
    .await?;
    progress(conn, tenant, module, customer).await?.ok_or(sqlx::Error::RowNotFound)
}

#[tracing::instrument(name = "training.progress", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn progress(
    conn: &mut PgConnection,
    tenant: TenantId,
    module: Uuid,
    customer: Uuid,
) -> Result<Option<Progress>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PROGRESS} where p.tenant_id = $1 and p.module_id = $2 and p.customer_id = $3"
    )))
    .bind(tenant)
    .bind(module)
    .bind(customer)
    .fetch_optional(conn)
    .await
}
