//! The webhook's SQL. Events span tenants (the order says which), so these run in a
//! system transaction; each change is then made to one order, by its primary key.

use sqlx::PgConnection;
use uuid::Uuid;

use super::event::OrderState;

/// Records the event by id; false when it was seen before (a replay changes nothing).
#[tracing::instrument(skip(conn, payload), err)]
pub async fn record(
    conn: &mut PgConnection,
    id: &str,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("insert into stripe_events (id, type, payload) values ($1, $2, $3) on conflict (id) do nothing")
        .bind(id)
        .bind(kind)
        .bind(payload)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// What became of the event, and the order it concerned.
#[tracing::instrument(skip(conn, detail), err)]
pub async fn outcome(
    conn: &mut PgConnection,
    id: &str,
    outcome: &str,
    detail: Option<&str>,
    order: Option<Uuid>,
    tenant: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query("update stripe_events set outcome = $2, detail = $3, order_id = $4, tenant_id = $5 where id = $1")
        .bind(id)
        .bind(outcome)
        .bind(detail)
        .bind(order)
        .bind(tenant)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every order the event's ids name, locked until the transaction ends.
#[tracing::instrument(skip(conn), err)]
pub async fn candidates(
    conn: &mut PgConnection,
    order_id: Option<Uuid>,
    payment_intent: Option<&str>,
    session: Option<&str>,
) -> Result<Vec<OrderState>, sqlx::Error> {
    sqlx::query_as(
        "select id, tenant_id, status, amount_minor, trim(currency) as currency, refunded_minor,
                stripe_payment_intent_id, stripe_checkout_session_id
         from orders
         where id = $1 or ($2::text is not null and stripe_payment_intent_id = $2)
            or ($3::text is not null and stripe_checkout_session_id = $3)
         order by id for update",
    )
    .bind(order_id)
    .bind(payment_intent)
    .bind(session)
    .fetch_all(conn)
    .await
}

/// Moves one order (the decision's), attaching the Stripe ids it did not have yet.
#[tracing::instrument(skip(conn), err)]
pub async fn apply(
    conn: &mut PgConnection,
    order: Uuid,
    status: &str,
    refunded_minor: i64,
    payment_intent: Option<&str>,
    session: Option<&str>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "update orders set status = $2, refunded_minor = $3,
            paid_at = case when $2 = 'paid' then coalesce(paid_at, now()) else paid_at end,
            refunded_at = case when $2 = 'refunded' then coalesce(refunded_at, now()) else refunded_at end,
            stripe_payment_intent_id = coalesce(stripe_payment_intent_id, $4),
            stripe_checkout_session_id = coalesce(stripe_checkout_session_id, $5)
         where id = $1",
    )
    .bind(order)
    .bind(status)
    .bind(refunded_minor)
    .bind(payment_intent)
    .bind(session)
    .execute(conn)
    .await?
    .rows_affected())
}

/// An event kept because it disagreed with our orders.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct Conflict {
    pub id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub processed_at: chrono::DateTime<chrono::Utc>,
    pub order_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub detail: Option<String>,
}

