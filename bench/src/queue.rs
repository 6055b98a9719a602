//! `fibonacco bench queue`: jobs/s through the Redis queue to a no-op handler, checking
//! that none is lost or run twice; then sends/s of an e-mail campaign against a local SES
//! sink. Baselines from the same run: bare Redis LPUSH/LPOP round trips at the same
//! concurrency, and direct SES calls to the same sink without queue or database.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Args;
use fibonacco_delivery::{
    JobContext, campaigns,
    providers::{
        DeliverySettings, Providers,
        ses::{OutgoingEmail, Ses, SesSettings},
    },
};
use fibonacco_platform::{
    Config, cache,
    domain::Slug,
    queue::{self, Handler, JobError, JobPayload, Queue, Reserved, Worker, WorkerOptions},
    scratch::ScratchDatabase,
    tenancy,
};
use futures_util::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

#[derive(Args)]
pub struct QueueBench {
    /// No-op jobs pushed through the queue.
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,
    /// Jobs run at once by the worker (its concurrency on the queue).
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Recipients of the e-mail campaign scenario (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    recipients: i64,
    /// Recipients per send job in the campaign scenario (`SEND_BATCH_SIZE`); the same
    /// campaign with one recipient per job runs first as the baseline.
    #[arg(long, default_value_t = 25)]
    send_batch: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Figure {
    name: String,
    items: usize,
    seconds: f64,
    per_sec: f64,
    lost: usize,
    duplicated: usize,
}

/// Records every job uuid it sees.
struct Noop {
    seen: Mutex<Vec<Uuid>>,
}

impl Handler for Noop {
    fn handle<'a>(&'a self, job: &'a Reserved) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            self.seen.lock().expect("not poisoned").push(job.payload.uuid);
            Ok(())
        })
    }
}

pub async fn run(args: QueueBench) -> anyhow::Result<()> {
    anyhow::ensure!(args.jobs > 0 && args.workers > 0, "--jobs and --workers must be positive");
    let config = Config::from_env()?;
    let db = crate::scratch(u32::try_from(args.workers.min(48) + 4).unwrap_or(16)).await?;
    let redis = cache::connect(config.redis_url.expose()).await?;
    let prefix = format!("bench-{}", Uuid::now_v7().simple());
    let queue = Queue::new(redis.clone(), prefix.clone());
    let mut figures = Vec::new();

    figures.push(redis_baseline(&queue, args.jobs, args.workers).await?);
    figures.push(noop_jobs(&queue, &db, args.jobs, args.workers).await?);
    if args.recipients > 0 {
        let (server, sink_url, sink) = ses_sink().await?;
        figures.push(ses_baseline(&sink_url, args.recipients as usize, args.workers).await?);
        for batch in [1, args.send_batch] {
            let sink = (sink_url.as_str(), &sink);
            figures.push(campaign(&config, &queue, &db, sink, args.recipients, args.workers, batch).await?);
        }
        server.abort();
    }
    for q in queue::QUEUES {
        queue.clear(q).await?;
    }
    queue.clear("bench").await?;

    println!("workers: {}", args.workers);
    println!("{:<52} {:>9} {:>9} {:>11} {:>6} {:>6}", "scenario", "items", "seconds", "per second", "lost", "dup");
    for f in &figures {
        println!(
            "{:<52} {:>9} {:>9.2} {:>11.0} {:>6} {:>6}",
            f.name, f.items, f.seconds, f.per_sec, f.lost, f.duplicated
        );
    }
    if args.json {
        println!("{}", serde_json::json!({"bench": "queue", "workers": args.workers, "scenarios": figures}));
    }
    Ok(())
}

