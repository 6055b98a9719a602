//! `fibonacco bench pipelines`: the full recompute of every score over a seeded lake
//! (1M customers / ~20M events by default), and in the same run the same engagement and
//! ROI definitions as plain SQL inside Postgres (how the original platform would compute
//! them) and in DuckDB over the same Parquet lake. Also: peak RSS of the recompute, the
//! analytics routes' latency, and how soon the watch shows a new activity.
//!
//! The seeded database and its lake are kept (`fibbench_pipelines_<customers>`) so a
//! second run skips the seeding; `--fresh` starts over.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use clap::Args;
use datafusion::arrow::{
    array::AsArray,
    datatypes::{Float64Type, Int64Type},
};
use fibonacco_analytics::{AnalyticsConfig, engagement, roi, sql::Dialect};
use fibonacco_ingest::{Ingest, IngestConfig, Lake, slot, view};
use fibonacco_pipelines::{
    Engine, Pipeline, Pipelines,
    watch::{Watch, WatchProgress},
};
use fibonacco_platform::{config::Secret, db};

use crate::search::percentile;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, postgres::PgConnectOptions};

#[derive(Args)]
pub struct PipelinesBench {
    /// Customers to seed (about 20 events each).
    #[arg(long, default_value_t = 1_000_000)]
    customers: u64,
    #[arg(long, default_value_t = 4)]
    tenants: u32,
    #[arg(long, default_value_t = 180)]
    days: u32,
    /// Drop a database and lake kept from an earlier run and seed again.
    #[arg(long)]
    fresh: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Only the three-engine comparison (engagement + ROI in DataFusion, Postgres, DuckDB),
    /// e.g. to try `DATAFUSION_*` settings; skips the recompute, the routes and the watch.
    #[arg(long)]
    engines_only: bool,
    /// With `--engines-only`: then DataFusion's EXPLAIN ANALYZE of both queries (each
    /// operator's rows and compute time) on standard error.
    #[arg(long, requires = "engines_only")]
    explain: bool,
    /// After the in-process recompute, the same recompute on a Ballista cluster started
    /// in this process (a scheduler and this many executors, sharing the machine's cores;
    /// 0: not measured). Rows written are checked against the in-process run's.
    #[arg(long, default_value_t = 0)]
    ballista_executors: usize,
}

/// The last day of the benches' synthetic history; they compute as of its midnight.
pub(crate) const END: &str = "2026-11-01";

/// The synthetic data every bench over the lake seeds (seed 42, ending at [`END`]): the
/// same arguments give the same kept database.
pub(crate) fn plan(customers: u64, tenants: u32, days: u32) -> crate::synthetic::Plan {
    crate::synthetic::Plan { customers, tenants, days, seed: 42, end: END.parse().expect("a date") }
}

/// Midnight UTC after [`END`].
pub(crate) fn as_of() -> DateTime<Utc> {
    format!("{END}T00:00:00Z").parse().expect("an instant")
}

#[derive(Debug, Serialize)]
struct Report {
    customers: u64,
    events: i64,
    lake_files: usize,
    lake_mib: f64,
    full_recompute_s: f64,
    per_pipeline_s: Vec<(String, f64)>,
    model_auc_validation: f64,
    peak_rss_mib: u64,
    /// Per pipeline, the wall time of its steps (its run record's `stages_ms`).
    stages_ms: Vec<(String, serde_json::Value)>,
    /// Per pipeline, the process's peak RSS when each step ended (MiB).
    stage_peaks_mib: Vec<(String, serde_json::Value)>,
    /// Engagement + ROI in the three engines.
    #[serde(flatten)]
    engines: Engines,
    speedup_vs_postgres: f64,
    ratio_to_duckdb: f64,
    api_p50_ms: f64,
    api_p99_ms: f64,
    /// Per route (its path with ids as `{id}`): p50 and p99 over the measured rounds.
    api_routes: Vec<RouteLatency>,
    watch_changes: usize,
    watch_p50_ms: u64,
    watch_p99_ms: u64,
    watch_max_ms: u64,
    /// The first change's latency (the watch's session warm-up), not in the percentiles.
    watch_first_ms: u64,
    /// When the recompute's WAL invalidated the stopped capture's slot: the seconds the
    /// watch's capture took to copy the tables again before it streamed.
    watch_resnapshot_s: Option<f64>,
    /// The same recompute on an in-process Ballista cluster (`--ballista-executors`).
    ballista: Option<BallistaRecompute>,
}

