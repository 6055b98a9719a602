//! Campaign ROI: what a campaign cost against the revenue of the paid orders it is
//! credited with.
//!
//! * cost `C = sends · unit_cost(channel) + fixed_cost` (minor units, exact integers)
//! * a touch is a send (`sent_at`) of campaign *k* to the order's customer within the
//!   window `[paid_at − W, paid_at]` (W = 30 days by default); orders count when `status
//!   = 'paid'`, paid at or before `as_of`, in the campaign's currency
//! * last touch: the whole amount goes to the latest touch (ties: the larger campaign id)
//! * linear: an order with *n* touches gives each `amount / n` (integer division), and the
//!   `amount mod n` earliest touches one more minor unit, so the parts sum to the amount
//! * first touch: the whole amount goes to the earliest touch (ties: the smaller campaign id)
//! * time decay and position-based (40/20/40): each touch has an integer weight (below);
//!   a touch gets `⌊amount · w / Σw⌋` and the minor units left over go one each to the
//!   touches with the largest remainders (ties: the earlier touch), so the parts sum to
//!   the amount exactly, in every engine (integer arithmetic only)
//!   - time decay: `w = max(1, round(10⁶ · 0.5^(Δ / H)))`, Δ the days from the touch to the
//!     order and H the half-life (7 days by default)
//!   - position-based: one touch takes all, two take half each; with n ≥ 3 the first and
//!     the last weigh `2(n − 2)` and each middle touch 1: 40 % / 20 % shared / 40 %
//! * `ROI = (revenue − C) / C`, NULL when C = 0

use chrono::{DateTime, Utc};
use datafusion::prelude::{DataFrame as DfFrame, SessionContext};

use crate::{
    AnalyticsError, RoiConfig,
    sql::{Dialect, MICROS_PER_DAY, in_list, literal},
};

/// CTEs `touches` (tenant, campaign, customer, currency, t), `pairs` (one row per order ×
/// touch in its window, with the order's `n` touches) and `matched` (every pair with `k`,
/// the touch's position from the earliest, `recency` 1 = last touch, and `grp`, the
/// window partition: the order, or NULL for a lone touch). The dashboard's conversions use
/// the same CTEs.
pub fn attribution_ctes(config: &RoiConfig, as_of: DateTime<Utc>) -> String {
    attribution_ctes_for(Dialect::DataFusion, config, as_of, None)
}

