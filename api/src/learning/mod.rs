//! The learning center: learning campaigns (`/api/v1/campaigns`), their guides, and
//! "contact sales" leads (`/api/v1/learning/...`). Handlers here; `input.rs` parses,
//! `store.rs` holds the SQL.

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_platform::{
    db,
    domain::Slug,
    llm::{ChatMessage, ChatRequest},
    queue::jobs::SendSalesNotification,
};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

pub use input::{
    CAMPAIGN_TYPES, CampaignListQuery, ContactSalesRequest, GenerateCampaignRequest, STATUSES, SuggestionsRequest,
};
pub use store::LearningCampaign;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
};
use input::list_items;

pub const READ: &str = "learning:read";
pub const WRITE: &str = "learning:write";
const RESOURCE: &str = "campaign";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/campaigns", get(list))
        .route("/campaigns/templates", get(templates))
        .route("/campaigns/generate", post(generate))
        .route("/campaigns/suggestions", post(suggestions))
        .route("/campaigns/{slug}", get(show))
        .route("/learning/contact/sales", post(contact_sales))
        .route("/learning/campaigns/{id}/guide", get(guide))
}

async fn page_where(
    state: &AppState,
    auth: &Auth,
    page: PageQuery,
    status: Option<String>,
    templates_only: bool,
) -> Result<Json<Envelope<Vec<LearningCampaign>>>, ApiError> {
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let status = input::status_filter(status, &mut e);
    e.into_result()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let (rows, total) = store::list(&mut tx, auth.0.tenant_id, status.as_deref(), templates_only, page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

#[utoipa::path(get, path = "/api/v1/campaigns", tag = "learning", params(PageQuery, CampaignListQuery),
    responses((status = 200, body = inline(Envelope<Vec<LearningCampaign>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<CampaignListQuery>,
) -> Result<Json<Envelope<Vec<LearningCampaign>>>, ApiError> {
    auth.require(READ)?;
    page_where(&state, &auth, page, query.status, false).await
}

/// Campaigns marked as templates, to start new ones from.
#[utoipa::path(get, path = "/api/v1/campaigns/templates", tag = "learning", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<LearningCampaign>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn templates(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<LearningCampaign>>>, ApiError> {
    auth.require(READ)?;
    page_where(&state, &auth, page, None, true).await
}

#[utoipa::path(get, path = "/api/v1/campaigns/{slug}", tag = "learning", params(("slug" = String, Path, description = "Campaign slug")),
    responses((status = 200, body = inline(Envelope<LearningCampaign>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(slug): Path<String>,
) -> Result<Json<Envelope<LearningCampaign>>, ApiError> {
    auth.require(READ)?;
    let slug = Slug::parse(&slug).map_err(|_| ApiError::NotFound(RESOURCE))?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = store::by_slug(&mut tx, auth.0.tenant_id, slug.as_str()).await?;
    tx.commit().await?;
    row.map(|c| Json(Envelope::data(c))).ok_or(ApiError::NotFound(RESOURCE))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Guide {
    pub campaign_id: Uuid,
    pub title: String,
    #[schema(value_type = Object)]
    pub guide: Value,
}

/// The step-by-step guide of a campaign (404 when the campaign has none).
#[utoipa::path(get, path = "/api/v1/learning/campaigns/{id}/guide", tag = "learning", params(("id" = Uuid, Path, description = "Campaign id")),
    responses((status = 200, body = inline(Envelope<Guide>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn guide(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Guide>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let row = store::guide(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    let (title, guide) = row.ok_or(ApiError::NotFound(RESOURCE))?;
    if guide.as_object().is_none_or(|o| o.is_empty()) {
        return Err(ApiError::NotFound("guide"));
    }
    Ok(Json(Envelope::data(Guide { campaign_id: id, title, guide })))
}

/// Draft a learning campaign (content sections, landing page, guide) with the LLM provider.
#[utoipa::path(post, path = "/api/v1/campaigns/generate", tag = "learning", request_body = GenerateCampaignRequest,
    responses((status = 201, body = inline(Envelope<LearningCampaign>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn generate(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<GenerateCampaignRequest>,
) -> Result<(StatusCode, Json<Envelope<LearningCampaign>>), ApiError> {
    auth.require(WRITE)?;
    let brief = body.parse()?;
    let (topic, kind) = (&brief.topic, &brief.kind);
    let system = format!(
        "You plan {kind} learning campaigns for small businesses. Reply with a one-line summary, then numbered steps."
    );
    let user = match &brief.audience {
        Some(a) => format!("{topic}\nAudience: {a}"),
        None => topic.clone(),
    };
    // The provider is called before any connection is taken from the pool.
    let reply = crate::ai::gateway::complete(
        &state,
        auth.0.tenant_id,
        ChatRequest {
            messages: vec![ChatMessage::system(&system), ChatMessage::user(&user)],
            model: None,
            temperature: 0.7,
            max_tokens: 900,
        },
    )
    .await?;
    let summary = reply.content.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(topic).to_owned();
    let steps = list_items(&reply.content);
    let content =
        json!({"sections": steps.iter().map(|s| json!({"heading": s})).collect::<Vec<_>>(), "body": reply.content});
    let guide = json!({"steps": steps.iter().enumerate().map(|(i, s)| json!({"order": i + 1, "title": s})).collect::<Vec<_>>()});
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let slug = crate::slugs::free_slug(&mut tx, "learning_campaigns", tenant, brief.slug.as_str()).await?;
    let title: String = topic.chars().take(300).collect();
    let prompt = format!("{system}\n\n{user}");
    let campaign = store::NewLearningCampaign {
        slug: &slug,
        title: &title,
        description: &summary,
        kind,
        is_template: brief.is_template,
        content,
        guide,
        prompt: &prompt,
        model: &reply.model,
    };
    let id = store::insert(&mut tx, tenant, &campaign).await?;
    let row = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Campaign generated as a draft."))))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestion {
    pub title: String,
}

/// Campaign ideas from the LLM provider; nothing is stored.
#[utoipa::path(post, path = "/api/v1/campaigns/suggestions", tag = "learning", request_body = SuggestionsRequest,
    responses((status = 200, body = inline(Envelope<Vec<Suggestion>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn suggestions(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<SuggestionsRequest>,
) -> Result<Json<Envelope<Vec<Suggestion>>>, ApiError> {
    auth.require(READ)?;
    let input::SuggestionsBrief { industry, goal, count } = body.parse()?;
    let reply = crate::ai::gateway::complete(
        &state,
        auth.0.tenant_id,
        ChatRequest {
            messages: vec![
                ChatMessage::system(format!(
                    "Suggest {count} learning campaign ideas as a numbered list, one per line."
                )),
                ChatMessage::user(format!("Ideas for a {industry} that wants to {goal}")),
            ],
            model: None,
            temperature: 0.9,
            max_tokens: 400,
        },
    )
    .await?;
    let ideas: Vec<Suggestion> =
        list_items(&reply.content).into_iter().take(usize::from(count)).map(|title| Suggestion { title }).collect();
    Ok(Json(Envelope::data(ideas)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SalesLead {
    pub id: Uuid,
    pub status: &'static str,
    /// The queued notification e-mail, when the queue accepted it.
    pub notification_job_id: Option<Uuid>,
}

/// Store a sales lead from the learning center and queue a notification e-mail to the
/// team. The lead is stored even if the queue is down (the e-mail is then not sent).
#[utoipa::path(post, path = "/api/v1/learning/contact/sales", tag = "learning", request_body = ContactSalesRequest,
    responses((status = 201, body = inline(Envelope<SalesLead>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn contact_sales(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<ContactSalesRequest>,
) -> Result<(StatusCode, Json<Envelope<SalesLead>>), ApiError> {
    auth.require(WRITE).or_else(|_| auth.require(READ))?;
    let lead = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(c) = lead.campaign_id
        && !store::exists(&mut tx, tenant, c).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("campaign_id", "no such learning campaign")));
    }
    let id = store::insert_sales_lead(&mut tx, tenant, lead).await?;
    tx.commit().await?;
    let job = state.queue.enqueue(&SendSalesNotification { tenant_id: tenant.as_uuid(), sales_contact_id: id }).await;
    let notification_job_id = match job {
        Ok(job) => Some(job),
        Err(err) => {
            tracing::warn!(error = %err, "sales lead stored but its notification could not be queued");
            None
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(Envelope::with_message(
            SalesLead { id, status: "new", notification_job_id },
            "Thanks! Our team will be in touch.",
        )),
    ))
}
