//! `/api/v1/webhooks`: a tenant's webhook endpoints (URL, event types, signing secret),
//! the event types they can subscribe to, and each endpoint's delivery log. Events come
//! from the change feed (`pipelines::webhooks`) and are delivered by the workers
//! (`delivery::webhooks`), signed as Standard Webhooks says.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use chrono::{DateTime, Utc};
use fibonacco_delivery::webhooks::{signature::SigningSecret, target};
use fibonacco_platform::{db, webhooks::EventType};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, delete_one, page_of},
    patch::Patch,
    state::AppState,
    validate,
};

pub const READ: &str = "webhooks:read";
pub const WRITE: &str = "webhooks:write";
const RESOURCE: &str = "webhook endpoint";
/// Endpoints per tenant: each costs a delivery per event.
pub const MAX_ENDPOINTS: i64 = 20;
const COLUMNS: &str =
    "id, url, description, event_types, enabled, disabled_at, disabled_reason, failing_since, created_at, updated_at";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/event-types", get(event_types))
        .route("/webhooks/endpoints", get(list).post(create))
        .route("/webhooks/endpoints/{id}", get(show).patch(update).delete(destroy))
        .route("/webhooks/endpoints/{id}/deliveries", get(deliveries))
        .route("/webhooks/endpoints/{id}/rotate-secret", axum::routing::post(rotate_secret))
        .route("/webhooks/endpoints/{id}/test", axum::routing::post(send_test))
        .route("/webhooks/endpoints/{id}/deliveries/{delivery}/retry", axum::routing::post(retry))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEventType {
    /// e.g. `customer.created`.
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    /// False after the endpoint kept failing for the whole retry schedule (see
    /// `disabled_reason`), or when turned off; PATCH `enabled: true` resumes it.
    pub enabled: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Since when deliveries have failed (null while they succeed).
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint as created: with the signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhookEndpoint {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_…`: verifies `webhook-signature` (any Standard Webhooks library does). Store it now;
    /// it is not shown again.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointRequest {
    /// `https://…` (or `http://`); never a loopback, private or link-local address.
    pub url: Option<String>,
    /// Event types from `/webhooks/event-types` (1 to 32).
    pub event_types: Option<Vec<String>>,
    /// At most 500 characters.
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointPatch {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub url: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub event_types: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    /// `true` re-enables a disabled endpoint: its pending deliveries are due at once.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub enabled: Patch<bool>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct WebhookDelivery {
    pub id: Uuid,
    /// The `webhook-id` header: the same on every attempt.
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (out of retries).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    /// The first KiB of the receiver's last answer.
    pub last_response: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A delivery as the log shows it (`d` the delivery, `e` its event).
const DELIVERY_SELECT: &str = "select d.id, d.event_id, e.type as event_type, d.status, d.attempts,
        case when d.status = 'pending' then d.next_attempt_at end as next_attempt_at,
        d.last_attempt_at, d.last_status_code, d.last_error,
        (select a.response from webhook_attempts a where a.delivery_id = d.id
         order by a.attempted_at desc limit 1) as last_response,
        d.delivered_at, d.created_at
     from webhook_deliveries d join webhook_events e on e.id = d.event_id";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub page: Option<String>,
    pub per_page: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
}

/// The event types an endpoint can subscribe to.
#[utoipa::path(get, path = "/api/v1/webhooks/event-types", tag = "webhooks",
    responses((status = 200, body = inline(Envelope<Vec<WebhookEventType>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn event_types(auth: Auth) -> Result<Json<Envelope<Vec<WebhookEventType>>>, ApiError> {
    auth.require(READ)?;
    let types = EventType::ALL.iter().map(|t| WebhookEventType { name: t.as_str(), description: t.description() });
    Ok(Json(Envelope::data(types.collect())))
}

#[utoipa::path(get, path = "/api/v1/webhooks/endpoints", tag = "webhooks", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<WebhookEndpoint>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<WebhookEndpoint>>>, ApiError> {
    auth.require(READ)?;
    page_of(&state, &auth, page, &Listing { from: "webhook_endpoints", columns: COLUMNS, order_by: "created_at, id" })
        .await
}

fn checked_url(raw: &str, state: &AppState, e: &mut FieldErrors) -> String {
    match target::parse(raw.trim(), state.config.webhook_private_targets) {
        Ok(url) => url.to_string(),
        Err(why) => {
            e.add("url", why.to_string());
            String::new()
        }
    }
}

fn checked_types(raw: &[String], e: &mut FieldErrors) -> Vec<String> {
    if raw.is_empty() || raw.len() > 32 {
        e.add("event_types", "must name 1 to 32 event types");
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for t in raw {
        match EventType::parse(t) {
            Some(t) if !out.iter().any(|o| o == t.as_str()) => out.push(t.as_str().to_owned()),
            Some(_) => {}
            None => e.add("event_types", "names an unknown event type (see /api/v1/webhooks/event-types)"),
        }
    }
    out
}

/// Subscribe an endpoint. The answer holds its signing secret, shown this once.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints", tag = "webhooks", request_body = WebhookEndpointRequest,
    responses((status = 201, body = inline(Envelope<CreatedWebhookEndpoint>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, description = "The tenant has the most endpoints allowed", body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<WebhookEndpointRequest>,
) -> Result<(StatusCode, Json<Envelope<CreatedWebhookEndpoint>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let url = match body.url {
        Some(u) => checked_url(&u, &state, &mut e),
        None => {
            e.add("url", "is required");
            String::new()
        }
    };
    let types = match body.event_types {
        Some(t) => checked_types(&t, &mut e),
        None => {
            e.add("event_types", "is required");
            Vec::new()
        }
    };
    let description =
        body.description.map(|d| validate::text(&d, 500, "description", &mut e)).filter(|d| !d.is_empty());
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let secret = SigningSecret::generate();
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    // Serialises creations of one tenant, so two at once cannot both pass the limit.
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('webhook_endpoints:' || $1::text, 0))")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    let count: i64 = sqlx::query_scalar("select count(*) from webhook_endpoints where tenant_id = $1")
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(ApiError::Conflict {
            message: format!("A tenant has at most {MAX_ENDPOINTS} webhook endpoints; delete one first."),
            field: None,
        });
    }
    let endpoint: WebhookEndpoint = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into webhook_endpoints (tenant_id, url, description, event_types, secret) values ($1, $2, $3, $4, $5)
         returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(&url)
    .bind(&description)
    .bind(&types)
    .bind(&secret)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Envelope::with_message(
            CreatedWebhookEndpoint { endpoint, secret },
            "Endpoint subscribed. Store the secret now: it is not shown again.",
        )),
    ))
}

#[utoipa::path(get, path = "/api/v1/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 200, body = inline(Envelope<WebhookEndpoint>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<WebhookEndpoint>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let endpoint: Option<WebhookEndpoint> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from webhook_endpoints where tenant_id = $1 and id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(endpoint.ok_or(ApiError::NotFound(RESOURCE))?)))
}

/// Change the URL, event types or description, or turn the endpoint off and on. Turning
/// it on clears a disable and makes its pending deliveries due at once.
#[utoipa::path(patch, path = "/api/v1/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")), request_body = WebhookEndpointPatch,
    responses((status = 200, body = inline(Envelope<WebhookEndpoint>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WebhookEndpointPatch>,
) -> Result<Json<Envelope<WebhookEndpoint>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let url = body.url.non_null("url", &mut e).map(|u| checked_url(&u, &state, &mut e));
    let types = body.event_types.non_null("event_types", &mut e).map(|t| checked_types(&t, &mut e));
    let description = body
        .description
        .nullable()
        .map(|d| d.map(|d| validate::text(&d, 500, "description", &mut e)).filter(|d| !d.is_empty()));
    let enabled = body.enabled.non_null("enabled", &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let endpoint: Option<WebhookEndpoint> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update webhook_endpoints set
            url = coalesce($3, url),
            event_types = coalesce($4, event_types),
            description = case when $5 then $6 else description end,
            enabled = coalesce($7, enabled),
            disabled_at = case when $7 then null when $7 = false and enabled then now() else disabled_at end,
            disabled_reason = case when $7 then null when $7 = false and enabled then 'turned off' else disabled_reason end,
            failing_since = case when $7 and not enabled then null else failing_since end
         where tenant_id = $1 and id = $2
         returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(id)
    .bind(url)
    .bind(types)
    .bind(description.is_some())
    .bind(description.flatten())
    .bind(enabled)
    .fetch_optional(&mut *tx)
    .await?;
    let endpoint = endpoint.ok_or(ApiError::NotFound(RESOURCE))?;
    if enabled == Some(true) {
        // What waited while it was off goes out now, each delivery keeping its attempts.
        sqlx::query(
            "update webhook_deliveries set next_attempt_at = now()
             where tenant_id = $1 and endpoint_id = $2 and status = 'pending' and next_attempt_at > now()",
        )
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Json(Envelope::with_message(endpoint, "Endpoint updated.")))
}

/// A new signing secret, shown once. For a day deliveries are signed by the old secret as
/// well (a second `v1,` entry in `webhook-signature`), so receivers can switch without
/// missing one.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 200, body = inline(Envelope<CreatedWebhookEndpoint>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<CreatedWebhookEndpoint>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let secret = SigningSecret::generate();
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let endpoint: Option<WebhookEndpoint> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update webhook_endpoints set previous_secret = secret, previous_secret_until = now() + interval '1 day',
            secret = $3
         where tenant_id = $1 and id = $2 returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(id)
    .bind(&secret)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let endpoint = endpoint.ok_or(ApiError::NotFound(RESOURCE))?;
    Ok(Json(Envelope::with_message(
        CreatedWebhookEndpoint { endpoint, secret },
        "Secret rotated. Store it now; the old one signs too for a day.",
    )))
}

/// Queues a `webhook.test` event to the endpoint now (whatever it subscribes to), to try a
/// receiver; it is delivered, signed and logged like any other.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{id}/test", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 202, body = inline(Envelope<WebhookDelivery>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn send_test(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Envelope<WebhookDelivery>>), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let event = format!("msg_test_{}", Uuid::now_v7().simple());
    let payload =
        fibonacco_platform::webhooks::envelope("webhook.test", Utc::now(), serde_json::json!({"endpoint_id": id}));
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from webhook_endpoints where tenant_id = $1 and id = $2)",
    )
    .bind(tenant)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?
    {
        return Err(ApiError::NotFound(RESOURCE));
    }
    sqlx::query(
        "insert into webhook_events (id, tenant_id, type, payload, occurred_at) values ($1, $2, 'webhook.test', $3, now())",
    )
    .bind(&event)
    .bind(tenant)
    .bind(&payload)
    .execute(&mut *tx)
    .await?;
    let delivery: Uuid = sqlx::query_scalar(
        "insert into webhook_deliveries (tenant_id, endpoint_id, event_id) values ($1, $2, $3) returning id",
    )
    .bind(tenant)
    .bind(id)
    .bind(&event)
    .fetch_one(&mut *tx)
    .await?;
    let shown = one_delivery(&mut tx, tenant, delivery).await?;
    tx.commit().await?;
    queue_delivery(&state, tenant, id).await;
    Ok((StatusCode::ACCEPTED, Json(Envelope::with_message(shown, "Test event queued."))))
}

