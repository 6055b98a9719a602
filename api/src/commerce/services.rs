//! Services (what a business sells) and their categories.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db, domain::Slug};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{READ, WRITE, currency};
use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    patch::Patch,
    state::AppState,
    validate,
};

const RESOURCE: &str = "service";
pub const BILLING_PERIODS: &[&str] = &["one_time", "monthly", "quarterly", "yearly"];

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Service {
    pub id: Uuid,
    pub category_id: Option<Uuid>,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    /// Price in minor units of `currency` (cents for USD).
    pub price_minor: i64,
    pub currency: String,
    pub billing_period: String,
    pub is_active: bool,
    /// What the service includes: strings or objects, as given.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub features: SqlJson<Value>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, category_id, name, slug, description, price_minor, trim(currency) as currency, billing_period,
    is_active, features, metadata, created_at, updated_at";

pub async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Service>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from services where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

async fn category_exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from service_categories where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

fn conflict(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some("services_tenant_slug_key") => {
            ApiError::Conflict { message: "A service with this slug already exists.".into(), field: Some("slug") }
        }
        Some("service_categories_tenant_slug_key") => ApiError::Conflict {
            message: "A service category with this slug already exists.".into(),
            field: Some("slug"),
        },
        _ => err.into(),
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceListQuery {
    pub category_id: Option<String>,
    /// true or false.
    pub is_active: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/services", tag = "commerce", params(PageQuery, ServiceListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Service>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<ServiceListQuery>,
) -> Result<Json<Envelope<Vec<Service>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let category = query
        .category_id
        .filter(|s| !s.is_empty())
        .and_then(|s| Uuid::parse_str(&s).map_err(|_| e.add("category_id", "must be a UUID")).ok());
    let active = match query.is_active.as_deref() {
        None | Some("") => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(_) => {
            e.add("is_active", "must be true or false");
            None
        }
    };
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let filter = "tenant_id = $1 and ($2::uuid is null or category_id = $2) and ($3::bool is null or is_active = $3)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from services where {filter}")))
        .bind(tenant)
        .bind(category)
        .bind(active)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<Service> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from services where {filter} order by lower(name), id limit $4 offset $5"
    )))
    .bind(tenant)
    .bind(category)
    .bind(active)
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
pub struct CreateServiceRequest {
    pub name: Option<String>,
    /// Derived from the name when omitted.
    pub slug: Option<String>,
    pub category_id: Option<Uuid>,
    pub description: Option<String>,
    /// Minor units (e.g. 4900 = $49.00).
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    /// one_time (default), monthly, quarterly, yearly.
    pub billing_period: Option<String>,
    pub is_active: Option<bool>,
    /// What the service includes (at most 100 items): strings or objects.
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    pub features: Option<Vec<Value>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/services", tag = "commerce", request_body = CreateServiceRequest,
    responses((status = 201, body = inline(Envelope<Service>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateServiceRequest>,
) -> Result<(StatusCode, Json<Envelope<Service>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let (slug, derived) = match body.slug {
        Some(s) => (Slug::parse(s.trim()).map_err(|err| e.add("slug", err.0)).ok(), false),
        None => (Slug::from_text(&name), true),
    };
    if slug.is_none() && derived && !name.is_empty() {
        e.add("slug", "cannot be derived from the name; give one");
    }
    let description = body.description.map(|d| validate::text(&d, 10_000, "description", &mut e));
    let price = body.price_minor.unwrap_or_else(|| {
        e.add("price_minor", "is required");
        0
    });
    if price < 0 {
        e.add("price_minor", "must not be negative");
    }
    let currency = currency(body.currency.as_deref().unwrap_or("USD"), &mut e);
    let period = validate::one_of(
        body.billing_period.as_deref().unwrap_or("one_time"),
        BILLING_PERIODS,
        "billing_period",
        &mut e,
    );
    let features = body.features.unwrap_or_default();
    if features.len() > 100 {
        e.add("features", "must have at most 100 items");
    }
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let Some(slug) = slug else { return Err(ApiError::Validation(FieldErrors::single("slug", "is required"))) };
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(c) = body.category_id
        && !category_exists(&mut tx, tenant, c).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("category_id", "no such service category")));
    }
    let slug = if derived {
        crate::slugs::free_slug(&mut tx, "services", tenant, slug.as_str()).await?
    } else {
        slug.into_inner()
    };
    let id: Uuid = sqlx::query_scalar(
        "insert into services (tenant_id, category_id, name, slug, description, price_minor, currency, billing_period,
            is_active, features, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id",
    )
    .bind(tenant)
    .bind(body.category_id)
    .bind(name)
    .bind(slug)
    .bind(description)
    .bind(price)
    .bind(currency)
    .bind(period)
    .bind(body.is_active.unwrap_or(true))
    .bind(SqlJson(Value::Array(features)))
    .bind(SqlJson(metadata))
    .fetch_one(&mut *tx)
    .await
    .map_err(conflict)?;
    let service = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(service, "Service created."))))
}

