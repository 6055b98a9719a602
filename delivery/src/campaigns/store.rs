//! The only writer of campaign and recipient status (`outbound_campaigns.status`,
//! `outbound_campaign_recipients.status` and their milestone timestamps): the API's
//! actions, the scheduler, the send jobs, provider callbacks and tracking links all come
//! here, so the claim protocol and the move table cannot be bypassed by a second copy of
//! an `update`. Everything runs in the caller's transaction unless it takes a pool.

use fibonacco_platform::{TenantId, db};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::CampaignStatus;
use crate::links::RecipientRef;

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("a {from} campaign cannot become {to}")]
    Refused { from: CampaignStatus, to: CampaignStatus },
    #[error("the campaign's status `{0}` is unknown")]
    Unknown(String),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Locks the campaign for the rest of the transaction; returns (type, status).
#[tracing::instrument(name = "campaigns.lock", skip(conn), err)]
pub async fn lock(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("select type, status from outbound_campaigns where tenant_id = $1 and id = $2 for update")
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The tenant that owns a campaign, read past row-level security: provider callbacks
/// carry a campaign id and a signature, not a tenant token.
#[tracing::instrument(name = "campaigns.tenant_of", skip(pool), err)]
pub async fn tenant_of(pool: &PgPool, id: Uuid) -> Result<Option<TenantId>, sqlx::Error> {
    let mut tx = db::begin_system(pool).await?;
    let tenant: Option<Uuid> = sqlx::query_scalar("select tenant_id from outbound_campaigns where id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(tenant.map(TenantId::from_uuid))
}

/// The campaign's template/script id for its type.
#[tracing::instrument(name = "campaigns.content_id", skip(conn), err)]
pub async fn content_id(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select coalesce(email_template_id, sms_template_id, phone_script_id) from outbound_campaigns
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(name = "campaigns.recipient_count", skip(conn), err)]
pub async fn recipient_count(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from outbound_campaign_recipients where tenant_id = $1 and campaign_id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Whether the content a campaign of `kind` points at exists in the tenant.
#[tracing::instrument(name = "campaigns.content_exists", skip(conn), err)]
pub async fn content_exists(
    conn: &mut PgConnection,
    tenant: TenantId,
    kind: &str,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let table = match kind {
        "email" => "email_templates",
        "sms" => "sms_templates",
        _ => "phone_scripts",
    };
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select exists (select 1 from {table} where tenant_id = $1 and id = $2)"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Moves a locked campaign from `from` to `to` through the table of moves
/// ([`CampaignStatus::can_become`]). Starting stamps `started_at`; a final status stamps
/// `completed_at`.
#[tracing::instrument(name = "campaigns.set_status", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn set_status(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    from: &str,
    to: CampaignStatus,
) -> Result<(), MoveError> {
    let from = CampaignStatus::parse(from).ok_or_else(|| MoveError::Unknown(from.to_owned()))?;
    if !from.can_become(to) {
        return Err(MoveError::Refused { from, to });
    }
    sqlx::query(
        "update outbound_campaigns set status = $3,
            started_at = case when $4 then now() else started_at end,
            completed_at = case when $3 in ('completed', 'cancelled') then coalesce(completed_at, now()) else completed_at end
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(to.as_str())
    .bind(to == CampaignStatus::Running && from.editable())
    .execute(conn)
    .await?;
    Ok(())
}

/// A scheduled campaign that cannot start goes back to draft with the reason in its
/// metadata (`schedule_error`).
#[tracing::instrument(name = "campaigns.send_back_to_draft", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn send_back_to_draft(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbound_campaigns set status = 'draft',
            metadata = metadata || jsonb_build_object('schedule_error', $3::text)
         where tenant_id = $1 and id = $2 and status = 'scheduled'",
    )
    .bind(tenant)
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// A running campaign whose recipients are all past pending and queued is completed.
#[tracing::instrument(name = "campaigns.complete_if_done", skip(pool), err)]
pub async fn complete_if_done(pool: &PgPool, tenant: TenantId, campaign: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let done = sqlx::query(
        "update outbound_campaigns set status = 'completed', completed_at = now()
         where tenant_id = $1 and id = $2 and status = 'running'
           and not exists (select 1 from outbound_campaign_recipients
                           where campaign_id = $2 and status in ('pending', 'queued'))",
    )
    .bind(tenant)
    .bind(campaign)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    tx.commit().await?;
    if done {
        tracing::info!("campaign completed");
    }
    Ok(done)
}

/// The job batch of the campaign's latest dispatch (its progress shows in analytics).
#[tracing::instrument(name = "campaigns.set_last_batch", skip(conn), err)]
pub async fn set_last_batch(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    batch: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("update outbound_campaigns set last_batch_id = $3 where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .bind(batch)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "campaigns.pending_count", skip(conn), err)]
pub async fn pending_count(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from outbound_campaign_recipients where tenant_id = $1 and campaign_id = $2 and status = 'pending'",
    )
    .bind(tenant)
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Up to `limit` pending recipients with ids after `after`, in id order.
#[tracing::instrument(name = "campaigns.pending_after", skip(conn), err)]
pub async fn pending_after(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    after: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select id from outbound_campaign_recipients
         where tenant_id = $1 and campaign_id = $2 and status = 'pending' and id > $3 order by id limit $4",
    )
    .bind(tenant)
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Pending recipients whose send jobs were pushed become `queued`.
#[tracing::instrument(name = "campaigns.mark_queued", skip(conn, ids), fields(n = ids.len()), err)]
pub async fn mark_queued(conn: &mut PgConnection, tenant: TenantId, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbound_campaign_recipients set status = 'queued', queued_at = now()
         where tenant_id = $1 and id = any($2) and status = 'pending'",
    )
    .bind(tenant)
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// A queued recipient of a paused campaign goes back to pending (so `resume` dispatches
/// it again) unless a live claim holds it or it was sent.
#[tracing::instrument(name = "campaigns.back_to_pending", skip(conn), err)]
pub async fn back_to_pending(
    conn: &mut PgConnection,
    tenant: TenantId,
    recipient: Uuid,
    lease: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbound_campaign_recipients set status = 'pending', queued_at = null
         where tenant_id = $1 and id = $2 and status = 'queued' and provider_message_id is null
           and (claimed_at is null or claimed_at < now() - $3::interval)",
    )
    .bind(tenant)
    .bind(recipient)
    .bind(lease)
    .execute(conn)
    .await?;
    Ok(())
}

/// The claim: a recipient with no provider message id and no live claim is taken by
/// `claim`. `failed` is claimable so a job retried from failed_jobs can send once the
/// cause is fixed; a recipient with a provider message id never is. Returns the
/// recipient's customer when claimed.
#[tracing::instrument(name = "campaigns.claim", skip(conn), err)]
pub async fn claim(
    conn: &mut PgConnection,
    tenant: TenantId,
    recipient: Uuid,
    claim: Uuid,
    lease: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "update outbound_campaign_recipients set claim_token = $3, claimed_at = now(), attempts = attempts + 1
         where tenant_id = $1 and id = $2 and status in ('pending', 'queued', 'failed') and provider_message_id is null
           and (claimed_at is null or claimed_at < now() - $4::interval or claim_token = $3)
         returning customer_id",
    )
    .bind(tenant)
    .bind(recipient)
    .bind(claim)
    .bind(lease)
    .fetch_optional(conn)
    .await
}

/// How a claimed send ended.
pub enum Finish<'a> {
    /// The provider accepted; its message id.
    Sent(&'a str),
    /// Give the claim back; the job is retried.
    Release(&'a str),
    Failed(&'a str),
    Unsubscribed,
}

/// Records a claimed send's end and lets go of the claim (only the claim's holder can).
#[tracing::instrument(name = "campaigns.finish", skip(conn, how), err)]
pub async fn finish(
    conn: &mut PgConnection,
    tenant: TenantId,
    recipient: Uuid,
    claim: Uuid,
    how: Finish<'_>,
) -> Result<(), sqlx::Error> {
    let (status, message_id, error): (Option<&str>, Option<&str>, Option<&str>) = match how {
        Finish::Sent(id) => (Some("sent"), Some(id), None),
        Finish::Release(e) => (None, None, Some(e)),
        Finish::Failed(e) => (Some("failed"), None, Some(e)),
        Finish::Unsubscribed => (Some("unsubscribed"), None, None),
    };
    sqlx::query(
        "update outbound_campaign_recipients set
            status = coalesce($4, status),
            provider_message_id = coalesce($5, provider_message_id),
            error = case when $4 = 'sent' then null else coalesce($6, error) end,
            sent_at = case when $4 = 'sent' then now() else sent_at end,
            unsubscribed_at = case when $4 = 'unsubscribed' then coalesce(unsubscribed_at, now()) else unsubscribed_at end,
            claim_token = null, claimed_at = null
         where tenant_id = $1 and id = $2 and claim_token = $3",
    )
    .bind(tenant)
    .bind(recipient)
    .bind(claim)
    .bind(status)
    .bind(message_id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies a provider status callback to the recipient with `provider_message_id` in the
/// campaign. Returns false when no such recipient exists.
#[tracing::instrument(name = "campaigns.apply_provider_status", skip(conn, sid), fields(tenant_id = %tenant), err)]
pub async fn apply_provider_status(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    sid: &str,
    status: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "update outbound_campaign_recipients set status = $4,
            sent_at = case when $4 in ('sent', 'delivered', 'answered', 'voicemail', 'replied') then coalesce(sent_at, now()) else sent_at end,
            delivered_at = case when $4 in ('delivered', 'answered', 'voicemail') then coalesce(delivered_at, now()) else delivered_at end,
            replied_at = case when $4 = 'replied' then coalesce(replied_at, now()) else replied_at end
         where tenant_id = $1 and campaign_id = $2 and provider_message_id = $3",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(sid)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// What a recipient did with a tracked e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Open,
    Click,
    Unsubscribe,
}

impl Engagement {
    fn update(self) -> &'static str {
        match self {
            Self::Open => {
                "update outbound_campaign_recipients set
                    opened_at = coalesce(opened_at, now()),
                    status = case when status in ('sent', 'delivered') then 'opened' else status end
                 where tenant_id = $1 and id = $2 and sent_at is not null
                 returning customer_id, campaign_id, old.opened_at is null as first"
            }
            Self::Click => {
                "update outbound_campaign_recipients set
                    opened_at = coalesce(opened_at, now()),
                    clicked_at = coalesce(clicked_at, now()),
                    status = case when status in ('sent', 'delivered', 'opened') then 'clicked' else status end
                 where tenant_id = $1 and id = $2 and sent_at is not null
                 returning customer_id, campaign_id, old.clicked_at is null as first"
            }
            Self::Unsubscribe => {
                "update outbound_campaign_recipients set
                    unsubscribed_at = coalesce(unsubscribed_at, now()), status = 'unsubscribed'
                 where tenant_id = $1 and id = $2
                 returning customer_id, campaign_id, old.unsubscribed_at is null as first"
            }
        }
    }

    fn activity(self) -> &'static str {
        match self {
            Self::Open => "email_open",
            Self::Click => "email_click",
            Self::Unsubscribe => "unsubscribe",
        }
    }

    /// Clicks are activities every time (each says where it went); opens and
    /// unsubscribes only the first time.
    fn every_time(self) -> bool {
        self == Self::Click
    }
}

/// The recipient's customer and campaign, and whether the engagement was its first.
#[derive(Debug, sqlx::FromRow)]
pub struct Touched {
    pub customer_id: Uuid,
    pub campaign_id: Uuid,
    pub first: bool,
}

/// Records an engagement on the recipient and as customer activity; an unsubscribe also
/// unsubscribes the customer from every later campaign. `None` when the link names no
/// recipient (or, for opens and clicks, one that was never sent).
#[tracing::instrument(name = "campaigns.record_engagement", skip(pool, metadata), fields(tenant_id = %who.tenant), err)]
pub async fn record_engagement(
    pool: &PgPool,
    who: RecipientRef,
    what: Engagement,
    metadata: serde_json::Value,
) -> Result<Option<Touched>, sqlx::Error> {
    let mut tx = db::begin_tenant(pool, who.tenant).await?;
    let touched: Option<Touched> = sqlx::query_as(sqlx::AssertSqlSafe(what.update()))
        .bind(who.tenant)
        .bind(who.recipient)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(t) = &touched
        && (t.first || what.every_time())
    {
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id,
                campaign_id, metadata)
             values ($1, $2, $3, 'email', 'outbound_campaign', $4, $4, $5)",
        )
        .bind(who.tenant)
        .bind(t.customer_id)
        .bind(what.activity())
        .bind(t.campaign_id)
        .bind(metadata)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(t) = &touched
        && what == Engagement::Unsubscribe
    {
        sqlx::query(
            "update crm_customers set unsubscribed_at = coalesce(unsubscribed_at, now()) where tenant_id = $1 and id = $2",
        )
        .bind(who.tenant)
        .bind(t.customer_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(touched)
}
