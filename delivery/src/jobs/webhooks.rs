//! `DeliverWebhooks`: one endpoint's due deliveries, under the endpoint's lease.

use std::time::{Duration, Instant};

use fibonacco_platform::{
    TenantId,
    queue::{JobError, Reserved, jobs::DeliverWebhooks, worker::data},
};

use super::JobContext;
use crate::webhooks::attempts::{self, Recorded};

/// Deliveries read per query.
const BATCH: i64 = 20;
/// A job stops taking new batches after this long and queues itself again.
const BUDGET: Duration = Duration::from_secs(30);

#[tracing::instrument(name = "job.deliver_webhooks", skip_all)]
pub async fn deliver(ctx: &JobContext, job: &Reserved) -> Result<(), JobError> {
    let j: DeliverWebhooks = data(job)?;
    let tenant = TenantId::from_uuid(j.tenant_id);
    let sender = &ctx.providers.webhooks;
    // Long enough for a whole batch of slow answers after the budget.
    let lease = BUDGET + sender.settings.timeout * (BATCH as u32) + Duration::from_secs(30);
    let Some(endpoint) = attempts::lease(&ctx.pool, tenant, j.endpoint_id, lease).await? else {
        // Disabled, deleted, or another worker is on it.
        return Ok(());
    };
    let started = Instant::now();
    let mut more = false;
    'batches: loop {
        let due = attempts::due(&ctx.pool, tenant, endpoint.id, BATCH).await?;
        if due.is_empty() {
            break;
        }
        for d in &due {
            let outcome = sender.post(&endpoint, d).await;
            let recorded = attempts::record(&ctx.pool, tenant, endpoint.id, d, &outcome, &sender.settings).await?;
            metrics::counter!("webhook_attempts_total", "outcome" => if outcome.delivered() { "delivered" } else { "failed" })
                .increment(1);
            match recorded {
                Recorded::Delivered => {}
                Recorded::Retrying(_) | Recorded::Failed { disabled: false } => {
                    // A failing receiver gets its other deliveries on the next tick, not now.
                    break 'batches;
                }
                Recorded::Failed { disabled: true } => {
                    metrics::counter!("webhook_endpoints_disabled_total").increment(1);
                    tracing::warn!(endpoint = %endpoint.id, "webhook endpoint disabled: its deliveries kept failing");
                    return Ok(());
                }
            }
        }
        if started.elapsed() > BUDGET {
            more = true;
            break;
        }
    }
    attempts::release(&ctx.pool, tenant, endpoint.id).await?;
    if more {
        ctx.queue.enqueue(&j).await.map_err(JobError::retry_because)?;
    }
    Ok(())
}