/// Sends a delivery again now, with a fresh retry schedule (a failed one included); the
/// same `webhook-id`, so a receiver that had it dedupes.
#[utoipa::path(post, path = "/api/v1/webhooks/endpoints/{id}/deliveries/{delivery}/retry", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id"), ("delivery" = Uuid, Path, description = "Delivery id")),
    responses((status = 202, body = inline(Envelope<WebhookDelivery>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Envelope<WebhookDelivery>>), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let delivery = resource_id(&delivery, "webhook delivery")?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let found = sqlx::query(
        "update webhook_deliveries set status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = null
         where tenant_id = $1 and endpoint_id = $2 and id = $3",
    )
    .bind(tenant)
    .bind(id)
    .bind(delivery)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if found == 0 {
        return Err(ApiError::NotFound("webhook delivery"));
    }
    let shown = one_delivery(&mut tx, tenant, delivery).await?;
    tx.commit().await?;
    queue_delivery(&state, tenant, id).await;
    Ok((StatusCode::ACCEPTED, Json(Envelope::with_message(shown, "Delivery queued again."))))
}

async fn one_delivery(
    conn: &mut sqlx::PgConnection,
    tenant: fibonacco_platform::TenantId,
    delivery: Uuid,
) -> Result<WebhookDelivery, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{DELIVERY_SELECT} where d.tenant_id = $1 and d.id = $2")))
        .bind(tenant)
        .bind(delivery)
        .fetch_one(conn)
        .await
}

