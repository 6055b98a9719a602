//! `fibonacco bench send-time`: send-time optimisation checked offline against the hour
//! the synthetic generator hides in each customer (`synthetic::best_hour`). The generator
//! makes responses likelier near that hour (`synthetic::timing_factor`); the platform
//! learns only from the sends and responses in the lake (the `send_times` pipeline) and
//! picks each customer's moment with `app_best_send_at`. The figure: the expected response
//! factor of the moments it picks, against sending at once (the baseline, the same run)
//! and against the hidden best hour (the ceiling), averaged over start times spread
//! across a day.

use chrono::{DateTime, Duration, Timelike, Utc};
use clap::Args;
use fibonacco_pipelines::{Engine, Pipeline, Pipelines};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::synthetic::{best_hour, timing_factor};

#[derive(Args)]
pub struct SendTimeBench {
    /// Customers to seed.
    #[arg(long, default_value_t = 20_000)]
    customers: u64,
    #[arg(long, default_value_t = 4)]
    tenants: u32,
    #[arg(long, default_value_t = 180)]
    days: u32,
    /// Customers evaluated (the first by id).
    #[arg(long, default_value_t = 5_000)]
    sample: i64,
    /// Drop a database and lake kept from an earlier run and seed again.
    #[arg(long)]
    fresh: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// What picking each customer's moment is worth, in the generator's own terms.
#[derive(Debug, Clone, Serialize)]
pub struct Lift {
    pub customers: usize,
    pub starts: usize,
    /// Mean timing factor of sending at each start time (the baseline).
    pub immediate: f64,
    /// Mean timing factor of the moments `app_best_send_at` picked.
    pub optimised: f64,
    /// Mean timing factor at each customer's hidden best hour (the ceiling).
    pub oracle: f64,
    /// optimised / immediate − 1.
    pub lift: f64,
    /// oracle / immediate − 1.
    pub oracle_lift: f64,
    /// Share of the oracle's lift recovered: lift / oracle_lift.
    pub recovered: f64,
    /// Share of picks at the hidden best hour or one next to it.
    pub within_one_hour: f64,
}

/// Start times every `24 / starts` hours from `from`.
pub fn starts(from: DateTime<Utc>, starts: usize) -> Vec<DateTime<Utc>> {
    (0..starts).map(|i| from + Duration::minutes((i * 24 * 60 / starts.max(1)) as i64)).collect()
}

/// Evaluates the picks for the first `sample` customers (by id) of the seeded database
/// behind `pool` (which must see every tenant) at each of `at`.
#[tracing::instrument(skip(pool, at))]
pub async fn evaluate(pool: &PgPool, at: &[DateTime<Utc>], sample: i64) -> anyhow::Result<Lift> {
    let customers: Vec<(Uuid, Uuid)> = sqlx::query_as("select tenant_id, id from crm_customers order by id limit $1")
        .bind(sample)
        .fetch_all(pool)
        .await?;
    let (mut immediate, mut optimised, mut oracle, mut near, mut n) = (0.0, 0.0, 0.0, 0usize, 0usize);
    for start in at {
        // One statement for all, as a campaign's start times its audience.
        let picks: Vec<(Uuid, i32)> = sqlx::query_as(
            "with c as (select tenant_id, id, app_zone(timezone, null) as zone from crm_customers where id = any($2))
             select b.customer_id, extract(hour from b.send_at at time zone 'UTC')::int
             from app_best_send_times($1, (select array_agg(tenant_id) from c), (select array_agg(id) from c),
                                      (select array_agg(zone) from c)) b",
        )
        .bind(start)
        .bind(customers.iter().map(|(_, c)| *c).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?;
        let tenant_of: std::collections::HashMap<Uuid, Uuid> = customers.iter().map(|(t, c)| (*c, *t)).collect();
        for (customer, hour) in picks {
            let best = best_hour(&tenant_of[&customer], &customer.to_string());
            immediate += timing_factor(best, start.hour());
            optimised += timing_factor(best, hour as u32);
            oracle += timing_factor(best, best);
            let d = (best as i32 - hour).rem_euclid(24);
            near += usize::from(d.min(24 - d) <= 1);
            n += 1;
        }
    }
    anyhow::ensure!(n > 0, "no customer to evaluate");
    let (immediate, optimised, oracle) = (immediate / n as f64, optimised / n as f64, oracle / n as f64);
    let lift = optimised / immediate - 1.0;
    let oracle_lift = oracle / immediate - 1.0;
    Ok(Lift {
        customers: customers.len(),
        starts: at.len(),
        immediate,
        optimised,
        oracle,
        lift,
        oracle_lift,
        recovered: lift / oracle_lift,
        within_one_hour: near as f64 / n as f64,
    })
}

pub async fn run(args: SendTimeBench) -> anyhow::Result<()> {
    let plan = crate::pipelines::plan(args.customers, args.tenants, args.days);
    let seeded = crate::pipelines::seeded(&format!("fibbench_send_time_{}", args.customers), plan, args.fresh).await?;
    let as_of = crate::pipelines::as_of();
    let pipelines = Pipelines {
        pool: seeded.pool.clone(),
        lake: seeded.lake,
        config: fibonacco_analytics::AnalyticsConfig::default(),
        progress: seeded.ingest.progress,
        engine: Engine::Local,
    };
    let report = pipelines.run(&[Pipeline::SendTimes], as_of).await?;
    let learn_s = report[0].duration_ms as f64 / 1000.0;
    let clock = std::time::Instant::now();
    let lift = evaluate(&seeded.pool, &starts(as_of, 8), args.sample).await?;
    // Each start times every sampled customer in one statement, as a campaign's start does.
    let pick_ms = clock.elapsed().as_secs_f64() * 1000.0 / (lift.customers * lift.starts) as f64;
    println!(
        "send-time optimisation over {} customers x {} start times: response factor {:.4} at the picked moments \
         vs {:.4} sending at once (lift {:+.1} %); the hidden best hours give {:.4} ({:+.1} %): {:.0} % of that \
         recovered; {:.0} % of picks within an hour of the hidden best. History: {} sends learned in {learn_s:.1} s; \
         {:.2} s to time 1,000 customers in one statement",
        lift.customers,
        lift.starts,
        lift.optimised,
        lift.immediate,
        lift.lift * 100.0,
        lift.oracle,
        lift.oracle_lift * 100.0,
        lift.recovered * 100.0,
        lift.within_one_hour * 100.0,
        report[0].details["sends"],
        pick_ms,
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"lift": lift, "learn_s": learn_s, "pick_ms": pick_ms, "sends": report[0].details["sends"],
                               "seeded_customers": args.customers, "events": seeded.events})
        );
    }
    Ok(())
}
