//! `POST /api/stripe/webhook`: verified, processed once per event id, and applied to
//! orders. A bad signature is a 400 and stores nothing.

pub mod signature;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use fibonacco_platform::db;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::ToSchema;

use crate::{ApiError, envelope::Envelope, error::ErrorEnvelope, state::AppState};

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResult {
    pub received: bool,
    /// True when this event id was processed before; nothing changed this time.
    pub duplicate: bool,
    /// Orders whose status this event changed.
    pub orders_updated: u64,
}

/// Stripe event receiver. Authenticated by `Stripe-Signature`, not a bearer token.
#[utoipa::path(post, path = "/api/stripe/webhook", tag = "payments",
    request_body(content = Object, description = "A Stripe event, as Stripe sends it"),
    responses(
        (status = 200, body = inline(Envelope<WebhookResult>)),
        (status = 400, description = "Bad or stale signature, or not a Stripe event; nothing stored", body = ErrorEnvelope),
        (status = 503, description = "STRIPE_WEBHOOK_SECRET is not configured", body = ErrorEnvelope)))]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Envelope<WebhookResult>>), ApiError> {
    let secret =
        state.config.stripe_webhook_secret.as_ref().ok_or(ApiError::Unavailable("Stripe webhook is not configured"))?;
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    if let Err(reason) = signature::verify(header, &body, secret.expose(), chrono::Utc::now().timestamp()) {
        tracing::warn!(%reason, "stripe webhook refused");
        return Err(ApiError::BadRequest(format!("invalid Stripe signature: {reason}")));
    }
    let raw: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("not JSON: {e}")))?;
    let event: Event =
        serde_json::from_value(raw.clone()).map_err(|e| ApiError::BadRequest(format!("not a Stripe event: {e}")))?;

    // Events span tenants (the order says which), so this is a system transaction.
    let mut tx = db::begin_system(&state.pool).await?;
    let fresh =
        sqlx::query("insert into stripe_events (id, type, payload) values ($1, $2, $3) on conflict (id) do nothing")
            .bind(&event.id)
            .bind(&event.kind)
            .bind(&raw)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    let orders_updated = if fresh { apply(&mut tx, &event).await? } else { 0 };
    tx.commit().await?;
    tracing::info!(event_type = %event.kind, duplicate = !fresh, orders_updated, "stripe event processed");
    Ok((StatusCode::OK, Json(Envelope::data(WebhookResult { received: true, duplicate: !fresh, orders_updated }))))
}

/// The order an event's object points at: our id in `metadata.order_id` or
/// `client_reference_id`, else the PaymentIntent or Checkout Session id we stored.
async fn apply(conn: &mut PgConnection, event: &Event) -> Result<u64, sqlx::Error> {
    let object = &event.data.object;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let order_id = object
        .pointer("/metadata/order_id")
        .and_then(text)
        .or_else(|| object.get("client_reference_id").and_then(text))
        .and_then(|s| uuid::Uuid::parse_str(&s).ok());
    let object_id = object.get("id").and_then(text);
    let payment_intent = match event.kind.as_str() {
        k if k.starts_with("payment_intent.") => object_id.clone(),
        _ => object.get("payment_intent").and_then(text),
    };
    let (new_status, only_from): (&str, &[&str]) = match event.kind.as_str() {
        "payment_intent.succeeded" => ("paid", &["pending", "failed"]),
        "checkout.session.completed" if object.get("payment_status").and_then(Value::as_str) == Some("paid") => {
            ("paid", &["pending", "failed"])
        }
        "checkout.session.async_payment_succeeded" => ("paid", &["pending", "failed"]),
        "payment_intent.payment_failed" | "checkout.session.async_payment_failed" => ("failed", &["pending"]),
        "payment_intent.canceled" | "checkout.session.expired" => ("cancelled", &["pending"]),
        "charge.refunded" => ("refunded", &["paid"]),
        _ => return Ok(0),
    };
    let session = if event.kind.starts_with("checkout.session.") { object_id } else { None };
    let updated = sqlx::query(
        "update orders set status = $1,
            paid_at = case when $1 = 'paid' then coalesce(paid_at, now()) else paid_at end,
            refunded_at = case when $1 = 'refunded' then now() else refunded_at end,
            stripe_payment_intent_id = coalesce(stripe_payment_intent_id, $5),
            stripe_checkout_session_id = coalesce(stripe_checkout_session_id, $6)
         where status = any($2)
           and (id = $3 or ($4::text is not null and stripe_payment_intent_id = $4)
                or ($6::text is not null and stripe_checkout_session_id = $6))",
    )
    .bind(new_status)
    .bind(only_from)
    .bind(order_id)
    .bind(payment_intent.as_deref())
    .bind(payment_intent.as_deref())
    .bind(session.as_deref())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated)
}
