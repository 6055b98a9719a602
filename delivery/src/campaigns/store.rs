//! The only writer of campaign and recipient status (`outbound_campaigns.status`,
//! `outbound_campaign_recipients.status` and their milestone timestamps): the API's
//! actions, the scheduler, the send jobs, provider callbacks and tracking links all come
//! here, so the claim protocol and the move table cannot be bypassed by a second copy of
//! an `update`. Everything runs in the caller's transaction unless it takes a pool.

use chrono::{DateTime, Utc};
use fibonacco_platform::{
    TenantId,
    db::{self, SafeLiteral},
};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{CampaignStatus, RecipientStatus};
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

/// A running campaign whose recipients are all past pending, queued and sending is completed.
/// Run it after the commit that moved a recipient: inside that transaction, two sends
/// finishing together would each still see the other's recipient open. One round trip,
/// committed without waiting for the WAL flush: a completion lost to a Postgres crash is
/// made again by the sweep ([`complete_finished`]).
#[tracing::instrument(name = "campaigns.complete_if_done", skip(pool), err)]
pub async fn complete_if_done(pool: &PgPool, tenant: TenantId, campaign: Uuid) -> Result<(), sqlx::Error> {
    let update = format!(
        "update outbound_campaigns set status = 'completed', completed_at = now()
         where tenant_id = {tenant} and id = {campaign} and status = 'running'
           and not exists (select 1 from outbound_campaign_recipients
                           where campaign_id = {campaign} and status in ('pending', 'queued', 'sending'))",
        tenant = tenant.sql_literal(),
        campaign = campaign.sql_literal(),
    );
    let mut conn = pool.acquire().await?;
    db::execute_relaxed(&mut conn, Some(tenant), &update).await
}

/// The sweep's safety net: every running campaign with no recipient left open is
/// completed (across tenants).
#[tracing::instrument(name = "campaigns.complete_finished", skip(pool), err)]
pub async fn complete_finished(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = db::begin_system(pool).await?;
    let n = sqlx::query(
        "update outbound_campaigns c set status = 'completed', completed_at = now()
         where c.status = 'running'
           and exists (select 1 from outbound_campaign_recipients r where r.campaign_id = c.id)
           and not exists (select 1 from outbound_campaign_recipients r
                           where r.campaign_id = c.id and r.status in ('pending', 'queued', 'sending'))",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(n)
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
        "select count(*) from outbound_campaign_recipients where tenant_id = $1 and campaign_id = $2 and status = 'pending'
           and (not_before is null or not_before <= now())",
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
         where tenant_id = $1 and campaign_id = $2 and status = 'pending' and id > $3
           and (not_before is null or not_before <= now())
         order by id limit $4",
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

/// Queued recipients of a paused campaign go back to pending (so `resume` dispatches
/// them again) unless a claim holds them or they were sent.
#[tracing::instrument(name = "campaigns.back_to_pending", skip(conn, recipients), fields(n = recipients.len()), err)]
pub async fn back_to_pending(
    conn: &mut PgConnection,
    tenant: TenantId,
    recipients: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbound_campaign_recipients set status = 'pending', queued_at = null
         where tenant_id = $1 and id = any($2) and status = 'queued' and provider_message_id is null
           and claim_token is null",
    )
    .bind(tenant)
    .bind(recipients)
    .execute(conn)
    .await?;
    Ok(())
}

/// The claim, which is also the record of the attempt: a recipient that is pending, queued
/// or failed (never sent), with no provider message id and no claim, becomes `sending`
/// under `claim` with `attempted_at`, in the caller's transaction, which commits before
/// the provider is called. A claim is never taken over, not even by the job that made
/// it: a send that does not finish leaves `sending`, which the sweep turns `unknown`
/// ([`expire_attempts`]). Returns the recipient's customer when claimed.
#[tracing::instrument(name = "campaigns.claim", skip(conn), err)]
pub async fn claim(
    conn: &mut PgConnection,
    tenant: TenantId,
    recipient: Uuid,
    claim: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "update outbound_campaign_recipients
         set status = 'sending', claim_token = $3, claimed_at = now(), attempted_at = now(), attempts = attempts + 1
         where tenant_id = $1 and id = $2 and status in ('pending', 'queued', 'failed')
           and provider_message_id is null and claim_token is null
         returning customer_id",
    )
    .bind(tenant)
    .bind(recipient)
    .bind(claim)
    .fetch_optional(conn)
    .await
}

