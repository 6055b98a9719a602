//! The background side of the platform from the command line: workers, the scheduler,
//! queue inspection and failed-job handling, and `run` (everything in one process).

use std::{sync::Arc, time::Duration};

use clap::{Args, Subcommand};
use fibonacco_api::{Application, customers::import::WithImports, startup::shutdown_signal};
use fibonacco_delivery::{
    JobContext,
    providers::{DeliverySettings, Providers},
    scheduler::{self, Scheduler, TickOutcome},
};
use fibonacco_platform::{
    Config, cache,
    config::{env_lookup, redact_url},
    db,
    queue::{self, Queue, Worker, WorkerOptions, failed},
};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Args)]
pub struct WorkerArgs {
    /// Comma-separated queues (default: emails,sms,calls,tts,embeddings,imports).
    #[arg(long, value_delimiter = ',')]
    queue: Vec<String>,
    /// Jobs run at once per queue.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Every task, its cron expression and its next run.
    List,
    /// Run one task now (it still takes the overlap lock and is recorded).
    Run { task: String },
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Ready, delayed and reserved jobs per queue, and the failed-job count.
    Status,
    /// List failed jobs.
    Failed,
    /// Put a failed job (or `all`) back on its queue with fresh tries.
    Retry { which: String },
    /// Delete one failed job.
    Forget { uuid: Uuid },
    /// Delete every failed job.
    Flush,
}

