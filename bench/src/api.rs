//! `fibonacco bench api`: customer reads over loopback against a freshly seeded database,
//! with the bare SQL as the baseline from the same run.
//!
//! Client and server share this machine's cores, so the figures are a floor for the
//! server alone; the baseline runs under the same handicap.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Args;
use fibonacco_api::Application;
use fibonacco_platform::{Config, TenantId, auth, cache, domain::Slug, tenancy};
use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

#[derive(Args)]
pub struct ApiBench {
    /// Customers seeded before the run.
    #[arg(long, default_value_t = 10_000)]
    customers: i64,
    /// Seconds of measured load per scenario (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Scenario {
    name: &'static str,
    requests: usize,
    errors: usize,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

type Call = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

pub async fn run(args: ApiBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.customers > 0 && args.concurrency > 0 && args.duration > 0,
        "all bench sizes must be positive"
    );
    let config = Config::from_env()?;
    eprintln!("seeding {} customers into a fresh database…", args.customers);
    let pool_size = u32::try_from(args.concurrency.min(64)).unwrap_or(64);
    let db = crate::scratch(pool_size).await?;
    let tenant = tenancy::create(&db.pool, "Bench", &Slug::parse("bench").expect("static")).await?;
    seed_customers(&db.pool, tenant.id, args.customers).await?;
    // Under row-level security the ids are visible only inside the tenant's transaction.
    let ids: Arc<Vec<Uuid>> = {
        let mut tx = fibonacco_platform::db::begin_tenant(&db.pool, tenant.id).await?;
        let ids = sqlx::query_scalar("select id from crm_customers where tenant_id = $1")
            .bind(tenant.id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Arc::new(ids)
    };
    anyhow::ensure!(ids.len() as i64 == args.customers, "seeded {} customers, expected {}", ids.len(), args.customers);
    let token = auth::issue_token(&db.pool, tenant.id, "bench", &[], None).await?.plain_text;

    let mut app_config = config.clone();
    app_config.app_port = 0;
    let redis = cache::connect(config.redis_url.expose()).await?;
    let app = Application::with_parts(app_config, db.pool.clone(), redis).await?;
    let base = format!("http://{}", app.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));

    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let auth_header = format!("Bearer {token}");
    let duration = Duration::from_secs(args.duration);
    let mut results = Vec::new();

    // Baseline: the same single-row read straight through sqlx, no HTTP, same concurrency.
    let sql_call: Call = {
        let (pool, ids) = (db.pool.clone(), ids.clone());
        Arc::new(move || {
            let (pool, id) = (pool.clone(), pick(&ids));
            let tenant = tenant.id;
            Box::pin(async move {
                let mut tx = match fibonacco_platform::db::begin_tenant(&pool, tenant).await {
                    Ok(tx) => tx,
                    Err(_) => return false,
                };
                let row: Result<Option<(Uuid, String)>, _> =
                    sqlx::query_as("select id, name from crm_customers where tenant_id = $1 and id = $2")
                        .bind(tenant)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await;
                matches!(row, Ok(Some(_))) && tx.commit().await.is_ok()
            })
        })
    };
    results.push(load("baseline: sqlx tenant tx, same read", args.concurrency, duration, sql_call).await);

    // The read path the API uses (db::fetch_scoped), without HTTP.
    let scoped_call: Call = {
        let (pool, ids) = (db.pool.clone(), ids.clone());
        Arc::new(move || {
            let (pool, id) = (pool.clone(), pick(&ids));
            let tenant = tenant.id;
            Box::pin(async move {
                let Ok(mut conn) = pool.acquire().await else { return false };
                matches!(fibonacco_api::customers::store::get(&mut conn, tenant, id).await, Ok(Some(_)))
            })
        })
    };
    results.push(load("baseline: one-message scoped read, no HTTP", args.concurrency, duration, scoped_call).await);

    let get_call: Call = {
        let (client, ids, base, auth_header) = (client.clone(), ids.clone(), base.clone(), auth_header.clone());
        Arc::new(move || {
            let url = format!("{base}/api/v1/customers/{}", pick(&ids));
            let req = client.get(url).header("authorization", auth_header.clone());
            Box::pin(ok_response(req))
        })
    };
    results.push(load("GET /api/v1/customers/{id}", args.concurrency, duration, get_call).await);

    let list_call: Call = {
        let (client, url, auth_header) = (client.clone(), format!("{base}/api/v1/customers"), auth_header.clone());
        Arc::new(move || {
            let req = client.get(url.clone()).header("authorization", auth_header.clone());
            Box::pin(ok_response(req))
        })
    };
    results.push(load("GET /api/v1/customers (page 1)", args.concurrency, duration, list_call).await);

    let _ = stop_tx.send(());
    let _ = server.await;

    println!(
        "customers: {}  concurrency: {}  duration: {}s per scenario",
        args.customers, args.concurrency, args.duration
    );
    println!("{:<40} {:>10} {:>8} {:>9} {:>9} {:>9}", "scenario", "req/s", "errors", "p50 ms", "p99 ms", "max ms");
    for r in &results {
        println!(
            "{:<40} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>9.2}",
            r.name, r.requests_per_sec, r.errors, r.p50_ms, r.p99_ms, r.max_ms
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "api",
                "customers": args.customers,
                "concurrency": args.concurrency,
                "duration_secs": args.duration,
                "scenarios": results,
            })
        );
    }
    Ok(())
}

/// True when the request answered 200 and its whole body arrived.
async fn ok_response(req: reqwest::RequestBuilder) -> bool {
    match req.send().await {
        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
        _ => false,
    }
}

fn pick(ids: &[Uuid]) -> Uuid {
    ids[rand::rng().random_range(0..ids.len())]
}

async fn seed_customers(pool: &sqlx::PgPool, tenant: TenantId, n: i64) -> anyhow::Result<()> {
    let mut tx = fibonacco_platform::db::begin_tenant(pool, tenant).await?;
    sqlx::query(
        "insert into crm_customers (tenant_id, name, slug, email, phone, business_context)
         select $1, 'Customer ' || g, 'customer-' || g, 'customer' || g || '@bench.example',
                '+1555' || lpad(g::text, 7, '0'), jsonb_build_object('industry', 'retail', 'rank', g)
         from generate_series(1, $2) g",
    )
    .bind(tenant)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("analyze crm_customers").execute(pool).await?;
    Ok(())
}

/// Runs `call` from `concurrency` tasks for one second of warm-up, then `duration`.
async fn load(name: &'static str, concurrency: usize, duration: Duration, call: Call) -> Scenario {
    eprintln!("running {name}…");
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 14);
            let mut errors = 0usize;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let ok = call().await;
                if start >= warmup_end {
                    latencies.push(start.elapsed().as_micros() as u64);
                    if !ok {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, err)) = t.await {
            all.extend(lat);
            errors += err;
        }
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 * p).ceil() as usize).saturating_sub(1).min(all.len() - 1);
        all[idx] as f64 / 1000.0
    };
    Scenario {
        name,
        requests: all.len(),
        errors,
        requests_per_sec: all.len() as f64 / duration.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: all.last().map(|m| *m as f64 / 1000.0).unwrap_or(0.0),
    }
}
