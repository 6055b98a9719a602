//! Ads (`/api/v1/ads`): CRUD, templates, and drafts generated from a campaign or from
//! content with the LLM provider.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{
    TenantId, db,
    llm::{ChatMessage, ChatRequest},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
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

pub const READ: &str = "ads:read";
pub const WRITE: &str = "ads:write";
const RESOURCE: &str = "ad";
pub const PLATFORMS: &[&str] =
    &["facebook", "instagram", "google", "linkedin", "twitter", "tiktok", "youtube", "other"];
pub const STATUSES: &[&str] = &["draft", "review", "approved", "scheduled", "active", "paused", "archived"];
pub const AD_TYPES: &[&str] = &["text", "image", "video", "carousel", "search", "story"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ads", get(list).post(create))
        .route("/ads/templates", get(list_templates).post(create_template))
        .route("/ads/generate-from-campaign", post(generate_from_campaign))
        .route("/ads/generate-from-content", post(generate_from_content))
        .route("/ads/{id}", get(show).put(update).delete(destroy))
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Ad {
    pub id: Uuid,
    pub name: String,
    pub platform: String,
    pub ad_type: String,
    /// draft, review, approved, scheduled, active, paused or archived.
    pub status: String,
    /// Headline, primary text, call to action, media…
    #[schema(value_type = Object)]
    pub content: SqlJson<Map<String, Value>>,
    #[schema(value_type = Object)]
    pub targeting: SqlJson<Map<String, Value>>,
    /// Budget in minor units of `currency`.
    pub budget: Option<i64>,
    pub currency: String,
    pub scheduled_start_at: Option<DateTime<Utc>>,
    pub scheduled_end_at: Option<DateTime<Utc>>,
    pub template_id: Option<Uuid>,
    pub source_campaign_id: Option<Uuid>,
    pub source_content_id: Option<Uuid>,
    pub prompt: Option<String>,
    pub model: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, platform, ad_type, status, content, targeting, budget, trim(currency) as currency,
    scheduled_start_at, scheduled_end_at, template_id, source_campaign_id, source_content_id, prompt, model, metadata,
    created_at, updated_at";

async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Ad>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from ads where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdListQuery {
    pub platform: Option<String>,
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/ads", tag = "ads", params(PageQuery, AdListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Ad>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<AdListQuery>,
) -> Result<Json<Envelope<Vec<Ad>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let platform =
        query.platform.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, PLATFORMS, "platform", &mut e));
    let status = query.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let filter = "tenant_id = $1 and ($2::text is null or platform = $2) and ($3::text is null or status = $3)";
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from ads where {filter}")))
        .bind(tenant)
        .bind(&platform)
        .bind(&status)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<Ad> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from ads where {filter} order by created_at desc, id desc limit $4 offset $5"
    )))
    .bind(tenant)
    .bind(&platform)
    .bind(&status)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

/// A checked ad, ready to insert.
struct NewAd {
    name: String,
    platform: String,
    ad_type: String,
    content: Map<String, Value>,
    targeting: Map<String, Value>,
    budget: Option<i64>,
    currency: String,
    scheduled_start_at: Option<DateTime<Utc>>,
    scheduled_end_at: Option<DateTime<Utc>>,
    template_id: Option<Uuid>,
    source_campaign_id: Option<Uuid>,
    source_content_id: Option<Uuid>,
    prompt: Option<String>,
    model: Option<String>,
    metadata: Map<String, Value>,
}

async fn insert(conn: &mut PgConnection, tenant: TenantId, ad: &NewAd) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into ads (tenant_id, name, platform, ad_type, content, targeting, budget, currency, scheduled_start_at,
            scheduled_end_at, template_id, source_campaign_id, source_content_id, prompt, model, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) returning id",
    )
    .bind(tenant)
    .bind(&ad.name)
    .bind(&ad.platform)
    .bind(&ad.ad_type)
    .bind(SqlJson(&ad.content))
    .bind(SqlJson(&ad.targeting))
    .bind(ad.budget)
    .bind(&ad.currency)
    .bind(ad.scheduled_start_at)
    .bind(ad.scheduled_end_at)
    .bind(ad.template_id)
    .bind(ad.source_campaign_id)
    .bind(ad.source_content_id)
    .bind(&ad.prompt)
    .bind(&ad.model)
    .bind(SqlJson(&ad.metadata))
    .fetch_one(conn)
    .await
}

