//! Outbound campaigns over e-mail, SMS and phone (`/api/v1/outbound/...`): campaigns and
//! their recipients, analytics, templates and scripts, and provider status callbacks.
//! Sending itself (queue workers) is the queue issue's; `start` records the transition.

pub mod store;
pub mod templates;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    patch::Patch,
    state::AppState,
    validate,
};
use store::{Campaign, CampaignAnalytics, Recipient};

pub const READ: &str = "outbound:read";
pub const WRITE: &str = "outbound:write";
const RESOURCE: &str = "campaign";
/// Recipients given in one request.
const MAX_RECIPIENTS_PER_REQUEST: usize = 50_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/outbound/campaigns", get(list).post(create))
        .route("/outbound/campaigns/{id}", get(show).put(update).delete(destroy))
        .route("/outbound/campaigns/{id}/recipients", get(recipients))
        .route("/outbound/campaigns/{id}/start", post(start))
        .route("/outbound/campaigns/{id}/pause", post(pause))
        .route("/outbound/campaigns/{id}/resume", post(resume))
        .route("/outbound/campaigns/{id}/cancel", post(cancel))
        .route("/outbound/campaigns/{id}/analytics", get(analytics))
        .route("/outbound/email/campaigns", get(list_email).post(create_email))
        .route("/outbound/email/templates", get(templates::list_email).post(templates::create_email))
        .route("/outbound/sms/campaigns", get(list_sms).post(create_sms))
        .route("/outbound/sms/templates", get(templates::list_sms).post(templates::create_sms))
        .route("/outbound/sms/campaigns/{id}/sms-status", post(sms_status))
        .route("/outbound/phone/campaigns", get(list_phone).post(create_phone))
        .route("/outbound/phone/scripts", get(templates::list_scripts).post(templates::create_script))
        .route("/outbound/phone/campaigns/{id}/call-status", post(call_status))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampaignListQuery {
    /// email, sms or phone (on `/outbound/campaigns` only).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignRequest {
    pub name: Option<String>,
    /// email, sms or phone. Implied by the typed routes (`/outbound/email/campaigns`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// E-mail template, SMS template or phone script id, matching the type.
    pub template_id: Option<Uuid>,
    /// When set (in the future), the campaign is `scheduled`; otherwise `draft`.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Customers to reach.
    pub customer_ids: Option<Vec<Uuid>>,
    /// Reach every customer of the tenant (instead of `customer_ids`).
    pub all_customers: Option<bool>,
    /// Fixed cost in minor units, for ROI.
    pub fixed_cost_minor: Option<i64>,
    /// ISO 4217, e.g. USD.
    pub currency: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCampaignRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    /// draft or scheduled (needs `scheduled_at` in the future); other statuses come from actions.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub template_id: Patch<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub scheduled_at: Patch<DateTime<Utc>>,
    /// Replaces the recipients.
    pub customer_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub fixed_cost_minor: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub currency: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

fn currency(raw: &str, e: &mut FieldErrors) -> String {
    let c = raw.trim().to_ascii_uppercase();
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        e.add("currency", "must be a three-letter ISO 4217 code");
    }
    c
}

fn check_recipient_list(ids: &[Uuid], e: &mut FieldErrors) {
    if ids.len() > MAX_RECIPIENTS_PER_REQUEST {
        e.add("customer_ids", format!("at most {MAX_RECIPIENTS_PER_REQUEST} per request"));
    }
}

async fn check_template(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    kind: &str,
    id: Option<Uuid>,
) -> Result<(), ApiError> {
    if let Some(id) = id
        && !templates::content_exists(conn, tenant, kind, id).await?
    {
        let what = match kind {
            "email" => "no such e-mail template",
            "sms" => "no such SMS template",
            _ => "no such phone script",
        };
        return Err(ApiError::Validation(FieldErrors::single("template_id", what)));
    }
    Ok(())
}

async fn replace_recipients(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: Uuid,
    customers: &[Uuid],
) -> Result<(), ApiError> {
    let mut unique = customers.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let missing = store::set_recipients(conn, tenant, id, &unique).await?;
    if missing > 0 {
        return Err(ApiError::Validation(FieldErrors::single(
            "customer_ids",
            format!("{missing} of the ids are not customers of this tenant"),
        )));
    }
    Ok(())
}