/// A send job's campaign and, for each recipient this run claimed, the customer: one
/// statement in place of the campaign read, the claims and the customer reads.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedSend {
    /// The campaign's status (claims are only made while it is `running` or `completed`).
    pub campaign_status: String,
    pub email_template_id: Option<Uuid>,
    pub sms_template_id: Option<Uuid>,
    pub phone_script_id: Option<Uuid>,
    /// The campaign's A/B test (`experiments::AbTest`), if it has one.
    pub ab_test: Option<serde_json::Value>,
    /// The claimed recipient's variant in that test (its template), if any.
    pub variant: Option<i16>,
    /// The tenant's contact policy for the campaign's channel, if it has one
    /// (`contact_policies`; `policy_require_consent` is set exactly when there is a row).
    pub policy_max_messages: Option<i32>,
    pub policy_window_hours: Option<i32>,
    pub policy_require_consent: Option<bool>,
    /// Set when this run claimed a recipient; the customer's fields below with it.
    pub recipient_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub customer_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub business_context: Option<serde_json::Value>,
    pub metadata: Option<serde_json::Value>,
    pub unsubscribed: Option<bool>,
    /// When the channel's quiet hours hold now in the customer's time zone (theirs, else
    /// the policy's), the instant they end.
    pub quiet_until: Option<DateTime<Utc>>,
}

/// [`claim`] for each of `recipients` of `campaign`, but only while the campaign is
/// `running` (or `completed`: a job retried from `failed_jobs` for recipients that failed
/// without a message id), reading the campaign, the tenant's contact policy for its
/// channel and the claimed customers in the same statement. No row when the campaign is gone; one row with no recipient when nothing
/// was claimed; else one row per claimed recipient. Every claim carries `claim`.
#[tracing::instrument(name = "campaigns.claim_sends", skip(conn, recipients), fields(n = recipients.len()), err)]
pub async fn claim_sends(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    recipients: &[Uuid],
    claim: Uuid,
) -> Result<Vec<ClaimedSend>, sqlx::Error> {
    sqlx::query_as(
        "with c as (
             select c.status, c.email_template_id, c.sms_template_id, c.phone_script_id, c.ab_test,
                    p.max_messages, p.window_hours, p.require_consent, p.quiet_start, p.quiet_end, p.timezone
             from outbound_campaigns c
             left join contact_policies p on p.tenant_id = c.tenant_id and p.channel = c.type
             where c.tenant_id = $1 and c.id = $2
         ), claimed as (
             update outbound_campaign_recipients
             set status = 'sending', claim_token = $4, claimed_at = now(), attempted_at = now(), attempts = attempts + 1
             where tenant_id = $1 and id = any($3) and campaign_id = $2 and status in ('pending', 'queued', 'failed')
               and provider_message_id is null and claim_token is null
               and exists (select 1 from c where c.status in ('running', 'completed'))
             returning id, customer_id, variant
         )
         select c.status as campaign_status, c.email_template_id, c.sms_template_id, c.phone_script_id, c.ab_test,
                claimed.variant,
                c.max_messages as policy_max_messages, c.window_hours as policy_window_hours,
                c.require_consent as policy_require_consent, claimed.id as recipient_id, claimed.customer_id, cu.name as customer_name, cu.email, cu.phone,
                cu.business_context, cu.metadata, cu.unsubscribed_at is not null as unsubscribed,
                case when claimed.id is not null
                     then app_quiet_until(now(), cu.timezone, c.timezone, c.quiet_start, c.quiet_end) end as quiet_until
         from c left join claimed on true
                left join crm_customers cu on cu.tenant_id = $1 and cu.id = claimed.customer_id
         order by claimed.id",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(recipients)
    .bind(claim)
    .fetch_all(conn)
    .await
}

/// Claimed recipients that must wait (quiet hours) go back to pending with the time they
/// may go (`not_before`, which dispatch respects) and the reason; the claim is let go and
/// the attempt uncounted: nothing was sent.
#[tracing::instrument(name = "campaigns.defer", skip(conn, waits), fields(n = waits.len()), err)]
pub async fn defer(
    conn: &mut PgConnection,
    tenant: TenantId,
    claim: Uuid,
    waits: &[(Uuid, DateTime<Utc>, String)],
) -> Result<u64, sqlx::Error> {
    if waits.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = waits.iter().map(|(id, _, _)| *id).collect();
    let until: Vec<DateTime<Utc>> = waits.iter().map(|(_, at, _)| *at).collect();
    let reasons: Vec<&str> = waits.iter().map(|(_, _, why)| why.as_str()).collect();
    let done = sqlx::query(
        "update outbound_campaign_recipients r set status = 'pending', claim_token = null, claimed_at = null,
            queued_at = null, attempts = greatest(r.attempts - 1, 0), not_before = w.until, error = w.reason
         from unnest($3::uuid[], $4::timestamptz[], $5::text[]) as w (id, until, reason)
         where r.tenant_id = $1 and r.id = w.id and r.claim_token = $2 and r.status = 'sending'",
    )
    .bind(tenant)
    .bind(claim)
    .bind(&ids)
    .bind(&until)
    .bind(&reasons)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// How a claimed send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The provider accepted; its message id.
    Sent(String),
    /// Certainly not sent, worth another try: back to `queued` for the job's retry.
    Release(String),
    /// Certainly not sent, and trying again will not help (or the job ran out of tries).
    Failed(String),
    /// The provider may have sent it: `unknown`, never re-sent automatically.
    Unknown(String),
    /// The customer opted out before the send.
    Unsubscribed,
}

