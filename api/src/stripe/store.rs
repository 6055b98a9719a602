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
