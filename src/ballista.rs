//! `fibonacco ballista scheduler|executor`: a Ballista cluster for the pipelines' batch
//! runs (`PIPELINES_ENGINE=ballista://host:port`), reading the lake at `INGEST_LAKE`.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Subcommand};
use fibonacco_ingest::{IngestConfig, Lake};
use fibonacco_pipelines::{
    cluster::{self, ExecutorOptions},
    engine::Engine,
};
use fibonacco_platform::{Config, config::env_lookup};

#[derive(Args)]
pub struct BallistaArgs {
    #[command(subcommand)]
    command: BallistaCommand,
}

#[derive(Subcommand)]
enum BallistaCommand {
    /// The cluster's scheduler: plans the queries the platform sends and hands their
    /// tasks to the executors. One per cluster; its state lives in memory.
    Scheduler {
        /// Address to listen on. Ballista has no authentication: whoever reaches the
        /// scheduler can run any query its executors can (the whole lake), so the default
        /// is this machine only; open it to a private network, never a public one.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
    },
    /// An executor: runs tasks over the lake's files; start one or more per machine.
    Executor {
        /// The scheduler, as `ballista://host:port`.
        #[arg(long, default_value = "ballista://localhost:50050")]
        scheduler: String,
        /// Address its services listen on (this machine only by default, as the
        /// scheduler's: a cluster across machines binds a private network's address).
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// The name the scheduler and the other executors reach this one by (default:
        /// the address the scheduler sees it connect from).
        #[arg(long)]
        external_host: Option<String>,
        /// Port of its Flight service (results and shuffles).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// Port of its control service.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Concurrent tasks (default: one per core).
        #[arg(long, default_value_t = 0)]
        vcores: usize,
        /// Shuffle files and spills (default: a directory under the system's temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

pub async fn run(config: Config, args: BallistaArgs) -> anyhow::Result<()> {
    let ingest = IngestConfig::from_lookup(config.database_url.clone(), env_lookup())?;
    let lake = Lake::open(&ingest.lake)?;
    match args.command {
        BallistaCommand::Scheduler { bind } => {
            eprintln!("ballista scheduler on {bind}, lake {}", lake.display());
            cluster::scheduler(bind, lake).await?;
        }
        BallistaCommand::Executor { scheduler, bind_host, external_host, port, grpc_port, vcores, work_dir } => {
            let Ok(Engine::Ballista(scheduler)) = scheduler.parse::<Engine>() else {
                anyhow::bail!("--scheduler {scheduler:?}: expected ballista://host:port");
            };
            let work_dir = work_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("fibonacco-ballista-{port}")));
            eprintln!("ballista executor on {bind_host}:{port} for {scheduler}, lake {}", lake.display());
            let options = ExecutorOptions { scheduler, bind_host, external_host, port, grpc_port, vcores, work_dir };
            cluster::executor(options, lake).await?;
        }
    }
    Ok(())
}
