//! A/B tests with an automatic winner, and send-time optimisation: what a campaign does
//! with its recipients at its start and after its test.
//!
//! At the start ([`prepare_start`]) a test's share of the audience is split among the
//! variants (a seeded hash of each customer: the same seed and audience give the same
//! split), the rest wait with `not_before = 'infinity'`; a `best_hour` campaign gives each
//! recipient who goes now their best hour within the next 24 hours (`app_best_send_times`,
//! docs/metrics.md). Once every test send is out and the wait has passed since the last
//! one, [`decide`] counts the winning metric per variant, tests the leader against each
//! other variant (two-proportion z-test, Bonferroni), stores the decision with its
//! numbers, and releases the rest with the winner.

use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};

use crate::campaigns::store;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

/// Variants in one test, at least and at most.
pub const MIN_VARIANTS: usize = 2;
pub const MAX_VARIANTS: usize = 4;
/// The waits a test may have, in minutes (one minute to 30 days).
pub const WAIT_MINUTES: std::ops::RangeInclusive<u32> = 1..=43_200;
/// The significance level of the decision, before its Bonferroni split.
pub const ALPHA: f64 = 0.05;

/// A campaign's A/B test, as stored in `outbound_campaigns.ab_test` (the API checks it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbTest {
    pub variants: Vec<Variant>,
    /// The share of the audience in the test, in (0, 1]; the rest gets the winner.
    pub test_share: f64,
    pub metric: Metric,
    /// How long after the last test send the decision waits for responses.
    pub wait_minutes: u32,
    /// The split's seed; without one, the campaign id.
    #[serde(default)]
    pub seed: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    /// The e-mail template, SMS template or phone script, by the campaign's type.
    pub template_id: Uuid,
}

/// What counts as a response to a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Opens by a person (machine opens never set `opened_at`).
    Opens,
    /// Clicks by a person.
    Clicks,
    Replies,
    /// A paid order by the customer after the send, up to the decision.
    Conversions,
}

pub const METRICS: &[&str] = &["opens", "clicks", "replies", "conversions"];

impl Metric {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "opens" => Self::Opens,
            "clicks" => Self::Clicks,
            "replies" => Self::Replies,
            "conversions" => Self::Conversions,
            _ => return None,
        })
    }

    /// The condition on a sent recipient `r` (decided at `$3`) that makes it a response.
    fn condition(self) -> &'static str {
        match self {
            Self::Opens => "r.opened_at is not null",
            Self::Clicks => "r.clicked_at is not null",
            Self::Replies => "r.replied_at is not null",
            Self::Conversions => {
                "exists (select 1 from orders o where o.tenant_id = r.tenant_id and o.customer_id = r.customer_id
                   and o.status = 'paid' and o.paid_at >= r.sent_at and o.paid_at <= $3)"
            }
        }
    }
}

/// One variant's test numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub variant: i16,
    pub name: String,
    /// Test recipients the variant reached (sent).
    pub sent: i64,
    pub responses: i64,
    /// responses / sent, null before anything was sent.
    pub rate: Option<f64>,
}

/// The leader against one other variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub variant: i16,
    pub z: Option<f64>,
    /// Two-sided; null when the test cannot be made (nothing sent, or no variation).
    pub p_value: Option<f64>,
}

/// What the decision found, stored in `outbound_campaigns.ab_decision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub decided_at: DateTime<Utc>,
    pub metric: Metric,
    pub arms: Vec<Arm>,
    /// The variant the rest of the audience gets: the one with the highest rate (the
    /// first on a tie).
    pub winner: i16,
    pub winner_name: String,
    /// The leader against each other variant.
    pub comparisons: Vec<Comparison>,
    /// The largest p-value of those comparisons.
    pub p_value: Option<f64>,
    /// The level each comparison must pass: `ALPHA / (variants - 1)`.
    pub alpha: f64,
    /// Every comparison passed: the winner is better than each other variant.
    pub significant: bool,
    /// Recipients released with the winner.
    pub released: i64,
}