/// With `reached_by`, only the sends and orders of customers those campaigns reached:
/// all that their attribution depends on (an order's touches are all its customer's), at
/// a fraction of the work when the watch recomputes a few campaigns.
pub fn attribution_ctes_for(
    dialect: Dialect,
    config: &RoiConfig,
    as_of: DateTime<Utc>,
    reached_by: Option<&[String]>,
) -> String {
    let micros = |c: &str| dialect.micros(c);
    let reached = |column: &str| match reached_by {
        None => "TRUE".to_string(),
        Some(campaigns) => format!(
            "{column} IN (SELECT customer_id FROM outbound_campaign_recipients WHERE {})",
            in_list("campaign_id", Some(campaigns))
        ),
    };
    let as_of = as_of.timestamp_micros();
    let window = config.window_days as i64 * MICROS_PER_DAY;
    // An order's touches are its customer's sends, one per campaign (recipients are unique
    // per campaign and customer), so (t, campaign) orders them without ties and the last
    // touch is the n-th from the earliest: `recency` needs no second sort of the order's
    // touches. Most orders have one touch, which takes every model's whole credit, so the
    // windows partition by `grp`: the order when it has several touches, NULL (one
    // partition for all of them) when it has one, whose window values are then replaced by
    // a lone touch's (k 1, its own weight the total, nothing left over). In DataFusion a
    // window's cost goes with its partitions (one per order), and ranking every order was
    // most of ROI's time; a separate branch for lone touches ran the join twice instead
    // (DataFusion inlines a CTE at each reference), 1.4 x slower when most orders have
    // several touches.
    format!(
        "touches AS (
            SELECT r.tenant_id, r.campaign_id, r.customer_id, c.currency, {sent} AS t
            FROM outbound_campaign_recipients r JOIN outbound_campaigns c ON c.id = r.campaign_id
            WHERE r.sent_at IS NOT NULL AND {sent} <= {as_of} AND {reached_r}),
         paid AS (
            SELECT o.id AS order_id, o.tenant_id, o.customer_id,
                   o.amount_minor - coalesce(o.refunded_minor, 0) AS amount_minor, o.currency, {paid} AS t
            FROM orders o
            WHERE o.status = 'paid' AND o.paid_at IS NOT NULL AND o.customer_id IS NOT NULL AND {paid} <= {as_of}
              AND {reached_o}),
         pairs AS (
            SELECT p.order_id, p.amount_minor, p.t AS paid_t, tc.campaign_id, tc.t AS touch_t,
                   count(*) OVER (PARTITION BY p.order_id) AS n
            FROM paid p JOIN touches tc
              ON tc.customer_id = p.customer_id AND tc.tenant_id = p.tenant_id AND tc.currency = p.currency
             AND tc.t <= p.t AND tc.t >= p.t - {window}),
         matched AS (
            SELECT *, n - k + 1 AS recency FROM (
              SELECT order_id, grp, amount_minor, paid_t, campaign_id, touch_t, n,
                     CASE WHEN n = 1 THEN CAST(1 AS BIGINT)
                          ELSE CAST(row_number() OVER (PARTITION BY grp ORDER BY touch_t ASC, campaign_id ASC) AS BIGINT)
                     END AS k
              FROM (SELECT *, CASE WHEN n > 1 THEN order_id END AS grp FROM pairs) keyed) ordered)",
        sent = micros("r.sent_at"),
        paid = micros("o.paid_at"),
        reached_r = reached("r.customer_id"),
        reached_o = reached("o.customer_id"),
    )
}

/// Per campaign created at or before `as_of` (or only `campaigns`): tenant_id,
/// campaign_id, channel, currency, sends, unit_cost_minor, send_cost_minor,
/// fixed_cost_minor, cost_minor, last_touch_orders, last_touch_revenue_minor,
/// linear_orders, linear_revenue_minor, first_touch_orders, first_touch_revenue_minor,
/// time_decay_orders, time_decay_revenue_minor, position_orders, position_revenue_minor.
pub fn roi_sql(config: &RoiConfig, as_of: DateTime<Utc>, campaigns: Option<&[String]>) -> String {
    roi_sql_for(Dialect::DataFusion, config, as_of, campaigns)
}