impl Finish {
    /// The recipient status, message id and error it records.
    fn columns(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            Finish::Sent(id) => ("sent", Some(id), None),
            Finish::Release(e) => ("queued", None, Some(e)),
            Finish::Failed(e) => ("failed", None, Some(e)),
            Finish::Unknown(e) => ("unknown", None, Some(e)),
            Finish::Unsubscribed => ("unsubscribed", None, None),
        }
    }
}

/// Records how claimed sends ended and lets go of their claims, in one statement (only
/// the claim's holder can, and only while a recipient is `sending`, or `unknown` because
/// the sweep expired the attempt: then the late answer still settles it). Returns how
/// many recipients it recorded; fewer than asked means claims had expired.
#[tracing::instrument(name = "campaigns.finish", skip(conn, ends), fields(n = ends.len()), err)]
pub async fn finish(
    conn: &mut PgConnection,
    tenant: TenantId,
    claim: Uuid,
    ends: &[(Uuid, Finish)],
) -> Result<u64, sqlx::Error> {
    if ends.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(ends.len());
    let (mut statuses, mut message_ids, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for (id, how) in ends {
        let (status, message_id, error) = how.columns();
        ids.push(*id);
        statuses.push(status);
        message_ids.push(message_id);
        errors.push(error);
    }
    let done = sqlx::query(
        "update outbound_campaign_recipients r set
            status = e.status,
            provider_message_id = coalesce(e.message_id, r.provider_message_id),
            error = case when e.status = 'sent' then null else coalesce(e.error, r.error) end,
            sent_at = case when e.status = 'sent' then now() else r.sent_at end,
            unsubscribed_at = case when e.status = 'unsubscribed' then coalesce(r.unsubscribed_at, now()) else r.unsubscribed_at end,
            claim_token = null, claimed_at = null
         from unnest($3::uuid[], $4::text[], $5::text[], $6::text[]) as e(id, status, message_id, error)
         where r.tenant_id = $1 and r.id = e.id and r.claim_token = $2 and r.status in ('sending', 'unknown')",
    )
    .bind(tenant)
    .bind(claim)
    .bind(&ids)
    .bind(&statuses)
    .bind(&message_ids)
    .bind(&errors)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done)
}

/// Sends still `sending` after `lease` belong to a worker that died or a call that never
/// returned: their outcome is unknown. They become `unknown`, never `queued`: the provider
/// may have sent them. The claim token stays, so a send that does come back late still
/// records what really happened. Across tenants (a system transaction).
#[tracing::instrument(name = "campaigns.expire_attempts", skip(pool), err)]
pub async fn expire_attempts(pool: &PgPool, lease: std::time::Duration) -> Result<Vec<(TenantId, Uuid)>, sqlx::Error> {
    let mut tx = db::begin_system(pool).await?;
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "update outbound_campaign_recipients set status = 'unknown',
            error = 'the send did not finish in time; the provider may have sent it'
         where status = 'sending' and claimed_at < now() - $1::interval
         returning tenant_id, campaign_id",
    )
    .bind(interval(lease))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(distinct(rows.into_iter().map(|(t, c)| (TenantId::from_uuid(t), c))))
}

/// Queued recipients older than `lease` with no claim and no message id, in campaigns
/// whose channel queue is one of `drained` (nothing ready, delayed or reserved): their job
/// is gone (Redis lost it). They go back to `pending`, so the next dispatch pushes them
/// again; a job that still existed would find them claimed or sent (the claim makes a
/// second job harmless). Returns the campaigns to dispatch, with their type.
#[tracing::instrument(name = "campaigns.recover_lost", skip(pool), err)]
pub async fn recover_lost(
    pool: &PgPool,
    lease: std::time::Duration,
    drained: &[&str],
) -> Result<Vec<(TenantId, Uuid, String)>, sqlx::Error> {
    if drained.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = db::begin_system(pool).await?;
    let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "with lost as (
           select r.id, c.type from outbound_campaign_recipients r
           join outbound_campaigns c on c.id = r.campaign_id
           where r.status = 'queued' and r.queued_at < now() - $1::interval
             and r.claim_token is null and r.provider_message_id is null
             and c.status = 'running' and c.type = any($2)
         )
         update outbound_campaign_recipients r set status = 'pending', queued_at = null
         from lost where r.id = lost.id and r.status = 'queued'
         returning r.tenant_id, r.campaign_id, lost.type",
    )
    .bind(interval(lease))
    .bind(drained)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    // One row per campaign: the type is the campaign's, so whole tuples are distinct.
    Ok(distinct(rows.into_iter().map(|(t, c, kind)| (TenantId::from_uuid(t), c, kind))))
}

