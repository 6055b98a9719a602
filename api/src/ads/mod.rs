//! Ads (`/api/v1/ads`): CRUD, templates, and drafts generated from a campaign or from
//! content with the LLM provider. Handlers here; `input.rs` parses, `store.rs` holds the SQL.

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::Utc;
use fibonacco_platform::{
    db,
    llm::{ChatMessage, ChatRequest},
};
use serde_json::{Map, json};

pub use input::{
    AD_TYPES, AdListQuery, CreateAdRequest, CreateAdTemplate, GenerateAdRequest, PLATFORMS, STATUSES, UpdateAdRequest,
};
pub use store::{Ad, AdTemplate};

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    state::AppState,
};
use input::{NewAd, check_window};

pub const READ: &str = "ads:read";
pub const WRITE: &str = "ads:write";
const RESOURCE: &str = "ad";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ads", get(list).post(create))
        .route("/ads/templates", get(list_templates).post(create_template))
        .route("/ads/generate-from-campaign", post(generate_from_campaign))
        .route("/ads/generate-from-content", post(generate_from_content))
        .route("/ads/{id}", get(show).put(update).delete(destroy))
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
    let filter = query.parse(&mut e);
    e.into_result()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let (rows, total) = store::list(&mut tx, auth.0.tenant_id, &filter, page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
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
    let ad = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(t) = ad.template_id
        && !store::template_exists(&mut tx, tenant, t).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("template_id", "no such ad template")));
    }
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let id = store::insert(&mut tx, tenant, &ad).await?;
    let row = store::get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
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
    let row = store::get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    row.map(|a| Json(Envelope::data(a))).ok_or(ApiError::NotFound(RESOURCE))
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
    let changes = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let current = store::get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    // Check the window and the schedule against the values the ad will have.
    let mut e = FieldErrors::default();
    let final_start = changes.scheduled_start_at.unwrap_or(current.scheduled_start_at);
    let final_end = changes.scheduled_end_at.unwrap_or(current.scheduled_end_at);
    check_window(final_start, final_end, &mut e);
    if changes.status.as_deref() == Some("scheduled") && final_start.is_none_or(|s| s <= Utc::now()) {
        e.add("scheduled_start_at", "a scheduled ad needs a future start");
    }
    e.into_result()?;
    store::update(&mut tx, tenant, id, changes, final_start, final_end).await?;
    let row = store::get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
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

#[utoipa::path(get, path = "/api/v1/ads/templates", tag = "ads", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<AdTemplate>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<AdTemplate>>>, ApiError> {
    auth.require(READ)?;
    let listing = Listing { from: "ad_templates", columns: store::TEMPLATE_COLUMNS, order_by: "lower(name), id" };
    page_of(&state, &auth, page, &listing).await
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
    let template = body.parse()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = store::insert_template(&mut tx, auth.0.tenant_id, template).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Ad template created."))))
}

async fn generate(
    state: AppState,
    auth: Auth,
    body: GenerateAdRequest,
    from_campaign: bool,
) -> Result<(StatusCode, Json<Envelope<Ad>>), ApiError> {
    auth.require(WRITE)?;
    let brief = body.parse()?;
    let (source, platform, ad_type) = (brief.source, brief.platform, brief.ad_type);
    let tenant = auth.0.tenant_id;
    // Read the source, let the connection go, then call the provider (no provider call
    // holds a pooled connection: a slow provider must not starve the pool).
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let found = if from_campaign {
        store::campaign_brief(&mut tx, tenant, source).await?
    } else {
        store::content_brief(&mut tx, tenant, source).await?
    };
    tx.commit().await?;
    let (name, details) = found.ok_or_else(|| {
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
    let reply = crate::ai::gateway::complete(&state, tenant, request).await?;
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
        budget: brief.budget,
        currency: brief.currency,
        scheduled_start_at: None,
        scheduled_end_at: None,
        template_id: None,
        source_campaign_id: from_campaign.then_some(source),
        source_content_id: (!from_campaign).then_some(source),
        prompt: Some(format!("{system}\n\n{name}\n{details}")),
        model: Some(reply.model.clone()),
        metadata: json!({"provider": reply.provider}).as_object().cloned().unwrap_or_default(),
    };
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let id = store::insert(&mut tx, tenant, &ad).await?;
    let row = store::get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
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
