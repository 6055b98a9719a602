//! Jobs that used up their tries, kept in Postgres `failed_jobs` until an operator retries
//! or forgets them (`fibonacco queue failed | retry | forget | flush`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{JobPayload, Queue, QueueError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FailedJob {
    pub id: i64,
    pub uuid: Uuid,
    pub queue: String,
    pub payload: serde_json::Value,
    pub exception: String,
    pub failed_at: DateTime<Utc>,
}

impl FailedJob {
    /// The job's name from its payload (`?` when the payload was not a job).
    pub fn job_name(&self) -> &str {
        self.payload.get("job").and_then(|v| v.as_str()).unwrap_or("?")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FailedJobError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("no failed job with uuid {0}")]
    NotFound(Uuid),
    #[error("failed job {0} has a payload that is not a job ({1}); forget it instead")]
    Unreadable(Uuid, String),
}

/// Records a job that failed for good. Recording the same uuid twice keeps the latest
/// reason (a job retried from here and failing again).
#[tracing::instrument(name = "failed_jobs.record", skip(pool, payload, exception))]
pub async fn record(
    pool: &PgPool,
    uuid: Uuid,
    queue: &str,
    payload: serde_json::Value,
    exception: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into failed_jobs (uuid, queue, payload, exception) values ($1, $2, $3, $4)
         on conflict (uuid) do update set payload = excluded.payload, exception = excluded.exception,
           queue = excluded.queue, failed_at = now()",
    )
    .bind(uuid)
    .bind(queue)
    .bind(payload)
    .bind(exception)
    .execute(pool)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "failed_jobs.list", skip(pool))]
pub async fn list(pool: &PgPool) -> Result<Vec<FailedJob>, sqlx::Error> {
    sqlx::query_as("select id, uuid, queue, payload, exception, failed_at from failed_jobs order by failed_at, id")
        .fetch_all(pool)
        .await
}

/// Puts failed jobs back on their queues with a fresh set of tries and removes them from
/// `failed_jobs`; `None` retries all. Returns the uuids pushed.
#[tracing::instrument(name = "failed_jobs.retry", skip(pool, queue))]
pub async fn retry(pool: &PgPool, queue: &Queue, which: Option<Uuid>) -> Result<Vec<Uuid>, FailedJobError> {
    let jobs: Vec<FailedJob> = match which {
        Some(uuid) => {
            let job: Option<FailedJob> = sqlx::query_as(
                "select id, uuid, queue, payload, exception, failed_at from failed_jobs where uuid = $1",
            )
            .bind(uuid)
            .fetch_optional(pool)
            .await?;
            vec![job.ok_or(FailedJobError::NotFound(uuid))?]
        }
        None => list(pool).await?,
    };
    let mut pushed = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut payload: JobPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| FailedJobError::Unreadable(job.uuid, e.to_string()))?;
        payload.attempts = 0;
        payload.pushed_at = Utc::now();
        // Reset the attempt count first, then push, then forget: a crash in between leaves
        // the job both queued and listed, never neither.
        queue.reset_attempts(&payload.queue, payload.uuid).await?;
        queue.push_payload(&payload, None).await?;
        sqlx::query("delete from failed_jobs where uuid = $1").bind(job.uuid).execute(pool).await?;
        pushed.push(job.uuid);
    }
    Ok(pushed)
}

#[tracing::instrument(name = "failed_jobs.forget", skip(pool))]
pub async fn forget(pool: &PgPool, uuid: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("delete from failed_jobs where uuid = $1").bind(uuid).execute(pool).await?.rows_affected() == 1)
}

#[tracing::instrument(name = "failed_jobs.flush", skip(pool))]
pub async fn flush(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("delete from failed_jobs").execute(pool).await?.rows_affected())
}
