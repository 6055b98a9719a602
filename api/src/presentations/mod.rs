//! Presentations and their presenters (`/api/v1/presentations`): slide decks a presenter
//! voice narrates; views count as customer activity when the viewer is known.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db, domain::Slug};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    patch::Patch,
    state::AppState,
    validate,
};

pub const READ: &str = "presentations:read";
pub const WRITE: &str = "presentations:write";
const RESOURCE: &str = "presentation";
pub const STATUSES: &[&str] = &["draft", "published", "archived"];
const MAX_SLIDES: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/presentations", get(list).post(create))
        .route("/presentations/presenters", get(list_presenters).post(create_presenter))
        .route("/presentations/{id}", get(show).put(update).delete(destroy))
        .route("/presentations/{id}/view", post(record_view))
}

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

const COLUMNS: &str = "id, title, slug, description, slides, presenter_id, audio_url, status, is_template, view_count, created_at, updated_at";

async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Presentation>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from presentations where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

async fn presenter_exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from presenters where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Slides must be objects with a non-empty `title`.
fn check_slides(slides: &[Value], e: &mut FieldErrors) {
    if slides.len() > MAX_SLIDES {
        e.add("slides", format!("at most {MAX_SLIDES} slides"));
    }
    for (i, slide) in slides.iter().enumerate() {
        let ok = slide
            .as_object()
            .and_then(|o| o.get("title"))
            .and_then(Value::as_str)
            .is_some_and(|t| !t.trim().is_empty());
        if !ok {
            e.add(format!("slides[{i}]"), "must be an object with a non-empty title");
        }
    }
}

#[utoipa::path(get, path = "/api/v1/presentations", tag = "presentations", params(PageQuery),
    responses((status = 200, body = inline(crate::envelope::Envelope<Vec<Presentation>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Presentation>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "presentations", columns: COLUMNS, order_by: "created_at desc, id desc" },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePresentationRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub slides: Option<Vec<Value>>,
    pub presenter_id: Option<Uuid>,
    pub is_template: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/presentations", tag = "presentations", request_body = CreatePresentationRequest,
    responses((status = 201, body = inline(Envelope<Presentation>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreatePresentationRequest>,
) -> Result<(StatusCode, Json<Envelope<Presentation>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let title = validate::required_text(body.title, 300, "title", &mut e);
    let description = body.description.map(|d| validate::text(&d, 5000, "description", &mut e));
    let slides = body.slides.unwrap_or_default();
    check_slides(&slides, &mut e);
    let slug = Slug::from_text(&title);
    if slug.is_none() && !title.is_empty() {
        e.add("title", "must contain letters or digits");
    }
    e.into_result()?;
    let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("title", "is required")))?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(p) = body.presenter_id
        && !presenter_exists(&mut tx, tenant, p).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("presenter_id", "no such presenter")));
    }
    let slug = crate::slugs::free_slug(&mut tx, "presentations", tenant, slug.as_str()).await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into presentations (tenant_id, title, slug, description, slides, presenter_id, is_template)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(tenant)
    .bind(title)
    .bind(slug)
    .bind(description)
    .bind(SqlJson(Value::Array(slides)))
    .bind(body.presenter_id)
    .bind(body.is_template.unwrap_or(false))
    .fetch_one(&mut *tx)
    .await?;
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Presentation created."))))
}