/// [`roi_sql`] for another engine (the benchmark's baselines).
pub fn roi_sql_for(dialect: Dialect, config: &RoiConfig, as_of: DateTime<Utc>, campaigns: Option<&[String]>) -> String {
    let micros = |c: &str| dialect.micros(c);
    let double = dialect.double();
    let unit_cases: Vec<String> = config
        .unit_cost_minor
        .iter()
        .map(|(channel, cost)| format!("WHEN {} THEN CAST({cost} AS BIGINT)", literal(channel)))
        .collect();
    let unit = if unit_cases.is_empty() {
        "CAST(0 AS BIGINT)".to_string()
    } else {
        format!("CASE c.type {} ELSE CAST(0 AS BIGINT) END", unit_cases.join(" "))
    };
    // Every model's credit is summed in one aggregate over the ranked touches
    // (`recency`, `k` and `n` ride along): DataFusion inlines a CTE at each reference, so
    // a second aggregate over `matched` ran its join and window sorts twice (half the
    // query's time at 100,000 customers, EXPLAIN ANALYZE). Lone touches (`n` = 1) share one
    // window partition and take their own values: weight 1 of 1, the whole amount.
    format!(
        "WITH {ctes},
         sends AS (SELECT campaign_id, count(*) AS sends FROM touches GROUP BY campaign_id),
         weights AS (
            SELECT grp, campaign_id, amount_minor, k, n, recency,
                   CAST(CASE WHEN n <= 2 THEN 1 WHEN k = 1 OR k = n THEN 2 * (n - 2) ELSE 1 END AS BIGINT) AS w_pos,
                   greatest(CAST(round(1000000.0 * power(0.5, CAST(paid_t - touch_t AS {double}) / {half_life_us}))
                            AS BIGINT), CAST(1 AS BIGINT)) AS w_decay
            FROM matched),
         totals AS (
            SELECT grp, campaign_id, amount_minor, k, n, recency, w_pos, w_decay,
                   CASE WHEN n = 1 THEN w_pos ELSE CAST(sum(w_pos) OVER (PARTITION BY grp) AS BIGINT) END AS t_pos,
                   CASE WHEN n = 1 THEN w_decay ELSE CAST(sum(w_decay) OVER (PARTITION BY grp) AS BIGINT) END AS t_decay
            FROM weights),
         shares AS (
            SELECT grp, campaign_id, amount_minor, k, n, recency,
                   CAST(w_pos AS {double}) / CAST(t_pos AS {double}) AS o_pos,
                   CAST(w_decay AS {double}) / CAST(t_decay AS {double}) AS o_decay,
                   {b_pos} AS b_pos, (amount_minor * w_pos) % t_pos AS r_pos,
                   {b_decay} AS b_decay, (amount_minor * w_decay) % t_decay AS r_decay
            FROM totals),
         ranked AS (
            SELECT campaign_id, amount_minor, k, n, recency, o_pos, o_decay, b_pos, b_decay,
                   CASE WHEN n = 1 THEN CAST(0 AS BIGINT)
                        ELSE amount_minor - CAST(sum(b_pos) OVER (PARTITION BY grp) AS BIGINT) END AS left_pos,
                   CASE WHEN n = 1 THEN CAST(1 AS BIGINT)
                        ELSE CAST(row_number() OVER (PARTITION BY grp ORDER BY r_pos DESC, k ASC) AS BIGINT) END AS rank_pos,
                   CASE WHEN n = 1 THEN CAST(0 AS BIGINT)
                        ELSE amount_minor - CAST(sum(b_decay) OVER (PARTITION BY grp) AS BIGINT) END AS left_decay,
                   CASE WHEN n = 1 THEN CAST(1 AS BIGINT)
                        ELSE CAST(row_number() OVER (PARTITION BY grp ORDER BY r_decay DESC, k ASC) AS BIGINT) END AS rank_decay
            FROM shares),
         credit AS (
            SELECT campaign_id,
                   sum(CASE WHEN recency = 1 THEN 1 ELSE 0 END) AS last_touch_orders,
                   sum(CASE WHEN recency = 1 THEN amount_minor ELSE 0 END) AS last_touch_revenue_minor,
                   sum(1.0 / CAST(n AS {double})) AS linear_orders,
                   sum({linear_base} + CASE WHEN k <= amount_minor % n THEN 1 ELSE 0 END) AS linear_revenue_minor,
                   sum(CASE WHEN k = 1 THEN 1 ELSE 0 END) AS first_touch_orders,
                   sum(CASE WHEN k = 1 THEN amount_minor ELSE 0 END) AS first_touch_revenue_minor,
                   sum(o_decay) AS time_decay_orders,
                   sum(b_decay + CASE WHEN rank_decay <= left_decay THEN 1 ELSE 0 END) AS time_decay_revenue_minor,
                   sum(o_pos) AS position_orders,
                   sum(b_pos + CASE WHEN rank_pos <= left_pos THEN 1 ELSE 0 END) AS position_revenue_minor
            FROM ranked GROUP BY campaign_id),
         costed AS (
            SELECT c.tenant_id, c.id AS campaign_id, c.type AS channel, c.currency,
                   CAST(coalesce(s.sends, 0) AS BIGINT) AS sends, {unit} AS unit_cost_minor,
                   CAST(c.fixed_cost_minor AS BIGINT) AS fixed_cost_minor,
                   CAST(coalesce(cr.last_touch_orders, 0) AS BIGINT) AS last_touch_orders,
                   CAST(coalesce(cr.last_touch_revenue_minor, 0) AS BIGINT) AS last_touch_revenue_minor,
                   coalesce(cr.linear_orders, 0.0) AS linear_orders,
                   CAST(coalesce(cr.linear_revenue_minor, 0) AS BIGINT) AS linear_revenue_minor,
                   CAST(coalesce(cr.first_touch_orders, 0) AS BIGINT) AS first_touch_orders,
                   CAST(coalesce(cr.first_touch_revenue_minor, 0) AS BIGINT) AS first_touch_revenue_minor,
                   coalesce(cr.time_decay_orders, 0.0) AS time_decay_orders,
                   CAST(coalesce(cr.time_decay_revenue_minor, 0) AS BIGINT) AS time_decay_revenue_minor,
                   coalesce(cr.position_orders, 0.0) AS position_orders,
                   CAST(coalesce(cr.position_revenue_minor, 0) AS BIGINT) AS position_revenue_minor
            FROM outbound_campaigns c
            LEFT JOIN sends s ON s.campaign_id = c.id
            LEFT JOIN credit cr ON cr.campaign_id = c.id
            WHERE {created} <= {as_of_us} AND {only})
         SELECT tenant_id, campaign_id, channel, currency, sends, unit_cost_minor,
                sends * unit_cost_minor AS send_cost_minor, fixed_cost_minor,
                sends * unit_cost_minor + fixed_cost_minor AS cost_minor,
                last_touch_orders, last_touch_revenue_minor, linear_orders, linear_revenue_minor,
                first_touch_orders, first_touch_revenue_minor, time_decay_orders, time_decay_revenue_minor,
                position_orders, position_revenue_minor
         FROM costed",
        ctes = attribution_ctes_for(dialect, config, as_of, campaigns),
        created = micros("c.created_at"),
        as_of_us = as_of.timestamp_micros(),
        only = in_list("c.id", campaigns),
        half_life_us = (config.decay_half_life_days * MICROS_PER_DAY as f64).max(1.0),
        // DuckDB's `/` divides as floats: its linear parts summed to a few minor units more
        // than the order (found by the benchmark's cross-engine check).
        linear_base = dialect.int_div("amount_minor", "n"),
        b_pos = dialect.int_div("amount_minor * w_pos", "t_pos"),
        b_decay = dialect.int_div("amount_minor * w_decay", "t_decay"),
    )
}

