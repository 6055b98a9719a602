//! Reads of the precomputed analytics tables, inside a tenant-scoped transaction. Every
//! query filters by tenant (row-level security is the second line); date ranges sum the
//! per-day rows the pipelines wrote.

use chrono::{DateTime, NaiveDate, Utc};
use fibonacco_platform::TenantId;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, types::Json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{Filters, Range};

/// The newest `as_of` of a tenant's rows in `table` (one of the analytics tables).
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn latest_as_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    table: &'static str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let sql = match table {
        "analytics_daily_activity" => "select max(as_of) from analytics_daily_activity where tenant_id = $1",
        "analytics_daily_orders" => "select max(as_of) from analytics_daily_orders where tenant_id = $1",
        "analytics_daily_campaigns" => "select max(as_of) from analytics_daily_campaigns where tenant_id = $1",
        "analytics_daily_customers" => "select max(as_of) from analytics_daily_customers where tenant_id = $1",
        _ => "select max(as_of) from analytics_content where tenant_id = $1",
    };
    sqlx::query_scalar(sql).bind(tenant).fetch_one(conn).await
}

/// A named count.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Breakdown {
    pub key: String,
    pub events: i64,
    /// Sum over days of the customers active that day.
    pub customer_days: i64,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DayCount {
    pub day: NaiveDate,
    pub events: i64,
}

/// Activity events in the range, grouped by `dimension` (activity_type, channel,
/// category, subject_type), restricted to `types`.
#[tracing::instrument(skip(conn, types), fields(tenant_id = %tenant), err)]
pub async fn activity_breakdown(
    conn: &mut PgConnection,
    tenant: TenantId,
    range: Range,
    filters: &Filters,
    types: &[&str],
    dimension: &'static str,
) -> Result<Vec<Breakdown>, sqlx::Error> {
    let column = match dimension {
        "activity_type" => "activity_type",
        "channel" => "channel",
        "subject_type" => "subject_type",
        _ => "category",
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {column} as key, sum(events)::bigint as events, sum(customers)::bigint as customer_days
         from analytics_daily_activity
         where tenant_id = $1 and day between $2 and $3 and activity_type = any($4)
           and ($5::text is null or channel = $5) and ($6::text is null or category = $6)
         group by 1 order by 2 desc, 1"
    )))
    .bind(tenant)
    .bind(range.from)
    .bind(range.to)
    .bind(types)
    .bind(&filters.channel)
    .bind(&filters.category)
    .fetch_all(conn)
    .await
}

