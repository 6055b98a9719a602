//! Counting search hits as uses of knowledge entries (`knowledge_base.usage_count`) off the
//! request path.
//!
//! Updating the counter rewrites the entry's row, and a row with a vector is not updated
//! in place: each new version goes into the HNSW index too, which cost more than the
//! search itself (`fibonacco bench search`). So hits are summed in memory and written in
//! one statement per second. A crash loses at most that second of counts; the counter is
//! a popularity signal, not a ledger.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use fibonacco_platform::{TenantId, db};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Messages waiting for the writer; beyond this, counts are dropped rather than queued.
const BACKLOG: usize = 10_000;

enum Message {
    Hits(TenantId, Vec<Uuid>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct UsageCounter {
    pool: PgPool,
    sender: Arc<OnceLock<mpsc::Sender<Message>>>,
}

impl UsageCounter {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, sender: Arc::default() }
    }

    /// The writer task starts on first use, inside whatever runtime serves searches.
    fn sender(&self) -> &mpsc::Sender<Message> {
        self.sender.get_or_init(|| {
            let (tx, rx) = mpsc::channel(BACKLOG);
            tokio::spawn(write_loop(self.pool.clone(), rx));
            tx
        })
    }

    /// Counts one use of each of `entries` (the tenant's own; others' are read-only).
    pub fn record(&self, tenant: TenantId, entries: Vec<Uuid>) {
        if entries.is_empty() {
            return;
        }
        if self.sender().try_send(Message::Hits(tenant, entries)).is_err() {
            tracing::debug!("usage counts dropped: the writer is behind");
        }
    }

    /// Writes what is counted so far and waits for it (tests, shutdown).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.sender().send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn write_loop(pool: PgPool, mut rx: mpsc::Receiver<Message>) {
    let mut pending: HashMap<(TenantId, Uuid), i64> = HashMap::new();
    loop {
        match tokio::time::timeout(FLUSH_EVERY, rx.recv()).await {
            Ok(Some(Message::Hits(tenant, entries))) => {
                for id in entries {
                    *pending.entry((tenant, id)).or_default() += 1;
                }
                continue;
            }
            Ok(Some(Message::Flush(ack))) => {
                write(&pool, &mut pending).await;
                let _ = ack.send(());
            }
            Ok(None) => {
                write(&pool, &mut pending).await;
                return;
            }
            Err(_elapsed) => write(&pool, &mut pending).await,
        }
    }
}

#[tracing::instrument(name = "search.usage.write", skip_all, fields(entries = pending.len()))]
async fn write(pool: &PgPool, pending: &mut HashMap<(TenantId, Uuid), i64>) {
    if pending.is_empty() {
        return;
    }
    let (mut tenants, mut ids, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for ((tenant, id), n) in pending.drain() {
        tenants.push(tenant.as_uuid());
        ids.push(id);
        counts.push(n);
    }
    let result = async {
        let mut tx = db::begin_system(pool).await?;
        sqlx::query(
            "update knowledge_base kb set usage_count = kb.usage_count + u.n
             from unnest($1::uuid[], $2::uuid[], $3::bigint[]) as u(tenant_id, id, n)
             where kb.id = u.id and kb.tenant_id = u.tenant_id",
        )
        .bind(&tenants)
        .bind(&ids)
        .bind(&counts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not write usage counts; they are dropped");
    }
}
