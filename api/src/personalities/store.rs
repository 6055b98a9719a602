//! Personality and assignment SQL.

use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{NewPersonality, PersonalityChanges};
use crate::{ApiError, envelope::PageRequest};

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Personality {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: String,
    pub model: String,
    pub temperature: f32,
    pub max_tokens: i32,
    pub assigned_customers: i64,
    #[schema(value_type = Object)]
    pub config: SqlJson<Map<String, Value>>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of the list and of single reads.
pub const LIST_COLUMNS: &str = "p.id, p.name, p.description, p.system_prompt, p.model, p.temperature, p.max_tokens,
        (select count(*) from ai_personality_assignments a where a.personality_id = p.id) as assigned_customers,
        p.config, p.metadata, p.created_at, p.updated_at";

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Assignment {
    pub id: Uuid,
    pub personality_id: Uuid,
    pub personality_name: String,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub assigned_at: DateTime<Utc>,
    pub assigned_by: Option<Uuid>,
}

const ASSIGNMENTS: &str =
    "select a.id, a.personality_id, p.name as personality_name, a.customer_id, c.name as customer_name,
        a.assigned_at, a.assigned_by
     from ai_personality_assignments a
     join ai_personalities p on p.id = a.personality_id join crm_customers c on c.id = a.customer_id";

fn conflict(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some("ai_personalities_tenant_name_key") => {
            ApiError::Conflict { message: "A personality with this name already exists.".into(), field: Some("name") }
        }
        _ => err.into(),
    }
}

#[tracing::instrument(name = "personalities.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Personality>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {LIST_COLUMNS} from ai_personalities p where p.tenant_id = $1 and p.id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Inserts a personality; a taken name is a 409.
#[tracing::instrument(name = "personalities.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, p: NewPersonality) -> Result<Uuid, ApiError> {
    sqlx::query_scalar(
        "insert into ai_personalities (tenant_id, name, description, system_prompt, model, temperature, max_tokens, config, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id",
    )
    .bind(tenant)
    .bind(p.name)
    .bind(p.description)
    .bind(p.system_prompt)
    .bind(p.model)
    .bind(p.temperature)
    .bind(p.max_tokens)
    .bind(SqlJson(p.config))
    .bind(SqlJson(p.metadata))
    .fetch_one(conn)
    .await
    .map_err(conflict)
}

/// Applies `changes`; false when there is no such personality, a taken name is a 409.
#[tracing::instrument(name = "personalities.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    c: PersonalityChanges,
) -> Result<bool, ApiError> {
    let r = sqlx::query(
        "update ai_personalities set name = coalesce($3, name), system_prompt = coalesce($4, system_prompt),
            model = coalesce($5, model), description = case when $6 then $7 else description end,
            temperature = coalesce($8, temperature), max_tokens = coalesce($9, max_tokens),
            config = coalesce($10, config), metadata = coalesce($11, metadata)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(c.name)
    .bind(c.system_prompt)
    .bind(c.model)
    .bind(c.description.is_some())
    .bind(c.description.flatten())
    .bind(c.temperature)
    .bind(c.max_tokens)
    .bind(c.config.map(SqlJson))
    .bind(c.metadata.map(SqlJson))
    .execute(conn)
    .await
    .map_err(conflict)?;
    Ok(r.rows_affected() > 0)
}

/// One page of the tenant's assignments, newest first, and the total.
#[tracing::instrument(name = "personalities.assignments", skip(conn, page), fields(tenant_id = %tenant), err)]
pub async fn assignments(
    conn: &mut PgConnection,
    tenant: TenantId,
    page: PageRequest,
) -> Result<(Vec<Assignment>, i64), sqlx::Error> {
    let total: i64 = sqlx::query_scalar("select count(*) from ai_personality_assignments where tenant_id = $1")
        .bind(tenant)
        .fetch_one(&mut *conn)
        .await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{ASSIGNMENTS} where a.tenant_id = $1 order by a.assigned_at desc, a.id desc limit $2 offset $3"
    )))
    .bind(tenant)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

/// Gives the customer this personality, replacing any other (one at a time).
#[tracing::instrument(name = "personalities.assign", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn assign(
    conn: &mut PgConnection,
    tenant: TenantId,
    personality: Uuid,
    customer: Uuid,
    by: Option<Uuid>,
) -> Result<Assignment, sqlx::Error> {
    sqlx::query(
        "insert into ai_personality_assignments (tenant_id, personality_id, customer_id, assigned_by)
         values ($1, $2, $3, $4)
         on conflict (customer_id) do update set personality_id = excluded.personality_id,
            assigned_at = now(), assigned_by = excluded.assigned_by",
    )
    .bind(tenant)
    .bind(personality)
    .bind(customer)
    .bind(by)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{ASSIGNMENTS} where a.tenant_id = $1 and a.customer_id = $2")))
        .bind(tenant)
        .bind(customer)
        .fetch_one(conn)
        .await
}

/// The personality assigned to a customer, if any.
#[tracing::instrument(name = "personalities.of_customer", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn of_customer(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
) -> Result<Option<Personality>, sqlx::Error> {
    let personality: Option<Uuid> = sqlx::query_scalar(
        "select personality_id from ai_personality_assignments where tenant_id = $1 and customer_id = $2",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_optional(&mut *conn)
    .await?;
    match personality {
        Some(p) => get_one(conn, tenant, p).await,
        None => Ok(None),
    }
}