/// The two-proportion z-test of `x1/n1` against `x2/n2` with the pooled proportion:
/// `(z, two-sided p)`, or `None` when a side has no trials or the pooled proportion is 0
/// or 1 (no variation to test).
pub fn two_proportion(x1: i64, n1: i64, x2: i64, n2: i64) -> Option<(f64, f64)> {
    if n1 <= 0 || n2 <= 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return None;
    }
    let z = (x1 as f64 / n1f - x2 as f64 / n2f) / se;
    Some((z, erfc(z.abs() / std::f64::consts::SQRT_2)))
}

/// The complementary error function (Numerical Recipes' `erfcc`, fractional error below
/// 1.2e-7 everywhere), enough for p-values.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The decision over the arms (in variant order): the leader and its comparisons.
pub fn judge(metric: Metric, arms: Vec<Arm>, decided_at: DateTime<Utc>) -> Decision {
    let rate = |a: &Arm| a.rate.unwrap_or(-1.0);
    // The first of the best rates: on a tie the earlier variant (the control) stays.
    let leader = arms.iter().fold(None::<&Arm>, |best, a| match best {
        Some(b) if rate(b) >= rate(a) => Some(b),
        _ => Some(a),
    });
    let Some(leader) = leader.cloned() else {
        return Decision {
            decided_at,
            metric,
            arms,
            winner: 0,
            winner_name: String::new(),
            comparisons: Vec::new(),
            p_value: None,
            alpha: ALPHA,
            significant: false,
            released: 0,
        };
    };
    let comparisons: Vec<Comparison> = arms
        .iter()
        .filter(|a| a.variant != leader.variant)
        .map(|a| {
            let test = two_proportion(leader.responses, leader.sent, a.responses, a.sent);
            Comparison { variant: a.variant, z: test.map(|t| round(t.0, 4)), p_value: test.map(|t| round(t.1, 6)) }
        })
        .collect();
    let alpha = ALPHA / comparisons.len().max(1) as f64;
    let p_value = comparisons.iter().map(|c| c.p_value).try_fold(0.0f64, |m, p| p.map(|p| m.max(p)));
    let significant = !comparisons.is_empty()
        && comparisons.iter().all(|c| c.z.is_some_and(|z| z > 0.0) && c.p_value.is_some_and(|p| p < alpha));
    Decision {
        decided_at,
        metric,
        winner: leader.variant,
        winner_name: leader.name.clone(),
        arms,
        comparisons,
        p_value,
        alpha,
        significant,
        released: 0,
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// How a campaign's recipients were planned at its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StartPlan {
    /// Recipients in the A/B test (0 without one).
    pub in_test: i64,
    /// Recipients waiting for the test's winner.
    pub waiting_for_winner: i64,
    /// Recipients given a later send time (best hour).
    pub timed: i64,
}

/// Plans a starting campaign's recipients in the caller's transaction (the start's):
/// clears what an earlier, refused start planned, splits the A/B test, and times the
/// recipients who go now when the campaign sends at each one's best hour.
#[tracing::instrument(name = "experiments.prepare_start", skip(conn), err)]
pub async fn prepare_start(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    at: DateTime<Utc>,
) -> Result<StartPlan, sqlx::Error> {
    let (test, send_time): (Option<Json<AbTest>>, String) =
        sqlx::query_as("select ab_test, send_time from outbound_campaigns where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(campaign)
            .fetch_one(&mut *conn)
            .await?;
    store::clear_start_plan(conn, tenant, campaign).await?;
    let mut plan = StartPlan::default();
    if let Some(Json(test)) = test {
        (plan.in_test, plan.waiting_for_winner) = split(conn, tenant, campaign, &test).await?;
    }
    if send_time == "best_hour" {
        plan.timed = time_recipients(conn, tenant, campaign, at, None).await?;
    }
    Ok(plan)
}

/// Splits the pending recipients: the first `ceil(n · share)` (at least one per variant)
/// in the order of `md5(seed:customer)` go round the variants, the rest wait.
async fn split(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    test: &AbTest,
) -> Result<(i64, i64), sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "select count(*) from outbound_campaign_recipients where tenant_id = $1 and campaign_id = $2 and status = 'pending'",
    )
    .bind(tenant)
    .bind(campaign)
    .fetch_one(&mut *conn)
    .await?;
    let variants = test.variants.len().max(1) as i64;
    let in_test = ((n as f64 * test.test_share).ceil() as i64).max(variants).min(n);
    let seed = test.seed.map(|s| s.to_string()).unwrap_or_else(|| campaign.to_string());
    store::split_for_test(conn, tenant, campaign, &seed, in_test, variants).await?;
    Ok((in_test, n - in_test))
}