#[derive(Debug, Serialize)]
struct BallistaRecompute {
    executors: usize,
    full_recompute_s: f64,
    per_pipeline_s: Vec<(String, f64)>,
    /// Peak RSS of this process, which holds the scheduler and the executors too.
    peak_rss_mib: u64,
}

#[derive(Debug, Serialize)]
struct RouteLatency {
    route: String,
    p50_ms: f64,
    p99_ms: f64,
}

/// Watch changes measured after the first (which pays the watch's warm-up).
const WATCH_CHANGES: usize = 60;

/// A seeded database and the lake of it, kept between runs under one name.
pub(crate) struct Seeded {
    /// Connections that see every tenant (row-level security bypassed).
    pub pool: PgPool,
    pub url: String,
    pub lake: Lake,
    pub lake_dir: std::path::PathBuf,
    /// The capture's settings (its slot lives as long as this value).
    pub ingest: IngestConfig,
    pub events: i64,
    _slot: slot::SlotGuard,
}

/// The database `name` seeded with `plan` (seeded only when empty; `fresh` drops it and
/// its lake first) and its lake, snapshotted when missing.
pub(crate) async fn seeded(name: &str, plan: crate::synthetic::Plan, fresh: bool) -> anyhow::Result<Seeded> {
    let base_url = crate::setting("DATABASE_URL")?;
    let lake_dir = std::env::temp_dir().join(name);
    let base: PgConnectOptions = base_url.parse()?;
    let mut admin = PgConnection::connect_with(&base).await?;
    if fresh {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("drop database if exists {name} with (force)")))
            .execute(&mut admin)
            .await;
        let _ = std::fs::remove_dir_all(&lake_dir);
    }
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&mut admin).await?;
    }
    let url = db_url(&base_url, name);
    // A system-level run over every tenant: its connections bypass row-level security
    // (the Postgres baseline and the bench's own checks read all tenants).
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("set app.bypass_rls = 'on'").execute(conn).await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    db::migrate(&pool).await?;
    let slot_name = format!("bench_{}", name.trim_start_matches("fibbench_"));
    let mut ingest = IngestConfig::new(Secret::new(url.clone()), lake_dir.display().to_string());
    ingest.slot = slot_name.clone();
    ingest.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());

    let seeded: i64 = sqlx::query_scalar("select count(*) from crm_customers").fetch_one(&pool).await?;
    if seeded == 0 {
        let started = Instant::now();
        let summary = crate::synthetic::seed(&pool, &plan, ingest.progress).await?;
        eprintln!("seeded {} events in {:.0} s", summary.events(), started.elapsed().as_secs_f64());
        sqlx::query("analyze").execute(&pool).await?;
    }
    let lake = Lake::open(&lake_dir.display().to_string())?;
    // The slot lives only while this run does (dropped however the run ends: a slot left
    // behind keeps every WAL segment the next seed writes), so a kept lake is copied again.
    let have_slot = slot::slot_state(&pool, &slot_name).await?.is_some();
    let guard = slot::SlotGuard::new(&url, &slot_name);
    if lake.read_manifest().await?.is_none() || !have_slot {
        let started = Instant::now();
        let mut first = ingest.clone();
        first.resnapshot = true;
        let mut running = Ingest::connect(first).await?.spawn();
        running.wait_until(|p| p.streaming).await?;
        running.stop().await?;
        eprintln!("snapshot into the lake in {:.0} s", started.elapsed().as_secs_f64());
    }
    let events: i64 = sqlx::query_scalar(
        "select (select count(*) from customer_activities) + (select count(*) from outbound_campaign_recipients)
              + (select count(*) from crm_conversation_messages) + (select count(*) from orders)",
    )
    .fetch_one(&pool)
    .await?;
    Ok(Seeded { pool, url, lake, lake_dir, ingest, events, _slot: guard })
}