#[utoipa::path(get, path = "/api/v1/services/{id}", tag = "commerce", params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 200, body = inline(Envelope<Service>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Service>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let service = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    service.map(|s| Json(Envelope::data(s))).ok_or(ApiError::NotFound(RESOURCE))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServiceRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub price_minor: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub is_active: Patch<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub category_id: Patch<Uuid>,
}

/// Partial update of name, description, price, availability and category. Existing
/// orders keep the amount they were placed with.
#[utoipa::path(put, path = "/api/v1/services/{id}", tag = "commerce", params(("id" = Uuid, Path, description = "Service id")),
    request_body = UpdateServiceRequest,
    responses((status = 200, body = inline(Envelope<Service>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateServiceRequest>,
) -> Result<Json<Envelope<Service>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let name = body.name.non_null("name", &mut e).map(|n| validate::required_text(Some(n), 200, "name", &mut e));
    let description = validate::optional_text(body.description, 10_000, "description", &mut e);
    let price = match body.price_minor {
        Patch::Missing => None,
        Patch::Value(p) if p >= 0 => Some(p),
        _ => {
            e.add("price_minor", "must be a non-negative whole number");
            None
        }
    };
    let active = body.is_active.non_null("is_active", &mut e);
    let category = body.category_id.nullable();
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(Some(c)) = category
        && !category_exists(&mut tx, tenant, c).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("category_id", "no such service category")));
    }
    let r = sqlx::query(
        "update services set name = coalesce($3, name), description = case when $4 then $5 else description end,
            price_minor = coalesce($6, price_minor), is_active = coalesce($7, is_active),
            category_id = case when $8 then $9 else category_id end
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(name)
    .bind(description.is_some())
    .bind(description.flatten())
    .bind(price)
    .bind(active)
    .bind(category.is_some())
    .bind(category.flatten())
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let service = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(service, "Service updated.")))
}

/// Delete a service; orders keep their history (their `service_id` becomes null).
#[utoipa::path(delete, path = "/api/v1/services/{id}", tag = "commerce", params(("id" = Uuid, Path, description = "Service id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "services", id).await? {
        Ok(Json(Envelope::with_message(None, "Service deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ServiceCategory {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub parent_id: Option<Uuid>,
    pub display_order: i32,
    pub service_count: i64,
    pub created_at: DateTime<Utc>,
}

#[utoipa::path(get, path = "/api/v1/services/categories", tag = "commerce",
    responses((status = 200, body = inline(Envelope<Vec<ServiceCategory>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_categories(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Envelope<Vec<ServiceCategory>>>, ApiError> {
    auth.require(READ)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let rows = sqlx::query_as(
        "select c.id, c.name, c.slug, c.description, c.parent_id, c.display_order,
            (select count(*) from services s where s.category_id = c.id) as service_count, c.created_at
         from service_categories c where c.tenant_id = $1 order by c.display_order, lower(c.name), c.id",
    )
    .bind(auth.0.tenant_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(rows)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceCategoryRequest {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<String>,
    pub parent_id: Option<Uuid>,
    pub display_order: Option<i32>,
}

#[utoipa::path(post, path = "/api/v1/services/categories", tag = "commerce", request_body = CreateServiceCategoryRequest,
    responses((status = 201, body = inline(Envelope<ServiceCategory>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_category(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateServiceCategoryRequest>,
) -> Result<(StatusCode, Json<Envelope<ServiceCategory>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let slug = match body.slug {
        Some(s) => Slug::parse(s.trim()).map_err(|err| e.add("slug", err.0)).ok(),
        None => Slug::from_text(&name),
    };
    if slug.is_none() && !e.contains("slug") && !name.is_empty() {
        e.add("slug", "cannot be derived from the name; give one");
    }
    let description = body.description.map(|d| validate::text(&d, 2000, "description", &mut e));
    e.into_result()?;
    let Some(slug) = slug else { return Err(ApiError::Validation(FieldErrors::single("slug", "is required"))) };
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(p) = body.parent_id
        && !category_exists(&mut tx, tenant, p).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("parent_id", "no such service category")));
    }
    let row: ServiceCategory = sqlx::query_as(
        "insert into service_categories (tenant_id, name, slug, description, parent_id, display_order)
         values ($1, $2, $3, $4, $5, $6)
         returning id, name, slug, description, parent_id, display_order, 0::bigint as service_count, created_at",
    )
    .bind(tenant)
    .bind(name)
    .bind(slug.as_str())
    .bind(description)
    .bind(body.parent_id)
    .bind(body.display_order.unwrap_or(0))
    .fetch_one(&mut *tx)
    .await
    .map_err(conflict)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Service category created."))))
}
