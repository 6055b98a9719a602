//! What a Stripe event asks of an order, and whether it may: parsed from the event's
//! object, then judged against the orders it names ([`decide`]), with no I/O so every
//! rule is tested on its own.

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// When Stripe created the event (Unix seconds): orders subscription updates.
    #[serde(default)]
    pub created: i64,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// The change an event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pay,
    Fail,
    Cancel,
    /// `amount_refunded` of the charge: the total refunded so far, not this refund.
    Refund {
        refunded_minor: i64,
    },
}

/// An event we act on, with everything that identifies and checks its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub change: Change,
    /// Our order id (`metadata.order_id` or `client_reference_id`).
    pub order_id: Option<Uuid>,
    /// `metadata.tenant_id`, when the payment was created with it.
    pub tenant_id: Option<Uuid>,
    pub payment_intent: Option<String>,
    pub session: Option<String>,
    /// What Stripe charged: the PaymentIntent's `amount`, the session's `amount_total`,
    /// the charge's `amount`; `currency` lower-case as Stripe writes it.
    pub amount: Option<i64>,
    pub currency: Option<String>,
}

/// The instruction in `event`, or `None` for event types the platform does not act on.
pub fn instruction(event: &Event) -> Option<Instruction> {
    let object = &event.data.object;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let kind = event.kind.as_str();
    let change = match kind {
        "payment_intent.succeeded" | "checkout.session.async_payment_succeeded" => Change::Pay,
        "checkout.session.completed" if object.get("payment_status").and_then(Value::as_str) == Some("paid") => {
            Change::Pay
        }
        "payment_intent.payment_failed" | "checkout.session.async_payment_failed" => Change::Fail,
        "payment_intent.canceled" | "checkout.session.expired" => Change::Cancel,
        "charge.refunded" => Change::Refund { refunded_minor: object.get("amount_refunded").and_then(Value::as_i64)? },
        _ => return None,
    };
    let object_id = object.get("id").and_then(text);
    let (payment_intent, session, amount) = if kind.starts_with("payment_intent.") {
        (object_id, None, object.get("amount").and_then(Value::as_i64))
    } else if kind.starts_with("checkout.session.") {
        (object.get("payment_intent").and_then(text), object_id, object.get("amount_total").and_then(Value::as_i64))
    } else {
        (object.get("payment_intent").and_then(text), None, object.get("amount").and_then(Value::as_i64))
    };
    let uuid = |v: Option<String>| v.and_then(|s| Uuid::parse_str(&s).ok());
    Some(Instruction {
        change,
        order_id: uuid(
            object
                .pointer("/metadata/order_id")
                .and_then(text)
                .or_else(|| object.get("client_reference_id").and_then(text)),
        ),
        tenant_id: uuid(object.pointer("/metadata/tenant_id").and_then(text)),
        payment_intent,
        session,
        amount,
        currency: object.get("currency").and_then(text),
    })
}

/// An order as the webhook sees it (read under a system transaction, locked).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderState {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub refunded_minor: i64,
    pub stripe_payment_intent_id: Option<String>,
    pub stripe_checkout_session_id: Option<String>,
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Set the order's status and refunded amount, and attach the Stripe ids it lacks.
    Apply { order: Uuid, tenant: Uuid, status: &'static str, refunded_minor: i64 },
    /// A valid event with nothing to change (an order already past it).
    Ignore { order: Uuid, tenant: Uuid, why: String },
    /// No order of ours.
    Unmatched,
    /// The event and our orders disagree: kept for an operator, nothing changed.
    Conflict { order: Option<Uuid>, tenant: Option<Uuid>, why: String },
}

