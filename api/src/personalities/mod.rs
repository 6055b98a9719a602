//! AI personalities and which customer talks to which (`/api/v1/personalities`).
//! Generating responses with a personality comes with the AI/search work.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    patch::Patch,
    state::AppState,
    validate,
};

pub const READ: &str = "personalities:read";
pub const WRITE: &str = "personalities:write";
const RESOURCE: &str = "personality";
const DEFAULT_MODEL: &str = "gpt-4o-mini";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/personalities", get(list).post(create))
        .route("/personalities/assignments", get(assignments))
        .route("/personalities/assign", post(assign))
        .route("/personalities/customers/{customer_id}/personality", get(customer_personality))
        .route("/personalities/{id}", get(show).put(update).delete(destroy))
}

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
const LIST_COLUMNS: &str = "p.id, p.name, p.description, p.system_prompt, p.model, p.temperature, p.max_tokens,
        (select count(*) from ai_personality_assignments a where a.personality_id = p.id) as assigned_customers,
        p.config, p.metadata, p.created_at, p.updated_at";

async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Personality>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {LIST_COLUMNS} from ai_personalities p where p.tenant_id = $1 and p.id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

fn conflict(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some("ai_personalities_tenant_name_key") => {
            ApiError::Conflict { message: "A personality with this name already exists.".into(), field: Some("name") }
        }
        _ => err.into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalityRequest {
    /// Unique in the tenant (case-insensitive).
    pub name: Option<String>,
    pub description: Option<String>,
    /// The instructions every conversation with this personality starts from.
    pub system_prompt: Option<String>,
    /// Model name for the LLM provider (default gpt-4o-mini).
    pub model: Option<String>,
    /// 0 to 2 (default 0.7).
    pub temperature: Option<f32>,
    /// 1 to 128000 (default 1024).
    pub max_tokens: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePersonalityRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub model: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<f32>)]
    pub temperature: Patch<f32>,
    #[serde(default)]
    #[schema(value_type = Option<i32>)]
    pub max_tokens: Patch<i32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

fn check_temperature(t: f32, e: &mut FieldErrors) {
    if !(0.0..=2.0).contains(&t) || t.is_nan() {
        e.add("temperature", "must be between 0 and 2");
    }
}

fn check_max_tokens(n: i32, e: &mut FieldErrors) {
    if !(1..=128_000).contains(&n) {
        e.add("max_tokens", "must be between 1 and 128000");
    }
}

#[utoipa::path(get, path = "/api/v1/personalities", tag = "personalities", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Personality>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Personality>>>, ApiError> {
    auth.require(READ)?;
    let listing = Listing { from: "ai_personalities p", columns: LIST_COLUMNS, order_by: "lower(p.name), p.id" };
    page_of(&state, &auth, page, &listing).await
}

#[utoipa::path(post, path = "/api/v1/personalities", tag = "personalities", request_body = PersonalityRequest,
    responses((status = 201, body = inline(Envelope<Personality>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<PersonalityRequest>,
) -> Result<(StatusCode, Json<Envelope<Personality>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let description = body.description.map(|d| validate::text(&d, 2000, "description", &mut e));
    let prompt = validate::required_text(body.system_prompt, 20_000, "system_prompt", &mut e);
    let model = body
        .model
        .map(|m| validate::required_text(Some(m), 200, "model", &mut e))
        .unwrap_or_else(|| DEFAULT_MODEL.into());
    let temperature = body.temperature.unwrap_or(0.7);
    check_temperature(temperature, &mut e);
    let max_tokens = body.max_tokens.unwrap_or(1024);
    check_max_tokens(max_tokens, &mut e);
    let config = validate::object(body.config, "config", &mut e);
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into ai_personalities (tenant_id, name, description, system_prompt, model, temperature, max_tokens, config, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id",
    )
    .bind(tenant)
    .bind(name)
    .bind(description)
    .bind(prompt)
    .bind(model)
    .bind(temperature)
    .bind(max_tokens)
    .bind(SqlJson(config))
    .bind(SqlJson(metadata))
    .fetch_one(&mut *tx)
    .await
    .map_err(conflict)?;
    let p = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(p, "Personality created."))))
}

