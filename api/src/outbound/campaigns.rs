//! Campaign handlers: plans (create, update, delete), recipients, the actions that move a
//! campaign (start, pause, resume, cancel: through `fibonacco_delivery::campaigns`) and its
//! analytics.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::Utc;
use fibonacco_delivery::campaigns::{
    self, CampaignStatus, ContentState,
    store::{self as campaign_store, MoveError},
};
use fibonacco_platform::{TenantId, db};
use uuid::Uuid;

use super::{
    READ, RESOURCE, WRITE,
    input::{self, Audience, CampaignListQuery, CreateCampaignRequest, RecipientQuery, UpdateCampaignRequest},
    store::{self, Campaign, CampaignAnalytics, Recipient},
};
use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
};

/// A move the table refuses (the handlers check first, so this is a race or a bug) is a
/// 409 naming it, never a 500.
fn refused(e: MoveError) -> ApiError {
    match e {
        MoveError::Database(e) => e.into(),
        other => ApiError::Conflict { message: format!("{other}."), field: None },
    }
}

async fn check_template(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    kind: &str,
    id: Option<Uuid>,
) -> Result<(), ApiError> {
    if let Some(id) = id
        && !campaign_store::content_exists(conn, tenant, kind, id).await?
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

/// Each variant's template exists, named by its field.
async fn check_variants(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    kind: &str,
    test: Option<&fibonacco_delivery::experiments::AbTest>,
) -> Result<(), ApiError> {
    let mut e = FieldErrors::default();
    for (i, v) in test.map(|t| t.variants.as_slice()).unwrap_or_default().iter().enumerate() {
        if !campaign_store::content_exists(conn, tenant, kind, v.template_id).await? {
            e.add(
                format!("ab_test.variants[{i}].template_id"),
                if kind == "phone" { "no such phone script" } else { "no such template of the campaign's type" },
            );
        }
    }
    e.into_result()
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
    let (kind, status) = input::list_filters(query, forced_kind, &mut e);
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
    let (new, audience) = input::new_campaign(body, forced_kind)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    check_template(&mut tx, tenant, &new.kind, new.template_id).await?;
    check_variants(&mut tx, tenant, &new.kind, new.ab_test.as_ref()).await?;
    if let Some(segment) = new.segment_id
        && !crate::segments::exists(&mut tx, tenant, segment).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("segment_id", "no such segment")));
    }
    let id = store::insert(&mut tx, tenant, &new).await?;
    let customers = match audience {
        Audience::Customers(ids) => ids,
        Audience::AllCustomers => store::all_customer_ids(&mut tx, tenant).await?,
        Audience::Nobody => Vec::new(),
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
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (kind, status) = campaign_store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let c = input::changes(body, &kind)?;
    if c.edits_plan() && CampaignStatus::parse(&status).is_none_or(|s| !s.editable()) {
        return Err(ApiError::Conflict {
            message: format!("The campaign is {status}; only drafts and scheduled campaigns can be changed."),
            field: None,
        });
    }
    check_template(&mut tx, tenant, &kind, c.template_id.flatten()).await?;
    check_variants(&mut tx, tenant, &kind, c.ab_test.as_ref().and_then(|t| t.as_ref())).await?;
    if let Some(Some(segment)) = c.segment_id
        && !crate::segments::exists(&mut tx, tenant, segment).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("segment_id", "no such segment")));
    }
    if let Some(to) = c.status {
        campaign_store::set_status(&mut tx, tenant, id, &status, to).await.map_err(refused)?;
    }
    store::update(&mut tx, tenant, id, &kind, &c).await?;
    if let Some(ids) = &c.recipients {
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
    let (_, status) = campaign_store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if status == "running" || status == "paused" {
        return Err(ApiError::Conflict { message: format!("The campaign is {status}; cancel it first."), field: None });
    }
    store::delete(&mut tx, tenant, id).await?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(None, "Campaign deleted.")))
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
    let status = input::recipient_filter(query, &mut e);
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
    let ready = campaigns::readiness(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let status = ready.status.as_str();
    if status != "draft" && status != "scheduled" {
        return Err(ApiError::Conflict {
            message: format!("The campaign is {status}; only drafts and scheduled campaigns can start."),
            field: None,
        });
    }
    let mut e = FieldErrors::default();
    if !ready.has_recipients {
        e.add(
            "recipients",
            if ready.segment_selected.is_some() {
                "the campaign's segment selects nobody now"
            } else {
                "the campaign has no recipients"
            },
        );
    }
    match ready.content {
        ContentState::Unset => e.add(
            "template_id",
            if ready.kind == "phone" { "the campaign has no phone script" } else { "the campaign has no template" },
        ),
        ContentState::Gone => e.add("template_id", "the campaign's template no longer exists"),
        ContentState::Present => {}
    }
    e.into_result()?;
    fibonacco_delivery::experiments::prepare_start(&mut tx, tenant, id, Utc::now()).await?;
    campaign_store::set_status(&mut tx, tenant, id, status, CampaignStatus::Running).await.map_err(refused)?;
    let kind = ready.kind;
    let campaign = store::get(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    queue_dispatch(&state, tenant, id, &kind).await;
    Ok(Json(Envelope::with_message(campaign, "Campaign started.")))
}

/// Queues the dispatch of a running campaign. If Redis is down the campaign still runs:
/// the scheduler's `campaigns:dispatch` sweep re-queues running campaigns with pending
/// recipients every minute.
async fn queue_dispatch(state: &AppState, tenant: fibonacco_platform::TenantId, id: Uuid, kind: &str) {
    if let Err(e) = campaigns::enqueue_dispatch(&state.queue, tenant, id, kind).await {
        tracing::warn!(error = %e, "campaign dispatch not queued; the scheduler's sweep will pick it up");
    }
}

/// Moves a campaign from one of `from` to `to`, or answers 409 naming its status.
async fn transition(
    state: &AppState,
    auth: &Auth,
    id: &str,
    from: &[&str],
    to: CampaignStatus,
) -> Result<(Campaign, String), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (kind, status) = campaign_store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if !from.contains(&status.as_str()) {
        return Err(ApiError::Conflict {
            message: format!("The campaign is {status}; only {} campaigns can become {to}.", from.join(" or ")),
            field: None,
        });
    }
    campaign_store::set_status(&mut tx, tenant, id, &status, to).await.map_err(refused)?;
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
    let (campaign, _) = transition(&state, &auth, &id, &["running"], CampaignStatus::Paused).await?;
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
    let (campaign, kind) = transition(&state, &auth, &id, &["paused"], CampaignStatus::Running).await?;
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
        transition(&state, &auth, &id, &["draft", "scheduled", "running", "paused"], CampaignStatus::Cancelled).await?;
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
    numbers.variants = store::variant_analytics(&mut tx, tenant, id).await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(numbers)))
}