pub async fn run(args: PipelinesBench) -> anyhow::Result<()> {
    let plan = plan(args.customers, args.tenants, args.days);
    let Seeded { pool, url, lake, lake_dir, ingest, events, _slot } =
        seeded(&format!("fibbench_pipelines_{}", args.customers), plan, args.fresh).await?;
    let manifest = lake.read_manifest().await?.expect("written above");
    let lake_mib = manifest.files.iter().map(|f| f.bytes).sum::<u64>() as f64 / 1048576.0;
    eprintln!("{} customers, {events} events; lake {} files, {lake_mib:.0} MiB", args.customers, manifest.files.len());
    let as_of = as_of();

    let pipelines = Pipelines {
        pool: pool.clone(),
        lake,
        config: AnalyticsConfig::default(),
        progress: ingest.progress,
        // The baseline: in this process (`--ballista-executors` measures a cluster).
        engine: Engine::Local,
    };
    if args.engines_only {
        let engines = engines(&pool, &pipelines.lake, &lake_dir, as_of).await?;
        println!(
            "engagement+ROI DataFusion {:.2} s vs Postgres {:.2} s ({:.1}x faster) vs DuckDB {:.2} s ({:.2}x DuckDB's time)",
            engines.datafusion_s,
            engines.postgres_s,
            engines.postgres_s / engines.datafusion_s,
            engines.duckdb_s,
            engines.datafusion_s / engines.duckdb_s
        );
        if args.explain {
            explain(&pipelines.lake, as_of).await?;
        }
        if args.json {
            println!("{}", serde_json::to_string(&engines)?);
        }
        return Ok(());
    }

    // 1. The full recompute, as `fibonacco pipelines run all` does it (writes included),
    // on tables as a daily run finds them: autovacuum has cleared the last run's old row
    // versions long before. A bench run right after another would otherwise share the
    // cores with autovacuum's pass over millions of them.
    vacuum_dead_rows(&pool).await?;
    reset_peak_rss();
    let started = Instant::now();
    let reports = pipelines.run(&Pipeline::ALL, as_of).await?;
    let full_recompute_s = started.elapsed().as_secs_f64();
    let peak_rss_mib = crate::ingest::peak_rss_kib() / 1024;
    let per_pipeline_s: Vec<(String, f64)> =
        reports.iter().map(|r| (r.pipeline.name().to_string(), r.duration_ms as f64 / 1000.0)).collect();
    let stages_ms: Vec<(String, serde_json::Value)> =
        reports.iter().map(|r| (r.pipeline.name().to_string(), r.details["stages_ms"].clone())).collect();
    eprintln!("stages (ms): {}", serde_json::to_string(&stages_ms)?);
    let stage_peaks_mib: Vec<(String, serde_json::Value)> =
        reports.iter().map(|r| (r.pipeline.name().to_string(), r.details["peak_rss_mib"].clone())).collect();
    eprintln!("peak RSS after each stage (MiB): {}", serde_json::to_string(&stage_peaks_mib)?);
    let model_auc_validation = reports
        .iter()
        .find(|r| r.pipeline == Pipeline::Predictive)
        .and_then(|r| r.details["auc_validation"].as_f64())
        .unwrap_or(0.0);
    eprintln!(
        "full recompute: {full_recompute_s:.1} s {per_pipeline_s:?}, peak RSS {peak_rss_mib} MiB, AUC {model_auc_validation:.3}"
    );

    // 1b. The same on a Ballista cluster in this process, over the same lake.
    let ballista = match args.ballista_executors {
        0 => None,
        executors => {
            let location = ingest.lake.clone();
            let cluster = fibonacco_pipelines::cluster::InProcess::start(|| Ok(Lake::open(&location)?), executors)?;
            let engine = cluster.engine.clone();
            let on_cluster = Pipelines {
                pool: pool.clone(),
                lake: Lake::open(&ingest.lake)?,
                config: AnalyticsConfig::default(),
                progress: ingest.progress,
                engine,
            };
            reset_peak_rss();
            let started = Instant::now();
            let cluster_reports = on_cluster.run(&Pipeline::ALL, as_of).await?;
            let cluster_s = started.elapsed().as_secs_f64();
            for (local, remote) in reports.iter().zip(&cluster_reports) {
                anyhow::ensure!(
                    local.rows_written == remote.rows_written,
                    "{}: {} rows in process, {} on Ballista",
                    local.pipeline.name(),
                    local.rows_written,
                    remote.rows_written
                );
            }
            let figure = BallistaRecompute {
                executors,
                full_recompute_s: cluster_s,
                per_pipeline_s: cluster_reports
                    .iter()
                    .map(|r| (r.pipeline.name().to_string(), r.duration_ms as f64 / 1000.0))
                    .collect(),
                peak_rss_mib: crate::ingest::peak_rss_kib() / 1024,
            };
            eprintln!(
                "Ballista, 1 scheduler + {executors} executors in this process: full recompute {cluster_s:.1} s {:?} (in process {full_recompute_s:.1} s), peak RSS {} MiB",
                figure.per_pipeline_s, figure.peak_rss_mib,
            );
            Some(figure)
        }
    };

    // 2. Engagement + ROI alone, the same definitions in three engines.
    let engines = engines(&pool, &pipelines.lake, &lake_dir, as_of).await?;

    // 3. The analytics routes on the computed tables.
    let (api_p50_ms, api_p99_ms, api_routes) = api_latency(&pool, &url).await?;
    eprintln!("analytics routes: p50 {api_p50_ms:.1} ms, p99 {api_p99_ms:.1} ms");
    for r in &api_routes {
        eprintln!("  {:<55} p50 {:6.1} ms  p99 {:6.1} ms", r.route, r.p50_ms, r.p99_ms);
    }

    // 4. The watch: a new activity until it shows in the engagement score.
    let (watch_ms, watch_resnapshot_s) = watch_latency(&pool, &ingest).await?;
    if let Some(s) = watch_resnapshot_s {
        eprintln!("watch: the tables were copied again in {s:.0} s before the capture streamed");
    }
    let watch_first_ms = watch_ms[0];
    let mut watched = watch_ms[1..].to_vec();
    watched.sort_unstable();
    let ms: Vec<f64> = watched.iter().map(|t| *t as f64).collect();
    let pick = |q: f64| percentile(&ms, q) as u64;
    let (watch_p50_ms, watch_p99_ms, watch_max_ms) = (pick(0.5), pick(0.99), pick(1.0));
    eprintln!(
        "watch: first change visible after {watch_first_ms} ms, then over {} changes p50 {watch_p50_ms} ms, p99 {watch_p99_ms} ms, max {watch_max_ms} ms",
        watched.len()
    );

    let report = Report {
        customers: args.customers,
        events,
        lake_files: manifest.files.len(),
        lake_mib,
        full_recompute_s,
        per_pipeline_s,
        model_auc_validation,
        peak_rss_mib,
        stages_ms,
        stage_peaks_mib,
        speedup_vs_postgres: engines.postgres_s / engines.datafusion_s,
        ratio_to_duckdb: engines.datafusion_s / engines.duckdb_s,
        engines,
        api_p50_ms,
        api_p99_ms,
        api_routes,
        watch_changes: watched.len(),
        watch_p50_ms,
        watch_p99_ms,
        watch_max_ms,
        watch_first_ms,
        watch_resnapshot_s,
        ballista,
    };
    println!(
        "pipelines: full recompute {:.1} s (peak RSS {} MiB); engagement+ROI DataFusion {:.2} s vs Postgres {:.2} s ({:.1}x faster) vs DuckDB {:.2} s ({:.2}x DuckDB's time); API p99 {:.1} ms",
        report.full_recompute_s,
        report.peak_rss_mib,
        report.engines.datafusion_s,
        report.engines.postgres_s,
        report.speedup_vs_postgres,
        report.engines.duckdb_s,
        report.ratio_to_duckdb,
        report.api_p99_ms
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// One engine's (rows, sum) for a query.
type Answer = (i64, f64);

/// Each engine runs each query this many times, in turns with the other engines, and its
/// median counts: single runs on two shared cores varied by 30 %.
const ENGINE_ROUNDS: usize = 3;

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    percentile(&times, 0.5)
}

#[derive(Debug, Serialize)]
pub struct Engines {
    /// Engagement + ROI, the queries alone (as DuckDB's figure).
    datafusion_s: f64,
    /// Registering the lake's tables and views in a new session.
    datafusion_session_s: f64,
    postgres_s: f64,
    duckdb_s: f64,
    /// [engagement, ROI] seconds per engine.
    datafusion_each_s: [f64; 2],
    postgres_each_s: [f64; 2],
    duckdb_each_s: [f64; 2],
}

/// Engagement and ROI as one engine spells them, each wrapped in a (rows, sum) summary.
fn queries(d: Dialect, as_of: DateTime<Utc>) -> [String; 2] {
    let config = AnalyticsConfig::default();
    // (rows, sum) as (BIGINT, DOUBLE) in every engine, compared below: a faster engine
    // that computes something else is not faster.
    let summary = |sum: &str, inner: String| {
        format!("SELECT CAST(count(*) AS BIGINT) AS n, CAST({sum} AS {}) AS s FROM ({inner}) q", d.double())
    };
    [
        summary("sum(score)", engagement::scores_sql_for(d, &config.engagement, as_of, None)),
        // Every attribution model's columns: an engine prunes what the summary does not
        // read (DataFusion dropped the time-decay and position windows when this summed
        // only the linear revenue).
        summary(
            &format!(
                "sum(CAST(cost_minor + last_touch_orders + last_touch_revenue_minor + linear_revenue_minor \
                     + first_touch_orders + first_touch_revenue_minor + time_decay_revenue_minor + position_revenue_minor \
                     AS {double}) + linear_orders + time_decay_orders + position_orders)",
                double = d.double()
            ),
            roi::roi_sql_for(d, &config.roi, as_of, None),
        ),
    ]
}

/// DataFusion's EXPLAIN ANALYZE of [`queries`] over the lake, on standard error.
async fn explain(lake: &Lake, as_of: DateTime<Utc>) -> anyhow::Result<()> {
    let (ctx, _) = view::session(lake).await?;
    for (what, q) in ["engagement", "ROI"].into_iter().zip(queries(Dialect::DataFusion, as_of)) {
        let batches = ctx.sql(&format!("EXPLAIN ANALYZE {q}")).await?.collect().await?;
        eprintln!("{what}:\n{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    Ok(())
}

/// Engagement + ROI alone, the same definitions in three engines, results aggregated so
/// each engine computes every row and ships only a summary; an error when the engines'
/// answers differ. `pool` must see every tenant (row-level security bypassed).
///
/// The engines take turns: each round runs both queries in DataFusion, then in Postgres,
/// then in DuckDB, and each engine's median over the rounds counts. Run one engine's
/// rounds after another's, a slow minute on two shared cores fell on one engine only
/// (the same DataFusion query drifted by up to 2 × between runs minutes apart).
pub async fn engines(
    pool: &PgPool,
    lake: &Lake,
    lake_dir: &std::path::Path,
    as_of: DateTime<Utc>,
) -> anyhow::Result<Engines> {
    // Like DuckDB's, the session's views (a footer read per file) are set up before the
    // clock starts; their cost is reported on its own.
    let started = Instant::now();
    let (ctx, _) = view::session(lake).await?;
    let datafusion_session_s = started.elapsed().as_secs_f64();
    let mut duckdb = DuckDb::start(lake_dir, &queries(Dialect::DuckDb, as_of))?;
    let (datafusion, postgres) = (queries(Dialect::DataFusion, as_of), queries(Dialect::Postgres, as_of));
    // [engine][query]: the seconds of each round, and the last round's answer.
    let mut times: [[Vec<f64>; 2]; 3] = Default::default();
    let mut answers = [[(0, 0.0); 2]; 3];
    for _ in 0..ENGINE_ROUNDS {
        for (i, q) in datafusion.iter().enumerate() {
            let clock = Instant::now();
            let batches = ctx.sql(q).await?.collect().await?;
            times[0][i].push(clock.elapsed().as_secs_f64());
            let batch = batches.iter().find(|b| b.num_rows() > 0).ok_or_else(|| anyhow::anyhow!("no summary row"))?;
            let n = batch.column(0).as_primitive::<Int64Type>().value(0);
            let sum = batch.column(1).as_primitive::<Float64Type>().value(0);
            answers[0][i] = (n, sum);
        }
        // A transaction per round, for its `work_mem`, ended before DuckDB's round so no
        // connection sits idle in a transaction while the other engine works.
        let mut tx = pool.begin().await?;
        sqlx::query("set local work_mem = '256MB'").execute(&mut *tx).await?;
        for (i, q) in postgres.iter().enumerate() {
            let clock = Instant::now();
            answers[1][i] = sqlx::query_as::<_, Answer>(sqlx::AssertSqlSafe(q.clone())).fetch_one(&mut *tx).await?;
            times[1][i].push(clock.elapsed().as_secs_f64());
        }
        tx.commit().await?;
        let (each, rows) = duckdb.round()?;
        for i in 0..2 {
            times[2][i].push(each[i]);
        }
        answers[2] = rows;
    }
    duckdb.finish()?;
    let [datafusion_each_s, postgres_each_s, duckdb_each_s] = times.map(|engine| engine.map(median));
    let (datafusion_s, postgres_s, duckdb_s) =
        (datafusion_each_s.iter().sum::<f64>(), postgres_each_s.iter().sum::<f64>(), duckdb_each_s.iter().sum::<f64>());
    eprintln!(
        "engagement + ROI in DataFusion over the lake: {datafusion_s:.2} s {datafusion_each_s:?} (session {datafusion_session_s:.2} s)"
    );
    eprintln!("engagement + ROI as SQL inside Postgres: {postgres_s:.2} s {postgres_each_s:?}");
    eprintln!("engagement + ROI in DuckDB over the same Parquet: {duckdb_s:.2} s {duckdb_each_s:?}");
    for (i, what) in ["engagement", "ROI"].iter().enumerate() {
        let (n, sum) = answers[0][i];
        for (engine, other) in [("Postgres", answers[1][i]), ("DuckDB", answers[2][i])] {
            anyhow::ensure!(
                other.0 == n && (other.1 - sum).abs() <= 1e-9 * sum.abs().max(1.0),
                "{what}: DataFusion gives {n} rows summing to {sum}, {engine} {} summing to {}",
                other.0,
                other.1
            );
        }
    }
    Ok(Engines {
        datafusion_s,
        postgres_s,
        duckdb_s,
        datafusion_session_s,
        datafusion_each_s,
        postgres_each_s,
        duckdb_each_s,
    })
}

/// Vacuums every table with dead row versions (a run's replaced scores) and waits for it.
#[tracing::instrument(skip(pool), err)]
async fn vacuum_dead_rows(pool: &PgPool) -> anyhow::Result<()> {
    let started = Instant::now();
    let tables: Vec<String> = sqlx::query_scalar(
        "select format('%I.%I', schemaname, relname) from pg_stat_user_tables where n_dead_tup > 0 order by 1",
    )
    .fetch_all(pool)
    .await?;
    if tables.is_empty() {
        return Ok(());
    }
    // VACUUM refuses a transaction block: one statement over the simple protocol.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("vacuum {}", tables.join(", ")))).execute(pool).await?;
    eprintln!("vacuumed {} tables in {:.1} s before the recompute", tables.len(), started.elapsed().as_secs_f64());
    Ok(())
}

fn db_url(base: &str, name: &str) -> String {
    match base.rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/{name}"),
        None => base.to_string(),
    }
}

/// Linux: forget the peak RSS so far (the seeding), so VmHWM measures what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// DuckDB (the project venv's `duckdb`, scripts/bench_duckdb.py) in a child process over
/// the lake's Parquet files, with the same current-state views the lake gives DataFusion:
/// it runs one round of the queries each time [`DuckDb::round`] asks. The child stays up
/// between rounds, as DataFusion's session and Postgres' connection do.
struct DuckDb {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl DuckDb {
    fn start(lake: &std::path::Path, queries: &[String; 2]) -> anyhow::Result<Self> {
        use std::process::Stdio;
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut child = Command::new(format!("{root}/.venv/bin/python"))
            .arg(format!("{root}/scripts/bench_duckdb.py"))
            .arg(lake)
            .args(queries)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("duckdb: no standard output"))?;
        Ok(Self { child, stdin, stdout: std::io::BufRead::lines(std::io::BufReader::new(stdout)) })
    }

    /// One round: each query's seconds and its one row (rows, sum). Blocks this thread
    /// while DuckDB works, which is what the bench wants: nothing else runs meanwhile.
    fn round(&mut self) -> anyhow::Result<([f64; 2], [Answer; 2])> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow::anyhow!("duckdb: already finished"))?;
        stdin.write_all(b"round\n")?;
        stdin.flush()?;
        let Some(line) = self.stdout.next().transpose()? else {
            // The child ended: what it said on standard error is the reason.
            self.stdin = None;
            let mut reason = String::new();
            if let Some(mut stderr) = self.child.stderr.take() {
                std::io::Read::read_to_string(&mut stderr, &mut reason)?;
            }
            anyhow::bail!("duckdb failed ({}): {reason}", self.child.wait()?);
        };
        let value: serde_json::Value = serde_json::from_str(&line)?;
        let each =
            |i: usize| value["each"][i].as_f64().ok_or_else(|| anyhow::anyhow!("duckdb printed no timing: {line}"));
        // Each query's one row, as strings: [n, s].
        let answer = |i: usize| -> anyhow::Result<Answer> {
            let row = &value["rows"][i][0];
            let field = |j: usize| row[j].as_str().ok_or_else(|| anyhow::anyhow!("duckdb row {i}: {row}"));
            Ok((field(0)?.parse()?, field(1)?.parse()?))
        };
        Ok(([each(0)?, each(1)?], [answer(0)?, answer(1)?]))
    }

    /// Ends the child (its standard input closes) and checks that it exited cleanly.
    fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let out = self.child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "duckdb failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }
}

