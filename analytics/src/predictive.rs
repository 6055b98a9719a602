//! Predictive score: the probability that a customer has a paid order in the 90 days
//! after the scoring instant.
//!
//! * DataFusion does the SQL-shaped part: numbering customers and joining activities,
//!   paid orders and campaign sends to that number ([`inputs`]).
//! * Polars engineers the features at a cut-off *c* from rows at or before *c* only
//!   ([`features_at`]): decayed engagement per channel (the engagement definition with
//!   T = c), activity counts over 30 and 90 days, days since the last activity and the
//!   last paid order, paid orders and revenue so far, sends and open/click rates over 90
//!   days, tenure. The label is a paid order in (c, c + 90 days].
//! * Training: cut-offs `as_of − 90d − k·30d`, k = 0..cutoffs−1. The latest (k = 0)
//!   validates, the earlier ones train (a time-based split: no customer's future leaks
//!   into training). Features are standardised with the training means and deviations and
//!   fitted by L2-regularised logistic regression (Newton's method, `fit_logistic`).
//! * Scoring at `as_of` with the validated model; each customer's top features are the
//!   largest |βⱼ·zⱼ| terms of the linear predictor.

use chrono::{DateTime, Duration, Utc};
use datafusion::prelude::SessionContext;
use ndarray::{Array1, Array2};
use polars::prelude::{DataFrame, DataType, IntoLazy, JoinArgs, JoinType, LazyFrame, col, lit, when};
use serde::Serialize;

use crate::{
    AnalyticsError, EngagementConfig, PredictiveConfig, bridge, engagement,
    sql::{MICROS_PER_DAY, micros},
};

/// The lake's rows the features are made of, keyed by a dense customer number.
pub struct Inputs {
    /// key, tenant_id, customer_id, created_us
    pub customers: DataFrame,
    /// key, component, points, t_us
    pub events: DataFrame,
    /// key, t_us, amount_minor (paid orders)
    pub orders: DataFrame,
    /// key, t_us, opened, clicked (campaign sends)
    pub sends: DataFrame,
}

/// Reads the inputs through DataFusion and hands them to Polars as Arrow.
#[tracing::instrument(skip_all)]
pub async fn inputs(ctx: &SessionContext, engagement: &EngagementConfig) -> Result<Inputs, AnalyticsError> {
    ctx.sql(&format!(
        "CREATE OR REPLACE VIEW customer_keys AS
         SELECT row_number() OVER (ORDER BY id) AS key, tenant_id, id AS customer_id, {} AS created_us FROM crm_customers",
        micros("created_at")
    ))
    .await?;
    let customers =
        bridge::query_frame(ctx, "SELECT key, tenant_id, customer_id, created_us FROM customer_keys").await?;
    let events = bridge::query_frame(
        ctx,
        &format!(
            "WITH {} SELECT k.key, w.component, w.points, {} AS t_us
             FROM customer_activities a JOIN weights w ON a.activity_type = w.activity_type
             JOIN customer_keys k ON k.customer_id = a.customer_id",
            engagement::weights_sql(engagement),
            micros("a.occurred_at")
        ),
    )
    .await?;
    let orders = bridge::query_frame(
        ctx,
        &format!(
            "SELECT k.key, {} AS t_us, o.amount_minor - coalesce(o.refunded_minor, 0) AS amount_minor
             FROM orders o JOIN customer_keys k ON k.customer_id = o.customer_id
             WHERE o.status = 'paid' AND o.paid_at IS NOT NULL",
            micros("o.paid_at")
        ),
    )
    .await?;
    let sends = bridge::query_frame(
        ctx,
        &format!(
            "SELECT k.key, {} AS t_us,
                    CASE WHEN r.opened_at IS NOT NULL THEN 1.0 ELSE 0.0 END AS opened,
                    CASE WHEN r.clicked_at IS NOT NULL THEN 1.0 ELSE 0.0 END AS clicked
             FROM outbound_campaign_recipients r JOIN customer_keys k ON k.customer_id = r.customer_id
             WHERE r.sent_at IS NOT NULL",
            micros("r.sent_at")
        ),
    )
    .await?;
    Ok(Inputs { customers, events, orders, sends })
}

