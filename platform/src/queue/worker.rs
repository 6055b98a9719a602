//! `fibonacco worker`: takes jobs from the named queues and runs them, `concurrency` at a
//! time per queue. Success acknowledges; a retryable error puts the job back with
//! exponential backoff until it runs out of tries; then, or on a permanent error, the job
//! goes to `failed_jobs`. Stopping (SIGTERM) lets jobs in flight finish; a job whose worker
//! dies is delivered again once its reservation (`retry_after`) lapses.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tokio::{sync::watch, task::JoinSet};

use super::{Queue, QueueError, Reserved, Undecodable, batch, failed, kind_named};

/// How a job ended when it did not succeed; this decides between retry and `failed_jobs`.
/// The cause is kept as an error with its sources; it becomes text only when the job is
/// written to `failed_jobs` (the whole chain) or logged.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again after the job kind's backoff (or `after`, when the cause says how long).
    #[error("the job will be retried")]
    Retry {
        #[source]
        source: anyhow::Error,
        after: Option<Duration>,
    },
    /// Will not heal by waiting: straight to `failed_jobs`.
    #[error("the job failed for good")]
    Fail(#[source] anyhow::Error),
}

impl JobError {
    /// A retryable failure described by a message.
    pub fn retry(message: impl Into<String>) -> Self {
        Self::retry_because(anyhow::Error::msg(message.into()))
    }

    /// A permanent failure described by a message.
    pub fn fail(message: impl Into<String>) -> Self {
        Self::fail_because(anyhow::Error::msg(message.into()))
    }

    /// A retryable failure caused by `e`, kept with its sources.
    pub fn retry_because(e: impl Into<anyhow::Error>) -> Self {
        Self::Retry { source: e.into(), after: None }
    }

    /// A permanent failure caused by `e`, kept with its sources.
    pub fn fail_because(e: impl Into<anyhow::Error>) -> Self {
        Self::Fail(e.into())
    }

    /// The cause and its sources, as `failed_jobs.exception` and the logs show it.
    pub fn report(&self) -> String {
        match self {
            Self::Retry { source, .. } | Self::Fail(source) => format!("{source:#}"),
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        Self::Retry { source: anyhow::Error::new(e).context("database"), after: None }
    }
}

impl From<QueueError> for JobError {
    fn from(e: QueueError) -> Self {
        Self::Retry { source: anyhow::Error::new(e).context("queue"), after: None }
    }
}

/// Reads a job's data into its typed payload; a payload that does not fit fails for good.
pub fn data<T: DeserializeOwned>(job: &Reserved) -> Result<T, JobError> {
    serde_json::from_value(job.payload.data.clone())
        .map_err(|e| JobError::Fail(anyhow::Error::new(e).context(format!("{} has unreadable data", job.payload.job))))
}

/// Runs one job. Implemented by the delivery crate's jobs and by the no-op handler of the
/// queue benchmark.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, job: &'a Reserved) -> BoxFuture<'a, Result<(), JobError>>;
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queues: Vec<String>,
    /// Jobs run at once, per queue.
    pub concurrency: usize,
    /// A reservation lapses (and the job is delivered again) after this long.
    pub retry_after: Duration,
    /// How long an idle loop waits before asking Redis again.
    pub idle_poll: Duration,
    /// Overrides every job kind's first-retry wait.
    pub backoff_base: Option<Duration>,
}

impl WorkerOptions {
    pub fn new(queues: Vec<String>, retry_after: Duration) -> Self {
        Self { queues, concurrency: 4, retry_after, idle_poll: Duration::from_millis(100), backoff_base: None }
    }

    /// A job may run this long; kept under `retry_after` so a job is not delivered to
    /// another worker while this one still works on it.
    fn job_timeout(&self) -> Duration {
        self.retry_after.mul_f64(0.9).max(Duration::from_millis(500))
    }
}

/// What a worker did, for logs, tests and the benchmark.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
}

impl WorkerStats {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.succeeded.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

pub struct Worker {
    queue: Queue,
    pool: PgPool,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
    pub stats: Arc<WorkerStats>,
}

enum Outcome {
    Done,
    Retried,
    Failed,
}

impl Worker {
    pub fn new(queue: Queue, pool: PgPool, handler: Arc<dyn Handler>, options: WorkerOptions) -> Self {
        Self { queue, pool, handler, options, stats: Arc::default() }
    }

    /// Runs until `shutdown` resolves, then waits for the jobs in flight.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) -> Arc<WorkerStats> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let this = Arc::new(self);
        let mut tasks = JoinSet::new();
        for name in this.options.queues.clone() {
            let (w, stop) = (this.clone(), stop_rx.clone());
            let q = name.clone();
            tasks.spawn(async move { w.maintain(&q, stop).await });
            for _ in 0..this.options.concurrency.max(1) {
                let (w, stop, q) = (this.clone(), stop_rx.clone(), name.clone());
                tasks.spawn(async move { w.work(&q, stop).await });
            }
        }
        tracing::info!(queues = ?this.options.queues, concurrency = this.options.concurrency, "worker started");
        shutdown.await;
        tracing::info!("worker stopping; finishing jobs in flight");
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        let stats = this.stats.clone();
        let (ok, retried, failed) = stats.snapshot();
        tracing::info!(ok, retried, failed, "worker stopped");
        stats
    }

