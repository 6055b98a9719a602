//! Paying for an order and refunding it through Stripe. The amount and currency always
//! come from the order (placed at the service's price), never from the request. Each
//! handler reads what it needs, commits, calls Stripe with no connection held, then
//! records Stripe's answer in a second transaction; the webhook
//! (`crate::stripe`) is what moves an order to `paid` or `failed`.

use axum::{
    Json,
    extract::{Path, State},
};
use fibonacco_platform::{TenantId, db};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    WRITE,
    orders::{self, Order},
};
use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, resource_id},
    state::AppState,
    stripe::client::{Client, NewPayment, StripeError},
};

const RESOURCE: &str = "order";

/// A Stripe object id as a client may hand it to us (`pm_…`): the prefix, then letters,
/// digits and underscores; it is put into a URL path, so nothing else.
pub fn stripe_id(raw: &str, prefix: &str, field: &'static str, e: &mut FieldErrors) -> String {
    // Only the blanks the document allows around it (JSON Schema's pattern), not every
    // Unicode space.
    let s = raw.trim_matches([' ', '\t', '\n', '\r']);
    if !s.starts_with(prefix)
        || s.len() <= prefix.len()
        || s.len() > 255
        || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        e.add(field, format!("must be a Stripe id starting with {prefix}"));
    }
    s.to_owned()
}

/// The Stripe customer of a CRM customer in this tenant, created on first use. Two racing
/// requests send the same idempotency key, so Stripe answers both with one customer.
#[tracing::instrument(skip(state, stripe), fields(tenant_id = %tenant), err(Display))]
pub async fn stripe_customer(
    state: &AppState,
    stripe: &Client,
    tenant: TenantId,
    customer: Uuid,
) -> Result<String, ApiError> {
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let known: Option<String> =
        sqlx::query_scalar("select stripe_customer_id from stripe_customers where tenant_id = $1 and customer_id = $2")
            .bind(tenant)
            .bind(customer)
            .fetch_optional(&mut *tx)
            .await?;
    let person: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("select name, email from crm_customers where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(customer)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    if let Some(id) = known {
        return Ok(id);
    }
    let (name, email) = person.ok_or(ApiError::NotFound("customer"))?;
    let created =
        stripe.create_customer(tenant.as_uuid(), customer, name.as_deref().unwrap_or(""), email.as_deref()).await?;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let id: String = sqlx::query_scalar(
        "with ins as (insert into stripe_customers (tenant_id, customer_id, stripe_customer_id) values ($1, $2, $3)
                      on conflict (tenant_id, customer_id) do nothing returning stripe_customer_id)
         select stripe_customer_id from ins
         union all select stripe_customer_id from stripe_customers where tenant_id = $1 and customer_id = $2
         limit 1",
    )
    .bind(tenant)
    .bind(customer)
    .bind(&created)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// A Stripe PaymentMethod (`pm_…`, from Stripe.js): the payment is confirmed at once.
    /// Without it, confirm on the client with `client_secret`.
    pub payment_method: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Payment {
    pub order: Order,
    pub payment_intent_id: String,
    /// Stripe's status of the PaymentIntent (`succeeded`, `processing`,
    /// `requires_payment_method`, `requires_action`, …). The order itself turns `paid` when
    /// Stripe's webhook says so.
    pub status: String,
    /// For Stripe.js (`confirmCardPayment`); only the payer's browser needs it.
    pub client_secret: Option<String>,
}

async fn order_of(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Order, ApiError> {
    orders::get_one(conn, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))
}