#[tracing::instrument(skip_all, fields(campaigns = campaigns.map(|c| c.len())))]
pub async fn roi(
    ctx: &SessionContext,
    config: &RoiConfig,
    as_of: DateTime<Utc>,
    campaigns: Option<&[String]>,
) -> Result<DfFrame, AnalyticsError> {
    Ok(ctx.sql(&roi_sql(config, as_of, campaigns)).await?)
}

/// `(revenue − cost) / cost`, None when nothing was spent.
pub fn ratio(revenue_minor: i64, cost_minor: i64) -> Option<f64> {
    (cost_minor != 0).then(|| (revenue_minor - cost_minor) as f64 / cost_minor as f64)
}

/// The campaigns whose ROI a change to these customers' orders or sends can move: every
/// campaign that ever reached them.
pub fn campaigns_of_customers_sql(customers: &[String]) -> String {
    format!(
        "SELECT DISTINCT CAST(campaign_id AS VARCHAR) AS campaign_id FROM outbound_campaign_recipients WHERE {}",
        in_list("customer_id", Some(customers))
    )
}

#[cfg(test)]
mod tests {
    use super::ratio;

    #[test]
    fn roi_is_null_without_cost() {
        assert_eq!(ratio(500, 0), None);
        assert_eq!(ratio(300, 100), Some(2.0));
        assert_eq!(ratio(0, 100), Some(-1.0));
    }
}