async fn list_campaigns(
    state: AppState,
    auth: Auth,
    page: PageQuery,
    query: CampaignListQuery,
    forced_kind: Option<&'static str>,
) -> Result<Json<Envelope<Vec<Campaign>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let kind = match forced_kind {
        Some(k) => Some(k.to_owned()),
        None => {
            query.kind.filter(|k| !k.is_empty()).map(|k| validate::one_of(&k, store::CAMPAIGN_TYPES, "type", &mut e))
        }
    };
    let status = query
        .status
        .filter(|s| !s.is_empty())
        .map(|s| validate::one_of(&s, store::CAMPAIGN_STATUSES, "status", &mut e));
    e.into_result()?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let (rows, total) = store::list(&mut tx, auth.0.tenant_id, kind.as_deref(), status.as_deref(), page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

async fn create_campaign(
    state: AppState,
    auth: Auth,
    body: CreateCampaignRequest,
    forced_kind: Option<&'static str>,
) -> Result<(StatusCode, Json<Envelope<Campaign>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let kind = match (forced_kind, body.kind) {
        (Some(forced), Some(given)) if given != forced => {
            e.add("type", format!("this route creates {forced} campaigns"));
            forced.to_owned()
        }
        (Some(forced), _) => forced.to_owned(),
        (None, Some(k)) => validate::one_of(&k, store::CAMPAIGN_TYPES, "type", &mut e),
        (None, None) => {
            e.add("type", "is required");
            String::new()
        }
    };
    if body.scheduled_at.is_some_and(|t| t <= Utc::now()) {
        e.add("scheduled_at", "must be in the future");
    }
    if body.customer_ids.is_some() && body.all_customers == Some(true) {
        e.add("customer_ids", "give either customer_ids or all_customers, not both");
    }
    if let Some(ids) = &body.customer_ids {
        check_recipient_list(ids, &mut e);
    }
    let fixed_cost_minor = body.fixed_cost_minor.unwrap_or(0);
    if fixed_cost_minor < 0 {
        e.add("fixed_cost_minor", "must not be negative");
    }
    let currency = currency(body.currency.as_deref().unwrap_or("USD"), &mut e);
    let config = validate::object(body.config, "config", &mut e);
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;

    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    check_template(&mut tx, tenant, &kind, body.template_id).await?;
    let new = store::NewCampaign {
        name,
        kind,
        template_id: body.template_id,
        scheduled_at: body.scheduled_at,
        fixed_cost_minor,
        currency,
        config,
        metadata,
    };
    let id = store::insert(&mut tx, tenant, &new).await?;
    let customers = match (body.customer_ids, body.all_customers) {
        (Some(ids), _) => ids,
        (None, Some(true)) => store::all_customer_ids(&mut tx, tenant).await?,
        _ => Vec::new(),
    };
    replace_recipients(&mut tx, tenant, id, &customers).await?;
    let campaign = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(campaign, "Campaign created."))))
}

/// List campaigns of every type, newest first.
#[utoipa::path(get, path = "/api/v1/outbound/campaigns", tag = "outbound", params(PageQuery, CampaignListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Campaign>>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<CampaignListQuery>,
) -> Result<Json<Envelope<Vec<Campaign>>>, ApiError> {
    list_campaigns(state, auth, page, query, None).await
}

