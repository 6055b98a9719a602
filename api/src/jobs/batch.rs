//! Job batches (`job_batches`): a bulk send's progress, as Laravel keeps it.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use fibonacco_platform::TenantId;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Batch {
    pub id: Uuid,
    pub name: String,
    pub total_jobs: i32,
    pub pending_jobs: i32,
    pub failed_jobs: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Batch {
    /// Share of the batch's jobs that have finished (successfully or not), 0-100.
    pub fn progress(&self) -> u8 {
        if self.total_jobs == 0 {
            return 100;
        }
        let done = (self.total_jobs - self.pending_jobs).max(0) as f64;
        (done * 100.0 / self.total_jobs as f64).round().min(100.0) as u8
    }
}

#[tracing::instrument(name = "batch.create", skip(pool))]
pub async fn create(pool: &PgPool, tenant: TenantId, name: &str, total: i32) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into job_batches (tenant_id, name, total_jobs, pending_jobs, finished_at)
         values ($1, $2, $3, $3, case when $3 = 0 then now() end) returning id",
    )
    .bind(tenant)
    .bind(name)
    .bind(total)
    .fetch_one(pool)
    .await
}

/// One job of the batch finished; `failed` carries its uuid when it failed for good.
/// A job delivered twice may count twice; the counters never go below zero.
#[tracing::instrument(name = "batch.job_finished", skip(pool))]
pub async fn job_finished(pool: &PgPool, batch: Uuid, failed: Option<Uuid>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update job_batches set
            pending_jobs = greatest(pending_jobs - 1, 0),
            failed_jobs = failed_jobs + case when $2::uuid is null then 0 else 1 end,
            failed_job_ids = case when $2::uuid is null then failed_job_ids else failed_job_ids || to_jsonb($2::text) end,
            finished_at = case when pending_jobs - 1 <= 0 then coalesce(finished_at, now()) else finished_at end
         where id = $1",
    )
    .bind(batch)
    .bind(failed)
    .execute(pool)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "batch.get", skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Batch>, sqlx::Error> {
    sqlx::query_as(
        "select id, name, total_jobs, pending_jobs, failed_jobs, created_at, finished_at from job_batches where id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}
