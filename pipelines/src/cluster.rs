//! A Ballista cluster that serves the lake: what `fibonacco ballista scheduler` and
//! `fibonacco ballista executor` run, so a data team starts the cluster from the same
//! binary and settings (`INGEST_LAKE`, `AWS_*`) as the platform, and the executors read
//! the lake with the platform's own object-store client.
//!
//! Both are Ballista's scheduler and executor processes (its libraries, not copies) with
//! one change: the session they plan and execute in can open the lake's store.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use tokio::task::JoinHandle;

use ballista_core::{RuntimeProducer, utils::default_session_builder};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::{
    cluster::BallistaCluster, config::SchedulerConfig, scheduler_process::start_server,
    scheduler_server::SessionBuilder,
};
use datafusion::execution::{SessionStateBuilder, runtime_env::RuntimeEnvBuilder};
use fibonacco_ingest::Lake;

use crate::{
    engine::{Engine, Scheduler, lake_runtime},
    error::PipelineError,
};

/// Runs a scheduler on `bind` until the process ends. It keeps its cluster state in
/// memory: one scheduler per cluster (a restart forgets running jobs, which the
/// platform's batch then fails and retries on its next round).
#[tracing::instrument(skip(lake), fields(lake = %lake.display()))]
pub async fn scheduler(bind: SocketAddr, lake: Lake) -> Result<(), PipelineError> {
    let lake = Arc::new(lake);
    let builder: SessionBuilder = Arc::new(move |config| {
        let state = default_session_builder(config)?;
        let runtime = lake_runtime(&lake, RuntimeEnvBuilder::new())?;
        Ok(SessionStateBuilder::new_from_existing(state).with_runtime_env(runtime).build())
    });
    let config = SchedulerConfig::default()
        .with_hostname(bind.ip().to_string())
        .with_port(bind.port())
        .with_override_session_builder(builder);
    let cluster = BallistaCluster::new_from_config(&config).await?;
    start_server(cluster, bind, Arc::new(config)).await?;
    Ok(())
}

/// An executor's settings.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler: Scheduler,
    /// Where its Flight (results and shuffles) and control services listen.
    pub bind_host: String,
    /// The name the scheduler and other executors reach it by (default: the address
    /// the scheduler sees it connect from).
    pub external_host: Option<String>,
    pub port: u16,
    pub grpc_port: u16,
    /// Concurrent tasks (0: one per core).
    pub vcores: usize,
    /// Shuffle files and spills.
    pub work_dir: PathBuf,
}

/// Runs an executor for `options.scheduler` until the process ends (or Ctrl-C, on which
/// it tells the scheduler it is leaving).
#[tracing::instrument(skip_all, fields(scheduler = %options.scheduler, port = options.port))]
pub async fn executor(options: ExecutorOptions, lake: Lake) -> Result<(), PipelineError> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| PipelineError::Input(format!("executor work directory {}: {e}", options.work_dir.display())))?;
    let lake = Arc::new(lake);
    let work_dir = options.work_dir.clone();
    let runtime: RuntimeProducer =
        Arc::new(move |_| lake_runtime(&lake, RuntimeEnvBuilder::new().with_temp_file_path(work_dir.clone())));
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host,
        external_host: options.external_host,
        port: options.port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler.host,
        scheduler_port: options.scheduler.port,
        // The scheduler may start after its executors (a cluster brought up at once).
        scheduler_connect_timeout_seconds: 60,
        vcores: options.vcores,
        work_dir: Some(options.work_dir.display().to_string()),
        // Shuffle files of finished jobs go after a day, checked hourly (Ballista's
        // default keeps them a week and never checks).
        job_data_ttl_seconds: 24 * 3600,
        job_data_clean_up_interval_seconds: 3600,
        override_runtime_producer: Some(runtime),
        ..Default::default()
    };
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// A scheduler and executors started in this process (tests, `bench pipelines
/// --ballista-executors`): the engine that reaches them and their tasks.
pub struct InProcess {
    pub engine: Engine,
    /// (what, its task): a task that ended early says why the cluster stopped answering.
    pub tasks: Vec<(String, JoinHandle<Result<(), PipelineError>>)>,
    pub work_dirs: Vec<PathBuf>,
}

impl InProcess {
    /// A scheduler and `executors` executors on 127.0.0.1, each with an equal share of the
    /// cores, every one reading the lake `open` returns.
    pub fn start(open: impl Fn() -> Result<Lake, PipelineError>, executors: usize) -> Result<Self, PipelineError> {
        let ports = free_ports(1 + 2 * executors)?;
        let scheduler_port = ports[0];
        let scheduler = Scheduler { host: "127.0.0.1".into(), port: scheduler_port };
        let bind = SocketAddr::from(([127, 0, 0, 1], scheduler_port));
        let mut tasks = vec![("scheduler".to_string(), tokio::spawn(self::scheduler(bind, open()?)))];
        let mut work_dirs = Vec::new();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        for (n, pair) in ports[1..].chunks(2).enumerate() {
            let (port, grpc_port) = (pair[0], pair[1]);
            let work_dir = std::env::temp_dir().join(format!("fib-ballista-{scheduler_port}-{n}"));
            let options = ExecutorOptions {
                scheduler: scheduler.clone(),
                bind_host: "127.0.0.1".into(),
                external_host: Some("127.0.0.1".into()),
                port,
                grpc_port,
                vcores: (cores / executors.max(1)).max(1),
                work_dir: work_dir.clone(),
            };
            tasks.push((format!("executor {n}"), tokio::spawn(executor(options, open()?))));
            work_dirs.push(work_dir);
        }
        Ok(Self { engine: Engine::Ballista(scheduler), tasks, work_dirs })
    }
}

/// `n` distinct ports free now (all held until each is known, so none is handed out twice).
pub fn free_ports(n: usize) -> Result<Vec<u16>, PipelineError> {
    let port_error = |e: std::io::Error| PipelineError::Input(format!("no free local port: {e}"));
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(port_error)?;
    held.iter().map(|l| l.local_addr().map(|a| a.port()).map_err(port_error)).collect()
}
