//! Engagement score per customer, 0–100.
//!
//! For customer *i* at time *T*, with activity *e* of weight *w(e)* in channel component
//! *c(e)* at time *tₑ ≤ T* and half-life *H*:
//!
//! * raw component `r_c = Σ_{e: c(e)=c} w(e) · 0.5^((T − tₑ)/H)`
//! * raw total `R = max(0, Σ_c r_c)`
//! * score `S = 100 · (1 − exp(−R / K))` (saturating: never above 100, 63 at R = K)
//! * component points `s_c = S · max(r_c, 0) / Σ_c' max(r_c', 0)` (0 when nothing is
//!   positive), so the components add up to the score.
//!
//! DataFusion computes it for the batch run ([`scores`]); the Polars version
//! ([`decayed_components`], [`score_frame`]) is what the predictive features use at each
//! cut-off, and the tests hold the two to the same numbers.

use chrono::{DateTime, Utc};
use datafusion::prelude::{DataFrame as DfFrame, SessionContext};
use polars::prelude::{DataType, Expr, LazyFrame, col, lit, when};

use crate::{
    AnalyticsError, EngagementConfig,
    sql::{Dialect, MICROS_PER_DAY, in_list, literal, micros},
};

/// `VALUES` rows of the weights table: (activity_type, component, points).
pub fn weights_sql(config: &EngagementConfig) -> String {
    weights_sql_for(Dialect::DataFusion, config)
}

pub fn weights_sql_for(dialect: Dialect, config: &EngagementConfig) -> String {
    let rows: Vec<String> = config
        .weights
        .iter()
        .map(|w| {
            format!(
                "({}, {}, CAST({:?} AS {}))",
                literal(w.activity_type),
                literal(w.component),
                w.points,
                dialect.double()
            )
        })
        .collect();
    format!("weights(activity_type, component, points) AS (VALUES {})", rows.join(", "))
}

/// `component_weights(activity_type, w_<component>…)`: a row per weight, its points in
/// its component's column and 0 in the others.
fn component_weights_sql_for(dialect: Dialect, config: &EngagementConfig) -> String {
    let components = config.components();
    let rows: Vec<String> = config
        .weights
        .iter()
        .map(|w| {
            let points = components
                .iter()
                .map(|c| {
                    let p = if *c == w.component { w.points } else { 0.0 };
                    format!("CAST({p:?} AS {})", dialect.double())
                })
                .collect::<Vec<_>>();
            format!("({}, {})", literal(w.activity_type), points.join(", "))
        })
        .collect();
    let columns = components.iter().map(|c| format!("w_{c}")).collect::<Vec<_>>().join(", ");
    format!("component_weights(activity_type, {columns}) AS (VALUES {})", rows.join(", "))
}

/// Per customer existing at `as_of` (or only `customers`): `tenant_id`, `customer_id`,
/// `score`, `raw` (R), then `r_<component>` and `s_<component>` for every component.
pub fn scores_sql(config: &EngagementConfig, as_of: DateTime<Utc>, customers: Option<&[String]>) -> String {
    scores_sql_for(Dialect::DataFusion, config, as_of, customers)
}

