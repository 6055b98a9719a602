//! What each scheduled task does. Tasks read across tenants (a system transaction) to
//! find work, then act per tenant in that tenant's own transaction.

use anyhow::Context;
use fibonacco_platform::{
    TenantId, db,
    queue::{
        self, Job,
        jobs::{DeliverWebhooks, ExportCustomers, GenerateEmbedding, ImportCustomers},
    },
};
use uuid::Uuid;

use super::Scheduler;
use crate::{
    campaigns::{self, CampaignStatus, Channel, ContentState},
    publishing,
};

/// Entries queued per run of the embedding sweeps.
const EMBEDDING_SWEEP: i64 = 500;
/// Rows deleted per statement by the cleanup (keeps locks short).
const CLEANUP_BATCH: i64 = 10_000;

pub async fn run(s: &Scheduler, task: &str) -> anyhow::Result<String> {
    match task {
        "embeddings:process" => queue_pending_embeddings(s).await,
        "embeddings:generate-pending" => {
            let marked = mark_missing_embeddings(s).await?;
            let queued = queue_pending_embeddings(s).await?;
            Ok(format!("{marked} entries marked pending; {queued}"))
        }
        "cleanup:old-data" => cleanup(s).await,
        "content:publish-scheduled" => publish_scheduled(s).await,
        "campaigns:start-scheduled" => start_scheduled(s).await,
        "campaigns:dispatch" => redispatch(s).await,
        "campaigns:ab-decide" => decide_ab_tests(s).await,
        "imports:resume" => resume_imports(s).await,
        "webhooks:deliver" => queue_webhook_deliveries(s).await,
        other => anyhow::bail!("no task named `{other}`"),
    }
}

/// Queues GenerateEmbedding for pending entries, but only when the embeddings queue has
/// drained: entries stay pending until embedded, and re-queueing them every five minutes
/// while earlier jobs still wait would only pile up duplicates.
async fn queue_pending_embeddings(s: &Scheduler) -> anyhow::Result<String> {
    let sizes = s.queue.sizes(queue::GENERATE_EMBEDDING.queue).await?;
    let waiting = sizes.ready + sizes.delayed + sizes.reserved;
    if waiting > 0 {
        return Ok(format!("{waiting} embedding jobs still queued; nothing added"));
    }
    let mut tx = db::begin_system(&s.pool).await?;
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select tenant_id, id from knowledge_base where embedding_status = 'pending' order by updated_at limit $1",
    )
    .bind(EMBEDDING_SWEEP)
    .fetch_all(&mut *tx)
    .await?;
    let articles = fibonacco_search::index::articles_needing_embedding(&mut tx, EMBEDDING_SWEEP).await?;
    tx.commit().await?;
    let jobs = rows
        .iter()
        .map(|(t, id)| GenerateEmbedding::knowledge(TenantId::from_uuid(*t), *id))
        .chain(articles.iter().map(|(t, id)| GenerateEmbedding::article(TenantId::from_uuid(*t), *id)));
    let payloads = jobs.map(|j| j.payload()).collect::<Result<Vec<queue::JobPayload>, _>>()?;
    s.queue.push_many(&payloads).await?;
    Ok(format!("{} embedding jobs queued ({} for articles)", payloads.len(), articles.len()))
}

/// Endpoints with due deliveries and no worker on them get a `DeliverWebhooks` each,
/// unless jobs queued earlier still wait (they will find the same work).
async fn queue_webhook_deliveries(s: &Scheduler) -> anyhow::Result<String> {
    let sizes = s.queue.sizes(queue::DELIVER_WEBHOOKS.queue).await?;
    if sizes.ready + sizes.delayed > 0 {
        return Ok(format!("{} webhook jobs still waiting; nothing added", sizes.ready + sizes.delayed));
    }
    let mut tx = db::begin_system(&s.pool).await?;
    let endpoints: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select e.tenant_id, e.id from webhook_endpoints e
         where e.enabled and (e.busy_until is null or e.busy_until < now())
           and exists (select 1 from webhook_deliveries d
                       where d.endpoint_id = e.id and d.status = 'pending' and d.next_attempt_at <= now())
         limit 1000",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let payloads = endpoints
        .iter()
        .map(|(tenant_id, endpoint_id)| DeliverWebhooks { tenant_id: *tenant_id, endpoint_id: *endpoint_id }.payload())
        .collect::<Result<Vec<queue::JobPayload>, _>>()?;
    s.queue.push_many(&payloads).await?;
    Ok(format!("{} webhook endpoints queued", payloads.len()))
}