/// Judges `instruction` against the orders it names (by our id, PaymentIntent or
/// session). Exactly one order may match, of the tenant the event names if it names
/// one, with the Stripe ids it already has, for the amount and currency it was placed
/// at; only then does the status move, and only forward.
pub fn decide(instruction: &Instruction, candidates: &[OrderState]) -> Decision {
    let order = match candidates {
        [] => return Decision::Unmatched,
        [one] => one,
        many => {
            let ids: Vec<String> = many.iter().map(|o| o.id.to_string()).collect();
            return Decision::Conflict {
                order: None,
                tenant: None,
                why: format!("the event's ids name {} different orders: {}", many.len(), ids.join(", ")),
            };
        }
    };
    let conflict = |why: String| Decision::Conflict { order: Some(order.id), tenant: Some(order.tenant_id), why };
    if let Some(t) = instruction.tenant_id
        && t != order.tenant_id
    {
        return conflict(format!("metadata.tenant_id {t} is not the order's tenant"));
    }
    if let (Some(ours), Some(theirs)) = (&order.stripe_payment_intent_id, &instruction.payment_intent)
        && ours != theirs
    {
        return conflict(format!("the order is paid through PaymentIntent {ours}, the event names {theirs}"));
    }
    if let (Some(ours), Some(theirs)) = (&order.stripe_checkout_session_id, &instruction.session)
        && ours != theirs
    {
        return conflict(format!("the order belongs to Checkout Session {ours}, the event names {theirs}"));
    }
    let (Some(amount), Some(currency)) = (instruction.amount, instruction.currency.as_deref()) else {
        return conflict("the event carries no amount or currency to check against the order".into());
    };
    if !currency.eq_ignore_ascii_case(order.currency.trim()) {
        return conflict(format!("currency {currency} is not the order's {}", order.currency.trim()));
    }
    if amount != order.amount_minor {
        return conflict(format!("amount {amount} is not the order's {}", order.amount_minor));
    }
    let ignore = |why: String| Decision::Ignore { order: order.id, tenant: order.tenant_id, why };
    let (status, refunded_minor) = match instruction.change {
        Change::Pay if matches!(order.status.as_str(), "pending" | "failed") => ("paid", order.refunded_minor),
        Change::Fail | Change::Cancel if order.status != "pending" => {
            return ignore(format!("the order is already {}", order.status));
        }
        Change::Fail => ("failed", order.refunded_minor),
        Change::Cancel => ("cancelled", order.refunded_minor),
        Change::Refund { refunded_minor } => {
            if !(0..=order.amount_minor).contains(&refunded_minor) {
                return conflict(format!("amount_refunded {refunded_minor} is outside 0..={}", order.amount_minor));
            }
            if !matches!(order.status.as_str(), "paid" | "refunded") {
                return conflict(format!("a refund for an order that is {}", order.status));
            }
            if refunded_minor <= order.refunded_minor {
                return ignore(format!("{} of it was already refunded", order.refunded_minor));
            }
            (if refunded_minor == order.amount_minor { "refunded" } else { "paid" }, refunded_minor)
        }
        Change::Pay => return ignore(format!("the order is already {}", order.status)),
    };
    Decision::Apply { order: order.id, tenant: order.tenant_id, status, refunded_minor }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(status: &str) -> OrderState {
        OrderState {
            id: Uuid::from_u128(1),
            tenant_id: Uuid::from_u128(10),
            status: status.into(),
            amount_minor: 4900,
            currency: "USD".into(),
            refunded_minor: 0,
            stripe_payment_intent_id: Some("pi_1".into()),
            stripe_checkout_session_id: None,
        }
    }

    fn event(kind: &str, object: Value) -> Instruction {
        instruction(&Event { id: "evt".into(), kind: kind.into(), created: 0, data: EventData { object } }).unwrap()
    }

    #[test]
    fn reads_ids_amounts_and_currency_from_each_object() {
        let i = event(
            "checkout.session.completed",
            json!({"id": "cs_1", "payment_status": "paid", "payment_intent": "pi_1", "amount_total": 4900, "currency": "usd",
                   "client_reference_id": Uuid::from_u128(1).to_string(), "metadata": {"tenant_id": Uuid::from_u128(10).to_string()}}),
        );
        assert_eq!(
            (i.change, i.session.as_deref(), i.payment_intent.as_deref(), i.amount, i.order_id, i.tenant_id),
            (Change::Pay, Some("cs_1"), Some("pi_1"), Some(4900), Some(Uuid::from_u128(1)), Some(Uuid::from_u128(10)))
        );
        let unpaid = Event {
            id: "e".into(),
            kind: "checkout.session.completed".into(),
            created: 0,
            data: EventData { object: json!({"id": "cs_1", "payment_status": "unpaid"}) },
        };
        assert_eq!(instruction(&unpaid), None, "a session completed without payment pays nothing");
        let refund = event(
            "charge.refunded",
            json!({"id": "ch_1", "payment_intent": "pi_1", "amount": 4900, "amount_refunded": 900, "currency": "usd"}),
        );
        assert_eq!(refund.change, Change::Refund { refunded_minor: 900 });
    }

    #[test]
    fn only_one_order_of_the_right_tenant_amount_and_currency_moves() {
        let pay = |object: Value| event("payment_intent.succeeded", object);
        let ok = pay(json!({"id": "pi_1", "amount": 4900, "currency": "usd"}));
        assert!(matches!(decide(&ok, &[order("pending")]), Decision::Apply { status: "paid", .. }));
        assert_eq!(decide(&ok, &[]), Decision::Unmatched);
        let mut other = order("pending");
        other.id = Uuid::from_u128(2);
        assert!(matches!(decide(&ok, &[order("pending"), other]), Decision::Conflict { order: None, .. }));
        for bad in [
            json!({"id": "pi_1", "amount": 4899, "currency": "usd"}),
            json!({"id": "pi_1", "amount": 4900, "currency": "eur"}),
            json!({"id": "pi_1", "amount": 4900}),
            json!({"id": "pi_1", "amount": 4900, "currency": "usd", "metadata": {"tenant_id": Uuid::from_u128(11).to_string()}}),
            json!({"id": "pi_other", "amount": 4900, "currency": "usd"}),
        ] {
            assert!(matches!(decide(&pay(bad.clone()), &[order("pending")]), Decision::Conflict { .. }), "{bad}");
        }
        assert!(matches!(decide(&ok, &[order("refunded")]), Decision::Ignore { .. }), "never paid twice");
    }

    #[test]
    fn refunds_are_amounts_and_only_a_full_one_refunds_the_order() {
        let refund = |n: i64| {
            event(
                "charge.refunded",
                json!({"id": "ch", "payment_intent": "pi_1", "amount": 4900, "amount_refunded": n, "currency": "usd"}),
            )
        };
        assert!(matches!(
            decide(&refund(1000), &[order("paid")]),
            Decision::Apply { status: "paid", refunded_minor: 1000, .. }
        ));
        let mut partly = order("paid");
        partly.refunded_minor = 1000;
        assert!(
            matches!(decide(&refund(1000), &[partly.clone()]), Decision::Ignore { .. }),
            "a replayed partial refund"
        );
        assert!(matches!(
            decide(&refund(4900), &[partly]),
            Decision::Apply { status: "refunded", refunded_minor: 4900, .. }
        ));
        assert!(matches!(decide(&refund(5000), &[order("paid")]), Decision::Conflict { .. }));
        assert!(matches!(decide(&refund(100), &[order("pending")]), Decision::Conflict { .. }));
    }
}