/// Pay for a pending (or failed) order through Stripe: a PaymentIntent for the order's
/// amount and currency, for the customer's Stripe customer. Asking again returns the
/// payment under way; after a failure it starts a new one (the stale one is cancelled so
/// it cannot be paid as well).
#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "commerce", request_body = PayRequest,
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = inline(Envelope<Payment>)), (status = 401, body = ErrorEnvelope), (status = 402, description = "The card was declined", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, description = "The order is not awaiting payment", body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, description = "Stripe is unavailable or STRIPE_SECRET is not set", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn pay(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PayRequest>,
) -> Result<Json<Envelope<Payment>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let payment_method = body.payment_method.map(|pm| stripe_id(&pm, "pm_", "payment_method", &mut e));
    e.into_result()?;
    let stripe = state.stripe()?;
    let tenant = auth.0.tenant_id;

    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let order = order_of(&mut tx, tenant, id).await?;
    tx.commit().await?;
    if !matches!(order.status.as_str(), "pending" | "failed") {
        return Err(ApiError::Conflict {
            message: format!("The order is {}; only pending or failed orders can be paid.", order.status),
            field: None,
        });
    }
    if order.amount_minor == 0 {
        return Err(ApiError::Conflict {
            message: "The order costs nothing; there is nothing to pay through Stripe.".into(),
            field: None,
        });
    }
    let previous = order.stripe_payment_intent_id.clone();
    if let Some(pi) = &previous {
        let current = stripe.payment_intent(pi).await?;
        let retry = current.status == "requires_payment_method" || current.status == "canceled";
        if !retry || (payment_method.is_none() && current.status != "canceled") {
            // A payment under way (or awaiting the payer's card on the client): the same one.
            return Ok(Json(Envelope::data(Payment {
                order,
                payment_intent_id: current.id,
                status: current.status,
                client_secret: current.client_secret,
            })));
        }
        if current.status != "canceled" {
            // The old one could still be confirmed with its client secret: cancel it, so
            // the order can only be paid once. If it was paid meanwhile, this fails.
            stripe.cancel_payment_intent(pi).await?;
        }
    }
    let customer = match order.customer_id {
        Some(c) => Some(stripe_customer(&state, stripe, tenant, c).await?),
        None => None,
    };
    let metadata = [
        ("order_id", order.id.to_string()),
        ("tenant_id", tenant.to_string()),
        ("order_number", order.order_number.clone()),
    ];
    let key = format!(
        "fib-order-{}-after-{}-{}",
        order.id,
        previous.as_deref().unwrap_or("none"),
        payment_method.as_deref().unwrap_or("client")
    );
    let created = stripe
        .create_payment_intent(
            &NewPayment {
                amount_minor: order.amount_minor,
                currency: &order.currency,
                customer: customer.as_deref(),
                payment_method: payment_method.as_deref(),
                metadata: &metadata,
            },
            &key,
        )
        .await;
    let intent = match created {
        Ok(intent) => intent,
        Err(StripeError::Declined { payment_intent: Some(pi), code, message }) => {
            // Stripe names the declined PaymentIntent: attach it, so the failure event
            // and the next attempt find it.
            attach(&state, tenant, id, previous.as_deref(), &pi).await?;
            return Err(ApiError::PaymentDeclined { message, decline_code: code });
        }
        Err(other) => return Err(other.into()),
    };
    if intent.amount != order.amount_minor || !intent.currency.eq_ignore_ascii_case(&order.currency) {
        return Err(ApiError::Upstream(format!(
            "Stripe created PaymentIntent {} for {} {}, not the order's {} {}",
            intent.id, intent.amount, intent.currency, order.amount_minor, order.currency
        )));
    }
    let order = attach(&state, tenant, id, previous.as_deref(), &intent.id).await?;
    Ok(Json(Envelope::with_message(
        Payment { order, payment_intent_id: intent.id, status: intent.status, client_secret: intent.client_secret },
        "Payment started.",
    )))
}

