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

/// CTEs `touches` (tenant, campaign, customer, currency, t), `paid` (the orders that count),
/// `pairs` (one row per order × touch in its window: the order's `n` touches, the touch's
/// position `k` from the earliest, its time-decay weight `w_decay`, the order's total
/// `t_decay`, and `grp`, the order when it has several touches, NULL when one) and `matched` (every pair with `recency`, 1 = last touch). The dashboard's
/// conversions use the same CTEs.
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
    // Measured at 1 M customers (docs/benchmarks.md, "ROI in three window passes"):
    // * `touches` takes the campaign's currency by a LEFT join: as an inner join
    //   DataFusion estimated sends ⋈ campaigns at 160 rows and built the order–send join's
    //   hash table on the 2.7 M sends instead of the 0.35 M paid orders. (Joining the
    //   campaign after the order–send join instead let DuckDB join orders to campaigns on
    //   the currency first: 25 times slower.) A send of no campaign has no currency and
    //   matches no order; `sends` is only read for the campaigns that exist.
    // * The pair's keys leave the join as plain strings (`Dialect::plain_text`): string
    //   views point into every buffer the join read, and each window sort and partition
    //   carried them along (the same SQL took 1.6–1.7 s with views, 0.83–0.89 s without).
    // * An order's touches are its customer's sends, one per campaign (recipients are
    //   unique per campaign and customer), so (t, campaign) orders them without ties: the
    //   last touch is the n-th from the earliest and `recency` needs no second sort.
    // * DataFusion's window cost follows the number of partitions and of passes. Most
    //   orders have one touch, so a first pass in one order over all pairs finds them
    //   (neither neighbour is the same order) at a cost per batch, not per order; they
    //   share one partition, `grp` NULL, and take a lone touch's values (n = k = 1, its
    //   own weight the total). Only orders with several touches get a partition of their
    //   own, for `n`, `k` and `t_decay` in one pass (window and sort compute 0.59 s →
    //   0.36 s at 1 M customers, EXPLAIN ANALYZE).
    let edges = "ORDER BY order_id ASC, touch_t ASC, campaign_id ASC";
    let order = "PARTITION BY grp ORDER BY touch_t ASC, campaign_id ASC";
    format!(
        "touches AS (
            SELECT r.tenant_id, r.campaign_id, r.customer_id, c.currency, {sent} AS t
            FROM outbound_campaign_recipients r LEFT JOIN outbound_campaigns c ON c.id = r.campaign_id
            WHERE r.sent_at IS NOT NULL AND {sent} <= {as_of} AND {reached_r}),
         paid AS (
            SELECT o.id AS order_id, o.tenant_id, o.customer_id,
                   o.amount_minor - coalesce(o.refunded_minor, 0) AS amount_minor, o.currency, {paid} AS t
            FROM orders o
            WHERE o.status = 'paid' AND o.paid_at IS NOT NULL AND o.customer_id IS NOT NULL AND {paid} <= {as_of}
              AND {reached_o}),
         joined AS (
            SELECT {order_id} AS order_id, p.amount_minor, p.t AS paid_t, {campaign_id} AS campaign_id, tc.t AS touch_t,
                   greatest(CAST(round(1000000.0 * power(0.5, CAST(p.t - tc.t AS {double}) / {half_life_us}))
                            AS BIGINT), CAST(1 AS BIGINT)) AS w_decay
            FROM paid p JOIN touches tc
              ON tc.customer_id = p.customer_id AND tc.tenant_id = p.tenant_id AND tc.currency = p.currency
             AND tc.t <= p.t AND tc.t >= p.t - {window}),
         grouped AS (
            SELECT *, CASE WHEN order_id = lag(order_id) OVER ({edges}) OR order_id = lead(order_id) OVER ({edges})
                           THEN order_id END AS grp
            FROM joined),
         pairs AS (
            SELECT *,
                   CASE WHEN grp IS NULL THEN CAST(1 AS BIGINT)
                        ELSE CAST(count(*) OVER ({order} {whole}) AS BIGINT) END AS n,
                   CASE WHEN grp IS NULL THEN CAST(1 AS BIGINT)
                        ELSE CAST(row_number() OVER ({order}) AS BIGINT) END AS k,
                   CASE WHEN grp IS NULL THEN w_decay
                        ELSE CAST(sum(w_decay) OVER ({order} {whole}) AS BIGINT) END AS t_decay
            FROM grouped),
         matched AS (SELECT *, n - k + 1 AS recency FROM pairs)",
        sent = micros("r.sent_at"),
        paid = micros("o.paid_at"),
        reached_r = reached("r.customer_id"),
        reached_o = reached("o.customer_id"),
        whole = "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING",
        order_id = dialect.plain_text("p.order_id"),
        campaign_id = dialect.plain_text("tc.campaign_id"),
        double = dialect.double(),
        half_life_us = (config.decay_half_life_days * MICROS_PER_DAY as f64).max(1.0),
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
    // Every model's credit is summed in one aggregate over the ranked touches: DataFusion
    // inlines a CTE at each reference, so a second aggregate over `matched` ran its join
    // and window sorts twice (half the query's time at 100,000 customers, EXPLAIN ANALYZE).
    //
    // Time decay needs the order's touches ranked by remainder: one more window pass, by
    // `grp`, the order when it has several touches and NULL (one partition for all) when
    // it has one, whose values are then replaced by a lone touch's (its weight the whole,
    // nothing left over). `left_decay`'s sum takes the rank's order so both are one pass.
    //
    // Position-based needs no window: its weights follow from `n` and `k` alone. With
    // n ≥ 3 and m = n − 2 the total is 5m; the two ends (weight 2m) share one remainder
    // and the m middles (weight 1) another, so the units left over go to the ends first
    // (k = 1 before k = n), then the middles in order, when the ends' remainder is the
    // larger; the middles first, then the ends, when it is the smaller; in order of `k`
    // when they tie. With n ≤ 2 every weight is 1 and every remainder the same.
    let m = "(n - 2)";
    let five_m = &format!("greatest(5 * {m}, 1)");
    format!(
        "WITH {ctes},
         sends AS (SELECT campaign_id, count(*) AS sends FROM touches GROUP BY campaign_id),
         shared AS (
            SELECT *, {b_decay} AS b_decay, (amount_minor * w_decay) % t_decay AS r_decay,
                   CAST(CASE WHEN n <= 2 THEN 1 WHEN k = 1 OR k = n THEN 2 * {m} ELSE 1 END AS BIGINT) AS w_pos,
                   CAST(CASE WHEN n <= 2 THEN n ELSE 5 * {m} END AS BIGINT) AS t_pos,
                   CASE WHEN n <= 2 THEN 0
                        ELSE (amount_minor * 2 * {m}) % {five_m} - amount_minor % {five_m} END AS ends_ahead
            FROM matched),
         ranked AS (
            SELECT campaign_id, amount_minor, k, n, recency, b_decay,
                   CAST(w_pos AS {double}) / CAST(t_pos AS {double}) AS o_pos,
                   CAST(w_decay AS {double}) / CAST(t_decay AS {double}) AS o_decay,
                   {b_pos} AS b_pos,
                   amount_minor - CASE WHEN n <= 2 THEN n * {linear_base}
                                       ELSE 2 * {b_end} + {m} * {b_middle} END AS left_pos,
                   CASE WHEN ends_ahead > 0 THEN CASE WHEN k = 1 THEN 1 WHEN k = n THEN 2 ELSE k + 1 END
                        WHEN ends_ahead < 0 THEN CASE WHEN k = 1 THEN n - 1 WHEN k = n THEN n ELSE k - 1 END
                        ELSE k END AS rank_pos,
                   CASE WHEN n = 1 THEN CAST(0 AS BIGINT)
                        ELSE amount_minor - CAST(sum(b_decay) OVER ({by_remainder} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                                                 AS BIGINT) END AS left_decay,
                   CASE WHEN n = 1 THEN CAST(1 AS BIGINT)
                        ELSE CAST(row_number() OVER ({by_remainder}) AS BIGINT) END AS rank_decay
            FROM shared),
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
        // Ties in remainder go to the earlier touch: the order of `k`.
        by_remainder = "PARTITION BY grp ORDER BY r_decay DESC, touch_t ASC, campaign_id ASC",
        // DuckDB's `/` divides as floats: its linear parts summed to a few minor units more
        // than the order (found by the benchmark's cross-engine check).
        linear_base = dialect.int_div("amount_minor", "n"),
        b_pos = dialect.int_div("amount_minor * w_pos", "t_pos"),
        b_decay = dialect.int_div("amount_minor * w_decay", "t_decay"),
        // One end's and one middle's `b_pos` with n ≥ 3, the same expressions row by row.
        b_end = dialect.int_div(&format!("amount_minor * 2 * {m}"), five_m),
        b_middle = dialect.int_div("amount_minor", five_m),
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
