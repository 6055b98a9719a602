//! Publishing views over the workflow: counts and what is coming, a calendar, figures,
//! and publishing one piece now.

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Duration, Utc};
use fibonacco_platform::db;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Content, READ, RESOURCE, SELECT, WRITE, get_one, lock_status};
use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, QueryParams, resource_id},
    state::AppState,
};
use fibonacco_delivery::publishing::{Step, transition};

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct StatusCounts {
    pub draft: i64,
    pub review: i64,
    pub approved: i64,
    pub scheduled: i64,
    pub published: i64,
    pub archived: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    pub counts: StatusCounts,
    /// The next scheduled pieces, soonest first (at most 10).
    pub upcoming: Vec<Content>,
    /// The latest published pieces (at most 10).
    pub recently_published: Vec<Content>,
}

#[utoipa::path(get, path = "/api/v1/publishing/dashboard", tag = "content",
    responses((status = 200, body = inline(Envelope<Dashboard>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn dashboard(State(state): State<AppState>, auth: Auth) -> Result<Json<Envelope<Dashboard>>, ApiError> {
    auth.require(READ)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let counts: StatusCounts = sqlx::query_as(
        "select count(*) filter (where status = 'draft') as draft, count(*) filter (where status = 'review') as review,
            count(*) filter (where status = 'approved') as approved, count(*) filter (where status = 'scheduled') as scheduled,
            count(*) filter (where status = 'published') as published, count(*) filter (where status = 'archived') as archived
         from content_workflow where tenant_id = $1 and content_type = 'generated_content'",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    let upcoming = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} where g.tenant_id = $1 and w.status = 'scheduled' order by w.scheduled_publish_at, g.id limit 10"
    )))
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    let recently_published = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} where g.tenant_id = $1 and w.status = 'published' order by w.published_at desc, g.id limit 10"
    )))
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(Dashboard { counts, upcoming, recently_published })))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CalendarQuery {
    /// RFC 3339 start (default: now).
    pub from: Option<String>,
    /// RFC 3339 end (default: 30 days after `from`); at most 366 days after `from`.
    pub to: Option<String>,
}

/// Content scheduled or published within the range, by date.
#[utoipa::path(get, path = "/api/v1/publishing/calendar", tag = "content", params(CalendarQuery),
    responses((status = 200, body = inline(Envelope<Vec<Content>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn calendar(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<CalendarQuery>,
) -> Result<Json<Envelope<Vec<Content>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let mut time = |raw: Option<String>, field: &str| -> Option<DateTime<Utc>> {
        let raw = raw.filter(|r| !r.is_empty())?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| e.add(field, "must be an RFC 3339 timestamp"))
            .ok()
    };
    let from = time(query.from, "from").unwrap_or_else(Utc::now);
    let to = time(query.to, "to").unwrap_or(from + Duration::days(30));
    if to < from {
        e.add("to", "must not be before from");
    } else if to - from > Duration::days(366) {
        e.add("to", "the range may span at most 366 days");
    }
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} where g.tenant_id = $1 and (
            (w.status = 'scheduled' and w.scheduled_publish_at between $2 and $3)
            or (w.status = 'published' and w.published_at between $2 and $3))
         order by coalesce(w.published_at, w.scheduled_publish_at), g.id"
    )))
    .bind(tenant)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(rows)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishingAnalytics {
    pub counts: StatusCounts,
    /// Published pieces per content type.
    pub published_by_type: Vec<TypeCount>,
    /// Published per day over the last 30 days (days without any are left out).
    pub published_per_day: Vec<DayCount>,
    /// Mean hours from creation to publication; null before anything is published.
    pub mean_hours_to_publish: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct TypeCount {
    pub content_type: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[schema(as = PublishedDayCount)]
pub struct DayCount {
    pub day: chrono::NaiveDate,
    pub count: i64,
}

#[utoipa::path(get, path = "/api/v1/publishing/analytics", tag = "content",
    responses((status = 200, body = inline(Envelope<PublishingAnalytics>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn analytics(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Envelope<PublishingAnalytics>>, ApiError> {
    auth.require(READ)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let counts: StatusCounts = sqlx::query_as(
        "select count(*) filter (where status = 'draft') as draft, count(*) filter (where status = 'review') as review,
            count(*) filter (where status = 'approved') as approved, count(*) filter (where status = 'scheduled') as scheduled,
            count(*) filter (where status = 'published') as published, count(*) filter (where status = 'archived') as archived
         from content_workflow where tenant_id = $1 and content_type = 'generated_content'",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    let published_by_type = sqlx::query_as(
        "select g.content_type, count(*) as count from generated_content g
         join content_workflow w on w.content_type = 'generated_content' and w.content_id = g.id
         where g.tenant_id = $1 and w.status = 'published' group by g.content_type order by count desc, g.content_type",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    let published_per_day = sqlx::query_as(
        "select (published_at at time zone 'UTC')::date as day, count(*) as count from content_workflow
         where tenant_id = $1 and content_type = 'generated_content' and status = 'published'
           and published_at >= now() - interval '30 days'
         group by 1 order by 1",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    let mean_hours_to_publish: Option<f64> = sqlx::query_scalar(
        "select avg(extract(epoch from (w.published_at - g.created_at)) / 3600.0)::float8 from content_workflow w
         join generated_content g on g.id = w.content_id
         where w.tenant_id = $1 and w.content_type = 'generated_content' and w.status = 'published'",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(PublishingAnalytics {
        counts,
        published_by_type,
        published_per_day,
        mean_hours_to_publish,
    })))
}

/// Publish now: approved or scheduled content becomes `published` (422 otherwise).
#[utoipa::path(post, path = "/api/v1/publishing/content/{id}/publish", tag = "content",
    params(("id" = uuid::Uuid, Path, description = "Content id")),
    responses((status = 200, body = inline(Envelope<Content>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn publish(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Content>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let from = lock_status(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if !fibonacco_delivery::publishing::allowed(&from, "published") {
        return Err(ApiError::Validation(FieldErrors::single(
            "status",
            format!("{from} content cannot be published; approve it first"),
        )));
    }
    transition(
        &mut tx,
        tenant,
        id,
        &Step {
            from: &from,
            to: "published",
            scheduled_publish_at: None,
            actor: auth.0.user_id,
            notes: None,
            action: "publish",
        },
    )
    .await?;
    let content = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(content, "Content published.")))
}