fn interval(d: std::time::Duration) -> String {
    format!("{} milliseconds", d.as_millis())
}

fn distinct<T: PartialEq>(rows: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for row in rows {
        if !out.contains(&row) {
            out.push(row);
        }
    }
    out
}

/// Settles an `unknown` recipient with what the provider has on record: its message id
/// and status. Returns false when the recipient is no longer unknown.
#[tracing::instrument(name = "campaigns.settle_unknown", skip(conn, sid), err)]
pub async fn settle_unknown(
    conn: &mut PgConnection,
    tenant: TenantId,
    recipient: Uuid,
    sid: &str,
    status: RecipientStatus,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "update outbound_campaign_recipients set status = $4, provider_message_id = $3, error = null,
            claim_token = null, claimed_at = null,
            sent_at = case when $4 in ('failed', 'bounced') then sent_at else coalesce(sent_at, attempted_at, now()) end,
            delivered_at = case when $4 in ('delivered', 'answered', 'voicemail') then coalesce(delivered_at, now()) else delivered_at end
         where tenant_id = $1 and id = $2 and status = 'unknown'",
    )
    .bind(tenant)
    .bind(recipient)
    .bind(sid)
    .bind(status.as_str())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An `unknown` recipient the provider certainly never received goes back to pending, to
/// be dispatched (and sent) once more.
#[tracing::instrument(name = "campaigns.release_unknown", skip(conn), err)]
pub async fn release_unknown(conn: &mut PgConnection, tenant: TenantId, recipient: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "update outbound_campaign_recipients set status = 'pending', queued_at = null, claim_token = null,
            claimed_at = null, error = 'not found at the provider; sending again'
         where tenant_id = $1 and id = $2 and status = 'unknown' and provider_message_id is null",
    )
    .bind(tenant)
    .bind(recipient)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// What a provider report did to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// No recipient of the campaign has this provider message id.
    NoSuchMessage,
    /// The report is older than what is known (or the recipient is final): unchanged.
    Unchanged(RecipientStatus),
    Moved(RecipientStatus),
}

/// Applies a provider status report to the recipient with `provider_message_id` in the
/// campaign, only if it moves the recipient forward ([`RecipientStatus::advances_to`]):
/// late and replayed reports change nothing.
#[tracing::instrument(name = "campaigns.apply_provider_status", skip(conn, sid), fields(tenant_id = %tenant), err)]
pub async fn apply_provider_status(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    sid: &str,
    to: RecipientStatus,
) -> Result<Applied, sqlx::Error> {
    let current: Option<(Uuid, String)> = sqlx::query_as(
        "select id, status from outbound_campaign_recipients
         where tenant_id = $1 and campaign_id = $2 and provider_message_id = $3 for update",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(sid)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((id, status)) = current else { return Ok(Applied::NoSuchMessage) };
    let Some(from) = RecipientStatus::parse(&status) else { return Ok(Applied::NoSuchMessage) };
    if !from.advances_to(to) {
        return Ok(Applied::Unchanged(from));
    }
    sqlx::query(
        "update outbound_campaign_recipients set status = $3,
            sent_at = case when $3 in ('sent', 'delivered', 'answered', 'voicemail', 'opened', 'clicked', 'replied') then coalesce(sent_at, now()) else sent_at end,
            delivered_at = case when $3 in ('delivered', 'answered', 'voicemail', 'opened', 'clicked', 'replied') then coalesce(delivered_at, now()) else delivered_at end,
            replied_at = case when $3 = 'replied' then coalesce(replied_at, now()) else replied_at end
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(to.as_str())
    .execute(conn)
    .await?;
    Ok(Applied::Moved(to))
}

/// The destinations a recipient's e-mail may redirect a click to: the links of its
/// campaign's template as written. `None` when the recipient does not exist.
#[tracing::instrument(name = "campaigns.recipient_links", skip(pool), fields(tenant_id = %who.tenant), err)]
pub async fn recipient_links(pool: &PgPool, who: RecipientRef) -> Result<Option<Vec<String>>, sqlx::Error> {
    let mut tx = db::begin_tenant(pool, who.tenant).await?;
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "select t.html_body from outbound_campaign_recipients r
         join outbound_campaigns c on c.id = r.campaign_id
         left join email_templates t on t.id = c.email_template_id
         where r.tenant_id = $1 and r.id = $2",
    )
    .bind(who.tenant)
    .bind(who.recipient)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.map(|(html,)| html.as_deref().map(crate::links::template_links).unwrap_or_default()))
}

