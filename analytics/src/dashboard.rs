//! The dashboards' read models: counts per day and dimension, summed over any date range
//! by the API. Each query covers rows at or before `as_of`.
//!
//! * activity: per (tenant, day, activity type, channel, subject type, category) the
//!   events, distinct customers and value; the category is the knowledge entry's,
//!   article's or service category's name (`none` when the subject has none)
//! * orders: per (tenant, day of creation, service, category, currency) orders, paid
//!   orders, revenue of paid orders, refunds, distinct customers
//! * campaigns: per (tenant, day, campaign) each delivery milestone on the day it
//!   happened (bounces and unsubscribes on the recipient's last update, complaints on the
//!   first report's), machine opens and clicks beside them, plus last-touch
//!   conversions and revenue on the day the order was paid
//! * customers: per (tenant, day) new customers, active customers (with any activity),
//!   conversations started and messages
//! * content: per knowledge entry and article, all-time reads, readers and votes

use chrono::{DateTime, Utc};
use datafusion::prelude::{DataFrame as DfFrame, SessionContext};

use crate::{
    AnalyticsError, RoiConfig, roi,
    sql::{day, micros},
};

/// The read models, in the order the pipeline writes them.
pub const MODELS: &[&str] = &["activity", "orders", "campaigns", "customers", "content"];

