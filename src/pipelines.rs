//! `fibonacco pipelines run|watch`: the analytics over the lake.

use std::{io::IsTerminal, sync::Arc};

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use fibonacco_analytics::AnalyticsConfig;
use fibonacco_api::startup::shutdown_signal;
use fibonacco_ingest::{ChangeFeed, Ingest, IngestConfig, Lake};
use fibonacco_pipelines::{
    Engine, Pipeline, Pipelines,
    watch::{Watch, WatchProgress},
};
use fibonacco_platform::{Config, config::env_lookup, db};
use sqlx::PgPool;

#[derive(Args)]
pub struct PipelinesArgs {
    #[command(subcommand)]
    command: PipelinesCommand,
}

#[derive(Subcommand)]
enum PipelinesCommand {
    /// Recompute from the lake: engagement, roi, predictive, analytics, send_times or all
    /// (default).
    Run {
        #[arg(default_value = "all")]
        pipeline: String,
        /// Compute as of this date (midnight UTC, YYYY-MM-DD) or instant (RFC 3339);
        /// default now.
        #[arg(long)]
        as_of: Option<String>,
        /// Print one JSON summary line.
        #[arg(long)]
        json: bool,
    },
    /// Run the change data capture and recompute the customers and campaigns its feed
    /// touches (engagement and ROI), until Ctrl-C.
    Watch,
    /// Turn the lake's changes into webhook events and deliveries (the outbox), reading
    /// the lake every 2 s, until Ctrl-C: for deployments that run the capture in its own
    /// process (`fibonacco run` does this beside its capture, woken by the feed).
    Webhooks,
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 instant.
pub fn parse_as_of(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| anyhow::anyhow!("--as-of {text:?}: expected YYYY-MM-DD or an RFC 3339 time"))
}

pub fn pipelines(pool: PgPool, ingest: &IngestConfig) -> anyhow::Result<Pipelines> {
    Ok(Pipelines {
        pool,
        lake: Lake::open(&ingest.lake)?,
        config: AnalyticsConfig::from_env()?,
        progress: std::io::stderr().is_terminal(),
        engine: Engine::from_lookup(env_lookup())?,
    })
}

/// How often the long-running processes recompute everything (the predictive model and
/// the dashboards' read models are batch-only; the watch keeps scores current between).
const BATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The watch over `feed` until `stop` turns true, supervised (restarted after a failure,
/// see `Watch::follow`), with a full batch run shortly after start and then daily.
pub async fn watch_feed(pipelines: Pipelines, feed: &ChangeFeed, stop: tokio::sync::watch::Receiver<bool>) {
    let pipelines = Arc::new(pipelines);
    let batch = tokio::spawn(daily_batch(pipelines.clone()));
    let (progress, _) = tokio::sync::watch::channel(WatchProgress::default());
    let watch = Watch { pipelines, as_of: None, debounce: std::time::Duration::from_millis(100) };
    if let Err(e) = watch.follow(feed, progress, stop).await {
        tracing::error!(error = %e, "pipelines watch stopped");
        eprintln!("pipelines watch stopped: {e}");
    }
    batch.abort();
}

async fn daily_batch(pipelines: Arc<Pipelines>) {
    // A first start copies the tables into the lake before there is anything to read.
    while !matches!(pipelines.lake.read_manifest().await, Ok(Some(_))) {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    }
    loop {
        for p in Pipeline::ALL {
            match pipelines.run(&[p], Utc::now()).await {
                Ok(r) => {
                    tracing::info!(pipeline = p.name(), rows = r[0].rows_written, ms = r[0].duration_ms, "batch run")
                }
                Err(e) => tracing::warn!(pipeline = p.name(), error = %e, "batch run skipped"),
            }
        }
        tokio::time::sleep(BATCH_EVERY).await;
    }
}

pub async fn run(config: Config, args: PipelinesArgs) -> anyhow::Result<()> {
    let ingest_config = IngestConfig::from_lookup(config.database_url.clone(), env_lookup())?;
    match args.command {
        PipelinesCommand::Run { pipeline, as_of, json } => {
            let which = Pipeline::parse_list(&pipeline)?;
            let as_of = as_of.as_deref().map(parse_as_of).transpose()?.unwrap_or_else(Utc::now);
            let pool = db::connect(&config).await?;
            db::migrate(&pool).await?;
            let runner = pipelines(pool, &ingest_config)?;
            let started = std::time::Instant::now();
            let reports = runner.run(&which, as_of).await?;
            if json {
                out!(
                    "{}",
                    serde_json::json!({"as_of": as_of, "duration_ms": started.elapsed().as_millis() as u64, "runs": reports})
                );
            } else {
                for r in &reports {
                    out!(
                        "{:<11} {:>9} rows {:>7} ms  input lsn {}  {}",
                        r.pipeline.name(),
                        r.rows_written,
                        r.duration_ms,
                        r.input_lsn,
                        r.details
                    );
                }
            }
            Ok(())
        }
        PipelinesCommand::Webhooks => {
            let pool = db::connect(&config).await?;
            db::migrate(&pool).await?;
            // Redis is optional here: without it the scheduler's `webhooks:deliver` queues.
            let queue = match fibonacco_platform::cache::connect(config.redis_url.expose()).await {
                Ok(redis) => Some(fibonacco_platform::queue::Queue::new(redis, config.queue_prefix.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "no Redis: the scheduler will queue webhook deliveries");
                    None
                }
            };
            eprintln!("webhooks outbox: lake {} → webhook events and deliveries", ingest_config.lake);
            let outbox =
                Arc::new(fibonacco_pipelines::webhooks::Outbox { pool, lake: Lake::open(&ingest_config.lake)?, queue });
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            // No capture in this process: a feed nobody publishes on, so rounds follow the poll.
            outbox.follow(&ChangeFeed::new(1), stop).await?;
            Ok(())
        }
        PipelinesCommand::Watch => {
            let pool = db::connect(&config).await?;
            db::migrate(&pool).await?;
            let runner = pipelines(pool, &ingest_config)?;
            eprintln!(
                "pipelines watch: capture on slot {} → lake {}; recomputing what changes",
                ingest_config.slot, ingest_config.lake
            );
            let ingest = Ingest::connect(ingest_config).await?;
            let feed = ingest.feed();
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let interrupted = stop_tx.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = interrupted.send(true);
            });
            let watch = watch_feed(runner, &feed, stop_rx.clone());
            let capture = ingest.run_supervised(stop_rx);
            tokio::pin!(watch, capture);
            // The capture heals by itself; once it gives up (or Ctrl-C), the watch has
            // nothing left to follow and ends too, rather than waiting on a silent feed.
            let result = tokio::select! {
                result = &mut capture => {
                    let _ = stop_tx.send(true);
                    watch.await;
                    result
                }
                () = &mut watch => {
                    let _ = stop_tx.send(true);
                    capture.await
                }
            };
            result?;
            Ok(())
        }
    }
}
