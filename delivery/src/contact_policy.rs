//! Frequency caps: per tenant and channel, at most N messages to one customer within a
//! window, across campaigns (`contact_policies`). A send job checks its claimed recipients
//! in the claim's transaction: it takes an advisory lock per customer (in a fixed order),
//! counts the customer's other attempts on the channel in the window (claims not yet
//! answered and unknown outcomes included; what certainly never went out excluded), and admits recipients in order while the count is
//! under the cap. The others end `failed` with the reason. Two jobs for one customer at
//! once take turns on the lock, so two overlapping campaigns cannot both pass the cap.

use std::collections::HashMap;

use fibonacco_platform::TenantId;
use sqlx::PgConnection;
use uuid::Uuid;

pub const CHANNELS: &[&str] = &["email", "sms", "phone"];

/// A tenant's rules for one channel (read with a send job's claims, `store::claim_sends`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Policy {
    pub max_messages: Option<i32>,
    pub window_hours: Option<i32>,
    /// Send only to customers who opted in on the channel (`customer_consents`).
    pub require_consent: bool,
}

impl Policy {
    pub fn cap(&self) -> Option<Cap> {
        Some(Cap { max_messages: self.max_messages?, window_hours: self.window_hours? })
    }
}

/// A frequency cap: at most `max_messages` within `window_hours`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub max_messages: i32,
    pub window_hours: i32,
}

impl Cap {
    /// The reason a capped recipient ends with.
    pub fn reason(&self, channel: &str) -> String {
        format!(
            "frequency cap: at most {} {channel} message{} per {} hours to one customer",
            self.max_messages,
            if self.max_messages == 1 { "" } else { "s" },
            self.window_hours
        )
    }
}

/// Of `customers`, those who have not opted in on `channel` (no record, or opted out).
#[tracing::instrument(name = "contact_policy.without_consent", skip(conn, customers), fields(tenant_id = %tenant), err)]
pub async fn without_consent(
    conn: &mut PgConnection,
    tenant: TenantId,
    channel: &str,
    customers: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let granted: Vec<Uuid> = sqlx::query_scalar(
        "select customer_id from customer_consents
         where tenant_id = $1 and channel = $2 and granted and customer_id = any($3)",
    )
    .bind(tenant)
    .bind(channel)
    .bind(customers)
    .fetch_all(conn)
    .await?;
    Ok(customers.iter().copied().filter(|c| !granted.contains(c)).collect())
}

/// Of `claimed` (recipient, customer) pairs, in order, the recipients the cap does not
/// admit. Locks each customer for the rest of the caller's transaction.
#[tracing::instrument(name = "contact_policy.over_cap", skip(conn, claimed), fields(tenant_id = %tenant, n = claimed.len()), err)]
pub async fn over_cap(
    conn: &mut PgConnection,
    tenant: TenantId,
    channel: &str,
    cap: Cap,
    claimed: &[(Uuid, Uuid)],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let mut customers: Vec<Uuid> = claimed.iter().map(|(_, c)| *c).collect();
    customers.sort_unstable();
    customers.dedup();
    let recipients: Vec<Uuid> = claimed.iter().map(|(r, _)| *r).collect();
    // One lock per customer, taken in key order so two jobs cannot deadlock on them.
    sqlx::query(
        "select count(pg_advisory_xact_lock(k)) from (
           select hashtextextended('contact:' || $1::text || ':' || c::text, 0) as k
           from unnest($2::uuid[]) as c order by 1) locks",
    )
    .bind(tenant)
    .bind(&customers)
    .execute(&mut *conn)
    .await?;
    let counted: Vec<(Uuid, i64)> = sqlx::query_as(
        "select r.customer_id, count(*) from outbound_campaign_recipients r
         join outbound_campaigns c on c.id = r.campaign_id
         where r.tenant_id = $1 and r.customer_id = any($2) and c.type = $3
           and r.attempted_at is not null and r.attempted_at > now() - make_interval(hours => $4)
           and r.status not in ('pending', 'queued', 'failed', 'unsubscribed') and r.id <> all($5)
         group by r.customer_id",
    )
    .bind(tenant)
    .bind(&customers)
    .bind(channel)
    .bind(cap.window_hours)
    .bind(&recipients)
    .fetch_all(&mut *conn)
    .await?;
    let mut sent: HashMap<Uuid, i64> = counted.into_iter().collect();
    let mut over = Vec::new();
    for (recipient, customer) in claimed {
        let n = sent.entry(*customer).or_default();
        if *n >= i64::from(cap.max_messages) {
            over.push(*recipient);
        } else {
            *n += 1;
        }
    }
    Ok(over)
}
