//! Job batches (`job_batches`): a bulk send's progress, as Laravel keeps it. The worker
//! counts each finished job; campaign analytics read it back.

use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    TenantId,
    db::{self, SafeLiteral},
};

#[tracing::instrument(name = "batch.create", skip(pool), err)]
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
/// A job delivered twice may count twice; the counters never go below zero. Every job of
/// a batch updates this one row, so the update commits without waiting for the WAL flush
/// ([`db::execute_relaxed`]): the row lock is held for the statement, not for a disk
/// write (progress display only; a Postgres crash may lose the last counts).
#[tracing::instrument(name = "batch.job_finished", skip(pool), err)]
pub async fn job_finished(pool: &PgPool, batch: Uuid, failed: Option<Uuid>) -> Result<(), sqlx::Error> {
    let failed = failed.map(|f| f.sql_literal()).unwrap_or_else(|| "null".into());
    let update = format!(
        "update job_batches set
            pending_jobs = greatest(pending_jobs - 1, 0),
            failed_jobs = failed_jobs + case when {failed}::uuid is null then 0 else 1 end,
            failed_job_ids = case when {failed}::uuid is null then failed_job_ids else failed_job_ids || to_jsonb({failed}::text) end,
            finished_at = case when pending_jobs - 1 <= 0 then coalesce(finished_at, now()) else finished_at end
         where id = {}",
        batch.sql_literal()
    );
    let mut conn = pool.acquire().await?;
    db::execute_relaxed(&mut conn, None, &update).await
}