/// The most recent conflicts, newest first, for an operator (`fibonacco stripe conflicts`).
#[tracing::instrument(skip(conn), err)]
pub async fn conflicts(conn: &mut PgConnection, limit: i64) -> Result<Vec<Conflict>, sqlx::Error> {
    sqlx::query_as(
        "select id, type, processed_at, order_id, tenant_id, detail from stripe_events
         where outcome = 'conflict' order by processed_at desc, id limit $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A purchase activity for a paid order with a customer (the engagement score's commerce
/// input), once per order.
#[tracing::instrument(skip(conn), err)]
pub async fn record_purchase(conn: &mut PgConnection, order: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id,
            campaign_id, value_minor, currency)
         select o.tenant_id, o.customer_id, 'purchase', 'web', 'order', o.id, o.campaign_id, o.amount_minor, o.currency
         from orders o
         where o.id = $1 and o.customer_id is not null and o.status = 'paid'
           and not exists (select 1 from customer_activities a where a.tenant_id = o.tenant_id
                           and a.customer_id = o.customer_id and a.activity_type = 'purchase'
                           and a.subject_type = 'order' and a.subject_id = o.id)",
    )
    .bind(order)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every subscription a billing event names (by Stripe's id or ours), locked.
#[tracing::instrument(skip(conn), err)]
pub async fn subscription_candidates(
    conn: &mut PgConnection,
    stripe_id: &str,
    ours: Option<Uuid>,
) -> Result<Vec<super::billing::SubscriptionState>, sqlx::Error> {
    sqlx::query_as(
        "select id, tenant_id, customer_id, service_id, status, amount_minor, trim(currency) as currency,
                stripe_subscription_id, stripe_event_at
         from subscriptions where stripe_subscription_id = $1 or id = $2 order by id for update",
    )
    .bind(stripe_id)
    .bind(ours)
    .fetch_all(conn)
    .await
}

fn at(secs: Option<i64>) -> Option<chrono::DateTime<chrono::Utc>> {
    secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
}

/// Takes Stripe's state of a subscription (an event's, or an API answer's when `event_at`
/// is `None`: then stamped now, to the second, like Stripe's own event times).
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip(conn), err)]
pub async fn set_subscription_state(
    conn: &mut PgConnection,
    id: Uuid,
    stripe_id: &str,
    status: &str,
    cancel_at_period_end: bool,
    current_period_end: Option<i64>,
    canceled_at: Option<i64>,
    ended_at: Option<i64>,
    event_at: Option<i64>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "update subscriptions set stripe_subscription_id = coalesce(stripe_subscription_id, $2), status = $3,
            cancel_at_period_end = $4, current_period_end = coalesce($5, current_period_end),
            canceled_at = coalesce($6, canceled_at), ended_at = coalesce($7, ended_at),
            stripe_event_at = greatest(stripe_event_at, coalesce($8, date_trunc('second', now())))
         where id = $1",
    )
    .bind(id)
    .bind(stripe_id)
    .bind(status)
    .bind(cancel_at_period_end)
    .bind(at(current_period_end))
    .bind(at(canceled_at))
    .bind(at(ended_at))
    .bind(at(event_at))
    .execute(conn)
    .await?
    .rows_affected())
}

/// A paid renewal: a paid order for the invoice (once; false when it exists), a purchase
/// activity, the subscription active (unless it has ended) through the paid period.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip(conn), err)]
pub async fn renew(
    conn: &mut PgConnection,
    subscription: Uuid,
    stripe_id: &str,
    invoice: &str,
    amount_minor: i64,
    payment_intent: Option<&str>,
    period_end: Option<i64>,
    order_number: &str,
) -> Result<bool, sqlx::Error> {
    let order: Option<Uuid> = sqlx::query_scalar(
        "insert into orders (tenant_id, customer_id, service_id, subscription_id, order_number, status, amount_minor,
            currency, stripe_payment_intent_id, stripe_invoice_id, paid_at)
         select tenant_id, customer_id, service_id, id, $2, 'paid', $3, currency, $4, $5, now()
         from subscriptions where id = $1
         on conflict (stripe_invoice_id) do nothing returning id",
    )
    .bind(subscription)
    .bind(order_number)
    .bind(amount_minor)
    .bind(payment_intent)
    .bind(invoice)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(order) = order {
        record_purchase(conn, order).await?;
    }
    sqlx::query(
        "update subscriptions set stripe_subscription_id = coalesce(stripe_subscription_id, $2),
            status = case when status in ('canceled', 'incomplete_expired') then status else 'active' end,
            current_period_end = greatest(current_period_end, $3)
         where id = $1",
    )
    .bind(subscription)
    .bind(stripe_id)
    .bind(at(period_end))
    .execute(conn)
    .await?;
    Ok(order.is_some())
}

#[tracing::instrument(skip(conn), err)]
pub async fn past_due(conn: &mut PgConnection, subscription: Uuid) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("update subscriptions set status = 'past_due' where id = $1 and status = 'active'")
        .bind(subscription)
        .execute(conn)
        .await?
        .rows_affected())
}