pub fn sql(model: &str, roi_config: &RoiConfig, as_of: DateTime<Utc>) -> Option<String> {
    let t = as_of.timestamp_micros();
    Some(match model {
        // Distinct customers as a second grouping rather than count(DISTINCT): one hash
        // table of (group, customer) rows instead of a set of ids per group.
        "activity" => format!(
            "WITH categories AS (
                SELECT id, coalesce(category, 'none') AS category FROM knowledge_base
                UNION ALL SELECT id, coalesce(category, 'none') FROM articles
                UNION ALL SELECT s.id, coalesce(sc.name, 'none') FROM services s LEFT JOIN service_categories sc ON sc.id = s.category_id),
             per_customer AS (
                SELECT a.tenant_id, {d} AS day, a.activity_type, coalesce(a.channel, 'none') AS channel,
                       coalesce(a.subject_type, 'none') AS subject_type, coalesce(c.category, 'none') AS category,
                       a.customer_id, count(*) AS events, sum(a.value_minor) AS value_minor
                FROM customer_activities a LEFT JOIN categories c ON c.id = a.subject_id
                WHERE {occ} <= {t}
                GROUP BY 1, 2, 3, 4, 5, 6, 7)
             SELECT tenant_id, day, activity_type, channel, subject_type, category,
                    CAST(sum(events) AS BIGINT) AS events, count(customer_id) AS customers,
                    CAST(coalesce(sum(value_minor), 0) AS BIGINT) AS value_minor
             FROM per_customer
             GROUP BY 1, 2, 3, 4, 5, 6",
            d = day("a.occurred_at"),
            occ = micros("a.occurred_at"),
        ),
        "orders" => format!(
            "SELECT o.tenant_id, {d} AS day, o.service_id, coalesce(s.name, 'none') AS service_name,
                    coalesce(sc.name, 'none') AS category, o.currency,
                    count(*) AS orders,
                    sum(CASE WHEN o.status = 'paid' THEN 1 ELSE 0 END) AS paid_orders,
                    CAST(sum(CASE WHEN o.status = 'paid' THEN o.amount_minor - coalesce(o.refunded_minor, 0) ELSE 0 END) AS BIGINT) AS revenue_minor,
                    sum(CASE WHEN o.status = 'refunded' THEN 1 ELSE 0 END) AS refunded_orders,
                    count(DISTINCT o.customer_id) AS customers
             FROM orders o LEFT JOIN services s ON s.id = o.service_id
                  LEFT JOIN service_categories sc ON sc.id = s.category_id
             WHERE {created} <= {t}
             GROUP BY 1, 2, 3, 4, 5, 6",
            d = day("o.created_at"),
            created = micros("o.created_at"),
        ),
        "campaigns" => {
            let milestone = |column: &str, name: &str, condition: &str| {
                format!(
                    "SELECT r.tenant_id, r.campaign_id, {d} AS day, '{name}' AS milestone, CAST(0 AS BIGINT) AS amount
                     FROM outbound_campaign_recipients r WHERE {column} IS NOT NULL AND {m} <= {t} AND {condition}",
                    d = day(column),
                    m = micros(column),
                )
            };
            let events = [
                milestone("r.sent_at", "sent", "TRUE"),
                milestone("r.delivered_at", "delivered", "TRUE"),
                milestone("r.opened_at", "opened", "TRUE"),
                milestone("r.clicked_at", "clicked", "TRUE"),
                milestone("r.replied_at", "replied", "TRUE"),
                milestone("r.updated_at", "bounced", "r.status = 'bounced'"),
                milestone("r.updated_at", "unsubscribed", "r.status = 'unsubscribed'"),
            ]
            .join(" UNION ALL ");
            // A complaint counts once per recipient, on the day of its first report. It is
            // read from the `email_complaint` activities (which carry the SES event's time,
            // as `complained_at` does) rather than from the recipient's column, which a lake
            // captured before the column existed does not have.
            let complaints = format!(
                "SELECT tenant_id, campaign_id, {d} AS day, 'complained' AS milestone, CAST(0 AS BIGINT) AS amount
                 FROM (SELECT tenant_id, campaign_id, customer_id, min(occurred_at) AS occurred_at
                       FROM customer_activities
                       WHERE activity_type = 'email_complaint' AND campaign_id IS NOT NULL AND {occ} <= {t}
                       GROUP BY 1, 2, 3)",
                d = day("occurred_at"),
                occ = micros("occurred_at"),
            );
            // Machine opens and clicks (scanners, prefetchers): every event, shown beside
            // the people's milestones, never in them.
            let machine = format!(
                "SELECT tenant_id, campaign_id, {d} AS day, activity_type AS milestone, CAST(0 AS BIGINT) AS amount
                 FROM customer_activities
                 WHERE activity_type IN ('machine_open', 'machine_click') AND campaign_id IS NOT NULL AND {occ} <= {t}",
                d = day("occurred_at"),
                occ = micros("occurred_at"),
            );
            let events = format!("{events} UNION ALL {complaints} UNION ALL {machine}");
            format!(
                "WITH {ctes},
                 conversions AS (
                    SELECT c.tenant_id, m.campaign_id, {paid_day} AS day,
                           'conversion' AS milestone, m.amount_minor AS amount
                    FROM matched m JOIN outbound_campaigns c ON c.id = m.campaign_id WHERE m.recency = 1),
                 events AS ({events} UNION ALL SELECT * FROM conversions)
                 SELECT e.tenant_id, e.day, e.campaign_id, c.name AS campaign_name, c.type AS channel,
                        sum(CASE WHEN milestone = 'sent' THEN 1 ELSE 0 END) AS sent,
                        sum(CASE WHEN milestone = 'delivered' THEN 1 ELSE 0 END) AS delivered,
                        sum(CASE WHEN milestone = 'opened' THEN 1 ELSE 0 END) AS opened,
                        sum(CASE WHEN milestone = 'clicked' THEN 1 ELSE 0 END) AS clicked,
                        sum(CASE WHEN milestone = 'replied' THEN 1 ELSE 0 END) AS replied,
                        sum(CASE WHEN milestone = 'bounced' THEN 1 ELSE 0 END) AS bounced,
                        sum(CASE WHEN milestone = 'unsubscribed' THEN 1 ELSE 0 END) AS unsubscribed,
                        sum(CASE WHEN milestone = 'complained' THEN 1 ELSE 0 END) AS complained,
                        sum(CASE WHEN milestone = 'machine_open' THEN 1 ELSE 0 END) AS machine_opens,
                        sum(CASE WHEN milestone = 'machine_click' THEN 1 ELSE 0 END) AS machine_clicks,
                        sum(CASE WHEN milestone = 'conversion' THEN 1 ELSE 0 END) AS conversions,
                        CAST(sum(amount) AS BIGINT) AS revenue_minor
                 FROM events e JOIN outbound_campaigns c ON c.id = e.campaign_id
                 GROUP BY 1, 2, 3, 4, 5",
                ctes = roi::attribution_ctes(roi_config, as_of),
                paid_day = day("to_timestamp_micros(m.paid_t)"),
            )
        }
        // Active customers as a second grouping, as for "activity": 2.6 s → 1.9 s over the
        // 8 M activities at 1 M customers (docs/benchmarks.md).
        "customers" => format!(
            "WITH created AS (SELECT tenant_id, {dc} AS day, count(*) AS n FROM crm_customers WHERE {mc} <= {t} GROUP BY 1, 2),
                  active AS (SELECT tenant_id, day, count(*) AS n
                             FROM (SELECT tenant_id, {da} AS day, customer_id FROM customer_activities WHERE {ma} <= {t} GROUP BY 1, 2, 3) d
                             GROUP BY 1, 2),
                  convs AS (SELECT tenant_id, {dv} AS day, count(*) AS n FROM crm_conversations WHERE {mv} <= {t} GROUP BY 1, 2),
                  msgs AS (SELECT tenant_id, {dm} AS day, count(*) AS n FROM crm_conversation_messages WHERE {mm} <= {t} GROUP BY 1, 2),
                  days AS (SELECT tenant_id, day FROM created UNION SELECT tenant_id, day FROM active
                           UNION SELECT tenant_id, day FROM convs UNION SELECT tenant_id, day FROM msgs)
             SELECT d.tenant_id, d.day, coalesce(c.n, 0) AS new_customers, coalesce(a.n, 0) AS active_customers,
                    coalesce(v.n, 0) AS conversations, coalesce(m.n, 0) AS messages
             FROM days d
             LEFT JOIN created c ON c.tenant_id = d.tenant_id AND c.day = d.day
             LEFT JOIN active a ON a.tenant_id = d.tenant_id AND a.day = d.day
             LEFT JOIN convs v ON v.tenant_id = d.tenant_id AND v.day = d.day
             LEFT JOIN msgs m ON m.tenant_id = d.tenant_id AND m.day = d.day",
            dc = day("created_at"),
            mc = micros("created_at"),
            da = day("occurred_at"),
            ma = micros("occurred_at"),
            dv = day("created_at"),
            mv = micros("created_at"),
            dm = day("created_at"),
            mm = micros("created_at"),
        ),
        "content" => format!(
            "WITH subjects AS (
                SELECT tenant_id, 'knowledge' AS subject_type, id AS subject_id, title, coalesce(category, 'none') AS category FROM knowledge_base
                UNION ALL SELECT tenant_id, 'article', id, title, coalesce(category, 'none') FROM articles),
             reads AS (
                SELECT subject_id, count(*) AS views, count(DISTINCT customer_id) AS readers FROM customer_activities
                WHERE activity_type IN ('article_read', 'faq_read', 'knowledge_view') AND subject_id IS NOT NULL AND {occ} <= {t}
                GROUP BY subject_id),
             votes AS (
                SELECT knowledge_id, sum(CASE WHEN helpful THEN 1 ELSE 0 END) AS helpful,
                       sum(CASE WHEN helpful THEN 0 ELSE 1 END) AS not_helpful
                FROM knowledge_votes WHERE {voted} <= {t} GROUP BY knowledge_id)
             SELECT s.tenant_id, s.subject_type, s.subject_id, s.title, s.category,
                    coalesce(r.views, 0) AS views, coalesce(r.readers, 0) AS readers,
                    CAST(coalesce(v.helpful, 0) AS BIGINT) AS helpful, CAST(coalesce(v.not_helpful, 0) AS BIGINT) AS not_helpful
             FROM subjects s LEFT JOIN reads r ON r.subject_id = s.subject_id
                  LEFT JOIN votes v ON v.knowledge_id = s.subject_id",
            occ = micros("occurred_at"),
            voted = micros("created_at"),
        ),
        _ => return None,
    })
}

#[tracing::instrument(skip(ctx, roi_config))]
pub async fn read_model(
    ctx: &SessionContext,
    model: &str,
    roi_config: &RoiConfig,
    as_of: DateTime<Utc>,
) -> Result<DfFrame, AnalyticsError> {
    let sql = sql(model, roi_config, as_of)
        .ok_or_else(|| AnalyticsError::Config(format!("unknown read model {model:?}; known: {}", MODELS.join(", "))))?;
    Ok(ctx.sql(&sql).await?)
}