    /// Brings delayed jobs and lapsed reservations back to the ready list, once a second.
    async fn maintain(&self, queue: &str, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.queue.migrate_due(queue).await {
                tracing::warn!(queue, error = %e, "cannot move due jobs; retrying");
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn work(&self, queue: &str, mut stop: watch::Receiver<bool>) {
        let mut redis_down = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.queue.pop(queue, self.options.retry_after).await {
                Ok(Some(Ok(job))) => {
                    redis_down = false;
                    self.process(job).await;
                    continue;
                }
                Ok(Some(Err(bad))) => {
                    self.bury_undecodable(queue, bad).await;
                    continue;
                }
                Ok(None) => {
                    redis_down = false;
                    self.options.idle_poll
                }
                Err(e) => {
                    // The connection manager reconnects by itself; keep asking, slowly.
                    if !redis_down {
                        tracing::warn!(queue, error = %e, "queue unreachable; will keep retrying");
                    }
                    redis_down = true;
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    #[tracing::instrument(name = "job", skip_all, fields(job = %job.payload.job, queue = %job.payload.queue, uuid = %job.payload.uuid, attempt = job.attempts))]
    async fn process(&self, job: Reserved) {
        let started = std::time::Instant::now();
        let result = if job.attempts > job.payload.max_tries {
            // Taken more often than it may run: earlier runs died or timed out.
            Err(JobError::fail(format!(
                "taken {} times (max {}): earlier runs did not finish (crash or timeout)",
                job.attempts, job.payload.max_tries
            )))
        } else {
            match tokio::time::timeout(self.options.job_timeout(), self.handler.handle(&job)).await {
                Ok(r) => r,
                Err(_) => Err(JobError::retry(format!("timed out after {:?}", self.options.job_timeout()))),
            }
        };
        let outcome = match result {
            Ok(()) => {
                self.ack(&job).await;
                Outcome::Done
            }
            Err(JobError::Retry { source, after }) if job.attempts < job.payload.max_tries => {
                let reason = format!("{source:#}");
                let kind = kind_named(&job.payload.job);
                let delay = after.unwrap_or_else(|| {
                    kind.map(|k| k.backoff(job.attempts, self.options.backoff_base)).unwrap_or(Duration::from_secs(30))
                });
                tracing::warn!(%reason, delay_ms = delay.as_millis() as u64, "job will be retried");
                if let Err(e) = self.queue.release(&job, delay).await {
                    // The reservation lapses by itself and the job comes back then.
                    tracing::warn!(error = %e, "could not release the job; it returns after retry_after");
                }
                Outcome::Retried
            }
            Err(e) => {
                let reason = match e {
                    JobError::Retry { .. } => format!("gave up after {} attempts: {}", job.attempts, e.report()),
                    JobError::Fail(_) => e.report(),
                };
                tracing::error!(%reason, "job failed");
                self.fail(&job, &reason).await;
                Outcome::Failed
            }
        };
        let label = match outcome {
            Outcome::Done => {
                self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                "succeeded"
            }
            Outcome::Retried => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                "retried"
            }
            Outcome::Failed => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                "failed"
            }
        };
        metrics::counter!("jobs_processed_total", "queue" => job.payload.queue.clone(), "job" => job.payload.job.clone(), "outcome" => label)
            .increment(1);
        metrics::histogram!("job_duration_seconds", "job" => job.payload.job.clone())
            .record(started.elapsed().as_secs_f64());
    }

    async fn ack(&self, job: &Reserved) {
        if let Err(e) = self.queue.ack(job).await {
            tracing::warn!(error = %e, "could not acknowledge; the job may run again (handlers are re-runnable)");
        }
        if let Some(batch) = job.payload.batch_id
            && let Err(e) = batch::job_finished(&self.pool, batch, None).await
        {
            tracing::warn!(error = %e, "batch progress not recorded");
        }
    }

    /// Records the job in `failed_jobs`, then acknowledges it. If Postgres cannot take it,
    /// the job stays reserved and comes back after `retry_after` rather than being lost.
    async fn fail(&self, job: &Reserved, reason: &str) {
        let payload = serde_json::to_value(&job.payload).unwrap_or(serde_json::Value::Null);
        if let Err(e) = failed::record(&self.pool, job.payload.uuid, &job.payload.queue, payload, reason).await {
            tracing::error!(error = %e, "could not record the failed job; it will be delivered again");
            return;
        }
        if let Err(e) = self.queue.ack(job).await {
            tracing::warn!(error = %e, "failed job recorded but not acknowledged");
        }
        if let Some(batch) = job.payload.batch_id
            && let Err(e) = batch::job_finished(&self.pool, batch, Some(job.payload.uuid)).await
        {
            tracing::warn!(error = %e, "batch failure not recorded");
        }
    }

    async fn bury_undecodable(&self, queue: &str, bad: Undecodable) {
        let uuid = uuid::Uuid::now_v7();
        let payload = serde_json::from_str(&bad.raw).unwrap_or(serde_json::Value::String(bad.raw.clone()));
        let reason = format!("payload is not a job: {}", bad.error);
        tracing::error!(queue, %reason, "undecodable job moved to failed_jobs");
        if failed::record(&self.pool, uuid, queue, payload, &reason).await.is_ok() {
            let id = serde_json::from_str::<serde_json::Value>(&bad.raw)
                .ok()
                .and_then(|v| v.get("uuid").and_then(|u| u.as_str()).map(str::to_owned))
                .unwrap_or_else(|| bad.raw.clone());
            let _ = self.queue.ack_raw(queue, &bad.raw, &id).await;
        }
    }
}
