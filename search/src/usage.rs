//! Counting search hits as uses of knowledge entries off the request path.
//!
//! Hits are summed in memory and written once a second, in one statement, into
//! `knowledge_usage` (migration 40), not into the entry's row: a new version of a row with
//! a vector is a new HNSW entry and a whole row, vector included, through change data
//! capture into the lake. A crash loses at most the last second of counts; the counter is
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
    // A tick, not a timeout on receiving: under steady traffic the next hit always came
    // before a timeout ended, and counts were written only after a pause.
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Hits(tenant, entries)) => {
                    for id in entries {
                        *pending.entry((tenant, id)).or_default() += 1;
                    }
                }
                Some(Message::Flush(ack)) => {
                    write(&pool, &mut pending).await;
                    let _ = ack.send(());
                }
                None => {
                    write(&pool, &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => write(&pool, &mut pending).await,
        }
    }
}

#[tracing::instrument(name = "search.usage.write", skip_all, fields(entries = pending.len()))]
async fn write(pool: &PgPool, pending: &mut HashMap<(TenantId, Uuid), i64>) {
    if pending.is_empty() {
        return;
    }
    // In entry order, so two processes counting the same entries lock them in one order.
    let mut counted: Vec<((TenantId, Uuid), i64)> = pending.drain().collect();
    counted.sort_unstable_by_key(|((_, id), _)| *id);
    let (mut tenants, mut ids, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for ((tenant, id), n) in counted {
        tenants.push(tenant.as_uuid());
        ids.push(id);
        counts.push(n);
    }
    let result = async {
        let mut tx = db::begin_system(pool).await?;
        // Joined to the entries: a hit on an entry deleted since counts for nothing, and an
        // entry of another tenant than the hit's is never counted. (One deleted between
        // the join and the insert fails the foreign key, and the second's counts are
        // dropped like any failed write's.)
        sqlx::query(
            "insert into knowledge_usage (entry_id, tenant_id, uses)
             select u.id, u.tenant_id, u.n
             from unnest($1::uuid[], $2::uuid[], $3::bigint[]) with ordinality as u(tenant_id, id, n, ord)
             join knowledge_base kb on kb.id = u.id and kb.tenant_id = u.tenant_id
             order by u.ord
             on conflict (entry_id) do update
               set uses = knowledge_usage.uses + excluded.uses, updated_at = now()",
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