/// Bare Redis: `workers` tasks each doing RPUSH then LPOP, the floor any queue pays.
async fn redis_baseline(queue: &Queue, jobs: usize, workers: usize) -> anyhow::Result<Figure> {
    let key = format!("{}:baseline", queue.prefix());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mut conn = queue.connection();
        let key = key.clone();
        let share = jobs / workers + usize::from(w < jobs % workers);
        tasks.spawn(async move {
            for i in 0..share {
                let _: i64 = redis::cmd("RPUSH").arg(&key).arg(i).query_async(&mut conn).await?;
                let _: Option<String> = redis::cmd("LPOP").arg(&key).query_async(&mut conn).await?;
            }
            Ok::<_, redis::RedisError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Figure {
        name: "baseline: bare Redis RPUSH+LPOP round trips".into(),
        items: jobs,
        seconds,
        per_sec: jobs as f64 / seconds,
        lost: 0,
        duplicated: 0,
    })
}

async fn noop_jobs(queue: &Queue, db: &ScratchDatabase, jobs: usize, workers: usize) -> anyhow::Result<Figure> {
    let kind = queue::JobKind { name: "BenchNoop", queue: "bench", max_tries: 3, backoff_secs: 1 };
    let payloads: Vec<JobPayload> = (0..jobs).map(|i| JobPayload::new(kind, serde_json::json!({ "i": i }))).collect();
    let expected: HashSet<Uuid> = payloads.iter().map(|p| p.uuid).collect();
    for chunk in payloads.chunks(5_000) {
        queue.push_many(chunk).await?;
    }
    let handler = Arc::new(Noop { seen: Mutex::new(Vec::with_capacity(jobs)) });
    let mut options = WorkerOptions::new(vec!["bench".into()], Duration::from_secs(90));
    options.concurrency = workers;
    options.idle_poll = Duration::from_millis(5);
    let worker = Worker::new(queue.clone(), db.pool.clone(), handler.clone(), options);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));
    loop {
        let n = handler.seen.lock().expect("not poisoned").len();
        let sizes = queue.sizes("bench").await?;
        if n >= jobs && sizes.ready == 0 && sizes.reserved == 0 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "no-op jobs did not finish in 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    running.await?;
    let seen = handler.seen.lock().expect("not poisoned");
    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    Ok(Figure {
        name: "no-op jobs through the queue (pop, run, ack)".into(),
        items: jobs,
        seconds,
        per_sec: jobs as f64 / seconds,
        lost: expected.difference(&unique).count(),
        duplicated: seen.len() - unique.len(),
    })
}

/// A stand-in for SES v2 `SendEmail` that answers at once with a fresh message id and
/// counts the messages it took per destination address (how duplicates are seen: at the
/// provider, not in our own records).
#[derive(Clone, Default)]
struct Sink {
    per_address: Arc<Mutex<HashMap<String, u32>>>,
}

impl Sink {
    /// Distinct addresses reached and messages beyond the first per address, for
    /// addresses ending in `domain`.
    fn tally(&self, domain: &str) -> (usize, usize) {
        let seen = self.per_address.lock().expect("sink lock");
        let ours = seen.iter().filter(|(a, _)| a.ends_with(domain));
        ours.fold((0, 0), |(reached, extra), (_, n)| (reached + 1, extra + (*n as usize).saturating_sub(1)))
    }
}