/// What a recipient did with a tracked e-mail. An open or a click proves the message was
/// delivered, so it records `delivered_at` too (as a provider's `opened` report does):
/// engagement rates divide by delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Open,
    Click,
    Unsubscribe,
    /// An open or a click made by a machine (see [`is_machine`]): kept as activity, but
    /// the recipient's milestones are left as they were.
    MachineOpen,
    MachineClick,
}

/// User-agent fragments of link scanners, security gateways and HTTP libraries (lower
/// case). Mail clients' image proxies that fetch when the person opens (Gmail's) are not
/// among them.
const MACHINE_AGENTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "scanner",
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "messagelabs",
    "trendmicro",
    "trend micro",
    "fortinet",
    "forcepoint",
    "sophos",
    "cisco",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "headlesschrome",
    "phantomjs",
    "libwww",
];

/// Whether a tracking request was made by a machine rather than a person: a `HEAD`
/// request (scanners check links without following them), no user agent at all, or a
/// scanner's. [`engage`] adds the rules that need the recipient's history: a click within
/// [`MACHINE_CLICK_AFTER_DELIVERY`] of delivery, and a click within [`MACHINE_CLICK_BURST`]
/// of a click on another link of the same message. Not modelled: Apple Mail's privacy
/// prefetch (it looks like a person opening).
pub fn is_machine(method: &str, user_agent: Option<&str>) -> bool {
    if method.eq_ignore_ascii_case("HEAD") {
        return true;
    }
    let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else { return true };
    let agent = agent.to_ascii_lowercase();
    MACHINE_AGENTS.iter().any(|m| agent.contains(m))
}

/// No person opens a message and clicks in it this soon after it arrived; security
/// gateways scan every link on arrival.
pub const MACHINE_CLICK_AFTER_DELIVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// Two different links of one message clicked this close together are a scanner walking
/// the message, not a person reading it.
pub const MACHINE_CLICK_BURST: std::time::Duration = std::time::Duration::from_secs(2);
impl Engagement {
    fn update(self) -> &'static str {
        match self {
            Self::Open => {
                "update outbound_campaign_recipients set
                    delivered_at = coalesce(delivered_at, $3),
                    opened_at = coalesce(opened_at, $3),
                    status = case when status in ('sent', 'delivered') then 'opened' else status end
                 where tenant_id = $1 and id = $2 and sent_at is not null
                 returning customer_id, campaign_id, old.opened_at is null as first"
            }
            Self::Click => {
                "update outbound_campaign_recipients set
                    delivered_at = coalesce(delivered_at, $3),
                    opened_at = coalesce(opened_at, $3),
                    clicked_at = coalesce(clicked_at, $3),
                    status = case when status in ('sent', 'delivered', 'opened') then 'clicked' else status end
                 where tenant_id = $1 and id = $2 and sent_at is not null
                 returning customer_id, campaign_id, old.clicked_at is null as first"
            }
            Self::Unsubscribe => {
                "update outbound_campaign_recipients set
                    unsubscribed_at = coalesce(unsubscribed_at, $3), status = 'unsubscribed'
                 where tenant_id = $1 and id = $2
                 returning customer_id, campaign_id, old.unsubscribed_at is null as first"
            }
            Self::MachineOpen | Self::MachineClick => {
                "select customer_id, campaign_id, true as first from outbound_campaign_recipients
                 where tenant_id = $1 and id = $2 and sent_at is not null and $3::timestamptz is not null"
            }
        }
    }

    /// The customer activity it is recorded as.
    pub fn activity(self) -> &'static str {
        match self {
            Self::Open => "email_open",
            Self::Click => "email_click",
            Self::Unsubscribe => "unsubscribe",
            Self::MachineOpen => "machine_open",
            Self::MachineClick => "machine_click",
        }
    }

    /// Clicks are activities every time (each says where it went), and so is every
    /// machine event (how often scanners come is worth seeing); opens and unsubscribes
    /// only the first time.
    fn every_time(self) -> bool {
        matches!(self, Self::Click | Self::MachineOpen | Self::MachineClick)
    }
}

/// The recipient's customer and campaign, and whether the engagement was its first.
#[derive(Debug, sqlx::FromRow)]
pub struct Touched {
    pub customer_id: Uuid,
    pub campaign_id: Uuid,
    pub first: bool,
}