/// An import still queued or running while the `imports` queue holds nothing (nothing
/// ready, delayed or reserved by a worker) lost its job: Redis lost it, or the API could
/// not queue it and a later attempt can. Its job is queued again; a run resumes after the
/// last committed chunk, and a second run of one import stops when it finds the other
/// ahead, so a doubled job is harmless.
async fn resume_imports(s: &Scheduler) -> anyhow::Result<String> {
    let sizes = s.queue.sizes(queue::IMPORT_CUSTOMERS.queue).await?;
    let waiting = sizes.ready + sizes.delayed + sizes.reserved;
    if waiting > 0 {
        return Ok(format!("{waiting} import jobs still queued; nothing added"));
    }
    let mut tx = db::begin_system(&s.pool).await?;
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select tenant_id, id from customer_imports where status in ('queued', 'running') order by created_at",
    )
    .fetch_all(&mut *tx)
    .await?;
    // Exports run on the same queue and are found the same way.
    let exports: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select tenant_id, id from customer_exports where status in ('queued', 'running') order by created_at",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let payloads =
        rows.iter()
            .map(|(tenant_id, import_id)| ImportCustomers { tenant_id: *tenant_id, import_id: *import_id }.payload())
            .chain(exports.iter().map(|(tenant_id, export_id)| {
                ExportCustomers { tenant_id: *tenant_id, export_id: *export_id }.payload()
            }))
            .collect::<Result<Vec<queue::JobPayload>, _>>()?;
    s.queue.push_many(&payloads).await?;
    let mut report = format!("{} imports re-queued", rows.len());
    if !exports.is_empty() {
        report.push_str(&format!(", {} exports re-queued", exports.len()));
    }
    Ok(report)
}

