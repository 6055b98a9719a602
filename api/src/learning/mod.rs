//! The learning center: learning campaigns (`/api/v1/campaigns`), their guides, and
//! "contact sales" leads (`/api/v1/learning/...`).

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{
    TenantId, db,
    domain::{Email, PhoneNumber, Slug},
    llm::{ChatMessage, ChatRequest},
    queue::jobs::SendSalesNotification,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
    validate,
};

pub const READ: &str = "learning:read";
pub const WRITE: &str = "learning:write";
const RESOURCE: &str = "campaign";
pub const STATUSES: &[&str] = &["draft", "active", "archived"];

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

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct LearningCampaign {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub description: Option<String>,
    pub campaign_type: String,
    pub status: String,
    pub is_template: bool,
    #[schema(value_type = Object)]
    pub content: SqlJson<Value>,
    #[schema(value_type = Object)]
    pub landing_page: SqlJson<Value>,
    #[schema(value_type = Object)]
    pub guide: SqlJson<Value>,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, slug, title, description, campaign_type, status, is_template, content, landing_page, guide, model,
    created_at, updated_at";

async fn page_where(
    state: &AppState,
    auth: &Auth,
    page: PageQuery,
    status: Option<String>,
    templates_only: bool,
) -> Result<Json<Envelope<Vec<LearningCampaign>>>, ApiError> {
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let status = status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let filter = "tenant_id = $1 and ($2::text is null or status = $2) and (not $3 or is_template)";
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let total: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from learning_campaigns where {filter}")))
            .bind(tenant)
            .bind(&status)
            .bind(templates_only)
            .fetch_one(&mut *tx)
            .await?;
    let rows: Vec<LearningCampaign> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from learning_campaigns where {filter} order by created_at desc, id desc limit $4 offset $5"
    )))
    .bind(tenant)
    .bind(&status)
    .bind(templates_only)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampaignListQuery {
    /// draft, active or archived.
    pub status: Option<String>,
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
    let row: Option<LearningCampaign> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from learning_campaigns where tenant_id = $1 and slug = $2"
    )))
    .bind(auth.0.tenant_id)
    .bind(slug.as_str())
    .fetch_optional(&mut *tx)
    .await?;
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
    let row: Option<(String, SqlJson<Value>)> =
        sqlx::query_as("select title, guide from learning_campaigns where tenant_id = $1 and id = $2")
            .bind(auth.0.tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    let (title, guide) = row.ok_or(ApiError::NotFound(RESOURCE))?;
    if guide.0.as_object().is_none_or(|o| o.is_empty()) {
        return Err(ApiError::NotFound("guide"));
    }
    Ok(Json(Envelope::data(Guide { campaign_id: id, title, guide: guide.0 })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateCampaignRequest {
    /// What the campaign teaches.
    pub topic: Option<String>,
    /// educational (default), promotional, onboarding, seasonal.
    pub campaign_type: Option<String>,
    pub audience: Option<String>,
    /// Store it as a template for future campaigns.
    pub is_template: Option<bool>,
}

pub const CAMPAIGN_TYPES: &[&str] = &["educational", "promotional", "onboarding", "seasonal"];

/// Numbered or bulleted lines of a reply, without their markers.
fn list_items(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let stripped =
                l.trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, '.' | ')' | '-' | '*' | ' '));
            (stripped.len() < l.len() && !stripped.is_empty()).then(|| stripped.to_owned())
        })
        .collect()
}