fn check_window(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, e: &mut FieldErrors) {
    if let (Some(s), Some(t)) = (start, end)
        && t <= s
    {
        e.add("scheduled_end_at", "must be after scheduled_start_at");
    }
}

fn check_budget(budget: Option<i64>, e: &mut FieldErrors) {
    if budget.is_some_and(|b| b < 0) {
        e.add("budget", "must not be negative");
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdRequest {
    pub name: Option<String>,
    /// facebook, instagram, google, linkedin, twitter, tiktok, youtube, other.
    pub platform: Option<String>,
    /// text (default), image, video, carousel, search, story.
    pub ad_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub targeting: Option<Value>,
    /// Minor units.
    pub budget: Option<i64>,
    pub currency: Option<String>,
    pub scheduled_start_at: Option<DateTime<Utc>>,
    pub scheduled_end_at: Option<DateTime<Utc>>,
    pub template_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/ads", tag = "ads", request_body = CreateAdRequest,
    responses((status = 201, body = inline(Envelope<Ad>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateAdRequest>,
) -> Result<(StatusCode, Json<Envelope<Ad>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let ad = NewAd {
        name: validate::required_text(body.name, 200, "name", &mut e),
        platform: validate::one_of(&body.platform.unwrap_or_else(|| "".into()), PLATFORMS, "platform", &mut e),
        ad_type: validate::one_of(body.ad_type.as_deref().unwrap_or("text"), AD_TYPES, "ad_type", &mut e),
        content: validate::object(body.content, "content", &mut e),
        targeting: validate::object(body.targeting, "targeting", &mut e),
        budget: body.budget,
        currency: crate::commerce::currency(body.currency.as_deref().unwrap_or("USD"), &mut e),
        scheduled_start_at: body.scheduled_start_at,
        scheduled_end_at: body.scheduled_end_at,
        template_id: body.template_id,
        source_campaign_id: None,
        source_content_id: None,
        prompt: None,
        model: None,
        metadata: validate::object(body.metadata, "metadata", &mut e),
    };
    check_budget(ad.budget, &mut e);
    check_window(ad.scheduled_start_at, ad.scheduled_end_at, &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(t) = ad.template_id
        && !template_exists(&mut tx, tenant, t).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("template_id", "no such ad template")));
    }
    let id = insert(&mut tx, tenant, &ad).await?;
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Ad created."))))
}

#[utoipa::path(get, path = "/api/v1/ads/{id}", tag = "ads", params(("id" = Uuid, Path, description = "Ad id")),
    responses((status = 200, body = inline(Envelope<Ad>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Ad>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    row.map(|a| Json(Envelope::data(a))).ok_or(ApiError::NotFound(RESOURCE))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAdRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    /// Any of the seed's ad statuses; `scheduled` needs a future `scheduled_start_at`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub content: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub targeting: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub budget: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub scheduled_start_at: Patch<DateTime<Utc>>,
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub scheduled_end_at: Patch<DateTime<Utc>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

#[utoipa::path(put, path = "/api/v1/ads/{id}", tag = "ads", params(("id" = Uuid, Path, description = "Ad id")), request_body = UpdateAdRequest,
    responses((status = 200, body = inline(Envelope<Ad>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateAdRequest>,
) -> Result<Json<Envelope<Ad>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let name = body.name.non_null("name", &mut e).map(|n| validate::required_text(Some(n), 200, "name", &mut e));
    let status = body.status.non_null("status", &mut e).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
    let object = |p: Patch<Value>, field: &str, e: &mut FieldErrors| match p {
        Patch::Missing => None,
        Patch::Null => Some(Map::new()),
        Patch::Value(v) => Some(validate::object(Some(v), field, e)),
    };
    let content = object(body.content, "content", &mut e);
    let targeting = object(body.targeting, "targeting", &mut e);
    let metadata = object(body.metadata, "metadata", &mut e);
    let budget = body.budget.nullable();
    check_budget(budget.flatten(), &mut e);
    let start = body.scheduled_start_at.nullable();
    let end = body.scheduled_end_at.nullable();
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let current = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    // Check the window and the schedule against the values the ad will have.
    let mut e = FieldErrors::default();
    let final_start = start.unwrap_or(current.scheduled_start_at);
    let final_end = end.unwrap_or(current.scheduled_end_at);
    check_window(final_start, final_end, &mut e);
    if status.as_deref() == Some("scheduled") && final_start.is_none_or(|s| s <= Utc::now()) {
        e.add("scheduled_start_at", "a scheduled ad needs a future start");
    }
    e.into_result()?;
    sqlx::query(
        "update ads set name = coalesce($3, name), status = coalesce($4, status), content = coalesce($5, content),
            targeting = coalesce($6, targeting), budget = case when $7 then $8 else budget end,
            scheduled_start_at = $9, scheduled_end_at = $10, metadata = coalesce($11, metadata)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(name)
    .bind(status)
    .bind(content.map(SqlJson))
    .bind(targeting.map(SqlJson))
    .bind(budget.is_some())
    .bind(budget.flatten())
    .bind(final_start)
    .bind(final_end)
    .bind(metadata.map(SqlJson))
    .execute(&mut *tx)
    .await?;
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(row, "Ad updated.")))
}

#[utoipa::path(delete, path = "/api/v1/ads/{id}", tag = "ads", params(("id" = Uuid, Path, description = "Ad id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "ads", id).await? {
        Ok(Json(Envelope::with_message(None, "Ad deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AdTemplate {
    pub id: Uuid,
    pub name: String,
    pub platform: String,
    pub ad_type: String,
    #[schema(value_type = Object)]
    pub structure: SqlJson<Map<String, Value>>,
    pub prompt_template: Option<String>,
    pub created_at: DateTime<Utc>,
}

async fn template_exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from ad_templates where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

#[utoipa::path(get, path = "/api/v1/ads/templates", tag = "ads", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<AdTemplate>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<AdTemplate>>>, ApiError> {
    auth.require(READ)?;
    let listing = Listing {
        from: "ad_templates",
        columns: "id, name, platform, ad_type, structure, prompt_template, created_at",
        order_by: "lower(name), id",
    };
    page_of(&state, &auth, page, &listing).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdTemplate {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub ad_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub structure: Option<Value>,
    pub prompt_template: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/ads/templates", tag = "ads", request_body = CreateAdTemplate,
    responses((status = 201, body = inline(Envelope<AdTemplate>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_template(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateAdTemplate>,
) -> Result<(StatusCode, Json<Envelope<AdTemplate>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let platform = validate::one_of(&body.platform.unwrap_or_default(), PLATFORMS, "platform", &mut e);
    let ad_type = validate::one_of(body.ad_type.as_deref().unwrap_or("text"), AD_TYPES, "ad_type", &mut e);
    let structure = validate::object(body.structure, "structure", &mut e);
    let prompt = body.prompt_template.map(|p| validate::text(&p, 20_000, "prompt_template", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row: AdTemplate = sqlx::query_as(
        "insert into ad_templates (tenant_id, name, platform, ad_type, structure, prompt_template)
         values ($1, $2, $3, $4, $5, $6) returning id, name, platform, ad_type, structure, prompt_template, created_at",
    )
    .bind(tenant)
    .bind(name)
    .bind(platform)
    .bind(ad_type)
    .bind(SqlJson(structure))
    .bind(prompt)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Ad template created."))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateAdRequest {
    /// The outbound campaign (for generate-from-campaign) or content (generate-from-content).
    pub source_id: Option<Uuid>,
    pub platform: Option<String>,
    pub ad_type: Option<String>,
    /// Minor units.
    pub budget: Option<i64>,
    pub currency: Option<String>,
}

async fn generate(
    state: AppState,
    auth: Auth,
    body: GenerateAdRequest,
    from_campaign: bool,
) -> Result<(StatusCode, Json<Envelope<Ad>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let platform = validate::one_of(&body.platform.unwrap_or_default(), PLATFORMS, "platform", &mut e);
    let ad_type = validate::one_of(body.ad_type.as_deref().unwrap_or("text"), AD_TYPES, "ad_type", &mut e);
    check_budget(body.budget, &mut e);
    let currency = crate::commerce::currency(body.currency.as_deref().unwrap_or("USD"), &mut e);
    if body.source_id.is_none() {
        e.add("source_id", "is required");
    }
    e.into_result()?;
    let source = body.source_id.ok_or_else(|| ApiError::Validation(FieldErrors::single("source_id", "is required")))?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let brief: Option<(String, String)> = if from_campaign {
        sqlx::query_as("select name, type from outbound_campaigns where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(source)
            .fetch_optional(&mut *tx)
            .await?
            .map(|(name, kind): (String, String)| (name.clone(), format!("Promote the {kind} campaign \"{name}\".")))
    } else {
        sqlx::query_as("select title, left(body, 2000) from generated_content where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(source)
            .fetch_optional(&mut *tx)
            .await?
    };
    let (name, details) = brief.ok_or_else(|| {
        ApiError::Validation(FieldErrors::single(
            "source_id",
            if from_campaign { "no such campaign" } else { "no such content" },
        ))
    })?;
    let system = format!(
        "You write {ad_type} ads for {platform}. Reply with a headline of at most 40 characters on the first line, \
         then the primary text."
    );
    let request = ChatRequest {
        messages: vec![ChatMessage::system(&system), ChatMessage::user(format!("{name}\n{details}"))],
        model: None,
        temperature: 0.8,
        max_tokens: 300,
    };
    let reply = state.llm.complete(&request).await?;
    let mut lines = reply.content.lines().map(str::trim).filter(|l| !l.is_empty());
    let headline: String = lines.next().unwrap_or(&name).trim_start_matches('#').trim().chars().take(120).collect();
    let primary: String = lines.collect::<Vec<_>>().join("\n");
    let content = json!({"headline": headline, "primary_text": primary, "call_to_action": "learn_more"});
    let ad = NewAd {
        name: format!("{name} ({platform})").chars().take(200).collect(),
        platform,
        ad_type,
        content: content.as_object().cloned().unwrap_or_default(),
        targeting: Map::new(),
        budget: body.budget,
        currency,
        scheduled_start_at: None,
        scheduled_end_at: None,
        template_id: None,
        source_campaign_id: from_campaign.then_some(source),
        source_content_id: (!from_campaign).then_some(source),
        prompt: Some(format!("{system}\n\n{name}\n{details}")),
        model: Some(reply.model.clone()),
        metadata: json!({"provider": reply.provider}).as_object().cloned().unwrap_or_default(),
    };
    let id = insert(&mut tx, tenant, &ad).await?;
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Ad generated as a draft."))))
}

/// Draft an ad for an outbound campaign (`source_id` = campaign id).
#[utoipa::path(post, path = "/api/v1/ads/generate-from-campaign", tag = "ads", request_body = GenerateAdRequest,
    responses((status = 201, body = inline(Envelope<Ad>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn generate_from_campaign(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<GenerateAdRequest>,
) -> Result<(StatusCode, Json<Envelope<Ad>>), ApiError> {
    generate(state, auth, body, true).await
}

/// Draft an ad from a piece of content (`source_id` = content id).
#[utoipa::path(post, path = "/api/v1/ads/generate-from-content", tag = "ads", request_body = GenerateAdRequest,
    responses((status = 201, body = inline(Envelope<Ad>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn generate_from_content(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<GenerateAdRequest>,
) -> Result<(StatusCode, Json<Envelope<Ad>>), ApiError> {
    generate(state, auth, body, false).await
}