/// Sequential GETs of the analytics routes through the real HTTP stack: p50 and p99 over
/// all of them, and per route.
async fn api_latency(pool: &PgPool, url: &str) -> anyhow::Result<(f64, f64, Vec<RouteLatency>)> {
    let tenant: uuid::Uuid =
        sqlx::query_scalar("select id from tenants where slug like 'seed-42-%' order by slug limit 1")
            .fetch_one(pool)
            .await?;
    let tenant = fibonacco_platform::TenantId::from_uuid(tenant);
    let token = fibonacco_platform::auth::issue_token(pool, tenant, "bench", &[], None).await?.plain_text;
    let customer: uuid::Uuid =
        sqlx::query_scalar("select customer_id from customer_engagement_scores where tenant_id = $1 limit 1")
            .bind(tenant)
            .fetch_one(pool)
            .await?;
    let campaign: uuid::Uuid = sqlx::query_scalar("select campaign_id from campaign_roi where tenant_id = $1 limit 1")
        .bind(tenant)
        .fetch_one(pool)
        .await?;
    let redis_url = crate::setting("REDIS_URL")?;
    let config = fibonacco_platform::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.to_string()),
        "REDIS_URL" => Some(redis_url.clone()),
        "APP_PORT" => Some("0".into()),
        // The bench measures the routes, not the limiter (still on the path, so still paid).
        "RATE_LIMIT_PER_TOKEN" | "RATE_LIMIT_PER_TENANT" => Some("1000000".into()),
        _ => None,
    })?;
    let app = fibonacco_api::Application::build(config).await?;
    let addr = app.local_addr();
    let server = tokio::spawn(app.run_until(std::future::pending::<()>()));
    let client = reqwest::Client::new();
    let routes = [
        ("/api/v1/crm/dashboard/analytics?from=2026-08-01&to=2026-10-31".to_string(), "/crm/dashboard/analytics"),
        ("/api/v1/crm/analytics/interest".to_string(), "/crm/analytics/interest"),
        ("/api/v1/crm/analytics/purchases".to_string(), "/crm/analytics/purchases"),
        ("/api/v1/crm/analytics/learning".to_string(), "/crm/analytics/learning"),
        ("/api/v1/crm/analytics/campaign-performance".to_string(), "/crm/analytics/campaign-performance"),
        (format!("/api/v1/crm/customers/{customer}/engagement-score"), "/crm/customers/{id}/engagement-score"),
        (format!("/api/v1/crm/customers/{customer}/predictive-score"), "/crm/customers/{id}/predictive-score"),
        (format!("/api/v1/crm/campaigns/{campaign}/roi"), "/crm/campaigns/{id}/roi"),
    ];
    // 100 measured rounds, so each route's p99 is its second-slowest request, not its max.
    let mut per_route: Vec<Vec<f64>> = vec![Vec::new(); routes.len()];
    for round in 0..110 {
        for ((path, _), times) in routes.iter().zip(&mut per_route) {
            let started = Instant::now();
            let res = client.get(format!("http://{addr}{path}")).bearer_auth(&token).send().await?;
            anyhow::ensure!(res.status().is_success(), "{path}: {}", res.status());
            res.bytes().await?;
            if round >= 10 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    server.abort();
    let mut all: Vec<f64> = per_route.iter().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&all, 0.5), percentile(&all, 0.99));
    let routes = routes
        .iter()
        .zip(&mut per_route)
        .map(|((_, route), times)| {
            times.sort_by(f64::total_cmp);
            RouteLatency { route: route.to_string(), p50_ms: percentile(times, 0.5), p99_ms: percentile(times, 0.99) }
        })
        .collect();
    Ok((p50, p99, routes))
}

