//! Outbound campaign and recipient SQL of the API: campaign plans, recipient lists and
//! the read side (lists, analytics). Status changes are not here: they go through
//! `fibonacco_delivery::campaigns::store`, the one writer of campaign and recipient status.

use chrono::{DateTime, Utc};
use fibonacco_delivery::campaigns::CampaignStatus;
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, Postgres, QueryBuilder, types::Json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::envelope::PageRequest;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Campaign {
    pub id: Uuid,
    pub name: String,
    /// email, sms or phone.
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    /// draft, scheduled, running, paused, completed or cancelled.
    pub status: String,
    /// The e-mail template, SMS template or phone script, by type.
    pub template_id: Option<Uuid>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Fixed cost in minor units of `currency` (for ROI).
    pub fixed_cost_minor: i64,
    pub currency: String,
    pub recipient_count: i64,
    /// The segment the recipients come from (resolved when the campaign starts).
    pub segment_id: Option<Uuid>,
    /// The A/B test (variants, test_share, metric, wait_minutes, seed), if any.
    #[schema(value_type = Option<Object>)]
    pub ab_test: Option<Json<Value>>,
    /// The test's decision once made: per-variant sends, responses and rates, the winner,
    /// the z-test against each other variant, whether it is significant (docs/metrics.md).
    #[schema(value_type = Option<Object>)]
    pub ab_decision: Option<Json<Value>>,
    /// immediate or best_hour.
    pub send_time: String,
    #[schema(value_type = Object)]
    pub config: Json<Map<String, Value>>,
    #[schema(value_type = Object)]
    pub metadata: Json<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "select c.id, c.name, c.type, c.status,
        coalesce(c.email_template_id, c.sms_template_id, c.phone_script_id) as template_id,
        c.scheduled_at, c.started_at, c.completed_at, c.fixed_cost_minor, trim(c.currency) as currency,
        (select count(*) from outbound_campaign_recipients r where r.campaign_id = c.id) as recipient_count,
        c.segment_id, c.ab_test, c.ab_decision, c.send_time, c.config, c.metadata, c.created_at, c.updated_at
     from outbound_campaigns c";

pub struct NewCampaign {
    pub name: String,
    pub kind: String,
    pub template_id: Option<Uuid>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub fixed_cost_minor: i64,
    pub currency: String,
    pub config: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub segment_id: Option<Uuid>,
    pub ab_test: Option<fibonacco_delivery::experiments::AbTest>,
    pub send_time: String,
}

#[derive(Default)]
pub struct CampaignChanges {
    pub name: Option<String>,
    /// Draft ⇄ scheduled; written through `fibonacco_delivery::campaigns::store`.
    pub status: Option<CampaignStatus>,
    pub template_id: Option<Option<Uuid>>,
    pub scheduled_at: Option<Option<DateTime<Utc>>>,
    pub fixed_cost_minor: Option<i64>,
    pub currency: Option<String>,
    pub config: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
    /// Replaces the recipients.
    pub recipients: Option<Vec<Uuid>>,
    /// Takes the recipients from a segment at the start (`Some(None)`: no longer).
    pub segment_id: Option<Option<Uuid>>,
    /// Replaces (`Some(Some)`) or removes (`Some(None)`) the A/B test.
    pub ab_test: Option<Option<fibonacco_delivery::experiments::AbTest>>,
    pub send_time: Option<String>,
}

impl CampaignChanges {
    /// Whether the change touches the plan (what, when, to whom, at what cost), which
    /// only drafts and scheduled campaigns allow.
    pub fn edits_plan(&self) -> bool {
        self.status.is_some()
            || self.template_id.is_some()
            || self.scheduled_at.is_some()
            || self.fixed_cost_minor.is_some()
            || self.currency.is_some()
            || self.config.is_some()
            || self.recipients.is_some()
            || self.segment_id.is_some()
            || self.ab_test.is_some()
            || self.send_time.is_some()
    }
}

fn template_column(kind: &str) -> &'static str {
    match kind {
        "email" => "email_template_id",
        "sms" => "sms_template_id",
        _ => "phone_script_id",
    }
}

