//! The outcomes of concurrent sends, recorded together: one statement and one commit for
//! every send that finished while the previous batch was being written, instead of a
//! transaction each (group commit; the commit's WAL flush is most of a send's database
//! cost). A send still waits for its own outcome's commit before its job is acknowledged,
//! exactly as with its own transaction. If a batch fails, every send in it records alone,
//! with its own bounded retries (`campaign::record`), so one bad row or a short outage
//! costs no outcome.

use std::sync::OnceLock;

use fibonacco_platform::db;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::campaigns::store::{self, Outcome};

/// Outcomes written per statement at most.
const BATCH: usize = 128;
/// Sends waiting for a writer at most; a full queue makes senders wait, never drop.
const QUEUE: usize = 4096;

struct Pending {
    outcome: Outcome,
    /// Whether the row matched (the claim was still this send's); `Err` when the batch
    /// could not be written and the send must record alone.
    reply: oneshot::Sender<Result<bool, ()>>,
}

/// The batch writer, started by the first outcome (with that caller's pool) and stopped
/// when the last handle to it is dropped.
#[derive(Default)]
pub struct Outcomes {
    tx: OnceLock<mpsc::Sender<Pending>>,
}

impl Outcomes {
    /// Records `outcome` with others; `Ok(matched)` once committed, `Err(())` when the
    /// caller must record it alone.
    pub async fn record(&self, pool: &PgPool, outcome: Outcome) -> Result<bool, ()> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_batches(pool.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        tx.send(Pending { outcome, reply }).await.map_err(|_| ())?;
        answer.await.map_err(|_| ())?
    }
}

async fn write_batches(pool: PgPool, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let outcomes: Vec<Outcome> = batch.iter().map(|p| p.outcome.clone()).collect();
        match write(&pool, &outcomes).await {
            Ok(matched) => {
                metrics::histogram!("campaign_outcomes_batch_size").record(batch.len() as f64);
                for p in batch.drain(..) {
                    let _ = p.reply.send(Ok(matched.contains(&p.outcome.recipient)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, n = batch.len(), "a batch of send outcomes was not written; each records alone");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(()));
                }
            }
        }
    }
}

/// One transaction across tenants: each row is matched on the tenant it was claimed in
/// and its claim token, so a batch cannot touch another tenant's rows.
#[tracing::instrument(name = "outcomes.write", skip_all, fields(n = outcomes.len()), err)]
async fn write(pool: &PgPool, outcomes: &[Outcome]) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut tx = db::begin_system(pool).await?;
    let matched = store::finish_many(&mut tx, outcomes).await?;
    tx.commit().await?;
    Ok(matched)
}