/// Queues the endpoint's job now; without Redis the scheduler's `webhooks:deliver` does
/// within seconds.
async fn queue_delivery(state: &AppState, tenant: fibonacco_platform::TenantId, endpoint: Uuid) {
    let job = fibonacco_platform::queue::jobs::DeliverWebhooks { tenant_id: tenant.as_uuid(), endpoint_id: endpoint };
    if let Err(e) = state.queue.enqueue(&job).await {
        tracing::warn!(error = %e, "could not queue a webhook delivery; the scheduler will");
    }
}

/// Unsubscribe: the endpoint, its pending deliveries and its log are deleted.
#[utoipa::path(delete, path = "/api/v1/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if !delete_one(&state, &auth, "webhook_endpoints", id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    Ok(Json(Envelope::with_message(None, "Endpoint deleted.")))
}

/// The endpoint's delivery log, newest first: each delivery's state, attempts and the
/// receiver's last answer.
#[utoipa::path(get, path = "/api/v1/webhooks/endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id"), DeliveryQuery),
    responses((status = 200, body = inline(Envelope<Vec<WebhookDelivery>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<DeliveryQuery>,
) -> Result<Json<Envelope<Vec<WebhookDelivery>>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let page = PageQuery { page: q.page, per_page: q.per_page }.resolve(state.config.max_per_page, &mut e);
    let status = q.status.map(|s| validate::one_of(&s, &["pending", "delivered", "failed"], "status", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from webhook_endpoints where tenant_id = $1 and id = $2)")
            .bind(tenant)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let total: i64 = sqlx::query_scalar(
        "select count(*) from webhook_deliveries where tenant_id = $1 and endpoint_id = $2 and ($3::text is null or status = $3)",
    )
    .bind(tenant)
    .bind(id)
    .bind(&status)
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<WebhookDelivery> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{DELIVERY_SELECT}
         where d.tenant_id = $1 and d.endpoint_id = $2 and ($3::text is null or d.status = $3)
         order by d.created_at desc, d.id desc limit $4 offset $5"
    )))
    .bind(tenant)
    .bind(id)
    .bind(&status)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}
