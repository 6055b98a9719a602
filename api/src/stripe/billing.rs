//! What a Stripe billing event (a subscription changed, an invoice paid or failed) asks of
//! our `subscriptions`, and whether it may: parsed ([`change`]) and judged against the
//! subscription it names ([`decide`]) without I/O, as [`super::event`] does for orders.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::event::Event;

/// The subscription statuses Stripe reports and `subscriptions.status` holds (besides our
/// own `pending`); any other is kept for an operator rather than written.
pub const STRIPE_STATUSES: &[&str] =
    &["incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled", "paused"];

/// What the event reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `customer.subscription.created` / `updated` / `deleted`: Stripe's state of it.
    State {
        status: String,
        cancel_at_period_end: bool,
        current_period_end: Option<i64>,
        canceled_at: Option<i64>,
        ended_at: Option<i64>,
        deleted: bool,
    },
    /// `invoice.paid` / `invoice.payment_succeeded`: a period paid for.
    InvoicePaid {
        invoice: String,
        amount_paid: i64,
        currency: String,
        payment_intent: Option<String>,
        period_end: Option<i64>,
    },
    /// `invoice.payment_failed`.
    InvoiceFailed,
}

/// A billing event with what identifies its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub report: Report,
    /// Stripe's subscription id (`sub_…`).
    pub stripe_subscription: String,
    /// Our id (`metadata.subscription_id`, on the subscription or the invoice's
    /// `subscription_details`), for an event that arrives before we stored Stripe's id.
    pub subscription_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    /// The event's `created`.
    pub at: i64,
}

/// The billing change in `event`, or `None` for events that are not about a subscription.
pub fn change(event: &Event) -> Option<Change> {
    let o = &event.data.object;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let int = |k: &str| o.get(k).and_then(Value::as_i64);
    let uuid = |v: Option<String>| v.and_then(|s| Uuid::parse_str(&s).ok());
    let (report, stripe_subscription, metadata) = match event.kind.as_str() {
        kind
        @ ("customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted") => (
            Report::State {
                status: text(o.get("status"))?,
                cancel_at_period_end: o.get("cancel_at_period_end").and_then(Value::as_bool).unwrap_or(false),
                current_period_end: int("current_period_end")
                    .or_else(|| o.pointer("/items/data/0/current_period_end").and_then(Value::as_i64)),
                canceled_at: int("canceled_at"),
                ended_at: int("ended_at"),
                deleted: kind == "customer.subscription.deleted",
            },
            text(o.get("id"))?,
            o.get("metadata"),
        ),
        kind @ ("invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed") => {
            // The subscription is `subscription` (older API versions) or
            // `parent.subscription_details.subscription` (2025 and later).
            let subscription =
                text(o.get("subscription")).or_else(|| text(o.pointer("/parent/subscription_details/subscription")))?;
            let metadata = o
                .pointer("/subscription_details/metadata")
                .or_else(|| o.pointer("/parent/subscription_details/metadata"));
            let report = if kind == "invoice.payment_failed" {
                Report::InvoiceFailed
            } else {
                Report::InvoicePaid {
                    invoice: text(o.get("id"))?,
                    amount_paid: int("amount_paid")?,
                    currency: text(o.get("currency"))?,
                    payment_intent: text(o.get("payment_intent")),
                    period_end: o.pointer("/lines/data/0/period/end").and_then(Value::as_i64).or(int("period_end")),
                }
            };
            (report, subscription, metadata)
        }
        _ => return None,
    };
    Some(Change {
        report,
        stripe_subscription,
        subscription_id: uuid(text(metadata.and_then(|m| m.get("subscription_id")))),
        tenant_id: uuid(text(metadata.and_then(|m| m.get("tenant_id")))),
        at: event.created,
    })
}

