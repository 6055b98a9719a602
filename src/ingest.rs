//! `fibonacco ingest`: change data capture into the lake, its status, compaction, and SQL
//! over the lake.

use std::net::SocketAddr;

use clap::{Args, Subcommand};
use fibonacco_api::startup::shutdown_signal;
use fibonacco_ingest::{Ingest, IngestConfig, Lake, compact, slot, status, view};
use fibonacco_platform::{Config, config::redact_url, db};

#[derive(Args)]
pub struct IngestArgs {
    #[command(subcommand)]
    command: Option<IngestCommand>,
    /// Drop the replication slot and the lake, then copy every table again (after the
    /// slot was dropped or invalidated, or to start over).
    #[arg(long)]
    resnapshot: bool,
    /// Prometheus metrics address (`INGEST_METRICS_ADDR`, default 127.0.0.1:9464; `off`
    /// disables).
    #[arg(long, env = "INGEST_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: String,
}

#[derive(Subcommand)]
enum IngestCommand {
    /// The slot, durable and confirmed LSNs, lag in bytes and seconds, files and changes
    /// per table.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Merge small files now (the running ingest also does this by itself).
    Compact,
    /// Run SQL over the lake with DataFusion: `<table>` is the current state,
    /// `<table>_changes` every change with `_lsn`, `_seq`, `_op`, `_commit_ts`.
    Query { sql: String },
}

pub async fn run(config: Config, args: IngestArgs) -> anyhow::Result<()> {
    let mut ingest_config =
        IngestConfig::from_lookup(config.database_url.clone(), fibonacco_platform::config::env_lookup())?;
    match args.command {
        None => {
            ingest_config.resnapshot = args.resnapshot;
            ingest_config.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let metrics = serve_metrics(&args.metrics_addr).await?;
            eprintln!(
                "ingest: slot {} publication {} → lake {} (database {}){}",
                ingest_config.slot,
                ingest_config.publication,
                ingest_config.lake,
                redact_url(config.database_url.expose()),
                metrics.map(|a| format!("; metrics on http://{a}/metrics")).unwrap_or_default()
            );
            let ingest = Ingest::connect(ingest_config).await?;
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            ingest.run_supervised(stop).await?;
            Ok(())
        }
        Some(IngestCommand::Status { json }) => {
            let pool = db::connect(&config).await?;
            let status = status::status(&pool, &ingest_config).await?;
            if json {
                out!("{}", serde_json::to_string(&status)?);
            } else {
                print!("{status}");
            }
            Ok(())
        }
        Some(IngestCommand::Compact) => {
            let pool = db::connect(&config).await?;
            if slot::slot_state(&pool, &ingest_config.slot).await?.is_some_and(|s| s.active) {
                anyhow::bail!("`fibonacco ingest` is running on slot {}; it compacts by itself", ingest_config.slot);
            }
            let lake = Lake::open(&ingest_config.lake)?;
            let mut manifest =
                lake.read_manifest().await?.ok_or_else(|| anyhow::anyhow!("no lake at {} yet", lake.display()))?;
            let merged = compact::compact(&lake, &mut manifest, 2).await?;
            out!("merged {merged} files away; {} files remain", manifest.files.len());
            Ok(())
        }
        Some(IngestCommand::Query { sql }) => {
            let lake = Lake::open(&ingest_config.lake)?;
            let (ctx, _) = view::session(&lake).await?;
            let batches = ctx.sql(&sql).await?.collect().await?;
            out!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
            Ok(())
        }
    }
}

/// Serves `/metrics` for a standalone ingest process (in `fibonacco run` the API's
/// `/metrics` shows the same series).
async fn serve_metrics(addr: &str) -> anyhow::Result<Option<SocketAddr>> {
    if addr == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = addr.parse().map_err(|e| anyhow::anyhow!("INGEST_METRICS_ADDR {addr:?}: {e}"))?;
    let handle = fibonacco_api::observability::prometheus();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics ({e}); set INGEST_METRICS_ADDR or `off`"))?;
    let local = listener.local_addr()?;
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || async move { handle.render() }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(Some(local))
}