#[tracing::instrument(skip(conn, types), fields(tenant_id = %tenant), err)]
pub async fn activity_series(
    conn: &mut PgConnection,
    tenant: TenantId,
    range: Range,
    filters: &Filters,
    types: &[&str],
) -> Result<Vec<DayCount>, sqlx::Error> {
    sqlx::query_as(
        "select day, sum(events)::bigint as events from analytics_daily_activity
         where tenant_id = $1 and day between $2 and $3 and activity_type = any($4)
           and ($5::text is null or channel = $5) and ($6::text is null or category = $6)
         group by 1 order by 1",
    )
    .bind(tenant)
    .bind(range.from)
    .bind(range.to)
    .bind(types)
    .bind(&filters.channel)
    .bind(&filters.category)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct OrderGroup {
    pub key: String,
    pub id: Option<Uuid>,
    pub currency: String,
    pub orders: i64,
    pub paid_orders: i64,
    pub refunded_orders: i64,
    pub revenue_minor: i64,
    /// Revenue per paid order (integer division), null without paid orders.
    pub average_order_minor: Option<i64>,
}

/// Orders in the range grouped by service, category, currency or day.
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn orders(
    conn: &mut PgConnection,
    tenant: TenantId,
    range: Range,
    filters: &Filters,
    by: &'static str,
) -> Result<Vec<OrderGroup>, sqlx::Error> {
    let (key, id) = match by {
        "service" => ("service_name", "service_id"),
        "category" => ("category", "null::uuid"),
        "day" => ("day::text", "null::uuid"),
        _ => ("currency::text", "null::uuid"),
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {key} as key, {id} as id, currency::text as currency, sum(orders)::bigint as orders,
                sum(paid_orders)::bigint as paid_orders, sum(refunded_orders)::bigint as refunded_orders,
                sum(revenue_minor)::bigint as revenue_minor,
                (case when sum(paid_orders) > 0 then sum(revenue_minor) / sum(paid_orders) end)::bigint as average_order_minor
         from analytics_daily_orders
         where tenant_id = $1 and day between $2 and $3
           and ($4::uuid is null or service_id = $4) and ($5::text is null or category = $5)
         group by 1, 2, 3 order by {order}"
        ,
        order = if by == "day" { "1" } else { "7 desc, 1" }
    )))
    .bind(tenant)
    .bind(range.from)
    .bind(range.to)
    .bind(filters.service_id)
    .bind(&filters.category)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct CampaignCounts {
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub replied: i64,
    pub bounced: i64,
    pub unsubscribed: i64,
    /// Spam complaints (e-mail), on the day SES reported them.
    pub complained: i64,
    /// Opens and clicks made by machines (scanners, prefetchers): every event, kept out of
    /// `opened`, `clicked` and the rates.
    pub machine_opens: i64,
    pub machine_clicks: i64,
    pub conversions: i64,
    pub revenue_minor: i64,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct CampaignRow {
    pub campaign_id: Uuid,
    pub name: String,
    pub channel: String,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub counts: CampaignCounts,
}

const COUNTS: &str = "coalesce(sum(sent), 0)::bigint as sent, coalesce(sum(delivered), 0)::bigint as delivered,
    coalesce(sum(opened), 0)::bigint as opened, coalesce(sum(clicked), 0)::bigint as clicked,
    coalesce(sum(replied), 0)::bigint as replied, coalesce(sum(bounced), 0)::bigint as bounced,
    coalesce(sum(unsubscribed), 0)::bigint as unsubscribed, coalesce(sum(complained), 0)::bigint as complained, coalesce(sum(machine_opens), 0)::bigint as machine_opens,
    coalesce(sum(machine_clicks), 0)::bigint as machine_clicks,
    coalesce(sum(conversions), 0)::bigint as conversions,
    coalesce(sum(revenue_minor), 0)::bigint as revenue_minor";

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn campaigns(
    conn: &mut PgConnection,
    tenant: TenantId,
    range: Range,
    filters: &Filters,
) -> Result<Vec<CampaignRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select campaign_id, campaign_name as name, channel, {COUNTS}
         from analytics_daily_campaigns
         where tenant_id = $1 and day between $2 and $3
           and ($4::text is null or channel = $4) and ($5::uuid is null or campaign_id = $5)
         group by 1, 2, 3 order by sent desc, campaign_id"
    )))
    .bind(tenant)
    .bind(range.from)
    .bind(range.to)
    .bind(&filters.channel)
    .bind(filters.campaign_id)
    .fetch_all(conn)
    .await
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn campaign_totals(
    conn: &mut PgConnection,
    tenant: TenantId,
    range: Range,
    filters: &Filters,
) -> Result<CampaignCounts, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COUNTS} from analytics_daily_campaigns
         where tenant_id = $1 and day between $2 and $3
           and ($4::text is null or channel = $4) and ($5::uuid is null or campaign_id = $5)"
    )))
    .bind(tenant)
    .bind(range.from)
    .bind(range.to)
    .bind(&filters.channel)
    .bind(filters.campaign_id)
    .fetch_one(conn)
    .await
}

