//! `POST /api/stripe/webhook`: verified, processed once per event id, and applied to the
//! one order it belongs to after its amount and currency are checked ([`event::decide`]).
//! A bad signature is a 400 and stores nothing. An event that disagrees with our orders
//! is kept with why (`stripe_events.outcome = 'conflict'`) and answered 200: Stripe
//! retries non-2xx answers for days, and retrying cannot resolve a disagreement.

pub mod billing;
pub mod client;
pub mod event;
pub mod signature;
pub mod store;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use fibonacco_platform::db;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use self::event::{Decision, Event};
use crate::{ApiError, envelope::Envelope, error::ErrorEnvelope, state::AppState};

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResult {
    pub received: bool,
    /// True when this event id was processed before; nothing changed this time.
    pub duplicate: bool,
    /// Orders whose status or refunded amount this event changed, or the renewal order a
    /// paid subscription invoice created (0 or 1).
    pub orders_updated: u64,
    /// `applied`, `ignored` (nothing to change, or an event type the platform does not
    /// act on), `unmatched` (no order of ours), `conflict` (kept for an operator).
    pub outcome: &'static str,
    /// Why the event conflicts with our orders.
    pub conflict: Option<String>,
}

/// Stripe event receiver. Authenticated by `Stripe-Signature`, not a bearer token.
#[utoipa::path(post, path = "/api/stripe/webhook", tag = "payments",
    request_body(content = Object, description = "A Stripe event, as Stripe sends it"),
    responses(
        (status = 200, description = "Received: applied, ignored, unmatched, or a conflict kept for an operator", body = inline(Envelope<WebhookResult>)),
        (status = 400, description = "Bad or stale signature, or not a Stripe event; nothing stored", body = ErrorEnvelope),
        (status = 503, description = "STRIPE_WEBHOOK_SECRET is not configured, or the database is busy (Stripe retries)", body = ErrorEnvelope)))]
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

    let result = match receive(&state, &event, &raw).await {
        Err(e) if db::unique_violation(&e).is_some() => {
            // Another event attached the same PaymentIntent or session to another order
            // between our read and our write: a disagreement, not a reason to retry.
            let why = "the event's PaymentIntent or Checkout Session was just attached to another order";
            let mut tx = db::begin_system(&state.pool).await?;
            // A second delivery of this very event may have been recorded meanwhile: its
            // outcome stands, and this one is a duplicate.
            let fresh = store::record(&mut tx, &event.id, &event.kind, &raw).await?;
            if fresh {
                store::outcome(&mut tx, &event.id, "conflict", Some(why), None, None).await?;
            }
            tx.commit().await?;
            WebhookResult {
                received: true,
                duplicate: !fresh,
                orders_updated: 0,
                outcome: if fresh { "conflict" } else { "ignored" },
                conflict: fresh.then(|| why.into()),
            }
        }
        other => other?,
    };
    if result.outcome == "conflict" {
        tracing::warn!(event_type = %event.kind, conflict = result.conflict.as_deref(), "stripe event kept as a conflict");
    } else {
        tracing::info!(event_type = %event.kind, duplicate = result.duplicate, outcome = result.outcome, "stripe event processed");
    }
    Ok((StatusCode::OK, Json(Envelope::data(result))))
}

/// Records the event and applies it, in one system transaction.
async fn receive(state: &AppState, event: &Event, raw: &Value) -> Result<WebhookResult, sqlx::Error> {
    let mut tx = db::begin_system(&state.pool).await?;
    let result = if store::record(&mut tx, &event.id, &event.kind, raw).await? {
        apply(&mut tx, event).await?
    } else {
        WebhookResult { received: true, duplicate: true, orders_updated: 0, outcome: "ignored", conflict: None }
    };
    tx.commit().await?;
    Ok(result)
}