#[utoipa::path(get, path = "/api/v1/presentations/{id}", tag = "presentations", params(("id" = Uuid, Path, description = "Presentation id")),
    responses((status = 200, body = inline(Envelope<Presentation>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Presentation>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    row.map(|p| Json(Envelope::data(p))).ok_or(ApiError::NotFound(RESOURCE))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePresentationRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub slides: Patch<Vec<Value>>,
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub presenter_id: Patch<Uuid>,
    /// draft, published or archived.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
}

#[utoipa::path(put, path = "/api/v1/presentations/{id}", tag = "presentations", params(("id" = Uuid, Path, description = "Presentation id")),
    request_body = UpdatePresentationRequest,
    responses((status = 200, body = inline(Envelope<Presentation>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdatePresentationRequest>,
) -> Result<Json<Envelope<Presentation>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let title = body.title.non_null("title", &mut e).map(|t| validate::required_text(Some(t), 300, "title", &mut e));
    let slides = body.slides.non_null("slides", &mut e);
    if let Some(s) = &slides {
        check_slides(s, &mut e);
    }
    let status = body.status.non_null("status", &mut e).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
    let presenter = body.presenter_id.nullable();
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(Some(p)) = presenter
        && !presenter_exists(&mut tx, tenant, p).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("presenter_id", "no such presenter")));
    }
    let r = sqlx::query(
        "update presentations set title = coalesce($3, title), slides = coalesce($4, slides),
            presenter_id = case when $5 then $6 else presenter_id end, status = coalesce($7, status)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(title)
    .bind(slides.map(|s| SqlJson(Value::Array(s))))
    .bind(presenter.is_some())
    .bind(presenter.flatten())
    .bind(status)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(row, "Presentation updated.")))
}

#[utoipa::path(delete, path = "/api/v1/presentations/{id}", tag = "presentations", params(("id" = Uuid, Path, description = "Presentation id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "presentations", id).await? {
        Ok(Json(Envelope::with_message(None, "Presentation deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewRequest {
    /// The viewer, when known: recorded as their `presentation_view` activity.
    pub customer_id: Option<Uuid>,
}

/// Count a view of a published presentation.
#[utoipa::path(post, path = "/api/v1/presentations/{id}/view", tag = "presentations", params(("id" = Uuid, Path, description = "Presentation id")),
    request_body = ViewRequest,
    responses((status = 200, body = inline(Envelope<Presentation>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn record_view(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ViewRequest>,
) -> Result<Json<Envelope<Presentation>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(c) = body.customer_id
        && !customers::store::exists(&mut tx, tenant, c).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("customer_id", "no such customer")));
    }
    let r = sqlx::query("update presentations set view_count = view_count + 1 where tenant_id = $1 and id = $2 and status = 'published'")
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound(RESOURCE));
    }
    if let Some(customer) = body.customer_id {
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id)
             values ($1, $2, 'presentation_view', 'web', 'presentation', $3)",
        )
        .bind(tenant)
        .bind(customer)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::data(row)))
}

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

const PRESENTER_COLUMNS: &str = "id, name, bio, avatar_url, voice_id, voice_settings, created_at";

#[utoipa::path(get, path = "/api/v1/presentations/presenters", tag = "presentations", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Presenter>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_presenters(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Presenter>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "presenters", columns: PRESENTER_COLUMNS, order_by: "lower(name), id" },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePresenterRequest {
    pub name: Option<String>,
    pub bio: Option<String>,
    pub avatar_url: Option<String>,
    pub voice_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub voice_settings: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/presentations/presenters", tag = "presentations", request_body = CreatePresenterRequest,
    responses((status = 201, body = inline(Envelope<Presenter>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_presenter(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreatePresenterRequest>,
) -> Result<(StatusCode, Json<Envelope<Presenter>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let bio = body.bio.map(|b| validate::text(&b, 5000, "bio", &mut e));
    let avatar = body.avatar_url.map(|a| validate::text(&a, 2048, "avatar_url", &mut e));
    let voice = body.voice_id.map(|v| validate::text(&v, 100, "voice_id", &mut e));
    let settings = validate::object(body.voice_settings, "voice_settings", &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row: Presenter = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into presenters (tenant_id, name, bio, avatar_url, voice_id, voice_settings) values ($1, $2, $3, $4, $5, $6)
         returning {PRESENTER_COLUMNS}"
    )))
    .bind(tenant)
    .bind(name)
    .bind(bio)
    .bind(avatar)
    .bind(voice)
    .bind(SqlJson(settings))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Presenter created."))))
}