/// Records an engagement on the recipient and as customer activity, now, in a transaction
/// of its own ([`engage`]).
#[tracing::instrument(name = "campaigns.record_engagement", skip(pool, metadata), fields(tenant_id = %who.tenant), err)]
pub async fn record_engagement(
    pool: &PgPool,
    who: RecipientRef,
    what: Engagement,
    metadata: serde_json::Value,
) -> Result<Option<Touched>, sqlx::Error> {
    let mut tx = db::begin_tenant(pool, who.tenant).await?;
    let touched = engage(&mut tx, who, what, chrono::Utc::now(), metadata).await?;
    tx.commit().await?;
    Ok(touched)
}

/// Records an engagement made at `at` on the recipient and as customer activity; an
/// unsubscribe also unsubscribes the customer from every later campaign and puts the
/// address on the tenant's suppression list (`unsubscribe`). A click that
/// came too soon after delivery, or in a burst over the message's links, is a machine's
/// (see [`is_machine`]); a burst also turns the clicks before it in the burst into machine
/// clicks and recomputes the recipient's open and click milestones from the human
/// activity left. `None` when the link names no recipient (or, for opens and clicks, one
/// that was never sent).
#[tracing::instrument(name = "campaigns.engage", skip(conn, metadata), fields(tenant_id = %who.tenant), err)]
pub async fn engage(
    conn: &mut PgConnection,
    who: RecipientRef,
    what: Engagement,
    at: chrono::DateTime<chrono::Utc>,
    metadata: serde_json::Value,
) -> Result<Option<Touched>, sqlx::Error> {
    let mut what = what;
    let mut burst = false;
    if what == Engagement::Click {
        let url = metadata.get("url").and_then(|u| u.as_str());
        let seen: Option<(Option<chrono::DateTime<chrono::Utc>>, bool)> = sqlx::query_as(
            // Delivery as the provider reported it; an open or a click stamps `delivered_at`
            // too (with its own time, the same as `opened_at`), which is no delivery time.
            "select case when r.delivered_at < coalesce(r.opened_at, 'infinity') then r.delivered_at else r.sent_at end,
                exists (select 1 from customer_activities a
                        where a.tenant_id = r.tenant_id and a.customer_id = r.customer_id and a.campaign_id = r.campaign_id
                          and a.activity_type in ('email_click', 'machine_click')
                          and a.occurred_at > $3 - $5::interval and a.occurred_at <= $3
                          and a.metadata->>'url' is distinct from $4)
             from outbound_campaign_recipients r where r.tenant_id = $1 and r.id = $2 for update",
        )
        .bind(who.tenant)
        .bind(who.recipient)
        .bind(at)
        .bind(url)
        .bind(format!("{} milliseconds", MACHINE_CLICK_BURST.as_millis()))
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((since, in_burst)) = seen {
            let soon = since.is_some_and(|since| {
                at - since < chrono::Duration::from_std(MACHINE_CLICK_AFTER_DELIVERY).unwrap_or_default()
            });
            burst = in_burst;
            if soon || in_burst {
                what = Engagement::MachineClick;
            }
        }
    }
    let touched: Option<Touched> = sqlx::query_as(sqlx::AssertSqlSafe(what.update()))
        .bind(who.tenant)
        .bind(who.recipient)
        .bind(at)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(t) = &touched
        && (t.first || what.every_time())
    {
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id,
                campaign_id, metadata, occurred_at)
             values ($1, $2, $3, 'email', 'outbound_campaign', $4, $4, $5, $6)",
        )
        .bind(who.tenant)
        .bind(t.customer_id)
        .bind(what.activity())
        .bind(t.campaign_id)
        .bind(metadata)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(t) = &touched
        && burst
    {
        reclassify_burst(conn, who, t, at).await?;
    }
    if let Some(t) = &touched
        && what == Engagement::Unsubscribe
    {
        sqlx::query(
            "update crm_customers set unsubscribed_at = coalesce(unsubscribed_at, $3) where tenant_id = $1 and id = $2",
        )
        .bind(who.tenant)
        .bind(t.customer_id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        // The address goes on the tenant's list too, so a second customer record or an
        // import with the same address does not mail it again.
        sqlx::query(
            "insert into outbound_suppressions (tenant_id, channel, target, reason, note)
             select tenant_id, 'email', lower(email), 'unsubscribe', 'unsubscribe link' from crm_customers
             where tenant_id = $1 and id = $2 and email is not null
             on conflict do nothing",
        )
        .bind(who.tenant)
        .bind(t.customer_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(touched)
}

/// The human clicks of a burst were a scanner's: they become machine clicks, and the
/// recipient's opened/clicked milestones (and status) are recomputed from the human opens
/// and clicks that remain. Delivery stays proven.
async fn reclassify_burst(
    conn: &mut PgConnection,
    who: RecipientRef,
    t: &Touched,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update customer_activities set activity_type = 'machine_click'
         where tenant_id = $1 and customer_id = $2 and campaign_id = $3 and activity_type = 'email_click'
           and occurred_at > $4 - $5::interval and occurred_at <= $4",
    )
    .bind(who.tenant)
    .bind(t.customer_id)
    .bind(t.campaign_id)
    .bind(at)
    .bind(format!("{} milliseconds", MACHINE_CLICK_BURST.as_millis()))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "with human as (
           select min(occurred_at) filter (where activity_type = 'email_click') as clicked,
                  min(occurred_at) filter (where activity_type in ('email_open', 'email_click')) as opened
           from customer_activities where tenant_id = $1 and customer_id = $2 and campaign_id = $3
         )
         update outbound_campaign_recipients r set clicked_at = human.clicked, opened_at = human.opened,
           status = case when r.status in ('opened', 'clicked') then
               case when human.clicked is not null then 'clicked' when human.opened is not null then 'opened' else 'delivered' end
             else r.status end
         from human where r.tenant_id = $1 and r.id = $4",
    )
    .bind(who.tenant)
    .bind(t.customer_id)
    .bind(t.campaign_id)
    .bind(who.recipient)
    .execute(conn)
    .await?;
    Ok(())
}