/// Create a campaign with its recipients (`customer_ids` or `all_customers`).
#[utoipa::path(post, path = "/api/v1/outbound/campaigns", tag = "outbound", request_body = CreateCampaignRequest,
    responses((status = 201, body = inline(Envelope<Campaign>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateCampaignRequest>,
) -> Result<(StatusCode, Json<Envelope<Campaign>>), ApiError> {
    create_campaign(state, auth, body, None).await
}

macro_rules! typed_routes {
    ($list:ident, $create:ident, $kind:literal, $path:literal) => {
        #[doc = concat!("List ", $kind, " campaigns.")]
        #[utoipa::path(get, path = $path, tag = "outbound", params(PageQuery, CampaignListQuery),
            responses((status = 200, body = inline(Envelope<Vec<Campaign>>)), (status = 401, body = ErrorEnvelope),
                (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
            security(("bearer" = [])))]
        pub async fn $list(
            State(state): State<AppState>,
            auth: Auth,
            QueryParams(page): QueryParams<PageQuery>,
            QueryParams(query): QueryParams<CampaignListQuery>,
        ) -> Result<Json<Envelope<Vec<Campaign>>>, ApiError> {
            list_campaigns(state, auth, page, query, Some($kind)).await
        }

        #[doc = concat!("Create a ", $kind, " campaign.")]
        #[utoipa::path(post, path = $path, tag = "outbound", request_body = CreateCampaignRequest,
            responses((status = 201, body = inline(Envelope<Campaign>)), (status = 401, body = ErrorEnvelope),
                (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
            security(("bearer" = [])))]
        pub async fn $create(
            State(state): State<AppState>,
            auth: Auth,
            JsonBody(body): JsonBody<CreateCampaignRequest>,
        ) -> Result<(StatusCode, Json<Envelope<Campaign>>), ApiError> {
            create_campaign(state, auth, body, Some($kind)).await
        }
    };
}

typed_routes!(list_email, create_email, "email", "/api/v1/outbound/email/campaigns");
typed_routes!(list_sms, create_sms, "sms", "/api/v1/outbound/sms/campaigns");
typed_routes!(list_phone, create_phone, "phone", "/api/v1/outbound/phone/campaigns");

#[utoipa::path(get, path = "/api/v1/outbound/campaigns/{id}", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses((status = 200, body = inline(Envelope<Campaign>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Campaign>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let campaign = store::get(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    campaign.map(|c| Json(Envelope::data(c))).ok_or(ApiError::NotFound(RESOURCE))
}

/// Partial update. Name and metadata can change any time; content, schedule, cost and
/// recipients only while the campaign is a draft or scheduled (409 otherwise).
#[utoipa::path(put, path = "/api/v1/outbound/campaigns/{id}", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id")), request_body = UpdateCampaignRequest,
    responses((status = 200, body = inline(Envelope<Campaign>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateCampaignRequest>,
) -> Result<Json<Envelope<Campaign>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let mut c = store::CampaignChanges::default();
    match body.name {
        Patch::Missing => {}
        Patch::Null => e.add("name", "cannot be null"),
        Patch::Value(n) => c.name = Some(validate::required_text(Some(n), 200, "name", &mut e)),
    }
    match body.status {
        Patch::Missing => {}
        Patch::Value(s) if s == "draft" || s == "scheduled" => c.status = Some(s),
        _ => e.add("status", "can be set to draft or scheduled; other statuses come from start, pause and cancel"),
    }
    c.template_id = body.template_id.nullable();
    c.scheduled_at = match body.scheduled_at {
        Patch::Missing => None,
        Patch::Null => Some(None),
        Patch::Value(t) => {
            if t <= Utc::now() {
                e.add("scheduled_at", "must be in the future");
            }
            Some(Some(t))
        }
    };
    match body.fixed_cost_minor {
        Patch::Missing => {}
        Patch::Value(v) if v >= 0 => c.fixed_cost_minor = Some(v),
        _ => e.add("fixed_cost_minor", "must be a non-negative whole number"),
    }
    match body.currency {
        Patch::Missing => {}
        Patch::Null => e.add("currency", "cannot be null"),
        Patch::Value(v) => c.currency = Some(currency(&v, &mut e)),
    }
    match body.config {
        Patch::Missing => {}
        Patch::Null => c.config = Some(Default::default()),
        Patch::Value(v) => c.config = Some(validate::object(Some(v), "config", &mut e)),
    }
    match body.metadata {
        Patch::Missing => {}
        Patch::Null => c.metadata = Some(Default::default()),
        Patch::Value(v) => c.metadata = Some(validate::object(Some(v), "metadata", &mut e)),
    }
    if let Some(ids) = &body.customer_ids {
        check_recipient_list(ids, &mut e);
    }
    e.into_result()?;

    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (kind, status) = store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let edits_plan = c.status.is_some()
        || c.template_id.is_some()
        || c.scheduled_at.is_some()
        || c.fixed_cost_minor.is_some()
        || c.currency.is_some()
        || c.config.is_some()
        || body.customer_ids.is_some();
    if edits_plan && status != "draft" && status != "scheduled" {
        return Err(ApiError::Conflict {
            message: format!("The campaign is {status}; only drafts and scheduled campaigns can be changed."),
            field: None,
        });
    }
    check_template(&mut tx, tenant, &kind, c.template_id.flatten()).await?;
    store::update(&mut tx, tenant, id, &kind, &c).await?;
    if let Some(ids) = &body.customer_ids {
        replace_recipients(&mut tx, tenant, id, ids).await?;
    }
    let campaign = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if campaign.status == "scheduled" && campaign.scheduled_at.is_none_or(|t| t <= Utc::now()) {
        return Err(ApiError::Validation(FieldErrors::single(
            "scheduled_at",
            "a scheduled campaign needs a future scheduled_at",
        )));
    }
    tx.commit().await?;
    Ok(Json(Envelope::with_message(campaign, "Campaign updated.")))
}

/// Delete a campaign that is not running or paused (409 for those).
#[utoipa::path(delete, path = "/api/v1/outbound/campaigns/{id}", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (_, status) = store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if status == "running" || status == "paused" {
        return Err(ApiError::Conflict { message: format!("The campaign is {status}; cancel it first."), field: None });
    }
    store::delete(&mut tx, tenant, id).await?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(None, "Campaign deleted.")))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecipientQuery {
    /// One of the recipient statuses (pending, queued, sent, delivered, …).
    pub status: Option<String>,
}