#[tracing::instrument(name = "outbound.list", skip_all, fields(tenant_id = %tenant), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    kind: Option<&str>,
    status: Option<&str>,
    page: PageRequest,
) -> Result<(Vec<Campaign>, i64), sqlx::Error> {
    let filters = |qb: &mut QueryBuilder<Postgres>| {
        qb.push(" where c.tenant_id = ").push_bind(tenant);
        if let Some(k) = kind {
            qb.push(" and c.type = ").push_bind(k.to_owned());
        }
        if let Some(s) = status {
            qb.push(" and c.status = ").push_bind(s.to_owned());
        }
    };
    let mut count = QueryBuilder::<Postgres>::new("select count(*) from outbound_campaigns c");
    filters(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut rows = QueryBuilder::<Postgres>::new(SELECT);
    filters(&mut rows);
    rows.push(" order by c.created_at desc, c.id desc limit ").push_bind(page.limit());
    rows.push(" offset ").push_bind(page.offset());
    Ok((rows.build_query_as().fetch_all(&mut *conn).await?, total))
}

#[tracing::instrument(name = "outbound.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Campaign>, sqlx::Error> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(" where c.tenant_id = ").push_bind(tenant).push(" and c.id = ").push_bind(id);
    qb.build_query_as().fetch_optional(conn).await
}