async fn apply(conn: &mut PgConnection, event: &Event) -> Result<WebhookResult, sqlx::Error> {
    let done = |outcome, orders_updated, conflict| WebhookResult {
        received: true,
        duplicate: false,
        orders_updated,
        outcome,
        conflict,
    };
    if let Some(change) = billing::change(event) {
        let (outcome, detail, order, tenant, updated) = apply_billing(conn, &change).await?;
        store::outcome(conn, &event.id, outcome, detail.as_deref(), order, tenant).await?;
        return Ok(done(outcome, updated, detail.filter(|_| outcome == "conflict")));
    }
    let Some(instruction) = event::instruction(event) else {
        store::outcome(conn, &event.id, "ignored", Some("an event type the platform does not act on"), None, None)
            .await?;
        return Ok(done("ignored", 0, None));
    };
    let pi = instruction.payment_intent.as_deref();
    let session = instruction.session.as_deref();
    let candidates = store::candidates(conn, instruction.order_id, pi, session).await?;
    let (outcome, detail, order, tenant, updated): (&'static str, Option<String>, Option<Uuid>, Option<Uuid>, u64) =
        match event::decide(&instruction, &candidates) {
            Decision::Apply { order, tenant, status, refunded_minor } => {
                let n = store::apply(conn, order, status, refunded_minor, pi, session).await?;
                if status == "paid" {
                    store::record_purchase(conn, order).await?;
                }
                ("applied", None, Some(order), Some(tenant), n)
            }
            Decision::Ignore { order, tenant, why } => ("ignored", Some(why), Some(order), Some(tenant), 0),
            Decision::Unmatched => ("unmatched", None, None, None, 0),
            Decision::Conflict { order, tenant, why } => ("conflict", Some(why), order, tenant, 0),
        };
    store::outcome(conn, &event.id, outcome, detail.as_deref(), order, tenant).await?;
    Ok(done(outcome, updated, detail.filter(|_| outcome == "conflict")))
}

type Applied = (&'static str, Option<String>, Option<Uuid>, Option<Uuid>, u64);

/// A subscription's state or a renewal ([`billing::decide`]); a renewal is an order.
async fn apply_billing(conn: &mut PgConnection, change: &billing::Change) -> Result<Applied, sqlx::Error> {
    let candidates = store::subscription_candidates(conn, &change.stripe_subscription, change.subscription_id).await?;
    let sid = change.stripe_subscription.as_str();
    Ok(match (billing::decide(change, &candidates), &change.report) {
        (
            billing::Decision::Update { subscription, tenant },
            billing::Report::State { status, cancel_at_period_end, current_period_end, canceled_at, ended_at, .. },
        ) => {
            store::set_subscription_state(
                conn,
                subscription,
                sid,
                status,
                *cancel_at_period_end,
                *current_period_end,
                *canceled_at,
                *ended_at,
                Some(change.at),
            )
            .await?;
            ("applied", None, None, Some(tenant), 0)
        }
        (
            billing::Decision::Renew { subscription, tenant },
            billing::Report::InvoicePaid { invoice, amount_paid, payment_intent, period_end, .. },
        ) => {
            let number = crate::commerce::orders::new_order_number();
            let created = store::renew(
                conn,
                subscription,
                sid,
                invoice,
                *amount_paid,
                payment_intent.as_deref(),
                *period_end,
                &number,
            )
            .await?;
            let why = (!created).then(|| "the invoice's order exists".to_owned());
            ("applied", why, None, Some(tenant), u64::from(created))
        }
        (billing::Decision::PastDue { subscription, tenant }, _) => {
            store::past_due(conn, subscription).await?;
            ("applied", None, None, Some(tenant), 0)
        }
        (billing::Decision::Ignore { tenant, why, .. }, _) => ("ignored", Some(why), None, Some(tenant), 0),
        (billing::Decision::Unmatched, _) => ("unmatched", None, None, None, 0),
        (billing::Decision::Conflict { tenant, why, .. }, _) => ("conflict", Some(why), None, tenant, 0),
        (decision, report) => {
            // `decide` pairs each decision with its report kind; anything else is a bug,
            // kept for an operator rather than applied.
            let why = format!("no rule applies {decision:?} to {report:?}");
            ("conflict", Some(why), None, None, 0)
        }
    })
}