/// The campaign's recipients with their delivery state, by customer name.
#[utoipa::path(get, path = "/api/v1/outbound/campaigns/{id}/recipients", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id"), PageQuery, RecipientQuery),
    responses((status = 200, body = inline(Envelope<Vec<Recipient>>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn recipients(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<RecipientQuery>,
) -> Result<Json<Envelope<Vec<Recipient>>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let status = query
        .status
        .filter(|s| !s.is_empty())
        .map(|s| validate::one_of(&s, store::RECIPIENT_STATUSES, "status", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if store::get(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let (rows, total) = store::recipients(&mut tx, tenant, id, status.as_deref(), page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

/// Start a draft or scheduled campaign: it needs recipients and its template or script.
/// The campaign becomes `running`; its recipients wait `pending` for the send workers.
#[utoipa::path(post, path = "/api/v1/outbound/campaigns/{id}/start", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses((status = 200, body = inline(Envelope<Campaign>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Not a draft or scheduled campaign", body = ErrorEnvelope),
        (status = 422, description = "No recipients or no content", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Campaign>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (kind, status) = store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if status != "draft" && status != "scheduled" {
        return Err(ApiError::Conflict {
            message: format!("The campaign is {status}; only drafts and scheduled campaigns can start."),
            field: None,
        });
    }
    let mut e = FieldErrors::default();
    if store::recipient_count(&mut tx, tenant, id).await? == 0 {
        e.add("recipients", "the campaign has no recipients");
    }
    match store::content_id(&mut tx, tenant, id).await? {
        None => e.add(
            "template_id",
            if kind == "phone" { "the campaign has no phone script" } else { "the campaign has no template" },
        ),
        Some(t) if !templates::content_exists(&mut tx, tenant, &kind, t).await? => {
            e.add("template_id", "the campaign's template no longer exists")
        }
        Some(_) => {}
    }
    e.into_result()?;
    store::mark_running(&mut tx, tenant, id).await?;
    let campaign = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    queue_dispatch(&state, tenant, id, &kind).await;
    Ok(Json(Envelope::with_message(campaign, "Campaign started.")))
}

/// Queues the dispatch of a running campaign. If Redis is down the campaign still runs:
/// the scheduler's `campaigns:dispatch` sweep re-queues running campaigns with pending
/// recipients every minute.
async fn queue_dispatch(state: &AppState, tenant: fibonacco_platform::TenantId, id: Uuid, kind: &str) {
    if let Err(e) = crate::jobs::campaign::enqueue_dispatch(&state.queue, tenant, id, kind).await {
        tracing::warn!(error = %e, "campaign dispatch not queued; the scheduler's sweep will pick it up");
    }
}

/// Moves a campaign from one of `from` to `to`, or answers 409 naming its status.
async fn transition(
    state: &AppState,
    auth: &Auth,
    id: &str,
    from: &[&str],
    to: &'static str,
) -> Result<(Campaign, String), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (kind, status) = store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if !from.contains(&status.as_str()) {
        return Err(ApiError::Conflict {
            message: format!("The campaign is {status}; only {} campaigns can become {to}.", from.join(" or ")),
            field: None,
        });
    }
    store::set_status(&mut tx, tenant, id, to).await?;
    let campaign = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((campaign, kind))
}

/// Pause a running campaign: no further recipient is sent until `resume`.
#[utoipa::path(post, path = "/api/v1/outbound/campaigns/{id}/pause", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses((status = 200, body = inline(Envelope<Campaign>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Not running", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Campaign>>, ApiError> {
    let (campaign, _) = transition(&state, &auth, &id, &["running"], "paused").await?;
    Ok(Json(Envelope::with_message(campaign, "Campaign paused.")))
}

/// Resume a paused campaign: recipients not yet sent are dispatched again.
#[utoipa::path(post, path = "/api/v1/outbound/campaigns/{id}/resume", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses((status = 200, body = inline(Envelope<Campaign>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Not paused", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Campaign>>, ApiError> {
    let (campaign, kind) = transition(&state, &auth, &id, &["paused"], "running").await?;
    queue_dispatch(&state, auth.0.tenant_id, campaign.id, &kind).await;
    Ok(Json(Envelope::with_message(campaign, "Campaign resumed.")))
}

/// Cancel a campaign for good: nothing more is sent; what was sent stays recorded.
#[utoipa::path(post, path = "/api/v1/outbound/campaigns/{id}/cancel", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses((status = 200, body = inline(Envelope<Campaign>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Already completed or cancelled", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Campaign>>, ApiError> {
    let (campaign, _) =
        transition(&state, &auth, &id, &["draft", "scheduled", "running", "paused"], "cancelled").await?;
    Ok(Json(Envelope::with_message(campaign, "Campaign cancelled.")))
}

/// Counts by delivery milestone and status, and rates over sent messages.
#[utoipa::path(get, path = "/api/v1/outbound/campaigns/{id}/analytics", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id")),
    responses((status = 200, body = inline(Envelope<CampaignAnalytics>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn analytics(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<CampaignAnalytics>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if store::get(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let mut numbers = store::analytics(&mut tx, tenant, id).await?;
    numbers.dispatch = store::dispatch_progress(&mut tx, tenant, id).await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(numbers)))
}

/// A provider status report, with Twilio's field names.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusCallback {
    #[serde(rename = "MessageSid", alias = "CallSid", alias = "sid")]
    pub sid: Option<String>,
    #[serde(rename = "MessageStatus", alias = "CallStatus", alias = "SmsStatus", alias = "status")]
    pub status: Option<String>,
    /// `machine_start`, `human`, … for calls (voicemail detection).
    #[serde(rename = "AnsweredBy", default)]
    pub answered_by: Option<String>,
}

/// Maps Twilio's message statuses to recipient statuses; `None` for states that change nothing.
pub fn sms_recipient_status(twilio: &str) -> Option<Option<&'static str>> {
    Some(match twilio {
        "accepted" | "scheduled" | "queued" | "sending" => Some("queued"),
        "sent" => Some("sent"),
        "delivered" => Some("delivered"),
        "undelivered" | "failed" | "canceled" => Some("failed"),
        "received" => Some("replied"),
        "read" => Some("opened"),
        _ => return None,
    })
}

/// Maps Twilio's call statuses to recipient statuses.
pub fn call_recipient_status(twilio: &str, answered_by: Option<&str>) -> Option<Option<&'static str>> {
    Some(match twilio {
        "queued" | "initiated" => Some("queued"),
        "ringing" | "in-progress" => Some("sent"),
        "completed" if answered_by.is_some_and(|a| a.starts_with("machine")) => Some("voicemail"),
        "completed" => Some("answered"),
        "busy" | "no-answer" | "failed" | "canceled" => Some("failed"),
        _ => return None,
    })
}

/// Verifies Twilio's signature over the URL it called and the form it posted, then
/// records the status. Nothing is read or changed before the signature checks out.
async fn apply_callback(
    state: AppState,
    id: String,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
    kind: &'static str,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    let Some(token) = state.config.twilio_auth_token.as_ref() else {
        return Err(ApiError::BadSignature("Twilio callbacks are refused: TWILIO_AUTH_TOKEN is not set".into()));
    };
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest(format!("the callback body is not form-encoded: {e}")))?;
    let url = format!(
        "{}{}",
        state.config.app_url.trim_end_matches('/'),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path())
    );
    let given = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if given.is_empty() || !crate::providers::twilio::verify(token.expose(), &url, &params, given) {
        tracing::warn!(kind, "Twilio callback with a bad or missing signature refused");
        return Err(ApiError::BadSignature("X-Twilio-Signature does not match".into()));
    }
    let field = |names: &[&str]| params.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone());
    let body = StatusCallback {
        sid: field(&["MessageSid", "CallSid", "SmsSid"]),
        status: field(&["MessageStatus", "CallStatus", "SmsStatus"]),
        answered_by: field(&["AnsweredBy"]),
    };
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let sid = body.sid.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| {
        e.add("MessageSid", "is required");
        String::new()
    });
    let raw = body.status.unwrap_or_default();
    let mapped = if kind == "sms" {
        sms_recipient_status(&raw)
    } else {
        call_recipient_status(&raw, body.answered_by.as_deref())
    };
    let Some(mapped) = mapped else {
        e.add("status", format!("unknown provider status `{raw}`"));
        return Err(ApiError::Validation(e));
    };
    e.into_result()?;
    // The signed URL names the campaign; its tenant comes from the campaign row.
    let tenant = store::tenant_of(&state.pool, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (campaign_kind, _) = store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if campaign_kind != kind {
        return Err(ApiError::NotFound(RESOURCE));
    }
    if let Some(status) = mapped
        && !store::apply_status(&mut tx, tenant, id, &sid, status).await?
    {
        return Err(ApiError::NotFound("recipient"));
    }
    tx.commit().await?;
    Ok(Json(Envelope::with_message(mapped.map(str::to_owned), "Status recorded.")))
}

