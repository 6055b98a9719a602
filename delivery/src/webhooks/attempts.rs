//! The rows behind deliveries: an endpoint's lease, its due deliveries, and each attempt's
//! record. Every function is one short transaction; none is open while a receiver is
//! being called.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};
use sqlx::PgPool;
use uuid::Uuid;

use super::WebhookSettings;

/// An endpoint leased by this worker.
#[derive(sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    /// The secret before a rotation, while it still signs (a day).
    pub previous_secret: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A delivery whose time has come, with the body every attempt sends unchanged.
#[derive(Debug, sqlx::FromRow)]
pub struct Due {
    pub id: Uuid,
    /// The `webhook-id`.
    pub event_id: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub body: String,
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status_code: Option<u16>,
    /// Why it failed (None after a 2xx).
    pub error: Option<String>,
    /// The start of the receiver's answer.
    pub response: Option<String>,
    pub duration_ms: i32,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// Where a delivery stands after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered,
    /// Another attempt at this time.
    Retrying(DateTime<Utc>),
    /// Out of retries; the endpoint was disabled by this failure when `disabled`.
    Failed {
        disabled: bool,
    },
}

/// Takes the endpoint for `lease` unless it is disabled or another worker holds it.
#[tracing::instrument(skip(pool))]
pub async fn lease(
    pool: &PgPool,
    tenant: TenantId,
    endpoint: Uuid,
    lease: Duration,
) -> Result<Option<Endpoint>, sqlx::Error> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let taken = sqlx::query_as(
        "update webhook_endpoints set busy_until = now() + make_interval(secs => $3)
         where tenant_id = $1 and id = $2 and enabled and (busy_until is null or busy_until < now())
         returning id, url, secret, case when previous_secret_until > now() then previous_secret end as previous_secret",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(taken)
}

#[tracing::instrument(skip(pool))]
pub async fn release(pool: &PgPool, tenant: TenantId, endpoint: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    sqlx::query("update webhook_endpoints set busy_until = null where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The endpoint's due deliveries, oldest first.
#[tracing::instrument(skip(pool))]
pub async fn due(pool: &PgPool, tenant: TenantId, endpoint: Uuid, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let due = sqlx::query_as(
        "select d.id, d.event_id, d.attempts, e.payload::text as body
         from webhook_deliveries d join webhook_events e on e.id = d.event_id
         where d.tenant_id = $1 and d.endpoint_id = $2 and d.status = 'pending' and d.next_attempt_at <= now()
         order by d.next_attempt_at, d.created_at limit $3",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(due)
}

/// Records an attempt and moves the delivery on: delivered, another attempt after the
/// schedule's next wait, or failed when the schedule is spent. A failed delivery disables
/// the endpoint when nothing reached it since failures began a whole retry span ago (one
/// flaky answer among successes does not).
#[tracing::instrument(skip(pool, outcome, settings), fields(delivery = %due.id))]
pub async fn record(
    pool: &PgPool,
    tenant: TenantId,
    endpoint: Uuid,
    due: &Due,
    outcome: &Outcome,
    settings: &WebhookSettings,
) -> Result<Recorded, sqlx::Error> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    sqlx::query(
        "insert into webhook_attempts (tenant_id, delivery_id, status_code, error, response, duration_ms)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant)
    .bind(due.id)
    .bind(outcome.status_code.map(i32::from))
    .bind(&outcome.error)
    .bind(&outcome.response)
    .bind(outcome.duration_ms)
    .execute(&mut *tx)
    .await?;
    let made = due.attempts.saturating_add(1);
    let wait = usize::try_from(made - 1).ok().and_then(|i| settings.schedule.get(i).copied());
    let (status, next) = match (outcome.delivered(), wait) {
        (true, _) => ("delivered", None),
        (false, Some(wait)) => ("pending", Some(wait)),
        (false, None) => ("failed", None),
    };
    let next_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "update webhook_deliveries set status = $3, attempts = $4, last_attempt_at = now(),
            last_status_code = $5, last_error = $6,
            delivered_at = case when $3 = 'delivered' then now() end,
            next_attempt_at = coalesce(now() + make_interval(secs => $7), next_attempt_at)
         where tenant_id = $1 and id = $2
         returning case when status = 'pending' then next_attempt_at end",
    )
    .bind(tenant)
    .bind(due.id)
    .bind(status)
    .bind(made)
    .bind(outcome.status_code.map(i32::from))
    .bind(&outcome.error)
    .bind(next.map(|w| w.as_secs_f64()))
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    let recorded = if outcome.delivered() {
        sqlx::query("update webhook_endpoints set failing_since = null where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(endpoint)
            .execute(&mut *tx)
            .await?;
        Recorded::Delivered
    } else {
        sqlx::query(
            "update webhook_endpoints set failing_since = coalesce(failing_since, now()) where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
        match next_at {
            Some(at) => Recorded::Retrying(at),
            None => {
                let reason = format!(
                    "disabled after {made} failed attempts over {}; last: {}",
                    span(settings.retry_span()),
                    outcome.error.as_deref().unwrap_or("unknown")
                );
                let disabled = sqlx::query(
                    "update webhook_endpoints set enabled = false, disabled_at = now(), disabled_reason = $3,
                        busy_until = null
                     where tenant_id = $1 and id = $2 and enabled
                       and failing_since <= now() - make_interval(secs => $4)",
                )
                .bind(tenant)
                .bind(endpoint)
                .bind(&reason)
                .bind(settings.retry_span().as_secs_f64())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                Recorded::Failed { disabled }
            }
        }
    };
    tx.commit().await?;
    Ok(recorded)
}

fn span(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 => format!("{:.1} h", s as f64 / 3600.0),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