/// [`store::time_pending`]: how many recipients got a later time.
async fn time_recipients(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    at: DateTime<Utc>,
    winner: Option<i16>,
) -> Result<i64, sqlx::Error> {
    let timed = store::time_pending(conn, tenant, campaign, at, winner).await?;
    Ok(timed.into_iter().filter(|t| *t).count() as i64)
}

/// Running (or, for a test on the whole audience, completed) campaigns whose test is
/// over: no test recipient still to send, and the wait passed since the last test send
/// (across tenants).
#[tracing::instrument(name = "experiments.due", skip(pool), err)]
pub async fn due(pool: &PgPool) -> Result<Vec<(TenantId, Uuid, String)>, sqlx::Error> {
    let mut tx = db::begin_system(pool).await?;
    let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "select c.tenant_id, c.id, c.type from outbound_campaigns c
         where c.status in ('running', 'completed') and c.ab_test is not null and c.ab_decision is null
           and not exists (select 1 from outbound_campaign_recipients r where r.campaign_id = c.id
                           and r.variant is not null and r.status in ('pending', 'queued', 'sending'))
           and (select coalesce(max(r.sent_at), max(r.updated_at), c.started_at)
                from outbound_campaign_recipients r where r.campaign_id = c.id and r.variant is not null)
               <= now() - make_interval(mins => (c.ab_test->>'wait_minutes')::int)
         order by c.started_at limit 100",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(|(t, id, kind)| (TenantId::from_uuid(t), id, kind)).collect())
}

/// Decides a campaign's test (at `at`) in the caller's transaction: counts, judges, stores
/// the decision and releases the waiting recipients with the winner (at their best hour
/// for a `best_hour` campaign). `None` when the campaign is not running (or completed),
/// has no test, or
/// was decided already (two schedulers: the row lock makes the second find it decided).
#[tracing::instrument(name = "experiments.decide", skip(conn), err)]
pub async fn decide(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<Decision>, sqlx::Error> {
    let row: Option<(String, Option<Json<AbTest>>, bool, String)> = sqlx::query_as(
        "select status, ab_test, ab_decision is not null, send_time from outbound_campaigns
         where tenant_id = $1 and id = $2 for update",
    )
    .bind(tenant)
    .bind(campaign)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((status, Some(Json(test)), false, send_time)) = row else { return Ok(None) };
    // A test on the whole audience completes with its last send; its decision is the report.
    if status != "running" && status != "completed" {
        return Ok(None);
    }
    let counts: Vec<(i16, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select r.variant, count(*) filter (where r.sent_at is not null),
                count(*) filter (where r.sent_at is not null and {})
         from outbound_campaign_recipients r
         where r.tenant_id = $1 and r.campaign_id = $2 and r.variant is not null
         group by r.variant",
        test.metric.condition()
    )))
    .bind(tenant)
    .bind(campaign)
    .bind(at)
    .fetch_all(&mut *conn)
    .await?;
    let arms = test
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (sent, responses) =
                counts.iter().find(|(k, _, _)| *k as usize == i).map(|(_, s, r)| (*s, *r)).unwrap_or((0, 0));
            Arm {
                variant: i as i16,
                name: v.name.clone(),
                sent,
                responses,
                rate: (sent > 0).then(|| round(responses as f64 / sent as f64, 6)),
            }
        })
        .collect();
    let mut decision = judge(test.metric, arms, at);
    decision.released = if send_time == "best_hour" {
        let waiting = waiting(conn, tenant, campaign).await?;
        time_recipients(conn, tenant, campaign, at, Some(decision.winner)).await?;
        waiting
    } else {
        store::release_with_winner(conn, tenant, campaign, decision.winner).await? as i64
    };
    sqlx::query("update outbound_campaigns set ab_decision = $3 where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(campaign)
        .bind(Json(&decision))
        .execute(&mut *conn)
        .await?;
    tracing::info!(
        winner = decision.winner,
        significant = decision.significant,
        released = decision.released,
        "A/B test decided"
    );
    Ok(Some(decision))
}