/// For 1 + [`WATCH_CHANGES`] customers in turn: insert an activity, wait for the watch to
/// change that customer's score; the milliseconds each took.
async fn watch_latency(pool: &PgPool, ingest: &IngestConfig) -> anyhow::Result<(Vec<u64>, Option<f64>)> {
    // The capture is stopped while the recompute runs. At 1 M customers the recompute
    // writes more WAL than the stack's `max_slot_wal_keep_size` (4 GB) lets a stopped
    // slot keep, so Postgres invalidates the slot (as it must, to protect the disk). The
    // watch then starts as `INGEST_AUTO_RESNAPSHOT` does: copy the tables again into the
    // same lake, recording the gap; how long that took is reported, not hidden.
    let lost = slot::slot_state(pool, &ingest.slot).await?.is_some_and(|s| s.wal_status.as_deref() == Some("lost"));
    if lost {
        eprintln!(
            "the capture's slot was invalidated during the recompute (its WAL passed max_slot_wal_keep_size); copying the tables again"
        );
    }
    let mut config = ingest.clone();
    config.auto_resnapshot = true;
    let started = Instant::now();
    let mut running = Ingest::connect(config).await?.spawn();
    running.wait_until(|p| p.streaming).await?;
    let resnapshot_s = lost.then(|| started.elapsed().as_secs_f64());
    let pipelines = Pipelines {
        pool: pool.clone(),
        lake: Lake::open(&ingest.lake)?,
        config: AnalyticsConfig::default(),
        progress: false,
        engine: Engine::Local,
    };
    let (progress, _) = tokio::sync::watch::channel(WatchProgress::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = Watch { pipelines: std::sync::Arc::new(pipelines), as_of: None, debounce: Duration::from_millis(20) };
    let task = tokio::spawn(watch.run(running.feed.subscribe(), progress, async move {
        let _ = stopped.await;
    }));
    let customers: Vec<(uuid::Uuid, uuid::Uuid)> =
        sqlx::query_as("select tenant_id, id from crm_customers order by id limit $1")
            .bind(WATCH_CHANGES as i64 + 1)
            .fetch_all(pool)
            .await?;
    let mut out = Vec::new();
    for (tenant, customer) in customers {
        let before: Option<chrono::DateTime<Utc>> =
            sqlx::query_scalar("select computed_at from customer_engagement_scores where customer_id = $1")
                .bind(customer)
                .fetch_optional(pool)
                .await?;
        let mut tx = pool.begin().await?;
        sqlx::query("set local app.bypass_rls = 'on'").execute(&mut *tx).await?;
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel) values ($1, $2, 'sales_contact', 'web')",
        )
        .bind(tenant)
        .bind(customer)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let started = Instant::now();
        loop {
            let now: Option<chrono::DateTime<Utc>> =
                sqlx::query_scalar("select computed_at from customer_engagement_scores where customer_id = $1")
                    .bind(customer)
                    .fetch_optional(pool)
                    .await?;
            if now != before {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the watch did not update within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out.push(started.elapsed().as_millis() as u64);
    }
    let _ = stop.send(());
    task.await??;
    running.stop().await?;
    Ok((out, resnapshot_s))
}