#[tracing::instrument(name = "outbound.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, c: &NewCampaign) -> Result<Uuid, sqlx::Error> {
    let column = template_column(&c.kind);
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "insert into outbound_campaigns (tenant_id, name, type, status, {column}, scheduled_at, fixed_cost_minor,
            currency, config, metadata, segment_id, ab_test, send_time)
         values ($1, $2, $3, case when $5::timestamptz is null then 'draft' else 'scheduled' end, $4, $5, $6, $7, $8, $9,
            $10, $11, $12)
         returning id"
    )))
    .bind(tenant)
    .bind(&c.name)
    .bind(&c.kind)
    .bind(c.template_id)
    .bind(c.scheduled_at)
    .bind(c.fixed_cost_minor)
    .bind(&c.currency)
    .bind(Json(&c.config))
    .bind(Json(&c.metadata))
    .bind(c.segment_id)
    .bind(c.ab_test.as_ref().map(Json))
    .bind(&c.send_time)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(name = "outbound.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    kind: &str,
    c: &CampaignChanges,
) -> Result<(), sqlx::Error> {
    let column = template_column(kind);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "update outbound_campaigns set
            name = coalesce($3, name),
            {column} = case when $4 then $5 else {column} end,
            scheduled_at = case when $6 then $7 else scheduled_at end,
            fixed_cost_minor = coalesce($8, fixed_cost_minor), currency = coalesce($9, currency),
            config = coalesce($10, config), metadata = coalesce($11, metadata),
            segment_id = case when $12 then $13 else segment_id end,
            ab_test = case when $14 then $15 else ab_test end,
            send_time = coalesce($16, send_time)
         where tenant_id = $1 and id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .bind(c.name.as_deref())
    .bind(c.template_id.is_some())
    .bind(c.template_id.flatten())
    .bind(c.scheduled_at.is_some())
    .bind(c.scheduled_at.flatten())
    .bind(c.fixed_cost_minor)
    .bind(c.currency.as_deref())
    .bind(c.config.as_ref().map(Json))
    .bind(c.metadata.as_ref().map(Json))
    .bind(c.segment_id.is_some())
    .bind(c.segment_id.flatten())
    .bind(c.ab_test.is_some())
    .bind(c.ab_test.as_ref().and_then(|t| t.as_ref()).map(Json))
    .bind(c.send_time.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "outbound.delete", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn delete(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("delete from outbound_campaigns where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the recipients with `customers` (all of them must belong to the tenant).
/// Returns how many of the given ids were not customers of the tenant; nothing is
/// written in that case.
#[tracing::instrument(name = "outbound.set_recipients", skip_all, fields(tenant_id = %tenant, requested = customers.len()), err)]
pub async fn set_recipients(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    customers: &[Uuid],
) -> Result<usize, sqlx::Error> {
    let found: i64 = sqlx::query_scalar("select count(*) from crm_customers where tenant_id = $1 and id = any($2)")
        .bind(tenant)
        .bind(customers)
        .fetch_one(&mut *conn)
        .await?;
    let missing = customers.len().saturating_sub(usize::try_from(found).unwrap_or(0));
    if missing > 0 {
        return Ok(missing);
    }
    sqlx::query("delete from outbound_campaign_recipients where tenant_id = $1 and campaign_id = $2")
        .bind(tenant)
        .bind(campaign)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "insert into outbound_campaign_recipients (tenant_id, campaign_id, customer_id)
         select $1, $2, unnest($3::uuid[]) on conflict do nothing",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(customers)
    .execute(conn)
    .await?;
    Ok(0)
}

/// Every customer of the tenant, for `all_customers: true`.
#[tracing::instrument(name = "outbound.all_customer_ids", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn all_customer_ids(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select id from crm_customers where tenant_id = $1").bind(tenant).fetch_all(conn).await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Recipient {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub status: String,
    pub provider_message_id: Option<String>,
    pub error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
    pub replied_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[tracing::instrument(name = "outbound.recipients", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn recipients(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    status: Option<&str>,
    page: PageRequest,
) -> Result<(Vec<Recipient>, i64), sqlx::Error> {
    let total: i64 = sqlx::query_scalar(
        "select count(*) from outbound_campaign_recipients where tenant_id = $1 and campaign_id = $2
           and ($3::text is null or status = $3)",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(status)
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as(
        "select r.id, r.customer_id, c.name as customer_name, c.email, c.phone, r.status, r.provider_message_id, r.error,
                r.sent_at, r.delivered_at, r.opened_at, r.clicked_at, r.replied_at, r.updated_at
         from outbound_campaign_recipients r join crm_customers c on c.id = r.customer_id
         where r.tenant_id = $1 and r.campaign_id = $2 and ($3::text is null or r.status = $3)
         order by c.name, r.id limit $4 offset $5",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(status)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct CampaignAnalytics {
    pub recipients: i64,
    pub pending: i64,
    pub queued: i64,
    /// Sends in progress: the attempt is recorded, the provider's answer not yet.
    pub sending: i64,
    /// Sends whose outcome is unknown (the provider may have sent them): never retried;
    /// `fibonacco outbound reconcile` settles SMS and calls with Twilio.
    pub unknown: i64,
    /// Recipients a message reached the provider for (sent_at set).
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub replied: i64,
    pub answered: i64,
    pub voicemail: i64,
    pub failed: i64,
    pub bounced: i64,
    pub unsubscribed: i64,
    /// Spam complaints (e-mail; SES reports them, the recipient's status stays).
    pub complained: i64,
    /// Opens and clicks made by machines (scanners, prefetchers; docs/metrics.md): every
    /// event, kept out of `opened`, `clicked` and the rates.
    pub machine_opens: i64,
    pub machine_clicks: i64,
    /// As docs/metrics.md defines them, like the CRM analytics (rounded to 4 places, as
    /// there): delivery and bounce over `sent`; open, click, reply, unsubscribe and
    /// complaint over `delivered`; null while the denominator is 0 (an e-mail is
    /// `delivered` once SES reports it, or once a person opens or clicks).
    pub delivery_rate: Option<f64>,
    pub open_rate: Option<f64>,
    pub click_rate: Option<f64>,
    pub reply_rate: Option<f64>,
    pub bounce_rate: Option<f64>,
    pub unsubscribe_rate: Option<f64>,
    pub complaint_rate: Option<f64>,
    /// The latest dispatch's job batch (null before the campaign was dispatched).
    #[sqlx(skip)]
    pub dispatch: Option<DispatchProgress>,
    /// With an A/B test: each variant's recipients and milestones now (the test's own
    /// numbers and the decision are the campaign's `ab_decision`).
    #[sqlx(skip)]
    pub variants: Vec<VariantAnalytics>,
    /// The A/B decision, once made (as on the campaign).
    #[schema(value_type = Option<Object>)]
    pub ab_decision: Option<Json<Value>>,
}

/// One A/B variant's recipients and milestones (a recipient waiting for the winner has no
/// variant and is not counted).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct VariantAnalytics {
    pub variant: i16,
    pub name: Option<String>,
    pub recipients: i64,
    pub sent: i64,
    pub opened: i64,
    pub clicked: i64,
    pub replied: i64,
}

#[tracing::instrument(name = "outbound.variant_analytics", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn variant_analytics(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
) -> Result<Vec<VariantAnalytics>, sqlx::Error> {
    sqlx::query_as(
        "select r.variant, c.ab_test->'variants'->r.variant->>'name' as name, count(*) as recipients,
                count(r.sent_at) as sent, count(r.opened_at) as opened, count(r.clicked_at) as clicked,
                count(r.replied_at) as replied
         from outbound_campaign_recipients r join outbound_campaigns c on c.id = r.campaign_id
         where r.tenant_id = $1 and r.campaign_id = $2 and r.variant is not null
         group by r.variant, c.ab_test order by r.variant",
    )
    .bind(tenant)
    .bind(campaign)
    .fetch_all(conn)
    .await
}

/// Progress of the send jobs of a campaign's latest dispatch (`job_batches`).
#[derive(Debug, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct DispatchProgress {
    pub batch_id: Uuid,
    pub total_jobs: i32,
    pub pending_jobs: i32,
    pub failed_jobs: i32,
    /// Finished jobs (sent or failed for good) out of all, 0-100.
    pub progress: i32,
    pub finished_at: Option<DateTime<Utc>>,
}

#[tracing::instrument(name = "outbound.dispatch_progress", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn dispatch_progress(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
) -> Result<Option<DispatchProgress>, sqlx::Error> {
    sqlx::query_as(
        "select b.id as batch_id, b.total_jobs, b.pending_jobs, b.failed_jobs,
            case when b.total_jobs = 0 then 100
                 else round(100.0 * (b.total_jobs - b.pending_jobs) / b.total_jobs)::int end as progress,
            b.finished_at
         from outbound_campaigns c join job_batches b on b.id = c.last_batch_id
         where c.tenant_id = $1 and c.id = $2",
    )
    .bind(tenant)
    .bind(campaign)
    .fetch_optional(conn)
    .await
}

/// Milestones count by timestamp (a clicked recipient was also delivered and opened);
/// terminal failures count by status.
#[tracing::instrument(name = "outbound.analytics", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn analytics(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
) -> Result<CampaignAnalytics, sqlx::Error> {
    sqlx::query_as(
        "with r as (select * from outbound_campaign_recipients where tenant_id = $1 and campaign_id = $2),
         c as (
           select count(*) as recipients,
             count(*) filter (where status = 'pending') as pending,
             count(*) filter (where status = 'queued') as queued,
             count(*) filter (where status = 'sending') as sending,
             count(*) filter (where status = 'unknown') as unknown,
             count(*) filter (where sent_at is not null) as sent,
             count(*) filter (where delivered_at is not null) as delivered,
             count(*) filter (where opened_at is not null) as opened,
             count(*) filter (where clicked_at is not null) as clicked,
             count(*) filter (where replied_at is not null) as replied,
             count(*) filter (where status = 'answered') as answered,
             count(*) filter (where status = 'voicemail') as voicemail,
             count(*) filter (where status = 'failed') as failed,
             count(*) filter (where status = 'bounced') as bounced,
             count(*) filter (where status = 'unsubscribed') as unsubscribed,
             count(*) filter (where complained_at is not null) as complained
           from r),
         m as (
           select count(*) filter (where activity_type = 'machine_open') as machine_opens,
             count(*) filter (where activity_type = 'machine_click') as machine_clicks
           from customer_activities
           where tenant_id = $1 and campaign_id = $2 and activity_type in ('machine_open', 'machine_click'))
         select c.*, m.*,
           (select ab_decision from outbound_campaigns where tenant_id = $1 and id = $2) as ab_decision,
           round(delivered::numeric / nullif(sent, 0), 4)::float8 as delivery_rate,
           round(opened::numeric / nullif(delivered, 0), 4)::float8 as open_rate,
           round(clicked::numeric / nullif(delivered, 0), 4)::float8 as click_rate,
           round(replied::numeric / nullif(delivered, 0), 4)::float8 as reply_rate,
           round(bounced::numeric / nullif(sent, 0), 4)::float8 as bounce_rate,
           round(unsubscribed::numeric / nullif(delivered, 0), 4)::float8 as unsubscribe_rate,
           round(complained::numeric / nullif(delivered, 0), 4)::float8 as complaint_rate
         from c, m",
    )
    .bind(tenant)
    .bind(campaign)
    .fetch_one(conn)
    .await
}
