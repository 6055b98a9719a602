//! Applies SES notifications in batches: requests hand their event to a [`Sink`] and wait
//! for the commit that recorded it. Under load, what arrives while a batch is being
//! written forms the next one, so the cost of a transaction (and its WAL flush) is shared
//! by many events; alone, an event is a batch of one and waits for nothing.
//!
//! A batch that fails is applied again one event per transaction, so one bad event
//! cannot fail the others; each caller gets its own event's result. A caller answers SNS
//! only after its commit: an event is never acknowledged and then lost.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::ses_events::{self, Incoming, Outcome, Policy};

/// Events a batch takes at most.
pub const BATCH: usize = 64;
/// Batches written at once (each on its own connection).
pub const WRITERS: usize = 4;

struct Job {
    item: Incoming,
    policy: Policy,
    reply: oneshot::Sender<Result<Outcome, sqlx::Error>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("the event writer stopped")]
    Stopped,
}

/// The handle requests submit to; cheap to clone.
#[derive(Clone)]
pub struct Sink {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

impl Sink {
    /// Starts [`WRITERS`] writers of up to [`BATCH`] events (call inside a Tokio runtime).
    /// They stop when every handle is dropped and the queue is empty.
    pub fn start(pool: PgPool) -> Self {
        Self::with(pool, WRITERS, BATCH)
    }

    /// [`Sink::start`] with other sizes (the benchmark compares them).
    pub fn with(pool: PgPool, writers: usize, batch: usize) -> Self {
        let (writers, batch) = (writers.max(1), batch.max(1));
        let (jobs, receiver) = mpsc::channel::<Job>(batch * writers * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers {
            let (pool, receiver, batch_size) = (pool.clone(), receiver.clone(), batch);
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut receiver = receiver.lock().await;
                        let Some(first) = receiver.recv().await else { return };
                        let mut batch = vec![first];
                        while batch.len() < batch_size {
                            match receiver.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    write(&pool, batch).await;
                }
            });
        }
        Self { jobs }
    }

    /// Applies `item` and returns its outcome once the transaction that recorded it
    /// committed.
    pub async fn submit(&self, item: Incoming, policy: Policy) -> Result<Outcome, SinkError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { item, policy, reply }).await.map_err(|_| SinkError::Stopped)?;
        Ok(answer.await.map_err(|_| SinkError::Stopped)??)
    }
}

/// Writes one batch (grouped by policy, which only tests vary), falling back to one
/// transaction per event when the batch fails.
async fn write(pool: &PgPool, mut jobs: Vec<Job>) {
    while !jobs.is_empty() {
        let policy = jobs[0].policy;
        let (group, rest): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.policy == policy);
        jobs = rest;
        let items: Vec<Incoming> = group.iter().map(|j| j.item.clone()).collect();
        match once(pool, &items, policy).await {
            Ok(outcomes) => {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) if group.len() == 1 => {
                let _ = group.into_iter().next().map(|j| j.reply.send(Err(e)));
            }
            Err(e) => {
                tracing::warn!(error = %e, n = group.len(), "an SES event batch failed; applying its events one by one");
                for job in group {
                    let result = once(pool, std::slice::from_ref(&job.item), policy).await.map(|o| o[0]);
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

async fn once(pool: &PgPool, items: &[Incoming], policy: Policy) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = fibonacco_platform::db::begin_system(pool).await?;
    let outcomes = ses_events::apply_batch(&mut tx, items, policy).await?;
    tx.commit().await?;
    Ok(outcomes)
}