async fn insert_campaign(
    conn: &mut PgConnection,
    tenant: TenantId,
    fields: (&str, &str, &str, &str, bool),
    content: Value,
    guide: Value,
    prompt: &str,
    model: &str,
) -> Result<Uuid, sqlx::Error> {
    let (slug, title, description, kind, is_template) = fields;
    sqlx::query_scalar(
        "insert into learning_campaigns (tenant_id, slug, title, description, campaign_type, is_template, content, landing_page,
            guide, prompt, model)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id",
    )
    .bind(tenant)
    .bind(slug)
    .bind(title)
    .bind(description)
    .bind(kind)
    .bind(is_template)
    .bind(SqlJson(&content))
    .bind(SqlJson(json!({"headline": title, "subheadline": description, "call_to_action": "Contact sales"})))
    .bind(SqlJson(&guide))
    .bind(prompt)
    .bind(model)
    .fetch_one(conn)
    .await
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
    let mut e = FieldErrors::default();
    let topic = validate::required_text(body.topic, 300, "topic", &mut e);
    let kind = validate::one_of(
        body.campaign_type.as_deref().unwrap_or("educational"),
        CAMPAIGN_TYPES,
        "campaign_type",
        &mut e,
    );
    let audience = body.audience.map(|a| validate::text(&a, 200, "audience", &mut e));
    let base_slug = Slug::from_text(&topic);
    if base_slug.is_none() && !topic.is_empty() {
        e.add("topic", "must contain letters or digits");
    }
    e.into_result()?;
    let base_slug = base_slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("topic", "is required")))?;
    let system = format!(
        "You plan {kind} learning campaigns for small businesses. Reply with a one-line summary, then numbered steps."
    );
    let user = match &audience {
        Some(a) => format!("{topic}\nAudience: {a}"),
        None => topic.clone(),
    };
    let reply = state
        .llm
        .complete(&ChatRequest {
            messages: vec![ChatMessage::system(&system), ChatMessage::user(&user)],
            model: None,
            temperature: 0.7,
            max_tokens: 900,
        })
        .await?;
    let summary = reply.content.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(&topic).to_owned();
    let steps = list_items(&reply.content);
    let content =
        json!({"sections": steps.iter().map(|s| json!({"heading": s})).collect::<Vec<_>>(), "body": reply.content});
    let guide = json!({"steps": steps.iter().enumerate().map(|(i, s)| json!({"order": i + 1, "title": s})).collect::<Vec<_>>()});
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let slug = crate::slugs::free_slug(&mut tx, "learning_campaigns", tenant, base_slug.as_str()).await?;
    let title: String = topic.chars().take(300).collect();
    let id = insert_campaign(
        &mut tx,
        tenant,
        (&slug, &title, &summary, &kind, body.is_template.unwrap_or(false)),
        content,
        guide,
        &format!("{system}\n\n{user}"),
        &reply.model,
    )
    .await?;
    let row: LearningCampaign = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from learning_campaigns where tenant_id = $1 and id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Campaign generated as a draft."))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestionsRequest {
    pub industry: Option<String>,
    pub goal: Option<String>,
    /// 1 to 10 (default 5).
    pub count: Option<u8>,
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
    let mut e = FieldErrors::default();
    let industry =
        body.industry.map(|i| validate::text(&i, 100, "industry", &mut e)).unwrap_or_else(|| "small business".into());
    let goal = body
        .goal
        .map(|g| validate::text(&g, 300, "goal", &mut e))
        .unwrap_or_else(|| "win more repeat customers".into());
    let count = body.count.unwrap_or(5);
    if !(1..=10).contains(&count) {
        e.add("count", "must be between 1 and 10");
    }
    e.into_result()?;
    let reply = state
        .llm
        .complete(&ChatRequest {
            messages: vec![
                ChatMessage::system(format!(
                    "Suggest {count} learning campaign ideas as a numbered list, one per line."
                )),
                ChatMessage::user(format!("Ideas for a {industry} that wants to {goal}")),
            ],
            model: None,
            temperature: 0.9,
            max_tokens: 400,
        })
        .await?;
    let ideas: Vec<Suggestion> =
        list_items(&reply.content).into_iter().take(usize::from(count)).map(|title| Suggestion { title }).collect();
    Ok(Json(Envelope::data(ideas)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactSalesRequest {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub message: Option<String>,
    /// The learning campaign the visitor came from.
    pub campaign_id: Option<Uuid>,
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
    let mut e = FieldErrors::default();
    // The lead's name goes into the notification's subject.
    let name = validate::header_text(body.name, 200, "name", &mut e);
    let email = match body.email {
        None => {
            e.add("email", "is required");
            None
        }
        Some(raw) => Email::parse(&raw).map_err(|err| e.add("email", err.0)).ok(),
    };
    let phone = body.phone.and_then(|p| PhoneNumber::parse(&p).map_err(|err| e.add("phone", err.0)).ok());
    let company = body.company.map(|c| validate::text(&c, 200, "company", &mut e));
    let message = body.message.map(|m| validate::text(&m, 5000, "message", &mut e));
    e.into_result()?;
    let email = email.ok_or_else(|| ApiError::Validation(FieldErrors::single("email", "is required")))?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(c) = body.campaign_id {
        let found: bool =
            sqlx::query_scalar("select exists (select 1 from learning_campaigns where tenant_id = $1 and id = $2)")
                .bind(tenant)
                .bind(c)
                .fetch_one(&mut *tx)
                .await?;
        if !found {
            return Err(ApiError::Validation(FieldErrors::single("campaign_id", "no such learning campaign")));
        }
    }
    // A lead from a known customer is linked and counted as activity for the analytics.
    let customer: Option<Uuid> =
        sqlx::query_scalar("select id from crm_customers where tenant_id = $1 and lower(email) = lower($2)")
            .bind(tenant)
            .bind(email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into learning_sales_contacts (tenant_id, learning_campaign_id, customer_id, name, email, phone, company, message)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
    )
    .bind(tenant)
    .bind(body.campaign_id)
    .bind(customer)
    .bind(&name)
    .bind(email.as_str())
    .bind(phone.as_ref().map(|p| p.as_str()))
    .bind(company)
    .bind(message)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(customer) = customer {
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id)
             values ($1, $2, 'sales_contact', 'web', 'learning_sales_contact', $3)",
        )
        .bind(tenant)
        .bind(customer)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
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