async fn ses_sink() -> anyhow::Result<(tokio::task::JoinHandle<()>, String, Sink)> {
    let sink = Sink::default();
    let counter = sink.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let counter = counter.clone();
        async move {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(to) = request["Destination"]["ToAddresses"][0].as_str() {
                *counter.per_address.lock().expect("sink lock").entry(to.to_owned()).or_default() += 1;
            }
            axum::Json(serde_json::json!({ "MessageId": Uuid::now_v7().to_string() }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((handle, url, sink))
}

fn sink_lookup(url: &str) -> impl Fn(&str) -> Option<String> + Clone {
    let url = url.to_owned();
    move |k: &str| match k {
        "SES_ENDPOINT" => Some(url.clone()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("bench".into()),
        "AWS_REGION" => Some("us-east-1".into()),
        "SES_RATE_PER_SEC" => Some("0".into()),
        "STORAGE_URL" => Some(std::env::temp_dir().join("fibonacco-bench-storage").display().to_string()),
        _ => None,
    }
}

/// Direct SES SDK calls to the sink: what sending costs without queue or database.
async fn ses_baseline(sink: &str, sends: usize, workers: usize) -> anyhow::Result<Figure> {
    let ses = Arc::new(Ses::new(SesSettings::from_lookup(&sink_lookup(sink)).expect("static settings")));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let ses = ses.clone();
        let share = sends / workers + usize::from(w < sends % workers);
        tasks.spawn(async move {
            for _ in 0..share {
                let mime = b"From: a@sink.example\r\nTo: b@sink.example\r\nSubject: x\r\n\r\nhello".to_vec();
                ses.send(OutgoingEmail { from: "a@sink.example", to: "b@sink.example", mime }).await?;
            }
            Ok::<_, fibonacco_delivery::ProviderError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Figure {
        name: "baseline: direct SES SDK calls to the sink".into(),
        items: sends,
        seconds,
        per_sec: sends as f64 / seconds,
        lost: 0,
        duplicated: 0,
    })
}

/// A whole campaign: dispatch, one job per recipient, claim, render, SES, record.
async fn campaign(
    config: &Config,
    queue: &Queue,
    db: &ScratchDatabase,
    (sink, counts): (&str, &Sink),
    recipients: i64,
    workers: usize,
    batch: usize,
) -> anyhow::Result<Figure> {
    let slug = Slug::parse(&format!("bench-queue-{batch}-{}", Uuid::now_v7().simple())).expect("a valid slug");
    let tenant = tenancy::create(&db.pool, "Bench", &slug).await?;
    let mut tx = fibonacco_platform::db::begin_tenant(&db.pool, tenant.id).await?;
    sqlx::query(
        "insert into crm_customers (tenant_id, name, slug, email)
         select $1, 'Customer ' || g, 'customer-' || g, 'customer' || g || '@' || $3 || '.bench.example'
         from generate_series(1, $2) g",
    )
    .bind(tenant.id)
    .bind(recipients)
    .bind(slug.as_str())
    .execute(&mut *tx)
    .await?;
    let template: Uuid = sqlx::query_scalar(
        "insert into email_templates (tenant_id, name, subject, html_body) values
         ($1, 'bench', 'Hello {{ first_name }}', '<p>Hi {{ name }}</p><a href=\"https://shop.example/a\">Shop</a>') returning id",
    )
    .bind(tenant.id)
    .fetch_one(&mut *tx)
    .await?;
    let campaign_id: Uuid = sqlx::query_scalar(
        "insert into outbound_campaigns (tenant_id, name, type, status, email_template_id, started_at)
         values ($1, 'bench', 'email', 'running', $2, now()) returning id",
    )
    .bind(tenant.id)
    .bind(template)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "insert into outbound_campaign_recipients (tenant_id, campaign_id, customer_id)
         select $1, $2, id from crm_customers where tenant_id = $1",
    )
    .bind(tenant.id)
    .bind(campaign_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    let base = sink_lookup(sink);
    let batch_size = batch.to_string();
    let lookup = move |k: &str| if k == "SEND_BATCH_SIZE" { Some(batch_size.clone()) } else { base(k) };
    let ctx = JobContext {
        pool: db.pool.clone(),
        queue: queue.clone(),
        providers: Providers::from_lookup(&lookup)?,
        settings: Arc::new(DeliverySettings::from_lookup(
            &config.app_url,
            config.app_key.clone(),
            Duration::from_secs(90),
            &lookup,
        )?),
        embedder: None,
        store: Arc::new(fibonacco_search::store::pgvector::PgVector::new(db.pool.clone())),
        templates: Default::default(),
    };
    let mut options = WorkerOptions::new(vec!["emails".into()], Duration::from_secs(90));
    options.concurrency = workers;
    options.idle_poll = Duration::from_millis(5);
    let worker = Worker::new(queue.clone(), db.pool.clone(), Arc::new(ctx), options);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    campaigns::enqueue_dispatch(queue, tenant.id, campaign_id, "email").await?;
    let running = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));
    loop {
        let mut tx = fibonacco_platform::db::begin_tenant(&db.pool, tenant.id).await?;
        let status: String = sqlx::query_scalar("select status from outbound_campaigns where id = $1")
            .bind(campaign_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if status == "completed" {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "the campaign did not finish in 15 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    running.await?;
    let mut tx = fibonacco_platform::db::begin_tenant(&db.pool, tenant.id).await?;
    let unknown: i64 = sqlx::query_scalar(
        "select count(*) from outbound_campaign_recipients where campaign_id = $1 and status <> 'sent'",
    )
    .bind(campaign_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    anyhow::ensure!(unknown == 0, "{unknown} recipients did not end `sent`");
    // Counted at the sink: every recipient reached once, none twice.
    let (reached, extra) = counts.tally(&format!("@{}.bench.example", slug.as_str()));
    Ok(Figure {
        name: format!("e-mail campaign, {batch} recipient(s) per send job"),
        items: recipients as usize,
        seconds,
        per_sec: recipients as f64 / seconds,
        lost: (recipients as usize).saturating_sub(reached),
        duplicated: extra,
    })
}