/// The recipient an SES event names and the campaign and customer it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRecipient {
    pub tenant: TenantId,
    pub recipient: Uuid,
    pub campaign: Uuid,
    pub customer: Uuid,
}

/// The recipients whose provider message ids are among `locked` or `peeked` (in any
/// tenant: provider events name a message, not a tenant; run it in a system
/// transaction), with their milestones, by message id. Those of `locked` are locked for
/// the transaction, in id order (two batches cannot deadlock); those of `peeked` only read.
#[tracing::instrument(name = "campaigns.milestones_by_messages", skip_all, fields(locked = locked.len(), peeked = peeked.len()), err)]
pub async fn milestones_by_messages(
    conn: &mut PgConnection,
    locked: &[&str],
    peeked: &[&str],
) -> Result<std::collections::HashMap<String, (MessageRecipient, crate::ses_events::Milestones)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        provider_message_id: String,
        id: Uuid,
        tenant_id: Uuid,
        campaign_id: Uuid,
        customer_id: Uuid,
        status: String,
        delivered_at: Option<chrono::DateTime<chrono::Utc>>,
        opened_at: Option<chrono::DateTime<chrono::Utc>>,
        clicked_at: Option<chrono::DateTime<chrono::Utc>>,
        bounced_at: Option<chrono::DateTime<chrono::Utc>>,
        complained_at: Option<chrono::DateTime<chrono::Utc>>,
        error: Option<String>,
    }
    let mut rows: Vec<Row> = Vec::new();
    for (ids, lock) in [(locked, " for update"), (peeked, "")] {
        if ids.is_empty() {
            continue;
        }
        let sql = format!(
            "select provider_message_id, id, tenant_id, campaign_id, customer_id, status, delivered_at, opened_at,
                clicked_at, bounced_at, complained_at, error
             from outbound_campaign_recipients where provider_message_id = any($1) order by id{lock}"
        );
        rows.extend(sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(&mut *conn).await?);
    }
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let status = RecipientStatus::parse(&r.status)?;
            let found = MessageRecipient {
                tenant: TenantId::from_uuid(r.tenant_id),
                recipient: r.id,
                campaign: r.campaign_id,
                customer: r.customer_id,
            };
            let milestones = crate::ses_events::Milestones {
                status,
                delivered_at: r.delivered_at,
                opened_at: r.opened_at,
                clicked_at: r.clicked_at,
                bounced_at: r.bounced_at,
                complained_at: r.complained_at,
                error: r.error,
            };
            Some((r.provider_message_id, (found, milestones)))
        })
        .collect())
}