/// A subscription as the webhook sees it (read under a system transaction, locked).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubscriptionState {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub service_id: Option<Uuid>,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub stripe_subscription_id: Option<String>,
    pub stripe_event_at: Option<DateTime<Utc>>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take Stripe's state (status, cancellation, period end).
    Update {
        subscription: Uuid,
        tenant: Uuid,
    },
    /// A paid period: a paid order for it (once per invoice), the subscription active.
    Renew {
        subscription: Uuid,
        tenant: Uuid,
    },
    /// A failed renewal: the subscription is past due.
    PastDue {
        subscription: Uuid,
        tenant: Uuid,
    },
    Ignore {
        subscription: Uuid,
        tenant: Uuid,
        why: String,
    },
    Unmatched,
    Conflict {
        subscription: Option<Uuid>,
        tenant: Option<Uuid>,
        why: String,
    },
}

/// Judges `change` against the subscriptions it names (by Stripe's id or ours): exactly
/// one, of the tenant the event names, whose Stripe id is the event's; an update never
/// older than the last one applied and never bringing a cancelled subscription back; an
/// invoice in the subscription's currency for its amount.
pub fn decide(change: &Change, candidates: &[SubscriptionState]) -> Decision {
    let sub = match candidates {
        [] => return Decision::Unmatched,
        [one] => one,
        many => {
            return Decision::Conflict {
                subscription: None,
                tenant: None,
                why: format!("the event names {} different subscriptions", many.len()),
            };
        }
    };
    let conflict = |why: String| Decision::Conflict { subscription: Some(sub.id), tenant: Some(sub.tenant_id), why };
    let ignore = |why: String| Decision::Ignore { subscription: sub.id, tenant: sub.tenant_id, why };
    if let Some(t) = change.tenant_id
        && t != sub.tenant_id
    {
        return conflict(format!("metadata.tenant_id {t} is not the subscription's tenant"));
    }
    if let Some(ours) = &sub.stripe_subscription_id
        && ours != &change.stripe_subscription
    {
        return conflict(format!(
            "the subscription is {ours} at Stripe, the event names {}",
            change.stripe_subscription
        ));
    }
    let ended = matches!(sub.status.as_str(), "canceled" | "incomplete_expired");
    match &change.report {
        Report::State { deleted, status, .. } => {
            if !STRIPE_STATUSES.contains(&status.as_str()) {
                return conflict(format!("status `{status}` is not one the platform knows"));
            }
            if ended && !deleted {
                return ignore(format!("the subscription is already {}", sub.status));
            }
            if !deleted && sub.stripe_event_at.is_some_and(|at| change.at < at.timestamp()) {
                return ignore("an older state than the one applied".into());
            }
            Decision::Update { subscription: sub.id, tenant: sub.tenant_id }
        }
        Report::InvoicePaid { amount_paid, currency, .. } => {
            if !currency.eq_ignore_ascii_case(sub.currency.trim()) {
                return conflict(format!("currency {currency} is not the subscription's {}", sub.currency.trim()));
            }
            if *amount_paid == 0 {
                return ignore("nothing was paid (a trial or a credit)".into());
            }
            if *amount_paid != sub.amount_minor {
                return conflict(format!("amount paid {amount_paid} is not the subscription's {}", sub.amount_minor));
            }
            Decision::Renew { subscription: sub.id, tenant: sub.tenant_id }
        }
        Report::InvoiceFailed if sub.status == "active" => {
            Decision::PastDue { subscription: sub.id, tenant: sub.tenant_id }
        }
        Report::InvoiceFailed => ignore(format!("the subscription is {}", sub.status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::event::EventData;
    use serde_json::json;

    fn sub(status: &str) -> SubscriptionState {
        SubscriptionState {
            id: Uuid::from_u128(1),
            tenant_id: Uuid::from_u128(10),
            customer_id: Uuid::from_u128(5),
            service_id: None,
            status: status.into(),
            amount_minor: 2900,
            currency: "USD".into(),
            stripe_subscription_id: Some("sub_1".into()),
            stripe_event_at: DateTime::from_timestamp(1_000, 0),
        }
    }

    fn event(kind: &str, created: i64, object: Value) -> Change {
        change(&Event { id: "evt".into(), kind: kind.into(), created, data: EventData { object } }).unwrap()
    }

    #[test]
    fn reads_subscriptions_and_invoices_of_either_api_version() {
        let c = event(
            "customer.subscription.updated",
            5,
            json!({"id": "sub_1", "status": "active", "cancel_at_period_end": true, "current_period_end": 99,
                   "metadata": {"subscription_id": Uuid::from_u128(1).to_string(), "tenant_id": Uuid::from_u128(10).to_string()}}),
        );
        assert_eq!((c.subscription_id, c.tenant_id, c.at), (Some(Uuid::from_u128(1)), Some(Uuid::from_u128(10)), 5));
        assert!(matches!(
            c.report,
            Report::State { cancel_at_period_end: true, current_period_end: Some(99), deleted: false, .. }
        ));
        let new_style = event(
            "invoice.paid",
            5,
            json!({"id": "in_1", "amount_paid": 2900, "currency": "usd",
                   "parent": {"subscription_details": {"subscription": "sub_1", "metadata": {"tenant_id": Uuid::from_u128(10).to_string()}}},
                   "lines": {"data": [{"period": {"end": 77}}]}}),
        );
        assert_eq!(new_style.stripe_subscription, "sub_1");
        assert!(matches!(new_style.report, Report::InvoicePaid { amount_paid: 2900, period_end: Some(77), .. }));
        let one_off = Event {
            id: "e".into(),
            kind: "invoice.paid".into(),
            created: 0,
            data: EventData { object: json!({"id": "in_2", "amount_paid": 100, "currency": "usd"}) },
        };
        assert_eq!(change(&one_off), None, "an invoice without a subscription is not ours to renew");
    }

    #[test]
    fn updates_are_ordered_and_a_cancelled_subscription_stays_cancelled() {
        let state = |created, status: &str| {
            event("customer.subscription.updated", created, json!({"id": "sub_1", "status": status}))
        };
        assert!(matches!(decide(&state(1_000, "past_due"), &[sub("active")]), Decision::Update { .. }));
        assert!(matches!(decide(&state(999, "active"), &[sub("past_due")]), Decision::Ignore { .. }), "older");
        assert!(matches!(decide(&state(2_000, "active"), &[sub("canceled")]), Decision::Ignore { .. }));
        let deleted = event("customer.subscription.deleted", 1, json!({"id": "sub_1", "status": "canceled"}));
        assert!(matches!(decide(&deleted, &[sub("active")]), Decision::Update { .. }), "a deletion always lands");
        let other_tenant = event(
            "customer.subscription.updated",
            2_000,
            json!({"id": "sub_1", "status": "active", "metadata": {"tenant_id": Uuid::from_u128(11).to_string()}}),
        );
        assert!(matches!(decide(&other_tenant, &[sub("active")]), Decision::Conflict { .. }));
        assert!(matches!(decide(&state(2_000, "active"), &[]), Decision::Unmatched));
    }

    #[test]
    fn an_invoice_renews_only_for_the_subscriptions_amount_and_currency() {
        let paid = |amount: i64, currency: &str| {
            event(
                "invoice.payment_succeeded",
                2_000,
                json!({"id": "in_1", "subscription": "sub_1", "amount_paid": amount, "currency": currency}),
            )
        };
        assert!(matches!(decide(&paid(2900, "usd"), &[sub("active")]), Decision::Renew { .. }));
        assert!(matches!(decide(&paid(2900, "eur"), &[sub("active")]), Decision::Conflict { .. }));
        assert!(matches!(decide(&paid(2899, "usd"), &[sub("active")]), Decision::Conflict { .. }));
        assert!(matches!(decide(&paid(0, "usd"), &[sub("active")]), Decision::Ignore { .. }));
        let failed = event("invoice.payment_failed", 2_000, json!({"id": "in_1", "subscription": "sub_1"}));
        assert!(matches!(decide(&failed, &[sub("active")]), Decision::PastDue { .. }));
        assert!(matches!(decide(&failed, &[sub("canceled")]), Decision::Ignore { .. }));
        let mut elsewhere = sub("active");
        elsewhere.stripe_subscription_id = Some("sub_2".into());
        assert!(matches!(decide(&paid(2900, "usd"), &[elsewhere]), Decision::Conflict { .. }));
    }
}