#[derive(Debug, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct CustomerTotals {
    pub new_customers: i64,
    pub active_customer_days: i64,
    pub conversations: i64,
    pub messages: i64,
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn customer_totals(
    conn: &mut PgConnection,
    tenant: TenantId,
    range: Range,
) -> Result<CustomerTotals, sqlx::Error> {
    sqlx::query_as(
        "select coalesce(sum(new_customers), 0)::bigint as new_customers,
                coalesce(sum(active_customers), 0)::bigint as active_customer_days,
                coalesce(sum(conversations), 0)::bigint as conversations, coalesce(sum(messages), 0)::bigint as messages
         from analytics_daily_customers where tenant_id = $1 and day between $2 and $3",
    )
    .bind(tenant)
    .bind(range.from)
    .bind(range.to)
    .fetch_one(conn)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DashboardDay {
    pub day: NaiveDate,
    pub new_customers: i64,
    pub active_customers: i64,
    pub conversations: i64,
    pub paid_orders: i64,
    pub revenue_minor: i64,
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn dashboard_series(
    conn: &mut PgConnection,
    tenant: TenantId,
    range: Range,
) -> Result<Vec<DashboardDay>, sqlx::Error> {
    sqlx::query_as(
        "with days as (select generate_series($2::date, $3::date, interval '1 day')::date as day),
              o as (select day, sum(paid_orders)::bigint as paid_orders, sum(revenue_minor)::bigint as revenue_minor
                    from analytics_daily_orders where tenant_id = $1 and day between $2 and $3 group by day)
         select d.day, coalesce(c.new_customers, 0)::bigint as new_customers,
                coalesce(c.active_customers, 0)::bigint as active_customers,
                coalesce(c.conversations, 0)::bigint as conversations,
                coalesce(o.paid_orders, 0)::bigint as paid_orders, coalesce(o.revenue_minor, 0)::bigint as revenue_minor
         from days d
         left join analytics_daily_customers c on c.tenant_id = $1 and c.day = d.day
         left join o on o.day = d.day
         order by d.day",
    )
    .bind(tenant)
    .bind(range.from)
    .bind(range.to)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct ScoreSummary {
    pub customers: i64,
    pub scored_customers: i64,
    pub average_engagement: Option<f64>,
    /// Customers with an engagement score of 70 or more.
    pub highly_engaged: i64,
    /// Customers with a purchase probability of 0.5 or more.
    pub likely_buyers: i64,
    /// Sum of purchase probabilities: the expected number of buyers in 90 days.
    pub expected_buyers: Option<f64>,
    /// When these figures were summed: by the pipeline run (or watch round) that last wrote
    /// the tenant's scores; null when summed for this request (no run has written any yet).
    pub computed_at: Option<DateTime<Utc>>,
}

/// Recurring revenue now, per currency (see docs/metrics.md, "Subscriptions").
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct RecurringRevenue {
    pub currency: String,
    /// Subscriptions `active` or `past_due` (Stripe still collects those).
    pub subscriptions: i64,
    /// Monthly recurring revenue in minor units: each counted subscription's price per
    /// month (quarterly / 3, yearly / 12, rounded half up), summed.
    pub mrr_minor: i64,
    /// Of the counted subscriptions, those ending at their period's end.
    pub cancelling: i64,
}

/// MRR from the subscriptions as they are now (a current state, not a daily series: it is
/// read from the `subscriptions` table, kept in step by the Stripe webhook).
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn recurring_revenue(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<RecurringRevenue>, sqlx::Error> {
    sqlx::query_as(
        "select trim(currency) as currency, count(*) as subscriptions,
                sum(case billing_period when 'quarterly' then (amount_minor * 2 + 3) / 6
                                        when 'yearly' then (amount_minor * 2 + 12) / 24
                                        else amount_minor end)::bigint as mrr_minor,
                count(*) filter (where cancel_at_period_end) as cancelling
         from subscriptions where tenant_id = $1 and status in ('active', 'past_due')
         group by 1 order by 1",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn score_summary(conn: &mut PgConnection, tenant: TenantId) -> Result<ScoreSummary, sqlx::Error> {
    // The pipelines keep these sums beside the scores they write (one row per tenant);
    // summing a large tenant's scores per request would cost more than the route's budget.
    let kept: Option<ScoreSummary> = sqlx::query_as(
        "select customers, scored_customers, average_engagement, highly_engaged, likely_buyers, expected_buyers,
                computed_at
         from customer_score_summaries where tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(kept) = kept {
        return Ok(kept);
    }
    sqlx::query_as(
        "select (select count(*) from crm_customers where tenant_id = $1) as customers,
                count(*) as scored_customers, avg(score)::float8 as average_engagement,
                count(*) filter (where score >= 70) as highly_engaged,
                (select count(*) from customer_predictive_scores where tenant_id = $1 and probability >= 0.5) as likely_buyers,
                (select sum(probability) from customer_predictive_scores where tenant_id = $1) as expected_buyers,
                null::timestamptz as computed_at
         from customer_engagement_scores where tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(conn)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ContentRow {
    pub subject_type: String,
    pub subject_id: Uuid,
    pub title: String,
    pub category: String,
    pub views: i64,
    pub readers: i64,
    pub helpful: i64,
    pub not_helpful: i64,
    /// helpful / (helpful + not helpful); null without votes.
    pub helpful_rate: Option<f64>,
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn top_content(
    conn: &mut PgConnection,
    tenant: TenantId,
    filters: &Filters,
) -> Result<Vec<ContentRow>, sqlx::Error> {
    sqlx::query_as(
        "select subject_type, subject_id, title, category, views, readers, helpful, not_helpful,
                case when helpful + not_helpful > 0 then helpful::float8 / (helpful + not_helpful) end as helpful_rate
         from analytics_content where tenant_id = $1 and ($2::text is null or category = $2)
         order by views desc, subject_id limit 10",
    )
    .bind(tenant)
    .bind(&filters.category)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct EngagementRow {
    pub customer_id: Uuid,
    /// 0-100.
    pub score: f64,
    /// Points per channel; they add up to the score.
    #[schema(value_type = Object)]
    pub components: Json<serde_json::Value>,
    pub as_of: DateTime<Utc>,
    pub computed_at: DateTime<Utc>,
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn engagement(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
) -> Result<Option<EngagementRow>, sqlx::Error> {
    sqlx::query_as(
        "select customer_id, score::float8 as score, components, as_of, computed_at
         from customer_engagement_scores where tenant_id = $1 and customer_id = $2",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_optional(conn)
    .await
}

/// The quality figures of the platform's predictive model a tenant may see. Read from
/// the stored metrics by name: anything else there (row and buyer counts, calibration
/// bin counts, the platform's base rate) is dropped when the row is read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlatformModelMetrics {
    /// Always `platform`: trained over all tenants' customers, not this tenant's alone.
    #[serde(skip_deserializing, default = "platform_scope")]
    pub scope: String,
    pub auc_train: f64,
    pub auc_validation: f64,
    /// AUC of the rule "bought in the 90 days before the cut-off", for comparison.
    pub baseline_auc_recent_buyer: f64,
    pub brier_validation: f64,
    pub log_loss_validation: f64,
    pub validation_cutoff: DateTime<Utc>,
}

fn platform_scope() -> String {
    "platform".into()
}

/// One term of a predictive score, as the pipeline stores it (`top_features`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureContribution {
    pub feature: String,
    /// Its term of the log-odds (coefficient × standardised value).
    pub contribution: f64,
    /// The customer's raw value of the feature.
    pub value: f64,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PredictiveRow {
    pub customer_id: Uuid,
    /// Probability of a paid order in the next 90 days.
    pub probability: f64,
    /// The largest terms of the model's log-odds for this customer, largest first.
    #[schema(value_type = Vec<FeatureContribution>)]
    pub top_features: Json<serde_json::Value>,
    pub model_version: String,
    /// How good that model is. It is the platform's model, trained over every tenant's
    /// customers, so only its quality is shown, never its counts of customers or buyers.
    #[schema(value_type = Option<PlatformModelMetrics>)]
    pub model_metrics: Option<Json<PlatformModelMetrics>>,
    pub model_trained_at: Option<DateTime<Utc>>,
    pub as_of: DateTime<Utc>,
    pub computed_at: DateTime<Utc>,
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn predictive(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
) -> Result<Option<PredictiveRow>, sqlx::Error> {
    sqlx::query_as(
        "select s.customer_id, s.probability, s.top_features, s.model_version, m.metrics as model_metrics,
                m.trained_at as model_trained_at, s.as_of, s.computed_at
         from customer_predictive_scores s left join predictive_models m on m.version = s.model_version
         where s.tenant_id = $1 and s.customer_id = $2",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_optional(conn)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct RoiRow {
    pub campaign_id: Uuid,
    pub channel: String,
    pub currency: String,
    pub sends: i64,
    pub unit_cost_minor: i64,
    pub send_cost_minor: i64,
    pub fixed_cost_minor: i64,
    pub cost_minor: i64,
    pub last_touch_orders: i64,
    pub last_touch_revenue_minor: i64,
    pub last_touch_roi: Option<f64>,
    pub linear_orders: f64,
    pub linear_revenue_minor: i64,
    pub linear_roi: Option<f64>,
    pub first_touch_orders: i64,
    pub first_touch_revenue_minor: i64,
    pub first_touch_roi: Option<f64>,
    pub time_decay_orders: f64,
    pub time_decay_revenue_minor: i64,
    pub time_decay_roi: Option<f64>,
    pub position_orders: f64,
    pub position_revenue_minor: i64,
    pub position_roi: Option<f64>,
    pub decay_half_life_days: f64,
    pub window_days: i32,
    pub as_of: DateTime<Utc>,
    pub computed_at: DateTime<Utc>,
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn roi(conn: &mut PgConnection, tenant: TenantId, campaign: Uuid) -> Result<Option<RoiRow>, sqlx::Error> {
    sqlx::query_as(
        "select campaign_id, channel, currency::text as currency, sends, unit_cost_minor, send_cost_minor, fixed_cost_minor,
                cost_minor, last_touch_orders, last_touch_revenue_minor, last_touch_roi, linear_orders,
                linear_revenue_minor, linear_roi, first_touch_orders, first_touch_revenue_minor, first_touch_roi,
                time_decay_orders, time_decay_revenue_minor, time_decay_roi, position_orders, position_revenue_minor,
                position_roi, decay_half_life_days, window_days, as_of, computed_at
         from campaign_roi where tenant_id = $1 and campaign_id = $2",
    )
    .bind(tenant)
    .bind(campaign)
    .fetch_optional(conn)
    .await
}

/// A campaign's cost and ROI, for the performance table.
#[derive(Debug, sqlx::FromRow)]
pub struct RoiBrief {
    pub campaign_id: Uuid,
    pub cost_minor: i64,
    pub last_touch_roi: Option<f64>,
    pub linear_roi: Option<f64>,
    /// The ROI under the model the caller chose.
    pub roi: Option<f64>,
}

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn roi_by_campaign(
    conn: &mut PgConnection,
    tenant: TenantId,
    model: super::AttributionModel,
) -> Result<Vec<RoiBrief>, sqlx::Error> {
    // The column comes from the closed enum, never from the request's text.
    let column = model.roi_column();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select campaign_id, cost_minor, last_touch_roi, linear_roi, {column} as roi from campaign_roi where tenant_id = $1"
    )))
    .bind(tenant)
    .fetch_all(conn)
    .await
}

/// Whether `table` has a row `id` of this tenant (customers, campaigns).
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn exists(
    conn: &mut PgConnection,
    tenant: TenantId,
    table: &'static str,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let sql = match table {
        "crm_customers" => "select exists (select 1 from crm_customers where tenant_id = $1 and id = $2)",
        _ => "select exists (select 1 from outbound_campaigns where tenant_id = $1 and id = $2)",
    };
    sqlx::query_scalar(sql).bind(tenant).bind(id).fetch_one(conn).await
}