#[derive(Subcommand)]
pub enum OutboundCommand {
    /// Settle sends whose outcome is unknown: SMS and calls are looked up at Twilio
    /// (found: recorded; never created: sent again once); e-mails stay unknown (SES has no
    /// lookup) and are counted.
    Reconcile {
        /// Only this campaign.
        #[arg(long)]
        campaign: Option<Uuid>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The addresses and numbers a tenant's sends skip, newest first.
    Suppressions {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum StripeCommand {
    /// Webhook events that disagreed with our orders (wrong amount or currency, another
    /// tenant, ids of two orders): kept, answered 200, and listed here newest first.
    Conflicts {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub async fn stripe(config: Config, cmd: StripeCommand) -> anyhow::Result<()> {
    let StripeCommand::Conflicts { limit, json } = cmd;
    let pool = db::connect(&config).await?;
    let mut tx = db::begin_system(&pool).await?;
    let conflicts = fibonacco_api::stripe::store::conflicts(&mut tx, limit.clamp(1, 10_000)).await?;
    tx.commit().await?;
    if json {
        out!("{}", serde_json::json!({ "conflicts": conflicts }));
        return Ok(());
    }
    if conflicts.is_empty() {
        out!("no Stripe events in conflict");
    }
    for c in &conflicts {
        let order = c.order_id.map_or_else(|| "-".to_owned(), |o| o.to_string());
        out!(
            "{} {} {} order {}: {}",
            c.processed_at.to_rfc3339(),
            c.id,
            c.kind,
            order,
            c.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum SearchCommand {
    /// Serve the search service on its own port (`APP_HOST:SEARCH_PORT`, default 8001).
    Serve,
    /// Re-embed every knowledge entry (all tenants) with the configured embedder, write
    /// the vectors (and long entries' sections) to Postgres and rebuild the vector store's
    /// index; Postgres text stays the source of truth.
    Reindex {
        /// Entries embedded per batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Rebuild this store (default: `VECTOR_STORE`, else pgvector).
        #[arg(long, value_parser = ["pgvector", "qdrant"])]
        backend: Option<String>,
    },
}

/// What every background command connects to.
struct Background {
    pool: sqlx::PgPool,
    queue: Queue,
}

async fn connect(config: &Config) -> anyhow::Result<Background> {
    let pool = db::connect(config).await.map_err(|e| {
        anyhow::anyhow!("cannot connect to Postgres ({}): {e}", redact_url(config.database_url.expose()))
    })?;
    let redis = cache::connect(config.redis_url.expose())
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to Redis ({}): {e}", redact_url(config.redis_url.expose())))?;
    Ok(Background { pool, queue: Queue::new(redis, config.queue_prefix.clone()) })
}

fn job_context(config: &Config, bg: &Background, queues: &[String]) -> anyhow::Result<JobContext> {
    let settings =
        DeliverySettings::from_lookup(&config.app_url, config.app_key.clone(), config.queue_retry_after, env_lookup())?;
    // The model is loaded only where embeddings run (it takes ~90 MB).
    let embedder = queues.iter().any(|q| q == queue::GENERATE_EMBEDDING.queue).then(|| {
        fibonacco_search::embed::from_lookup(env_lookup()).map_err(|e| {
            tracing::warn!(error = %e, "no embedder: embedding jobs will wait and retry");
            e.to_string()
        })
    });
    Ok(JobContext {
        pool: bg.pool.clone(),
        queue: bg.queue.clone(),
        providers: Providers::from_lookup(env_lookup())?,
        settings: Arc::new(settings),
        embedder,
        store: vector_store(&bg.pool)?,
        templates: Default::default(),
    })
}

/// The search service for its own port: its own token cache, the configured store.
fn search_service(config: &Config, pool: &sqlx::PgPool) -> anyhow::Result<fibonacco_search::SearchService> {
    let tokens = Arc::new(fibonacco_platform::auth::TokenCache::new(config.auth_cache_ttl, 100_000));
    Ok(fibonacco_search::SearchService::new(pool.clone(), tokens, vector_store(pool)?, config.max_per_page)
        .with_request_timeout(config.request_timeout))
}

/// Binds `APP_HOST:SEARCH_PORT`.
async fn bind_search(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = std::net::SocketAddr::new(config.app_host, config.search_port);
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the search service (SEARCH_PORT): {e}"))
}

/// The vector store from `VECTOR_STORE` (pgvector unless set to qdrant).
fn vector_store(pool: &sqlx::PgPool) -> anyhow::Result<Arc<dyn fibonacco_search::VectorStore>> {
    let dims = fibonacco_search::embed::configured_dimensions(env_lookup())?;
    Ok(fibonacco_search::store::from_lookup(pool.clone(), env_lookup(), dims)?)
}

fn queues_or_all(queues: Vec<String>) -> Vec<String> {
    if queues.is_empty() { queue::QUEUES.iter().map(|q| (*q).to_owned()).collect() } else { queues }
}

fn worker_options(config: &Config, ctx: &JobContext, queues: Vec<String>, concurrency: usize) -> WorkerOptions {
    let mut options = WorkerOptions::new(queues, config.queue_retry_after);
    options.concurrency = concurrency.max(1);
    options.backoff_base = ctx.settings.backoff_base;
    options
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

pub async fn worker(config: Config, args: WorkerArgs) -> anyhow::Result<()> {
    let bg = connect(&config).await?;
    let queues = queues_or_all(args.queue);
    let ctx = job_context(&config, &bg, &queues)?;
    let options = worker_options(&config, &ctx, queues, args.concurrency);
    eprintln!("fibonacco worker on {} (concurrency {} each)", options.queues.join(","), options.concurrency);
    let worker = Worker::new(
        bg.queue.clone(),
        bg.pool.clone(),
        Arc::new(WithImports { pool: bg.pool.clone(), inner: ctx }),
        options,
    );
    let stats = worker.run(shutdown_signal()).await;
    let (ok, retried, failed) = stats.snapshot();
    eprintln!("worker stopped: {ok} succeeded, {retried} retried, {failed} failed");
    Ok(())
}

pub async fn scheduler(config: Config) -> anyhow::Result<()> {
    let bg = connect(&config).await?;
    let tasks = scheduler::tasks(env_lookup())?;
    eprintln!("fibonacco scheduler: {} tasks", tasks.len());
    Scheduler::new(bg.pool, bg.queue).with_retry_after(config.queue_retry_after).run(tasks, shutdown_signal()).await;
    Ok(())
}

pub async fn schedule(config: Config, cmd: ScheduleCommand) -> anyhow::Result<()> {
    let tasks = scheduler::tasks(env_lookup())?;
    match cmd {
        ScheduleCommand::List => {
            let now = chrono::Utc::now();
            out!("{:<30} {:<18} {:<27} no-overlap  description", "task", "cron", "next run (UTC)");
            for t in &tasks {
                let next = t.next_after(now).map(|n| n.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
                out!(
                    "{:<30} {:<18} {:<27} {:<11} {}",
                    t.name,
                    t.cron,
                    next,
                    if t.no_overlap { "yes" } else { "no" },
                    t.description
                );
            }
            Ok(())
        }
        ScheduleCommand::Run { task } => {
            let task = scheduler::find(&tasks, &task)?;
            let bg = connect(&config).await?;
            match Scheduler::new(bg.pool, bg.queue).with_retry_after(config.queue_retry_after).run_now(task).await {
                TickOutcome::Ran(detail) => {
                    out!("{}: {detail}", task.name);
                    Ok(())
                }
                TickOutcome::SkippedOverlap => anyhow::bail!("{}: an earlier run is unfinished; skipped", task.name),
                TickOutcome::TakenElsewhere => anyhow::bail!("{}: another scheduler took this tick", task.name),
                TickOutcome::Failed(e) => anyhow::bail!("{}: {e}", task.name),
            }
        }
    }
}

pub async fn outbound(config: Config, cmd: OutboundCommand) -> anyhow::Result<()> {
    let (campaign, json) = match cmd {
        OutboundCommand::Reconcile { campaign, json } => (campaign, json),
        OutboundCommand::Suppressions { tenant, limit, json } => {
            return suppressions(&config, &tenant, limit, json).await;
        }
    };
    let bg = connect(&config).await?;
    let providers = Providers::from_lookup(env_lookup())?;
    let reports = fibonacco_delivery::reconcile::reconcile(&bg.pool, &bg.queue, &providers, campaign).await?;
    if json {
        out!("{}", serde_json::json!({ "campaigns": reports }));
        return Ok(());
    }
    if reports.is_empty() {
        out!("no sends with an unknown outcome");
    }
    for r in &reports {
        out!(
            "{} ({}): {} settled from the provider, {} never received (sent again), {} still unknown",
            r.campaign_id,
            r.channel,
            r.settled,
            r.released,
            r.unknown
        );
    }
    Ok(())
}

pub async fn queue(config: Config, cmd: QueueCommand) -> anyhow::Result<()> {
    let bg = connect(&config).await?;
    match cmd {
        QueueCommand::Status => {
            out!("{:<12} {:>8} {:>8} {:>9}", "queue", "ready", "delayed", "reserved");
            for q in queue::QUEUES {
                let s = bg.queue.sizes(q).await?;
                out!("{q:<12} {:>8} {:>8} {:>9}", s.ready, s.delayed, s.reserved);
            }
            out!("failed jobs: {}", failed::list(&bg.pool).await?.len());
        }
        QueueCommand::Failed => {
            let jobs = failed::list(&bg.pool).await?;
            if jobs.is_empty() {
                out!("no failed jobs");
            }
            for j in jobs {
                out!(
                    "{}  {}  {:<10} {:<22} {}",
                    j.uuid,
                    j.failed_at.format("%Y-%m-%d %H:%M:%S"),
                    j.queue,
                    j.job_name(),
                    j.exception
                );
            }
        }
        QueueCommand::Retry { which } => {
            let target = if which == "all" {
                None
            } else {
                Some(which.parse::<Uuid>().map_err(|_| anyhow::anyhow!("`{which}` is neither a job uuid nor `all`"))?)
            };
            let pushed = failed::retry(&bg.pool, &bg.queue, target).await?;
            for id in &pushed {
                out!("{id} pushed back onto its queue");
            }
            if pushed.is_empty() {
                out!("no failed jobs");
            }
        }
        QueueCommand::Forget { uuid } => {
            if !failed::forget(&bg.pool, uuid).await? {
                anyhow::bail!("no failed job with uuid {uuid}");
            }
            out!("{uuid} forgotten");
        }
        QueueCommand::Flush => out!("{} failed jobs deleted", failed::flush(&bg.pool).await?),
    }
    Ok(())
}

/// `fibonacco run`: migrations, then API, worker (every queue) and scheduler in one
/// process. On SIGTERM the worker finishes its jobs and the API drains before exit.
pub async fn run_all(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config.clone()).await?;
    db::migrate(&app.state().pool).await?;
    tracing::info!("migrations applied");
    let bg = Background { pool: app.state().pool.clone(), queue: app.state().queue.clone() };
    let queues = queues_or_all(Vec::new());
    let ctx = job_context(&config, &bg, &queues)?;
    let options = worker_options(&config, &ctx, queues, 2);
    let tasks = scheduler::tasks(env_lookup())?;
    let addr = app.local_addr();
    let search_listener = bind_search(&config).await?;
    eprintln!("fibonacco on http://{addr} (database {})", redact_url(config.database_url.expose()));
    eprintln!(
        "  search service on http://{} (store {})",
        search_listener.local_addr()?,
        app.state().search.store.name()
    );
    eprintln!(
        "  OpenAPI: http://{addr}/api/v1/openapi.json   Swagger UI: http://{addr}/docs   health: http://{addr}/health"
    );
    eprintln!("  worker on {} and the scheduler ({} tasks) run in this process", options.queues.join(","), tasks.len());
    let ingest_config = fibonacco_ingest::IngestConfig::from_lookup(config.database_url.clone(), env_lookup())?;
    eprintln!(
        "  change data capture: slot {} → lake {} (`fibonacco ingest status`), pipelines watch and webhooks outbox on its feed",
        ingest_config.slot, ingest_config.lake
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let worker = Worker::new(
        bg.queue.clone(),
        bg.pool.clone(),
        Arc::new(WithImports { pool: bg.pool.clone(), inner: ctx }),
        options,
    );
    let worker = tokio::spawn(worker.run(wait_for(stop_rx.clone())));
    let sched = Scheduler::new(bg.pool.clone(), bg.queue.clone()).with_retry_after(config.queue_retry_after);
    let sched_rx = stop_rx.clone();
    let sched = tokio::spawn(async move { sched.run(tasks, wait_for(sched_rx)).await });
    // The same service value the API uses: one store, one loaded embedder.
    let search =
        fibonacco_search::service::serve(search_listener, app.state().search.clone(), wait_for(stop_rx.clone()));
    let search = tokio::spawn(search);
    // The capture and the watch restart by themselves after failures a restart can cure;
    // one that cannot (wal_level, privileges, a lost slot) is logged and shown in /health,
    // and the API stays up.
    let mut runner = crate::pipelines::pipelines(bg.pool.clone(), &ingest_config)?;
    // Progress bars would interleave with the server's log.
    runner.progress = false;
    let (ingest_stop, watch_stop, outbox_stop) = (stop_rx.clone(), stop_rx.clone(), stop_rx.clone());
    // The webhooks' outbox turns the lake's changes into deliveries, woken by the feed.
    let outbox = Arc::new(fibonacco_pipelines::webhooks::Outbox {
        pool: bg.pool.clone(),
        lake: fibonacco_ingest::Lake::open(&ingest_config.lake)?,
        queue: Some(bg.queue.clone()),
    });
    let ingest = tokio::spawn(async move {
        let result = match fibonacco_ingest::Ingest::connect(ingest_config).await {
            Ok(ingest) => {
                // The pipelines' watch follows the same capture's feed in this process.
                let feed = ingest.feed();
                let outbox_feed = feed.clone();
                let watch = tokio::spawn(async move { crate::pipelines::watch_feed(runner, &feed, watch_stop).await });
                let outbox = tokio::spawn(async move {
                    if let Err(e) = outbox.follow(&outbox_feed, outbox_stop).await {
                        tracing::error!(error = %e, "webhooks outbox stopped");
                    }
                });
                let result = ingest.run_supervised(ingest_stop).await;
                if result.is_ok() {
                    let _ = watch.await;
                    let _ = outbox.await;
                }
                result
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "change data capture stopped");
            eprintln!("change data capture stopped: {e}");
        }
    });
    app.run_until(async move {
        wait_for(stop_rx).await;
        // Jobs in flight still need the database the API closes on exit.
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            let _ = worker.await;
            let _ = sched.await;
            let _ = search.await;
            let _ = ingest.await;
        })
        .await;
    })
    .await?;
    Ok(())
}

pub async fn search(config: Config, cmd: SearchCommand) -> anyhow::Result<()> {
    match cmd {
        SearchCommand::Serve => {
            let pool = db::connect(&config).await?;
            let svc = search_service(&config, &pool)?;
            let listener = bind_search(&config).await?;
            eprintln!(
                "search service on http://{} (store {}); GET|POST /api/v1/search, /health",
                listener.local_addr()?,
                svc.store.name()
            );
            fibonacco_search::service::serve(listener, svc, shutdown_signal()).await?;
            Ok(())
        }
        SearchCommand::Reindex { batch, backend } => {
            let pool = db::connect(&config).await?;
            let embedder = fibonacco_search::embed::from_lookup(env_lookup())?;
            let store = match backend {
                Some(b) => {
                    let env = env_lookup();
                    let lookup = move |k: &str| if k == "VECTOR_STORE" { Some(b.clone()) } else { env(k) };
                    fibonacco_search::store::from_lookup(pool.clone(), lookup, embedder.dimensions())?
                }
                None => vector_store(&pool)?,
            };
            let started = std::time::Instant::now();
            eprintln!(
                "re-embedding knowledge with {} ({} dimensions) into {}",
                embedder.model(),
                embedder.dimensions(),
                store.name()
            );
            let stats =
                fibonacco_search::index::reindex(&pool, embedder.as_ref(), store.as_ref(), batch, |done, total| {
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    eprint!("\r[search] {done}/{total} entries ({rate:.0}/s)   ");
                })
                .await?;
            eprintln!();
            out!(
                "{} of {} entries embedded and {} published articles in {:.1}s; {} changed meanwhile (queued for the sweep)",
                stats.embedded,
                stats.total,
                stats.articles,
                started.elapsed().as_secs_f64(),
                stats.changed_meanwhile
            );
            Ok(())
        }
    }
}

/// `fibonacco outbound suppressions --tenant SLUG`: what that tenant's sends skip.
async fn suppressions(config: &Config, slug: &str, limit: i64, json: bool) -> anyhow::Result<()> {
    let pool = db::connect(config).await?;
    let tenant = fibonacco_platform::tenancy::find_by_slug(&pool, slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant with the slug `{slug}`"))?;
    let mut tx = db::begin_tenant(&pool, tenant.id).await?;
    type Row = (String, String, String, Option<String>, chrono::DateTime<chrono::Utc>);
    let rows: Vec<Row> = sqlx::query_as(
        "select channel, target, reason, note, created_at from outbound_suppressions where tenant_id = $1
         order by created_at desc, id desc limit $2",
    )
    .bind(tenant.id)
    .bind(limit.clamp(1, 100_000))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(channel, target, reason, note, at)| {
                serde_json::json!({"channel": channel, "target": target, "reason": reason, "note": note, "created_at": at})
            })
            .collect();
        out!("{}", serde_json::json!({ "tenant": slug, "suppressions": list }));
        return Ok(());
    }
    if rows.is_empty() {
        out!("nothing suppressed for {slug}");
    }
    for (channel, target, reason, note, at) in &rows {
        out!("{} {channel:<5} {target} ({reason}) {}", at.to_rfc3339(), note.as_deref().unwrap_or(""));
    }
    Ok(())
}