/// Records the order's PaymentIntent, replacing `previous` only (a concurrent attempt that
/// recorded another one wins, and this one is reported as a conflict).
async fn attach(
    state: &AppState,
    tenant: TenantId,
    order: Uuid,
    previous: Option<&str>,
    intent: &str,
) -> Result<Order, ApiError> {
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let n = sqlx::query(
        "update orders set stripe_payment_intent_id = $3
         where tenant_id = $1 and id = $2 and status in ('pending', 'failed')
           and (stripe_payment_intent_id is not distinct from $4 or stripe_payment_intent_id = $3)",
    )
    .bind(tenant)
    .bind(order)
    .bind(intent)
    .bind(previous)
    .execute(&mut *tx)
    .await
    .map_err(|err| match db::unique_violation(&err) {
        Some(_) => ApiError::Conflict { message: "Another order uses this PaymentIntent.".into(), field: None },
        None => err.into(),
    })?
    .rows_affected();
    let current = order_of(&mut tx, tenant, order).await?;
    tx.commit().await?;
    if n == 0 && current.stripe_payment_intent_id.as_deref() != Some(intent) {
        tracing::warn!(order_id = %order, "a concurrent payment attempt recorded another PaymentIntent");
        return Err(ApiError::Conflict {
            message: "The order changed while the payment was made; Stripe's webhook settles it.".into(),
            field: None,
        });
    }
    Ok(current)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units to refund (default: all that is not refunded yet).
    pub amount_minor: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundResult {
    pub order: Order,
    pub refund_id: String,
    pub amount_minor: i64,
}

/// Refund a paid order, in full or in part, through Stripe. The order's `refunded_minor`
/// grows by the refund, and the order is `refunded` once all of it is.
#[utoipa::path(post, path = "/api/v1/orders/{id}/refund", tag = "commerce", request_body = RefundRequest,
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = inline(Envelope<RefundResult>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "The order is not paid through Stripe", body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn refund(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RefundRequest>,
) -> Result<Json<Envelope<RefundResult>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if body.amount_minor.is_some_and(|a| a <= 0) {
        return Err(ApiError::Validation(FieldErrors::single("amount_minor", "must be a positive amount")));
    }
    let stripe = state.stripe()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let order = order_of(&mut tx, tenant, id).await?;
    tx.commit().await?;
    let Some(intent) = order.stripe_payment_intent_id.clone().filter(|_| order.status == "paid") else {
        return Err(ApiError::Conflict {
            message: format!("The order is {} and has no Stripe payment to refund.", order.status),
            field: None,
        });
    };
    let remaining = order.amount_minor - order.refunded_minor;
    let amount = body.amount_minor.unwrap_or(remaining);
    if amount > remaining {
        return Err(ApiError::Validation(FieldErrors::single(
            "amount_minor",
            format!("at most {remaining} of the order is left to refund"),
        )));
    }
    // The key names the refund by what was refunded before it: a repeated request (a
    // double click, a retry) is one refund; the next refund has another key.
    let key = format!("fib-refund-{}-{}-{amount}", order.id, order.refunded_minor);
    let metadata = [("order_id", order.id.to_string()), ("tenant_id", tenant.to_string())];
    let made = stripe.create_refund(&intent, amount, &metadata, &key).await?;
    if made.status.as_deref().is_some_and(|s| s == "failed" || s == "canceled") {
        return Err(ApiError::Upstream(format!(
            "Stripe did not refund: the refund is {}",
            made.status.unwrap_or_default()
        )));
    }
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    sqlx::query(
        "insert into order_refunds (stripe_refund_id, tenant_id, order_id, amount_minor) values ($1, $2, $3, $4)
         on conflict (stripe_refund_id) do nothing",
    )
    .bind(&made.id)
    .bind(tenant)
    .bind(order.id)
    .bind(made.amount)
    .execute(&mut *tx)
    .await?;
    // The webhook's `charge.refunded` sets the total Stripe reports; either may come first,
    // so the order keeps the larger of the two, never more than its amount.
    sqlx::query(
        "update orders o set refunded_minor = least(o.amount_minor, greatest(o.refunded_minor,
            (select coalesce(sum(r.amount_minor), 0) from order_refunds r where r.order_id = o.id))),
            status = case when least(o.amount_minor, greatest(o.refunded_minor,
                (select coalesce(sum(r.amount_minor), 0) from order_refunds r where r.order_id = o.id))) = o.amount_minor
                then 'refunded' else o.status end
         where o.tenant_id = $1 and o.id = $2",
    )
    .bind(tenant)
    .bind(order.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update orders set refunded_at = coalesce(refunded_at, now()) where tenant_id = $1 and id = $2 and status = 'refunded'",
    )
    .bind(tenant)
    .bind(order.id)
    .execute(&mut *tx)
    .await?;
    let order = order_of(&mut tx, tenant, order.id).await?;
    tx.commit().await?;
    tracing::info!(order_id = %order.id, amount = made.amount, "order refunded");
    Ok(Json(Envelope::with_message(
        RefundResult { order, refund_id: made.id, amount_minor: made.amount },
        "Refund made.",
    )))
}