/// Twilio message status callback (form fields `MessageSid`, `MessageStatus`), verified
/// by `X-Twilio-Signature` (HMAC-SHA1 with `TWILIO_AUTH_TOKEN` over `APP_URL` + path +
/// sorted parameters). A bad signature is a 403 and changes nothing.
#[utoipa::path(post, path = "/api/v1/outbound/sms/campaigns/{id}/sms-status", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id"),
        ("X-Twilio-Signature" = String, Header, description = "Twilio's request signature")),
    request_body(content = StatusCallback, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "`data` is the recipient status recorded", body = inline(Envelope<Option<String>>)),
        (status = 400, body = ErrorEnvelope), (status = 403, description = "Bad or missing signature; nothing changed", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn sms_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: axum::extract::OriginalUri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    apply_callback(state, id, uri.0, headers, body, "sms").await
}

/// Twilio call status callback (`CallSid`, `CallStatus`, optional `AnsweredBy`).
#[utoipa::path(post, path = "/api/v1/outbound/phone/campaigns/{id}/call-status", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id"),
        ("X-Twilio-Signature" = String, Header, description = "Twilio's request signature")),
    request_body(content = StatusCallback, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "`data` is the recipient status recorded", body = inline(Envelope<Option<String>>)),
        (status = 400, body = ErrorEnvelope), (status = 403, description = "Bad or missing signature; nothing changed", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn call_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: axum::extract::OriginalUri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    apply_callback(state, id, uri.0, headers, body, "phone").await
}