async fn waiting(conn: &mut PgConnection, tenant: TenantId, campaign: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from outbound_campaign_recipients
         where tenant_id = $1 and campaign_id = $2 and status = 'pending' and variant is null and not_before = 'infinity'",
    )
    .bind(tenant)
    .bind(campaign)
    .fetch_one(conn)
    .await
}

/// The template each variant sends, by position, for the send jobs.
pub fn variant_templates(test: Option<&serde_json::Value>) -> Vec<Uuid> {
    test.and_then(|t| serde_json::from_value::<AbTest>(t.clone()).ok())
        .map(|t| t.variants.into_iter().map(|v| v.template_id).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(variant: i16, responses: i64, sent: i64) -> Arm {
        Arm {
            variant,
            name: format!("v{variant}"),
            sent,
            responses,
            rate: (sent > 0).then(|| responses as f64 / sent as f64),
        }
    }

    #[test]
    fn the_z_test_matches_a_hand_worked_example() {
        // 250/1000 against 200/1000: pooled 0.225, se = sqrt(0.225 · 0.775 · 0.002)
        // = 0.018675, z = 0.05 / 0.018675 = 2.6774, two-sided p = 0.00742.
        let (z, p) = two_proportion(250, 1000, 200, 1000).unwrap();
        assert!((z - 2.6774).abs() < 1e-3, "{z}");
        assert!((p - 0.00742).abs() < 1e-4, "{p}");
        // Equal rates: z = 0, p = 1.
        let (z, p) = two_proportion(30, 100, 30, 100).unwrap();
        assert!(z.abs() < 1e-12 && (p - 1.0).abs() < 1e-6, "{z} {p}");
        // Nothing to test.
        assert_eq!(two_proportion(0, 100, 0, 100), None);
        assert_eq!(two_proportion(5, 0, 5, 10), None);
        assert_eq!(two_proportion(10, 10, 10, 10), None);
        // The textbook 1.96 boundary: p(|Z| > 1.96) = 0.05.
        assert!((erfc(1.96 / std::f64::consts::SQRT_2) - 0.05).abs() < 1e-4);
    }

    #[test]
    fn the_leader_wins_only_when_it_beats_every_other_variant() {
        let at = Utc::now();
        let d = judge(Metric::Opens, vec![arm(0, 200, 1000), arm(1, 250, 1000)], at);
        assert_eq!((d.winner, d.significant, d.alpha), (1, true, 0.05));
        // Three variants: the leader must beat both at 0.025; it beats one only.
        let d = judge(Metric::Opens, vec![arm(0, 200, 1000), arm(1, 250, 1000), arm(2, 240, 1000)], at);
        assert_eq!((d.winner, d.significant), (1, false), "{d:?}");
        assert_eq!(d.alpha, 0.025);
        // A tie keeps the first variant and is not significant.
        let d = judge(Metric::Clicks, vec![arm(0, 30, 100), arm(1, 30, 100)], at);
        assert_eq!((d.winner, d.significant), (0, false));
        assert!(d.p_value.is_some_and(|p| p > 0.99), "{d:?}");
        // Nothing sent: no test, the control.
        let d = judge(Metric::Replies, vec![arm(0, 0, 0), arm(1, 0, 0)], at);
        assert_eq!((d.winner, d.significant, d.p_value), (0, false, None));
    }

    #[test]
    fn a_test_round_trips_through_its_stored_form() {
        let test = AbTest {
            variants: vec![
                Variant { name: "A".into(), template_id: Uuid::nil() },
                Variant { name: "B".into(), template_id: Uuid::max() },
            ],
            test_share: 0.2,
            metric: Metric::Conversions,
            wait_minutes: 240,
            seed: Some(7),
        };
        let stored = serde_json::to_value(&test).unwrap();
        assert_eq!(stored["metric"], "conversions");
        assert_eq!(serde_json::from_value::<AbTest>(stored.clone()).unwrap(), test);
        assert_eq!(variant_templates(Some(&stored)), vec![Uuid::nil(), Uuid::max()]);
        for m in METRICS {
            assert!(Metric::parse(m).is_some());
        }
    }
}