#[utoipa::path(get, path = "/api/v1/personalities/{id}", tag = "personalities", params(("id" = Uuid, Path, description = "Personality id")),
    responses((status = 200, body = inline(Envelope<Personality>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Personality>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let p = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    p.map(|p| Json(Envelope::data(p))).ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(put, path = "/api/v1/personalities/{id}", tag = "personalities", params(("id" = Uuid, Path, description = "Personality id")),
    request_body = UpdatePersonalityRequest,
    responses((status = 200, body = inline(Envelope<Personality>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdatePersonalityRequest>,
) -> Result<Json<Envelope<Personality>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let required = |p: Patch<String>, max: usize, field: &str, e: &mut FieldErrors| match p {
        Patch::Missing => None,
        Patch::Null => {
            e.add(field, "cannot be null");
            None
        }
        Patch::Value(v) => Some(validate::required_text(Some(v), max, field, e)),
    };
    let name = required(body.name, 200, "name", &mut e);
    let prompt = required(body.system_prompt, 20_000, "system_prompt", &mut e);
    let model = required(body.model, 200, "model", &mut e);
    let description = validate::optional_text(body.description, 2000, "description", &mut e);
    let temperature = match body.temperature {
        Patch::Missing => None,
        Patch::Null => {
            e.add("temperature", "cannot be null");
            None
        }
        Patch::Value(t) => {
            check_temperature(t, &mut e);
            Some(t)
        }
    };
    let max_tokens = match body.max_tokens {
        Patch::Missing => None,
        Patch::Null => {
            e.add("max_tokens", "cannot be null");
            None
        }
        Patch::Value(n) => {
            check_max_tokens(n, &mut e);
            Some(n)
        }
    };
    let object = |p: Patch<Value>, field: &str, e: &mut FieldErrors| match p {
        Patch::Missing => None,
        Patch::Null => Some(Map::new()),
        Patch::Value(v) => Some(validate::object(Some(v), field, e)),
    };
    let config = object(body.config, "config", &mut e);
    let metadata = object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let r = sqlx::query(
        "update ai_personalities set name = coalesce($3, name), system_prompt = coalesce($4, system_prompt),
            model = coalesce($5, model), description = case when $6 then $7 else description end,
            temperature = coalesce($8, temperature), max_tokens = coalesce($9, max_tokens),
            config = coalesce($10, config), metadata = coalesce($11, metadata)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(name)
    .bind(prompt)
    .bind(model)
    .bind(description.is_some())
    .bind(description.flatten())
    .bind(temperature)
    .bind(max_tokens)
    .bind(config.map(SqlJson))
    .bind(metadata.map(SqlJson))
    .execute(&mut *tx)
    .await
    .map_err(conflict)?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let p = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(p, "Personality updated.")))
}

/// Delete a personality; its assignments go with it.
#[utoipa::path(delete, path = "/api/v1/personalities/{id}", tag = "personalities", params(("id" = Uuid, Path, description = "Personality id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "ai_personalities", id).await? {
        Ok(Json(Envelope::with_message(None, "Personality deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

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

#[utoipa::path(get, path = "/api/v1/personalities/assignments", tag = "personalities", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Assignment>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn assignments(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Assignment>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let total: i64 = sqlx::query_scalar("select count(*) from ai_personality_assignments where tenant_id = $1")
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<Assignment> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{ASSIGNMENTS} where a.tenant_id = $1 order by a.assigned_at desc, a.id desc limit $2 offset $3"
    )))
    .bind(tenant)
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
pub struct AssignRequest {
    pub personality_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
}

/// Give a customer a personality; a customer has one at a time, so this replaces any other.
#[utoipa::path(post, path = "/api/v1/personalities/assign", tag = "personalities", request_body = AssignRequest,
    responses((status = 200, body = inline(Envelope<Assignment>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn assign(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<AssignRequest>,
) -> Result<Json<Envelope<Assignment>>, ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    if body.personality_id.is_none() {
        e.add("personality_id", "is required");
    }
    if body.customer_id.is_none() {
        e.add("customer_id", "is required");
    }
    e.into_result()?;
    let (Some(personality), Some(customer)) = (body.personality_id, body.customer_id) else {
        return Err(ApiError::Validation(FieldErrors::single("body", "personality_id and customer_id are required")));
    };
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let mut e = FieldErrors::default();
    if get_one(&mut tx, tenant, personality).await?.is_none() {
        e.add("personality_id", "no such personality");
    }
    if !customers::store::exists(&mut tx, tenant, customer).await? {
        e.add("customer_id", "no such customer");
    }
    e.into_result()?;
    sqlx::query(
        "insert into ai_personality_assignments (tenant_id, personality_id, customer_id, assigned_by)
         values ($1, $2, $3, $4)
         on conflict (customer_id) do update set personality_id = excluded.personality_id,
            assigned_at = now(), assigned_by = excluded.assigned_by",
    )
    .bind(tenant)
    .bind(personality)
    .bind(customer)
    .bind(auth.0.user_id)
    .execute(&mut *tx)
    .await?;
    let a: Assignment =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{ASSIGNMENTS} where a.tenant_id = $1 and a.customer_id = $2")))
            .bind(tenant)
            .bind(customer)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(a, "Personality assigned.")))
}

/// The personality assigned to a customer (404 when the customer has none).
#[utoipa::path(get, path = "/api/v1/personalities/customers/{customer_id}/personality", tag = "personalities",
    params(("customer_id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, body = inline(Envelope<Personality>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn customer_personality(
    State(state): State<AppState>,
    auth: Auth,
    Path(customer_id): Path<String>,
) -> Result<Json<Envelope<Personality>>, ApiError> {
    auth.require(READ)?;
    let customer = resource_id(&customer_id, "customer")?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !customers::store::exists(&mut tx, tenant, customer).await? {
        return Err(ApiError::NotFound("customer"));
    }
    let personality: Option<Uuid> = sqlx::query_scalar(
        "select personality_id from ai_personality_assignments where tenant_id = $1 and customer_id = $2",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(personality) = personality else { return Err(ApiError::NotFound(RESOURCE)) };
    let p = get_one(&mut tx, tenant, personality).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::data(p)))
}