/// Feature names in matrix order.
pub fn feature_names(engagement: &EngagementConfig) -> Vec<String> {
    let mut names: Vec<String> = engagement.components().iter().map(|c| format!("engagement_{c}")).collect();
    names.extend(
        [
            "activities_30d",
            "activities_90d",
            "days_since_activity",
            "paid_orders",
            "revenue",
            "days_since_order",
            "sends_90d",
            "open_rate_90d",
            "click_rate_90d",
            "tenure_years",
        ]
        .map(String::from),
    );
    names
}

const CAP_DAYS: f64 = 365.0;

/// Polars: one row per customer existing at `cutoff_us`, sorted by key: `key`, every
/// feature of [`feature_names`], and `label` (a paid order within the horizon after the
/// cut-off; only meaningful when that horizon is in the past).
pub fn features_at(
    inputs: &Inputs,
    engagement: &EngagementConfig,
    config: &PredictiveConfig,
    cutoff_us: i64,
) -> Result<DataFrame, AnalyticsError> {
    let c = cutoff_us;
    let day = MICROS_PER_DAY as f64;
    let days_ago = |t: polars::prelude::Expr| (lit(c) - t).cast(DataType::Float64) / lit(day);
    let recent = |days: i64| col("t_us").gt(lit(c - days * MICROS_PER_DAY)).cast(DataType::Float64);

    let base = inputs
        .customers
        .clone()
        .lazy()
        .filter(col("created_us").lt_eq(lit(c)))
        .select([col("key"), (days_ago(col("created_us")) / lit(365.0)).alias("tenure_years")]);
    let past_events = inputs.events.clone().lazy().filter(col("t_us").lt_eq(lit(c)));
    let decayed = engagement::decayed_components(past_events.clone(), engagement, c);
    let activity = past_events.group_by([col("key")]).agg([
        recent(30).sum().alias("activities_30d"),
        recent(90).sum().alias("activities_90d"),
        col("t_us").max().alias("last_activity_us"),
    ]);
    let orders = inputs.orders.clone().lazy();
    let past_orders = orders.clone().filter(col("t_us").lt_eq(lit(c))).group_by([col("key")]).agg([
        col("t_us").count().cast(DataType::Float64).alias("paid_orders"),
        (col("amount_minor").cast(DataType::Float64) / lit(100.0)).sum().alias("revenue"),
        col("t_us").max().alias("last_order_us"),
    ]);
    let horizon = config.horizon_days as i64 * MICROS_PER_DAY;
    let label = orders
        .filter(col("t_us").gt(lit(c)).and(col("t_us").lt_eq(lit(c + horizon))))
        .group_by([col("key")])
        .agg([col("t_us").count().gt(lit(0)).alias("label")]);
    let sends = inputs
        .sends
        .clone()
        .lazy()
        .filter(col("t_us").lt_eq(lit(c)).and(col("t_us").gt(lit(c - 90 * MICROS_PER_DAY))))
        .group_by([col("key")])
        .agg([
            col("t_us").count().cast(DataType::Float64).alias("sends_90d"),
            col("opened").sum().alias("opened_90d"),
            col("clicked").sum().alias("clicked_90d"),
        ]);
    let left = || JoinArgs::new(JoinType::Left);
    let joined = base
        .join(decayed, [col("key")], [col("key")], left())
        .join(activity, [col("key")], [col("key")], left())
        .join(past_orders, [col("key")], [col("key")], left())
        .join(sends, [col("key")], [col("key")], left())
        .join(label, [col("key")], [col("key")], left());
    let log1p = |name: &str| col(name).fill_null(lit(0.0)).clip_min_lit0().log1p();
    let since = |name: &str| {
        when(col(name).is_null())
            .then(lit(CAP_DAYS))
            .otherwise(when(days_ago(col(name)).gt(lit(CAP_DAYS))).then(lit(CAP_DAYS)).otherwise(days_ago(col(name))))
    };
    let rate = |num: &str| {
        when(col("sends_90d").fill_null(lit(0.0)).gt(lit(0.0))).then(col(num) / col("sends_90d")).otherwise(lit(0.0))
    };
    let mut columns = vec![col("key")];
    for comp in engagement.components() {
        columns.push(log1p(&format!("r_{comp}")).alias(format!("engagement_{comp}")));
    }
    columns.extend([
        log1p("activities_30d").alias("activities_30d"),
        log1p("activities_90d").alias("activities_90d"),
        since("last_activity_us").alias("days_since_activity"),
        log1p("paid_orders").alias("paid_orders"),
        log1p("revenue").alias("revenue"),
        since("last_order_us").alias("days_since_order"),
        log1p("sends_90d").alias("sends_90d"),
        rate("opened_90d").alias("open_rate_90d"),
        rate("clicked_90d").alias("click_rate_90d"),
        col("tenure_years"),
        col("label").fill_null(lit(false)).alias("label"),
    ]);
    let frame: LazyFrame = joined.select(columns).sort(["key"], Default::default());
    Ok(frame.collect()?)
}

