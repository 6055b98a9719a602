//! `/api/v1/segments`: saved audiences over customer fields, tags, activity, orders and
//! the pipelines' scores, as the typed rule language of `delivery::segments` (evaluated in
//! Postgres), with a count preview and a sample. A campaign created with `segment_id`
//! takes the segment's customers as its recipients when it starts.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_delivery::segments::{self, Rule};
use fibonacco_platform::{TenantId, db};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    ApiError,
    customers::{READ, WRITE},
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, delete_one, page_of},
    state::AppState,
    validate,
};

const RESOURCE: &str = "segment";
const COLUMNS: &str = "id, name, description, rules, created_at, updated_at";
/// Customers a preview shows.
const SAMPLE: i64 = 10;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/segments", get(list).post(create))
        .route("/segments/preview", post(preview_rules))
        .route("/segments/{id}", get(show).put(update).delete(destroy))
        .route("/segments/{id}/preview", get(preview))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Segment {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// The rule (see the request's `rules`).
    #[schema(value_type = Object)]
    pub rules: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentRequest {
    /// 1 to 200 characters, unique in the tenant (any case).
    pub name: Option<String>,
    /// At most 1000 characters.
    pub description: Option<String>,
    /// `{"all": [rules]}`, `{"any": [rules]}`, `{"not": rule}` or a condition `{"field",
    /// "op", "value"}`. Fields: name, email, phone, `metadata.<key>` (eq, neq, contains,
    /// starts_with, set, not_set), tags (has, lacks), engagement_score (0-100) and
    /// purchase_probability (0-1) (gt, gte, lt, lte), created_at (before, after,
    /// within_days, older_than_days), last_order and last_activity (within_days,
    /// not_within_days, ever, never; last_activity takes an optional activity_type),
    /// suppressed, unsubscribed, `consent.<email|sms|phone>` (is true/false). At most 50
    /// conditions, 6 levels.
    #[schema(value_type = Object)]
    pub rules: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPreviewRequest {
    /// A rule as in a segment, not saved.
    #[schema(value_type = Object)]
    pub rules: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SegmentMember {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentPreview {
    /// Customers the rule selects now.
    pub count: i64,
    /// The first ten of them by name.
    pub sample: Vec<SegmentMember>,
}

/// Whether the tenant has the segment.
pub async fn exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from segments where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

fn checked_rules(rules: Option<&Value>, e: &mut FieldErrors) -> Option<Rule> {
    let Some(rules) = rules else {
        e.add("rules", "is required");
        return None;
    };
    match Rule::parse(rules, "rules") {
        Ok(rule) => Some(rule),
        Err(problems) => {
            for (path, message) in problems {
                e.add(path, message);
            }
            None
        }
    }
}

fn one_line(name: Option<String>, e: &mut FieldErrors) -> String {
    let name = validate::required_text(name, 200, "name", e);
    if name.contains(['\r', '\n']) {
        e.add("name", "must be one line");
    }
    name
}

/// The request's name and description, its rules checked too (every problem at once).
fn checked(body: &SegmentRequest) -> Result<(String, Option<String>), ApiError> {
    let mut e = FieldErrors::default();
    let name = one_line(body.name.clone(), &mut e);
    let description =
        body.description.as_deref().map(|d| validate::text(d, 1000, "description", &mut e)).filter(|d| !d.is_empty());
    checked_rules(body.rules.as_ref(), &mut e);
    e.into_result()?;
    Ok((name, description))
}

fn name_taken(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some("segments_tenant_name_key") => {
            ApiError::Conflict { message: "A segment with this name already exists.".into(), field: Some("name") }
        }
        _ => err.into(),
    }
}

#[utoipa::path(get, path = "/api/v1/segments", tag = "segments", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Segment>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Segment>>>, ApiError> {
    auth.require(READ)?;
    page_of(&state, &auth, page, &Listing { from: "segments", columns: COLUMNS, order_by: "lower(name), id" }).await
}

/// Save a segment.
#[utoipa::path(post, path = "/api/v1/segments", tag = "segments", request_body = SegmentRequest,
    responses((status = 201, body = inline(Envelope<Segment>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<SegmentRequest>,
) -> Result<(StatusCode, Json<Envelope<Segment>>), ApiError> {
    auth.require(WRITE)?;
    let (name, description) = checked(&body)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let segment: Segment = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into segments (tenant_id, name, description, rules) values ($1, $2, $3, $4) returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(&name)
    .bind(&description)
    .bind(&body.rules)
    .fetch_one(&mut *tx)
    .await
    .map_err(name_taken)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(segment, "Segment saved."))))
}

async fn find(state: &AppState, tenant: TenantId, id: Uuid) -> Result<Segment, ApiError> {
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let segment: Option<Segment> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from segments where tenant_id = $1 and id = $2")))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    segment.ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(get, path = "/api/v1/segments/{id}", tag = "segments",
    params(("id" = Uuid, Path, description = "Segment id")),
    responses((status = 200, body = inline(Envelope<Segment>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Segment>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    Ok(Json(Envelope::data(find(&state, auth.0.tenant_id, id).await?)))
}

/// Replace a segment's name, description and rules. Campaigns that take it and have not
/// started will use the new rules.
#[utoipa::path(put, path = "/api/v1/segments/{id}", tag = "segments",
    params(("id" = Uuid, Path, description = "Segment id")), request_body = SegmentRequest,
    responses((status = 200, body = inline(Envelope<Segment>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SegmentRequest>,
) -> Result<Json<Envelope<Segment>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let (name, description) = checked(&body)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let segment: Option<Segment> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update segments set name = $3, description = $4, rules = $5 where tenant_id = $1 and id = $2 returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(id)
    .bind(&name)
    .bind(&description)
    .bind(&body.rules)
    .fetch_optional(&mut *tx)
    .await
    .map_err(name_taken)?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(segment.ok_or(ApiError::NotFound(RESOURCE))?, "Segment saved.")))
}

/// Delete a segment. Campaigns that took it keep the recipients they have.
#[utoipa::path(delete, path = "/api/v1/segments/{id}", tag = "segments",
    params(("id" = Uuid, Path, description = "Segment id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if !delete_one(&state, &auth, "segments", id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    Ok(Json(Envelope::with_message(None, "Segment deleted.")))
}

async fn preview_of(state: &AppState, tenant: TenantId, rule: &Rule) -> Result<SegmentPreview, ApiError> {
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (count, members) = segments::preview(&mut tx, tenant, rule, SAMPLE).await?;
    tx.commit().await?;
    let sample = members.into_iter().map(|(id, name, email)| SegmentMember { id, name, email }).collect();
    Ok(SegmentPreview { count, sample })
}

/// How many customers the segment selects now, and the first ten by name.
#[utoipa::path(get, path = "/api/v1/segments/{id}/preview", tag = "segments",
    params(("id" = Uuid, Path, description = "Segment id")),
    responses((status = 200, body = inline(Envelope<SegmentPreview>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn preview(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<SegmentPreview>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let segment = find(&state, tenant, id).await?;
    // Saved rules were checked when saved; a rule from before a change of the language
    // answers 422 naming what no longer holds.
    let mut e = FieldErrors::default();
    let rule = checked_rules(Some(&segment.rules), &mut e);
    e.into_result()?;
    let rule = rule.ok_or(ApiError::NotFound(RESOURCE))?;
    Ok(Json(Envelope::data(preview_of(&state, tenant, &rule).await?)))
}

/// Preview a rule before saving it.
#[utoipa::path(post, path = "/api/v1/segments/preview", tag = "segments", request_body = SegmentPreviewRequest,
    responses((status = 200, body = inline(Envelope<SegmentPreview>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn preview_rules(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<SegmentPreviewRequest>,
) -> Result<Json<Envelope<SegmentPreview>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let rule = checked_rules(body.rules.as_ref(), &mut e);
    e.into_result()?;
    let rule = rule.ok_or_else(|| ApiError::Validation(FieldErrors::single("rules", "is required")))?;
    Ok(Json(Envelope::data(preview_of(&state, auth.0.tenant_id, &rule).await?)))
}