/// Writes the status and the delivery, bounce and complaint milestones SES events left
/// ([`crate::ses_events::Milestones::apply`], which moves only forward), one statement
/// for all of them.
#[tracing::instrument(name = "campaigns.set_milestones_many", skip_all, fields(n = moved.len()), err)]
pub async fn set_milestones_many(
    conn: &mut PgConnection,
    moved: &[(MessageRecipient, crate::ses_events::Milestones)],
) -> Result<(), sqlx::Error> {
    if moved.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = moved.iter().map(|(r, _)| r.tenant.as_uuid()).collect();
    let ids: Vec<Uuid> = moved.iter().map(|(r, _)| r.recipient).collect();
    let statuses: Vec<&str> = moved.iter().map(|(_, m)| m.status.as_str()).collect();
    let delivered: Vec<Option<chrono::DateTime<chrono::Utc>>> = moved.iter().map(|(_, m)| m.delivered_at).collect();
    let bounced: Vec<Option<chrono::DateTime<chrono::Utc>>> = moved.iter().map(|(_, m)| m.bounced_at).collect();
    let complained: Vec<Option<chrono::DateTime<chrono::Utc>>> = moved.iter().map(|(_, m)| m.complained_at).collect();
    let errors: Vec<Option<&str>> = moved.iter().map(|(_, m)| m.error.as_deref()).collect();
    sqlx::query(
        "update outbound_campaign_recipients r set status = u.status, delivered_at = u.delivered, bounced_at = u.bounced,
            complained_at = u.complained, error = u.error
         from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::text[])
           u(tenant, id, status, delivered, bounced, complained, error)
         where r.tenant_id = u.tenant and r.id = u.id",
    )
    .bind(&tenants)
    .bind(&ids)
    .bind(&statuses)
    .bind(&delivered)
    .bind(&bounced)
    .bind(&complained)
    .bind(&errors)
    .execute(conn)
    .await?;
    Ok(())
}

/// A starting campaign's pending recipients lose what an earlier, refused start planned
/// (an A/B variant, a wait) before `experiments::prepare_start` plans them again.
#[tracing::instrument(name = "campaigns.clear_start_plan", skip(conn), err)]
pub async fn clear_start_plan(conn: &mut PgConnection, tenant: TenantId, campaign: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbound_campaign_recipients set variant = null, not_before = null
         where tenant_id = $1 and campaign_id = $2 and status = 'pending' and (variant is not null or not_before is not null)",
    )
    .bind(tenant)
    .bind(campaign)
    .execute(conn)
    .await?;
    Ok(())
}

/// An A/B test's split: the first `in_test` pending recipients in `md5(seed:customer)`
/// order go round the `variants`; the others wait for the winner (`not_before =
/// 'infinity'`, which dispatch and the sweep pass over).
#[tracing::instrument(name = "campaigns.split_for_test", skip(conn), err)]
pub async fn split_for_test(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    seed: &str,
    in_test: i64,
    variants: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "with ranked as (
           select id, row_number() over (order by md5($3 || ':' || customer_id::text), id) - 1 as k
           from outbound_campaign_recipients where tenant_id = $1 and campaign_id = $2 and status = 'pending')
         update outbound_campaign_recipients r
         set variant = case when ranked.k < $4 then (ranked.k % $5)::smallint end,
             not_before = case when ranked.k < $4 then null else 'infinity'::timestamptz end
         from ranked where r.id = ranked.id",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(seed)
    .bind(in_test)
    .bind(variants)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives each pending recipient with no wait yet (or, with `winner`, each waiting for an
/// A/B test's winner, which then gets that variant) their best moment within 24 hours of
/// `at` (`app_best_send_times`, one statement for the audience); those whose best moment
/// is `at` itself go now. The local time is the customer's zone, else UTC, as in the
/// history (`fibonacco_analytics::send_time`). Returns, per recipient, whether it waits.
#[tracing::instrument(name = "campaigns.time_pending", skip(conn), err)]
pub async fn time_pending(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    at: DateTime<Utc>,
    winner: Option<i16>,
) -> Result<Vec<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "with waiting as (
           select r.id, r.tenant_id, r.customer_id, app_zone(cu.timezone, null) as zone
           from outbound_campaign_recipients r
           join crm_customers cu on cu.id = r.customer_id
           where r.tenant_id = $1 and r.campaign_id = $2 and r.status = 'pending'
             and case when $4::smallint is null then r.not_before is null
                      else r.variant is null and r.not_before = 'infinity' end
         ), best as (
           select b.customer_id, b.send_at
           from app_best_send_times($3, (select array_agg(tenant_id) from waiting),
                                    (select array_agg(customer_id) from waiting),
                                    (select array_agg(zone) from waiting)) b
         )
         update outbound_campaign_recipients r
         set not_before = nullif(best.send_at, $3), variant = coalesce($4, r.variant)
         from waiting join best on best.customer_id = waiting.customer_id
         where r.id = waiting.id
         returning best.send_at > $3",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(at)
    .bind(winner)
    .fetch_all(conn)
    .await
}

/// The recipients waiting for an A/B test's winner get it and go now.
#[tracing::instrument(name = "campaigns.release_with_winner", skip(conn), err)]
pub async fn release_with_winner(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    winner: i16,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "update outbound_campaign_recipients set variant = $3, not_before = null
         where tenant_id = $1 and campaign_id = $2 and status = 'pending' and variant is null
           and not_before = 'infinity'",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(winner)
    .execute(conn)
    .await?
    .rows_affected())
}