/// Entries with no vector that are not on their way to one become pending again.
async fn mark_missing_embeddings(s: &Scheduler) -> anyhow::Result<u64> {
    let mut tx = db::begin_system(&s.pool).await?;
    let n = sqlx::query(
        "update knowledge_base set embedding_status = 'pending'
         where embedding is null and embedding_status in ('completed', 'failed')",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(n)
}

fn retention_days(name: &str, default: i64) -> i64 {
    fibonacco_platform::config::env_lookup()(name)
        .and_then(|v| v.trim().parse().ok())
        .filter(|d| *d > 0)
        .unwrap_or(default)
}

/// Deletes what has aged out, in batches: activities (ACTIVITY_RETENTION_DAYS, 730),
/// failed jobs (FAILED_JOB_RETENTION_DAYS, 30), finished batches (7 days), task runs
/// (30 days), tokens expired more than 7 days ago, and the record of SNS messages once a
/// replay of them would be refused as stale anyway (a day past `SNS_MAX_AGE_SECS`, at
/// least 2 days), and webhook events with their deliveries and attempts
/// (WEBHOOK_RETENTION_DAYS, 30; a delivery's retries end within two days, so only a
/// disabled endpoint's backlog can be pending that long).
async fn cleanup(s: &Scheduler) -> anyhow::Result<String> {
    let activity_days = retention_days("ACTIVITY_RETENTION_DAYS", 730);
    let failed_days = retention_days("FAILED_JOB_RETENTION_DAYS", 30);
    let sns_days = (retention_days("SNS_MAX_AGE_SECS", 3600) / 86_400 + 1).max(2);
    // (what, table, key, timestamp column, days kept): every table is trimmed the same way.
    let webhook_days = retention_days("WEBHOOK_RETENTION_DAYS", 30);
    let aged: [(&str, &str, &str, &str, i64); 9] = [
        ("activities", "customer_activities", "id", "occurred_at", activity_days),
        ("failed jobs", "failed_jobs", "id", "failed_at", failed_days),
        ("job batches", "job_batches", "id", "finished_at", 7),
        // Counts and the error report (row numbers and reasons) of imports that ended.
        ("customer imports", "customer_imports", "id", "finished_at", 30),
        ("task runs", "scheduled_task_runs", "id", "started_at", 30),
        ("expired tokens", "personal_access_tokens", "id", "expires_at", 7),
        ("SNS messages", "sns_messages", "message_id", "received_at", sns_days),
        ("webhook events", "webhook_events", "id", "created_at", webhook_days),
        // Export files hold many customers' data: kept two days, then gone with their chunks.
        ("customer exports", "customer_exports", "id", "created_at", 2),
    ];
    let statements = aged.map(|(what, table, key, column, days)| {
        (
            what,
            format!(
                "delete from {table} where {key} in (select {key} from {table}
                 where {column} < now() - interval '{days} days' limit {CLEANUP_BATCH})"
            ),
        )
    });
    let mut report = Vec::new();
    for (what, sql) in statements {
        let mut total = 0u64;
        loop {
            let mut tx = db::begin_system(&s.pool).await?;
            let n = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut *tx)
                .await
                .with_context(|| what)?
                .rows_affected();
            tx.commit().await?;
            total += n;
            if n < CLEANUP_BATCH as u64 {
                break;
            }
        }
        report.push(format!("{total} {what}"));
    }
    Ok(format!("deleted {}", report.join(", ")))
}

/// Scheduled content whose time has come becomes published (with its history row).
async fn publish_scheduled(s: &Scheduler) -> anyhow::Result<String> {
    let mut tx = db::begin_system(&s.pool).await?;
    let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select tenant_id, content_id from content_workflow
         where content_type = 'generated_content' and status = 'scheduled' and scheduled_publish_at <= now()
         order by scheduled_publish_at limit 1000",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut published = 0;
    for (tenant, id) in due {
        let tenant = TenantId::from_uuid(tenant);
        let mut tx = db::begin_tenant(&s.pool, tenant).await?;
        // Re-check under the row lock: someone may have unscheduled it meanwhile.
        let still: Option<String> = sqlx::query_scalar(
            "select status from content_workflow where tenant_id = $1 and content_type = 'generated_content'
               and content_id = $2 and status = 'scheduled' and scheduled_publish_at <= now() for update",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if still.is_none() {
            continue;
        }
        let step = publishing::Step {
            from: "scheduled",
            to: "published",
            scheduled_publish_at: None,
            actor: None,
            notes: Some("published by the scheduler"),
            action: "publish",
        };
        publishing::transition(&mut tx, tenant, id, &step).await?;
        tx.commit().await?;
        published += 1;
    }
    Ok(format!("{published} content items published"))
}

/// Scheduled campaigns whose time has come start (and are dispatched) when they have
/// recipients and content; otherwise they go back to draft with the reason in metadata.
async fn start_scheduled(s: &Scheduler) -> anyhow::Result<String> {
    let mut tx = db::begin_system(&s.pool).await?;
    let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select tenant_id, id from outbound_campaigns where status = 'scheduled' and scheduled_at <= now()
         order by scheduled_at limit 1000",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let (mut started, mut refused) = (0, 0);
    for (tenant, id) in due {
        let tenant = TenantId::from_uuid(tenant);
        let mut tx = db::begin_tenant(&s.pool, tenant).await?;
        // The same checks as `POST /outbound/campaigns/{id}/start`.
        let Some(ready) = campaigns::readiness(&mut tx, tenant, id).await? else { continue };
        if ready.status != "scheduled" {
            continue;
        }
        let problem = if !ready.has_recipients {
            Some("the campaign has no recipients")
        } else if ready.content != ContentState::Present {
            Some("the campaign has no template or script")
        } else {
            None
        };
        match problem {
            Some(reason) => {
                campaigns::store::send_back_to_draft(&mut tx, tenant, id, reason).await?;
                tx.commit().await?;
                refused += 1;
            }
            None => {
                crate::experiments::prepare_start(&mut tx, tenant, id, chrono::Utc::now()).await?;
                campaigns::store::set_status(&mut tx, tenant, id, &ready.status, CampaignStatus::Running).await?;
                tx.commit().await?;
                campaigns::enqueue_dispatch(&s.queue, tenant, id, &ready.kind).await?;
                started += 1;
            }
        }
    }
    Ok(format!("{started} campaigns started, {refused} sent back to draft"))
}