/// [`scores_sql`] for another engine (the benchmark's baselines).
pub fn scores_sql_for(
    dialect: Dialect,
    config: &EngagementConfig,
    as_of: DateTime<Utc>,
    customers: Option<&[String]>,
) -> String {
    let micros = |c: &str| dialect.micros(c);
    let double = dialect.double();
    let as_of = as_of.timestamp_micros();
    let half_life = config.half_life_days * MICROS_PER_DAY as f64;
    let components = config.components();
    // 0.5^(Δ/H) as exp(Δ · ln 0.5 / H), once per activity in `decayed`, not once per
    // component inside each sum.
    let decay = format!(
        "exp(CAST({as_of} - {} AS {double}) * {rate:?})",
        micros("a.occurred_at"),
        rate = 0.5f64.ln() / half_life
    );
    // Each component's sum adds the activity's own weight for that component (0 for the
    // others) times its decay: arithmetic only. `sum(CASE WHEN component = 'web' …)`
    // compared strings once per activity and component, 73 % of the aggregation's time in
    // DataFusion's profile (EXPLAIN ANALYZE at 100,000 customers).
    let raw_cols: Vec<String> = components.iter().map(|c| format!("sum(w_{c} * d) AS r_{c}")).collect();
    let w_cols = components.iter().map(|c| format!("w.w_{c}")).collect::<Vec<_>>().join(", ");
    let coalesced: Vec<String> = components.iter().map(|c| format!("coalesce(r.r_{c}, 0.0) AS r_{c}")).collect();
    let total = components.iter().map(|c| format!("r_{c}")).collect::<Vec<_>>().join(" + ");
    let positive = components.iter().map(|c| format!("greatest(r_{c}, 0.0)")).collect::<Vec<_>>().join(" + ");
    let parts: Vec<String> = components
        .iter()
        .map(|c| format!("CASE WHEN positive > 0 THEN score * greatest(r_{c}, 0.0) / positive ELSE 0.0 END AS s_{c}"))
        .collect();
    let r_list = components.iter().map(|c| format!("r_{c}")).collect::<Vec<_>>().join(", ");
    format!(
        "WITH {weights},
         decayed AS (SELECT a.customer_id, {w_cols}, {decay} AS d
                     FROM customer_activities a JOIN component_weights w ON a.activity_type = w.activity_type
                     WHERE {t} <= {as_of} AND {only_a}),
         raw AS (SELECT customer_id, {raw_cols} FROM decayed GROUP BY customer_id),
         joined AS (SELECT c.tenant_id, c.id AS customer_id, {coalesced}
                    FROM crm_customers c LEFT JOIN raw r ON r.customer_id = c.id
                    WHERE {created} <= {as_of} AND {only_c}),
         totals AS (SELECT *, greatest({total}, 0.0) AS raw, {positive} AS positive FROM joined),
         scored AS (SELECT *, 100.0 * (1.0 - exp(-raw / {scale:?})) AS score FROM totals)
         SELECT tenant_id, customer_id, score, raw, {r_list}, {parts} FROM scored",
        weights = component_weights_sql_for(dialect, config),
        raw_cols = raw_cols.join(", "),
        t = micros("a.occurred_at"),
        only_a = in_list("a.customer_id", customers),
        coalesced = coalesced.join(", "),
        created = micros("c.created_at"),
        only_c = in_list("c.id", customers),
        scale = config.scale,
        parts = parts.join(", "),
    )
}

#[tracing::instrument(skip_all, fields(customers = customers.map(|c| c.len())))]
pub async fn scores(
    ctx: &SessionContext,
    config: &EngagementConfig,
    as_of: DateTime<Utc>,
    customers: Option<&[String]>,
) -> Result<DfFrame, AnalyticsError> {
    Ok(ctx.sql(&scores_sql(config, as_of, customers)).await?)
}

/// Activities as Polars wants them: `key`, `component`, `points`, `t_us`.
pub fn events_sql(config: &EngagementConfig, key: &str) -> String {
    format!(
        "WITH {} SELECT {key} AS key, w.component, w.points, {} AS t_us
         FROM customer_activities a JOIN weights w ON a.activity_type = w.activity_type",
        weights_sql(config),
        micros("a.occurred_at")
    )
}

/// Polars: per `key`, the decayed raw points `r_<component>` of events at or before
/// `as_of_us`.
pub fn decayed_components(events: LazyFrame, config: &EngagementConfig, as_of_us: i64) -> LazyFrame {
    let half_life = config.half_life_days * MICROS_PER_DAY as f64;
    // 0.5^x as exp(x · ln 0.5): one transcendental per row.
    let decay = ((lit(as_of_us) - col("t_us")).cast(DataType::Float64) / lit(half_life) * lit(0.5f64.ln())).exp();
    let contribution = col("points") * decay;
    let aggs: Vec<Expr> = config
        .components()
        .iter()
        .map(|c| {
            when(col("component").eq(lit(*c)))
                .then(contribution.clone())
                .otherwise(lit(0.0))
                .sum()
                .alias(format!("r_{c}"))
        })
        .collect();
    events.filter(col("t_us").lt_eq(lit(as_of_us))).group_by([col("key")]).agg(aggs)
}

/// Polars: adds `raw` and `score` to a frame of `r_<component>` columns.
pub fn score_frame(raw: LazyFrame, config: &EngagementConfig) -> LazyFrame {
    let components = config.components();
    let total = components.iter().map(|c| col(format!("r_{c}"))).reduce(|a, b| a + b).unwrap_or(lit(0.0));
    let clipped = when(total.clone().lt(lit(0.0))).then(lit(0.0)).otherwise(total);
    raw.with_column(clipped.alias("raw"))
        .with_column((lit(100.0) * (lit(1.0) - (-col("raw") / lit(config.scale)).exp())).alias("score"))
}
