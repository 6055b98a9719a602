//! Subscriptions to recurring services, billed by Stripe. Our row is written before the
//! Stripe call (status `pending`, its id in Stripe's metadata) so that a webhook arriving
//! before the call returns still finds it, and a retried request reuses it (same
//! idempotency key: one Stripe subscription). Renewals arrive as paid invoices and become
//! orders (`crate::stripe::billing`).

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{READ, WRITE, payments, services};
use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
    stripe::{
        client::{NewPlan, StripeError, Subscription as StripeSubscription},
        store as stripe_store,
    },
};

const RESOURCE: &str = "subscription";
pub const STATUSES: &[&str] =
    &["pending", "incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled", "paused"];
/// Statuses in which a customer already has the service (a second subscription is refused).
const LIVE: &[&str] = &["pending", "incomplete", "trialing", "active", "past_due", "unpaid", "paused"];

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Subscription {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub service_id: Option<Uuid>,
    pub stripe_subscription_id: Option<String>,
    /// Stripe's status: pending (not yet at Stripe), incomplete, active, past_due,
    /// canceled, …
    pub status: String,
    /// The price per period, in minor units of `currency`, fixed when subscribing.
    pub amount_minor: i64,
    pub currency: String,
    /// monthly, quarterly or yearly.
    pub billing_period: String,
    /// The subscription ends at `current_period_end` instead of renewing.
    pub cancel_at_period_end: bool,
    pub current_period_end: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, customer_id, service_id, stripe_subscription_id, status, amount_minor,
    trim(currency) as currency, billing_period, cancel_at_period_end, current_period_end, canceled_at, ended_at,
    created_at, updated_at";

async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from subscriptions where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Stripe's interval for a billing period.
fn interval(period: &str) -> Option<(&'static str, u32)> {
    match period {
        "monthly" => Some(("month", 1)),
        "quarterly" => Some(("month", 3)),
        "yearly" => Some(("year", 1)),
        _ => None,
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionListQuery {
    pub status: Option<String>,
    pub customer_id: Option<String>,
}

/// A tenant's subscriptions, newest first (filter by customer for one customer's).
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "commerce", params(PageQuery, SubscriptionListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Subscription>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<SubscriptionListQuery>,
) -> Result<Json<Envelope<Vec<Subscription>>>, ApiError> {
    auth.require(READ)?;
    super::page_filtered(&state, &auth, page, query.status, query.customer_id, STATUSES, "subscriptions", COLUMNS).await
}

#[utoipa::path(get, path = "/api/v1/subscriptions/{id}", tag = "commerce", params(("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 200, body = inline(Envelope<Subscription>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Subscription>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let found = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    found.map(|s| Json(Envelope::data(s))).ok_or(ApiError::NotFound(RESOURCE))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionRequest {
    pub customer_id: Option<Uuid>,
    /// An active service with a recurring billing period.
    pub service_id: Option<Uuid>,
    /// A Stripe PaymentMethod (`pm_…`) that becomes the customer's default for invoices.
    /// Needed unless the customer's Stripe customer already has one.
    pub payment_method: Option<String>,
}

/// Subscribe a customer to a recurring service at its current price. Asking again while
/// the first request's outcome is unknown (a timeout) continues the same subscription.
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "commerce", request_body = CreateSubscriptionRequest,
    responses((status = 201, body = inline(Envelope<Subscription>)), (status = 401, body = ErrorEnvelope), (status = 402, description = "The card was declined", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, description = "The customer already has this service", body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateSubscriptionRequest>,
) -> Result<(StatusCode, Json<Envelope<Subscription>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    if body.customer_id.is_none() {
        e.add("customer_id", "is required");
    }
    if body.service_id.is_none() {
        e.add("service_id", "is required");
    }
    let payment_method = body.payment_method.map(|pm| payments::stripe_id(&pm, "pm_", "payment_method", &mut e));
    e.into_result()?;
    let (Some(customer), Some(service_id)) = (body.customer_id, body.service_id) else {
        return Err(ApiError::Validation(FieldErrors::single("service_id", "is required")));
    };
    let stripe = state.stripe()?;
    let tenant = auth.0.tenant_id;

    // 1. Our row first (or the pending one a failed attempt left).
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let mut e = FieldErrors::default();
    let service = services::get_one(&mut tx, tenant, service_id).await?;
    let period = match &service {
        None => {
            e.add("service_id", "no such service");
            None
        }
        Some(s) if !s.is_active => {
            e.add("service_id", "the service is not available");
            None
        }
        Some(s) => {
            let i = interval(&s.billing_period);
            if i.is_none() {
                e.add("service_id", "the service is not billed periodically (billing_period is one_time)");
            }
            i
        }
    };
    if !customers::store::exists(&mut tx, tenant, customer).await? {
        e.add("customer_id", "no such customer");
    }
    e.into_result()?;
    let (service, (interval, interval_count)) = service.zip(period).ok_or(ApiError::NotFound("service"))?;
    let existing: Option<(Uuid, String)> = sqlx::query_as(
        "select id, status from subscriptions where tenant_id = $1 and customer_id = $2 and service_id = $3
           and status = any($4) order by created_at desc limit 1 for update",
    )
    .bind(tenant)
    .bind(customer)
    .bind(service_id)
    .bind(LIVE)
    .fetch_optional(&mut *tx)
    .await?;
    let id =
        match existing {
            Some((id, status)) if status == "pending" => id,
            Some((_, status)) => {
                return Err(ApiError::Conflict {
                    message: format!("The customer already has this service (subscription {status})."),
                    field: Some("service_id"),
                });
            }
            None => sqlx::query_scalar(
                "insert into subscriptions (tenant_id, customer_id, service_id, amount_minor, currency, billing_period)
                 values ($1, $2, $3, $4, $5, $6) returning id",
            )
            .bind(tenant)
            .bind(customer)
            .bind(service_id)
            .bind(service.price_minor)
            .bind(&service.currency)
            .bind(&service.billing_period)
            .fetch_one(&mut *tx)
            .await?,
        };
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let plan: (Option<String>, Option<String>) =
        sqlx::query_as("select stripe_price_id, stripe_price_for from services where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(service_id)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;

    // 2. Stripe: the customer (and their card), the plan at the subscribed price, the
    // subscription. No connection is held meanwhile.
    let stripe_customer = payments::stripe_customer(&state, stripe, tenant, customer).await?;
    if let Some(pm) = &payment_method {
        stripe.set_default_payment_method(&stripe_customer, pm).await?;
    }
    let price_for = format!("{}:{}:{}", row.amount_minor, row.currency, row.billing_period);
    let plan = match plan {
        (Some(plan), Some(made_for)) if made_for == price_for => plan,
        _ => {
            let metadata = [("tenant_id", tenant.to_string()), ("service_id", service_id.to_string())];
            let plan = NewPlan {
                amount_minor: row.amount_minor,
                currency: &row.currency,
                interval,
                interval_count,
                product_name: &service.name,
                metadata: &metadata,
            };
            let made = stripe.create_plan(&plan, &format!("fib-plan-{service_id}-{price_for}")).await?;
            let mut tx = db::begin_tenant(&state.pool, tenant).await?;
            sqlx::query(
                "update services set stripe_price_id = $3, stripe_price_for = $4 where tenant_id = $1 and id = $2",
            )
            .bind(tenant)
            .bind(service_id)
            .bind(&made)
            .bind(&price_for)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            made
        }
    };
    let made = stripe
        .create_subscription(
            &stripe_customer,
            &plan,
            &[("tenant_id", tenant.to_string()), ("subscription_id", id.to_string())],
            &format!("fib-subscription-{id}"),
        )
        .await;
    let made = match made {
        Ok(m) => m,
        Err(err @ (StripeError::Declined { .. } | StripeError::Rejected { .. })) => {
            // Nothing exists at Stripe: the pending row goes, so the next attempt starts clean.
            let mut tx = db::begin_tenant(&state.pool, tenant).await?;
            sqlx::query("delete from subscriptions where tenant_id = $1 and id = $2 and status = 'pending'")
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Err(err.into());
        }
        Err(other) => return Err(other.into()),
    };

    // 3. Stripe's answer.
    let row = record(&state, tenant, id, &made).await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Subscribed."))))
}

/// Writes Stripe's answer about subscription `id` and reads the row back.
async fn record(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
    made: &StripeSubscription,
) -> Result<Subscription, ApiError> {
    if !crate::stripe::billing::STRIPE_STATUSES.contains(&made.status.as_str()) {
        // Left as it was (the webhook keeps the conflict); never a failed write.
        return Err(ApiError::Upstream(format!(
            "Stripe reports status `{}`, which the platform does not know",
            made.status
        )));
    }
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    stripe_store::set_subscription_state(
        &mut tx,
        id,
        &made.id,
        &made.status,
        made.cancel_at_period_end,
        made.current_period_end,
        made.canceled_at,
        made.ended_at,
        None,
    )
    .await
    .map_err(|err| match db::unique_violation(&err) {
        Some(_) => ApiError::Conflict { message: "Stripe's subscription belongs to another row.".into(), field: None },
        None => err.into(),
    })?;
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(row)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSubscriptionRequest {
    /// true (default): run to the end of the paid period, then end. false: end now.
    pub at_period_end: Option<bool>,
}

/// Cancel a subscription, at the end of its period (default) or now.
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/cancel", tag = "commerce", request_body = CancelSubscriptionRequest,
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 200, body = inline(Envelope<Subscription>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "Already ended, or not at Stripe yet", body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CancelSubscriptionRequest>,
) -> Result<Json<Envelope<Subscription>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let stripe = state.stripe()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    if matches!(row.status.as_str(), "canceled" | "incomplete_expired") {
        return Err(ApiError::Conflict {
            message: format!("The subscription is already {}.", row.status),
            field: None,
        });
    }
    let Some(stripe_id) = row.stripe_subscription_id else {
        return Err(ApiError::Conflict {
            message: "The subscription is not at Stripe yet; subscribe again to finish it first.".into(),
            field: None,
        });
    };
    let made = if body.at_period_end.unwrap_or(true) {
        stripe.cancel_at_period_end(&stripe_id).await?
    } else {
        stripe.cancel_now(&stripe_id).await?
    };
    let row = record(&state, tenant, id, &made).await?;
    Ok(Json(Envelope::with_message(row, "Subscription cancelled.")))
}