/// Decides the A/B tests whose wait is over and dispatches their winners. A dispatch that
/// cannot be queued (Redis away) is left to the `campaigns:dispatch` sweep: the released
/// recipients are pending.
async fn decide_ab_tests(s: &Scheduler) -> anyhow::Result<String> {
    let (mut decided, mut significant) = (0, 0);
    for (tenant, id, kind) in crate::experiments::due(&s.pool).await? {
        let mut tx = db::begin_tenant(&s.pool, tenant).await?;
        let Some(decision) = crate::experiments::decide(&mut tx, tenant, id, chrono::Utc::now()).await? else {
            continue;
        };
        tx.commit().await?;
        decided += 1;
        significant += usize::from(decision.significant);
        if decision.released > 0 {
            campaigns::enqueue_dispatch(&s.queue, tenant, id, &kind).await?;
        }
    }
    Ok(format!("{decided} A/B tests decided, {significant} with a significant winner"))
}

/// Keeps sends moving when something failed between two steps:
/// - sends still `sending` past the attempt expiry (a dead worker, a provider that never
///   answered) become `unknown`, and their campaigns may complete;
/// - queued recipients older than `retry_after` whose channel queue has drained lost their
///   job (Redis lost data): back to pending and dispatched again;
/// - running campaigns with recipients still pending get their dispatch queued again (a
///   dispatch lost with Redis, or never queued because Redis was down at `start`), and
///   recipients whose wait (`not_before`: quiet hours, their best hour, a test's winner)
///   is over are released at the next sweep;
/// - running campaigns with no recipient left open are completed.
async fn redispatch(s: &Scheduler) -> anyhow::Result<String> {
    let expired = campaigns::store::expire_attempts(&s.pool, s.attempt_expiry).await?;
    let mut drained = Vec::new();
    for channel in [Channel::Email, Channel::Sms, Channel::Phone] {
        let sizes = s.queue.sizes(channel.send_job().queue).await?;
        if sizes.ready + sizes.delayed + sizes.reserved == 0 {
            drained.push(channel.name());
        }
    }
    let recovered = campaigns::store::recover_lost(&s.pool, s.retry_after, &drained).await?;
    for (tenant, id, kind) in &recovered {
        campaigns::enqueue_dispatch(&s.queue, *tenant, *id, kind).await?;
    }
    let mut tx = db::begin_system(&s.pool).await?;
    let running: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "select c.tenant_id, c.id, c.type from outbound_campaigns c
         where c.status = 'running' and exists (select 1 from outbound_campaign_recipients r
           where r.campaign_id = c.id and r.status = 'pending'
             and (r.not_before is null and r.updated_at < now() - interval '1 minute' or r.not_before <= now()))",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for (tenant, id, kind) in &running {
        campaigns::enqueue_dispatch(&s.queue, TenantId::from_uuid(*tenant), *id, kind).await?;
    }
    let completed = campaigns::store::complete_finished(&s.pool).await?;
    Ok(format!(
        "{} campaigns re-dispatched, {} with lost jobs recovered, {} with unfinished sends now unknown, {completed} completed",
        running.len(),
        recovered.len(),
        expired.len()
    ))
}