/// The rows of a feature frame whose key, hashed with the cut-off's number, falls in the
/// lowest `share` of the hash range: a uniform sample that the same data always draws the
/// same way, and a different one per cut-off.
fn sample(frame: &DataFrame, share: f64, cutoff: u64) -> Result<DataFrame, AnalyticsError> {
    let keys = frame.column("key")?.cast(&DataType::UInt64)?;
    let threshold = (share * u64::MAX as f64) as u64;
    let mask: polars::prelude::BooleanChunked =
        keys.u64()?.iter().map(|k| k.is_some_and(|k| splitmix64(k ^ cutoff.rotate_left(32)) <= threshold)).collect();
    Ok(frame.filter(&mask)?)
}

/// SplitMix64's finaliser: a fixed, well-mixed 64-bit hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `max(x, 0)` for the decayed points (an unsubscribe can push a channel below zero).
trait ClipMin {
    fn clip_min_lit0(self) -> polars::prelude::Expr;
}

impl ClipMin for polars::prelude::Expr {
    fn clip_min_lit0(self) -> polars::prelude::Expr {
        when(self.clone().lt(lit(0.0))).then(lit(0.0)).otherwise(self)
    }
}

/// The feature matrix (rows × features) and labels of a feature frame.
pub fn matrix(frame: &DataFrame, names: &[String]) -> Result<(Array2<f64>, Vec<bool>), AnalyticsError> {
    let rows = frame.height();
    let mut x = Array2::<f64>::zeros((rows, names.len()));
    for (j, name) in names.iter().enumerate() {
        let column = frame.column(name)?.cast(&DataType::Float64)?;
        for (i, v) in column.f64()?.iter().enumerate() {
            x[[i, j]] = v.unwrap_or(0.0);
        }
    }
    let labels = frame.column("label")?.bool()?.iter().map(|v| v.unwrap_or(false)).collect();
    Ok((x, labels))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelMetrics {
    pub auc_train: f64,
    pub auc_validation: f64,
    /// AUC of the rule "bought in the 90 days before the cut-off" on the validation set.
    pub baseline_auc_recent_buyer: f64,
    /// Validation positives / rows: what a constant prediction would say (AUC 0.5).
    pub base_rate_validation: f64,
    pub brier_validation: f64,
    pub log_loss_validation: f64,
    pub calibration: Vec<CalibrationBin>,
    pub train_rows: usize,
    /// The share of training rows kept ([`PredictiveConfig::max_train_rows`]); 1 = all.
    pub train_sample: f64,
    pub train_positives: usize,
    pub validation_rows: usize,
    pub validation_positives: usize,
    pub train_cutoffs: Vec<DateTime<Utc>>,
    pub validation_cutoff: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Model {
    pub version: String,
    pub as_of: DateTime<Utc>,
    pub horizon_days: u32,
    pub features: Vec<String>,
    pub means: Vec<f64>,
    pub deviations: Vec<f64>,
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    pub metrics: ModelMetrics,
    /// The validation cut-off's (probability, label) pairs, for ROC and lift curves.
    #[serde(skip)]
    pub validation: Vec<(f64, bool)>,
}

impl Model {
    fn standardise(&self, x: &Array2<f64>) -> Array2<f64> {
        let mut z = x.clone();
        for j in 0..self.features.len() {
            z.column_mut(j).mapv_inplace(|v| (v - self.means[j]) / self.deviations[j]);
        }
        z
    }

    /// P(label) per row of a raw feature matrix.
    pub fn probabilities(&self, x: &Array2<f64>) -> Vec<f64> {
        let z = self.standardise(x);
        let beta = Array1::from(self.coefficients.clone());
        z.dot(&beta).iter().map(|s| sigmoid(s + self.intercept)).collect()
    }

    /// Per row: the `n` largest |βⱼ·zⱼ| terms as (feature index, contribution, raw value).
    pub fn top_features(&self, x: &Array2<f64>, n: usize) -> Vec<Vec<(usize, f64, f64)>> {
        let z = self.standardise(x);
        let mut terms: Vec<(usize, f64)> = Vec::with_capacity(self.features.len());
        (0..x.nrows())
            .map(|i| {
                terms.clear();
                terms.extend((0..self.features.len()).map(|j| (j, self.coefficients[j] * z[[i, j]])));
                terms.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
                terms.iter().take(n).map(|&(j, c)| (j, c, x[[i, j]])).collect()
            })
            .collect()
    }
}

/// L2-regularised logistic regression: β and β₀ of the log-odds of `true`, minimising
/// Σᵢ log(1 + e^(−tᵢ·(β·zᵢ + β₀))) + l2/2·|β|² (tᵢ = ±1, β₀ not penalised), the objective
/// linfa-logistic's L-BFGS minimised here before. Newton's method with a backtracking
/// step: each iteration is one pass over the rows (gradient and the (d+1)² Hessian), and
/// it converges in a handful where L-BFGS took up to 200 iterations of several passes
/// each (8.9 s against tenths of a second for 200,000 rows × 15 features). With `l2` > 0
/// the objective is strictly convex, so both reach the same unique optimum.
fn fit_logistic(z: &Array2<f64>, y: &[bool], l2: f64) -> Result<(Vec<f64>, f64), AnalyticsError> {
    let (n, d) = z.dim();
    if n != y.len() {
        return Err(AnalyticsError::Model(format!("{n} rows but {} labels", y.len())));
    }
    if z.iter().any(|v| !v.is_finite()) || !l2.is_finite() || l2 < 0.0 {
        return Err(AnalyticsError::Model("features and l2 must be finite (l2 ≥ 0)".into()));
    }
    let rows = z.as_standard_layout();
    let rows = rows.as_slice().expect("standard layout is contiguous");
    let k = d + 1;
    // The intercept is the last weight.
    let score = |w: &[f64], row: &[f64]| row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + w[d];
    let objective = |w: &[f64]| -> f64 {
        let data: f64 = y
            .iter()
            .enumerate()
            .map(|(i, &label)| {
                let row = &rows[i * d..(i + 1) * d];
                let m = if label { score(w, row) } else { -score(w, row) };
                // log(1 + e^(−m)), without overflow either way.
                if m > 0.0 { (-m).exp().ln_1p() } else { -m + m.exp().ln_1p() }
            })
            .sum();
        data + 0.5 * l2 * w[..d].iter().map(|v| v * v).sum::<f64>()
    };
    let mut w = vec![0.0; k];
    let mut value = objective(&w);
    for _ in 0..100 {
        let mut gradient = vec![0.0; k];
        let mut hessian = vec![0.0; k * k];
        for (i, &label) in y.iter().enumerate() {
            let row = &rows[i * d..(i + 1) * d];
            let p = sigmoid(score(&w, row));
            let (r, q) = (p - if label { 1.0 } else { 0.0 }, p * (1.0 - p));
            for a in 0..d {
                gradient[a] += r * row[a];
                let qa = q * row[a];
                for b in 0..=a {
                    hessian[a * k + b] += qa * row[b];
                }
                hessian[d * k + a] += qa;
            }
            gradient[d] += r;
            hessian[d * k + d] += q;
        }
        for a in 0..d {
            gradient[a] += l2 * w[a];
            hessian[a * k + a] += l2;
        }
        // linfa's default tolerance on the summed gradient.
        if gradient.iter().map(|g| g * g).sum::<f64>().sqrt() < 1e-4 {
            break;
        }
        for a in 0..k {
            for b in 0..a {
                hessian[b * k + a] = hessian[a * k + b];
            }
            // A constant feature with l2 = 0 leaves the Hessian singular: a whisker of
            // ridge keeps the step defined without moving the optimum measurably.
            hessian[a * k + a] += 1e-9;
        }
        let step = solve_positive_definite(&mut hessian, &gradient, k)
            .ok_or_else(|| AnalyticsError::Model("the logistic Hessian is not positive definite".into()))?;
        // Halve the step until the objective decreases enough (Armijo).
        let slope: f64 = gradient.iter().zip(&step).map(|(g, s)| g * s).sum();
        let mut t = 1.0;
        loop {
            let next: Vec<f64> = w.iter().zip(&step).map(|(v, s)| v - t * s).collect();
            let next_value = objective(&next);
            if next_value <= value - 1e-4 * t * slope || t < 1e-10 {
                w = next;
                value = next_value;
                break;
            }
            t *= 0.5;
        }
    }
    let intercept = w.pop().unwrap_or_default();
    Ok((w, intercept))
}

/// Solves `a·x = b` for a symmetric positive definite `a` (k×k, row-major) by Cholesky,
/// overwriting `a` with its factor; None if `a` is not positive definite.
fn solve_positive_definite(a: &mut [f64], b: &[f64], k: usize) -> Option<Vec<f64>> {
    for j in 0..k {
        let diagonal = a[j * k + j] - (0..j).map(|m| a[j * k + m] * a[j * k + m]).sum::<f64>();
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return None;
        }
        let l = diagonal.sqrt();
        a[j * k + j] = l;
        for i in j + 1..k {
            a[i * k + j] = (a[i * k + j] - (0..j).map(|m| a[i * k + m] * a[j * k + m]).sum::<f64>()) / l;
        }
    }
    let mut x = b.to_vec();
    for i in 0..k {
        x[i] = (x[i] - (0..i).map(|m| a[i * k + m] * x[m]).sum::<f64>()) / a[i * k + i];
    }
    for i in (0..k).rev() {
        x[i] = (x[i] - (i + 1..k).map(|m| a[m * k + i] * x[m]).sum::<f64>()) / a[i * k + i];
    }
    Some(x)
}

fn sigmoid(s: f64) -> f64 {
    1.0 / (1.0 + (-s).exp())
}

/// Area under the ROC curve (Mann–Whitney, ties share their average rank). None when
/// one class is missing.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|l| **l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += order[i..=j].iter().filter(|k| labels[**k]).count() as f64 * rank;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Ten equal-width bins of predicted probability; empty bins are left out.
pub fn calibration(predicted: &[f64], labels: &[bool]) -> Vec<CalibrationBin> {
    (0..10)
        .filter_map(|b| {
            let (lower, upper) = (b as f64 / 10.0, (b + 1) as f64 / 10.0);
            let rows: Vec<usize> = (0..predicted.len())
                .filter(|i| predicted[*i] >= lower && (predicted[*i] < upper || (b == 9 && predicted[*i] <= 1.0)))
                .collect();
            (!rows.is_empty()).then(|| {
                let n = rows.len() as f64;
                CalibrationBin {
                    lower,
                    upper,
                    count: rows.len(),
                    mean_predicted: rows.iter().map(|i| predicted[*i]).sum::<f64>() / n,
                    observed_rate: rows.iter().filter(|i| labels[**i]).count() as f64 / n,
                }
            })
        })
        .collect()
}

/// Trains on the earlier cut-offs and validates on the latest one.
#[tracing::instrument(skip_all, fields(as_of = %as_of))]
pub fn train(
    inputs: &Inputs,
    engagement: &EngagementConfig,
    config: &PredictiveConfig,
    as_of: DateTime<Utc>,
) -> Result<Model, AnalyticsError> {
    let names = feature_names(engagement);
    let latest = as_of - Duration::days(config.horizon_days as i64);
    let cutoffs: Vec<DateTime<Utc>> =
        (0..config.cutoffs).map(|k| latest - Duration::days((k * config.step_days) as i64)).collect();
    let validation_cutoff = cutoffs[0];
    let train_cutoffs: Vec<DateTime<Utc>> = cutoffs[1..].to_vec();

    let clock = std::time::Instant::now();
    let (xv, yv) = matrix(&features_at(inputs, engagement, config, validation_cutoff.timestamp_micros())?, &names)?;
    // A training cut-off has one row per customer existing at it.
    let created = inputs.customers.column("created_us")?.cast(&DataType::Int64)?;
    let created = created.i64()?;
    let rows: usize = train_cutoffs
        .iter()
        .map(|c| created.iter().filter(|t| t.is_some_and(|t| t <= c.timestamp_micros())).count())
        .sum();
    let bound = rows.max(1);
    let keep = (config.max_train_rows as f64 / bound as f64).min(1.0);
    let mut train_rows: Vec<f64> = Vec::with_capacity((bound as f64 * keep * 1.05) as usize * names.len());
    let mut yt: Vec<bool> = Vec::new();
    for (k, c) in train_cutoffs.iter().enumerate() {
        let frame = features_at(inputs, engagement, config, c.timestamp_micros())?;
        let frame = if keep < 1.0 { sample(&frame, keep, k as u64)? } else { frame };
        let (x, y) = matrix(&frame, &names)?;
        train_rows.extend(x.iter());
        yt.extend(y);
    }
    let xt = Array2::from_shape_vec((yt.len(), names.len()), train_rows)
        .map_err(|e| AnalyticsError::Model(e.to_string()))?;
    let features_time = clock.elapsed();
    let train_positives = yt.iter().filter(|l| **l).count();
    let validation_positives = yv.iter().filter(|l| **l).count();
    if train_positives == 0
        || train_positives == yt.len()
        || validation_positives == 0
        || validation_positives == yv.len()
    {
        return Err(AnalyticsError::Insufficient(format!(
            "not enough labelled history to train: the cut-offs {} need customers with and without a paid order in the {} days after each \
             (training: {train_positives} of {} rows positive, validation: {validation_positives} of {})",
            cutoffs.iter().map(|c| c.date_naive().to_string()).collect::<Vec<_>>().join(", "),
            config.horizon_days,
            yt.len(),
            yv.len()
        )));
    }

    let n = xt.nrows() as f64;
    let means: Vec<f64> = (0..names.len()).map(|j| xt.column(j).sum() / n).collect();
    let deviations: Vec<f64> = (0..names.len())
        .map(|j| {
            let var = xt.column(j).iter().map(|v| (v - means[j]).powi(2)).sum::<f64>() / n;
            if var > 1e-12 { var.sqrt() } else { 1.0 }
        })
        .collect();
    let mut model = Model {
        version: String::new(),
        as_of,
        horizon_days: config.horizon_days,
        features: names.clone(),
        means,
        deviations,
        coefficients: vec![0.0; names.len()],
        intercept: 0.0,
        metrics: ModelMetrics {
            auc_train: 0.0,
            auc_validation: 0.0,
            baseline_auc_recent_buyer: 0.0,
            base_rate_validation: validation_positives as f64 / yv.len() as f64,
            brier_validation: 0.0,
            log_loss_validation: 0.0,
            calibration: Vec::new(),
            train_rows: yt.len(),
            train_sample: keep,
            train_positives,
            validation_rows: yv.len(),
            validation_positives,
            train_cutoffs,
            validation_cutoff,
        },
        validation: Vec::new(),
    };
    let zt = model.standardise(&xt);
    let clock = std::time::Instant::now();
    let (coefficients, intercept) = fit_logistic(&zt, &yt, config.l2)?;
    tracing::info!(
        features_ms = features_time.as_millis() as u64,
        fit_ms = clock.elapsed().as_millis() as u64,
        train_rows = yt.len(),
        sample = keep,
        "predictive model fitted"
    );
    model.coefficients = coefficients;
    model.intercept = intercept;

    let pt = model.probabilities(&xt);
    let pv = model.probabilities(&xv);
    model.metrics.auc_train = auc(&pt, &yt).unwrap_or(0.5);
    model.metrics.auc_validation = auc(&pv, &yv).unwrap_or(0.5);
    let order_idx = names.iter().position(|n| n == "days_since_order").expect("feature exists");
    let recent_buyer: Vec<f64> = (0..xv.nrows()).map(|i| if xv[[i, order_idx]] <= 90.0 { 1.0 } else { 0.0 }).collect();
    model.metrics.baseline_auc_recent_buyer = auc(&recent_buyer, &yv).unwrap_or(0.5);
    model.metrics.brier_validation =
        pv.iter().zip(&yv).map(|(p, y)| (p - if *y { 1.0 } else { 0.0 }).powi(2)).sum::<f64>() / pv.len() as f64;
    model.metrics.log_loss_validation = -pv
        .iter()
        .zip(&yv)
        .map(|(p, y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if *y { p.ln() } else { (1.0 - p).ln() }
        })
        .sum::<f64>()
        / pv.len() as f64;
    model.metrics.calibration = calibration(&pv, &yv);
    model.validation = pv.iter().copied().zip(yv.iter().copied()).collect();
    model.version = version(&model);
    Ok(model)
}

/// `logreg-<as_of date>-<8 hex of the coefficients>`: the same data gives the same version.
fn version(model: &Model) -> String {
    // FNV-1a over the coefficient bits: stable across runs and platforms.
    let mut h: u64 = 0xcbf29ce484222325;
    for v in model.coefficients.iter().chain([&model.intercept]) {
        for b in v.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("logreg-{}-{:08x}", model.as_of.format("%Y%m%d"), h as u32)
}

/// One customer's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub tenant_id: String,
    pub customer_id: String,
    pub probability: f64,
    /// (the feature's index in the model's `features`, contribution to the log-odds, raw
    /// feature value): an index, not the name, since a million customers' names were
    /// three million strings.
    pub top_features: Vec<(usize, f64, f64)>,
}

/// Scores every customer existing at `as_of`, in customer-id order.
#[tracing::instrument(skip_all)]
pub fn score(
    inputs: &Inputs,
    engagement: &EngagementConfig,
    config: &PredictiveConfig,
    model: &Model,
) -> Result<Vec<Score>, AnalyticsError> {
    let frame = features_at(inputs, engagement, config, model.as_of.timestamp_micros())?;
    let (x, _) = matrix(&frame, &model.features)?;
    let probabilities = model.probabilities(&x);
    let tops = model.top_features(&x, 3);
    // Keys are 1..=n in customer-id order (row_number), so they index the customer frame.
    let customers = inputs.customers.clone().lazy().sort(["key"], Default::default()).collect()?;
    let key_col = customers.column("key")?.cast(&DataType::Int64)?;
    let keys = key_col.i64()?;
    let tenants = customers.column("tenant_id")?.cast(&DataType::String)?;
    let tenants = tenants.str()?;
    let ids = customers.column("customer_id")?.cast(&DataType::String)?;
    let ids = ids.str()?;
    let mut index = std::collections::HashMap::with_capacity(customers.height());
    for i in 0..customers.height() {
        if let Some(k) = keys.get(i) {
            index.insert(k, i);
        }
    }
    let scored_keys = frame.column("key")?.cast(&DataType::Int64)?;
    let mut out = Vec::with_capacity(frame.height());
    for (row, (k, (p, top))) in scored_keys.i64()?.iter().zip(probabilities.into_iter().zip(tops)).enumerate() {
        let Some(i) = k.and_then(|k| index.get(&k).copied()) else {
            return Err(AnalyticsError::Model(format!("scored row {row} has no customer")));
        };
        out.push(Score {
            tenant_id: tenants.get(i).unwrap_or_default().to_string(),
            customer_id: ids.get(i).unwrap_or_default().to_string(),
            probability: p,
            top_features: top,
        });
    }
    // In customer order: the score table's heap is in that order, so its write updates
    // each page once.
    out.sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_tied_scores() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]), Some(0.5));
        // One positive above one of two negatives: 0.5 + ties… hand-computed: pairs
        // (p=0.6 vs n=0.4) win, (p=0.6 vs n=0.7) lose → 0.5.
        assert_eq!(auc(&[0.4, 0.6, 0.7], &[false, true, false]), Some(0.5));
        assert_eq!(auc(&[0.4, 0.6], &[true, true]), None);
    }

    #[test]
    fn fitted_coefficients_raise_the_probability_of_true() {
        let x = Array2::from_shape_vec((6, 1), vec![-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]).unwrap();
        for y in [vec![false, false, false, true, true, true], vec![true, false, false, true, true, true]] {
            let (beta, _) = fit_logistic(&x, &y, 1.0).unwrap();
            assert!(beta[0] > 0.0, "{beta:?} for {y:?}");
        }
        let y = vec![true, true, true, false, false, false];
        let (beta, _) = fit_logistic(&x, &y, 1.0).unwrap();
        assert!(beta[0] < 0.0, "{beta:?}");
    }

    /// The objective is strictly convex, so a point where its gradient vanishes is its
    /// minimum: checked on correlated, noisy features with an unbalanced label.
    #[test]
    fn the_fit_is_the_regularised_optimum() {
        let (n, d, l2) = (5_000, 4, 2.0);
        let mut state = 7u64;
        let mut uniform = || {
            state = splitmix64(state);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut x = Array2::zeros((n, d));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let base = uniform() * 4.0 - 2.0;
            for j in 0..d {
                x[[i, j]] = base * (j as f64 + 1.0) / 2.0 + uniform() - 0.5;
            }
            let s = 1.5 * x[[i, 0]] - 0.7 * x[[i, 2]] - 1.2;
            y.push(uniform() < sigmoid(s));
        }
        let (beta, intercept) = fit_logistic(&x, &y, l2).unwrap();
        let mut gradient = vec![0.0; d + 1];
        for i in 0..n {
            let s: f64 = (0..d).map(|j| beta[j] * x[[i, j]]).sum::<f64>() + intercept;
            let r = sigmoid(s) - if y[i] { 1.0 } else { 0.0 };
            for j in 0..d {
                gradient[j] += r * x[[i, j]];
            }
            gradient[d] += r;
        }
        for j in 0..d {
            gradient[j] += l2 * beta[j];
        }
        let norm = gradient.iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!(norm < 1e-4, "gradient {gradient:?} at {beta:?}, {intercept}");
        // Without features the optimum is the log-odds of the base rate, l2 or not.
        let positives = y.iter().filter(|l| **l).count() as f64;
        let (none, intercept) = fit_logistic(&Array2::zeros((n, 0)), &y, l2).unwrap();
        assert!(none.is_empty());
        assert!((intercept - (positives / (n as f64 - positives)).ln()).abs() < 1e-8, "{intercept}");
    }

    #[test]
    fn a_fit_refuses_what_it_cannot_fit() {
        let x = Array2::from_shape_vec((2, 1), vec![f64::NAN, 1.0]).unwrap();
        assert!(fit_logistic(&x, &[true, false], 1.0).is_err());
        let x = Array2::from_shape_vec((2, 1), vec![0.0, 1.0]).unwrap();
        assert!(fit_logistic(&x, &[true], 1.0).is_err());
        assert!(fit_logistic(&x, &[true, false], f64::INFINITY).is_err());
    }

    #[test]
    fn samples_are_uniform_and_reproducible() {
        let keys: Vec<u64> = (1..=20_000).collect();
        let frame = DataFrame::new(20_000, vec![polars::prelude::Column::new("key".into(), keys)]).unwrap();
        let a = sample(&frame, 0.25, 0).unwrap();
        assert!((a.height() as f64 / 20_000.0 - 0.25).abs() < 0.02, "{}", a.height());
        assert_eq!(a, sample(&frame, 0.25, 0).unwrap(), "the same data draws the same sample");
        let b = sample(&frame, 0.25, 1).unwrap();
        assert_ne!(a, b, "each cut-off draws its own");
        // Spread over the key range, not its first quarter.
        let top = a.column("key").unwrap().u64().unwrap().iter().flatten().filter(|k| *k > 15_000).count();
        assert!((top as f64 / a.height() as f64 - 0.25).abs() < 0.03, "{top} of {}", a.height());
        assert_eq!(sample(&frame, 1.0, 0).unwrap().height(), 20_000);
    }

    #[test]
    fn calibration_bins_count_and_rate() {
        let bins = calibration(&[0.05, 0.07, 0.95, 1.0], &[false, true, true, true]);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0].count, 2);
        assert_eq!(bins[0].observed_rate, 0.5);
        assert!((bins[0].mean_predicted - 0.06).abs() < 1e-12);
        assert_eq!(bins[1].count, 2);
        assert_eq!(bins[1].observed_rate, 1.0);
    }
}
