//! `fibonacco pipelines watch`: follow the change feed and recompute only what changed.
//!
//! Each durable batch names rows; their `customer_id` / `campaign_id` (or, for a delete
//! whose old row carries only the key, the ids the lake's history holds for that key)
//! say which customers' engagement and which campaigns' ROI can have moved. ROI reads
//! only sends and orders: a campaign's ROI moves when one of its recipients buys or gets
//! another campaign's send (the linear split changes), so the campaigns that reached a
//! customer whose sends or orders changed are recomputed too; an activity or a
//! conversation moves that customer's engagement and no campaign's ROI. Batches arriving
//! within `debounce` of each other are handled together.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use chrono::{DateTime, Utc};
use datafusion::{arrow::array::Array, prelude::SessionContext};
use fibonacco_analytics::roi;
use fibonacco_ingest::{ChangeBatch, ChangeFeed, slot::format_lsn, view};
use fibonacco_platform::supervise;
use indicatif::ProgressBar;
use tokio::sync::{broadcast, watch};

use crate::{
    PipelineError, Pipelines,
    batch::Pipeline,
    output::text,
    store::{self, Replace, RunRecord},
};

/// The watch's name among the process's supervised parts.
pub const PART: &str = "pipelines_watch";

/// What the watch has done so far (tests and `status` read it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchProgress {
    pub rounds: u64,
    /// The lake position the last round's inputs include.
    pub durable_lsn: u64,
    pub customers: u64,
    pub campaigns: u64,
}

#[derive(Clone)]
pub struct Watch {
    pub pipelines: Arc<Pipelines>,
    /// A fixed scoring instant (tests compare against a batch run at the same instant);
    /// None scores at the time of each round.
    pub as_of: Option<DateTime<Utc>>,
    pub debounce: std::time::Duration,
}

/// Ids named by a set of change batches.
#[derive(Debug, Default)]
struct Touched {
    customers: BTreeSet<String>,
    /// Customers whose sends or orders changed: every campaign that reached them.
    buyers: BTreeSet<String>,
    campaigns: BTreeSet<String>,
    /// (table, key) of deletes whose rows carry only the key.
    deleted: Vec<(String, String)>,
    durable_lsn: u64,
}

const CUSTOMER_TABLES: &[&str] =
    &["customer_activities", "orders", "outbound_campaign_recipients", "crm_conversations"];
/// The tables campaign ROI reads besides the campaigns themselves.
const ROI_TABLES: &[&str] = &["orders", "outbound_campaign_recipients"];

impl Touched {
    fn add(&mut self, batch: &ChangeBatch) -> Result<(), PipelineError> {
        self.durable_lsn = self.durable_lsn.max(batch.durable_lsn);
        let rows = &batch.rows;
        let schema = rows.schema();
        let column = |name: &str| schema.index_of(name).ok().map(|_| text(rows, name)).transpose();
        match batch.table.as_str() {
            "crm_customers" => {
                if let Some(ids) = column("id")? {
                    self.customers.extend(ids.iter().flatten().map(String::from));
                }
            }
            "outbound_campaigns" => {
                if let Some(ids) = column("id")? {
                    self.campaigns.extend(ids.iter().flatten().map(String::from));
                }
            }
            t if CUSTOMER_TABLES.contains(&t) => {
                let roi = ROI_TABLES.contains(&t);
                let customers = column("customer_id")?;
                let campaigns = if roi { column("campaign_id")? } else { None };
                let ids = column("id")?;
                for i in 0..rows.num_rows() {
                    let customer = customers.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i).to_string());
                    match customer {
                        Some(c) => {
                            if roi {
                                self.buyers.insert(c.clone());
                            }
                            self.customers.insert(c);
                        }
                        None => {
                            if let Some(id) = ids.as_ref().filter(|c| c.is_valid(i)) {
                                self.deleted.push((t.to_string(), id.value(i).to_string()));
                            }
                        }
                    }
                    if let Some(c) = campaigns.as_ref().filter(|c| c.is_valid(i)) {
                        self.campaigns.insert(c.value(i).to_string());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.customers.is_empty() && self.campaigns.is_empty() && self.deleted.is_empty()
    }

    /// Resolves deletes through the lake's history, then adds the campaigns that reached
    /// the customers whose sends or orders changed.
    async fn resolve(&mut self, ctx: &SessionContext) -> Result<(), PipelineError> {
        let mut by_table: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (t, id) in &self.deleted {
            by_table.entry(t.as_str()).or_default().push(id.clone());
        }
        for (table, ids) in by_table {
            let roi = ROI_TABLES.contains(&table);
            let has_campaign = table != "crm_conversations";
            let sql = format!(
                "SELECT DISTINCT CAST(customer_id AS VARCHAR) AS customer_id, {} AS campaign_id FROM {table}_changes WHERE {}",
                if has_campaign { "CAST(campaign_id AS VARCHAR)" } else { "CAST(NULL AS VARCHAR)" },
                fibonacco_analytics::sql::in_list("id", Some(&ids)),
            );
            for b in ctx.sql(&sql).await?.collect().await? {
                let customers = text(&b, "customer_id")?;
                self.customers.extend(customers.iter().flatten().map(String::from));
                if roi {
                    self.buyers.extend(customers.iter().flatten().map(String::from));
                    self.campaigns.extend(text(&b, "campaign_id")?.iter().flatten().map(String::from));
                }
            }
        }
        if !self.buyers.is_empty() {
            let customers: Vec<String> = self.buyers.iter().cloned().collect();
            for b in ctx.sql(&roi::campaigns_of_customers_sql(&customers)).await?.collect().await? {
                self.campaigns.extend(text(&b, "campaign_id")?.iter().flatten().map(String::from));
            }
        }
        Ok(())
    }
}

impl Watch {
    /// Runs until `shutdown` resolves or the feed closes; `progress` reports each round.
    #[tracing::instrument(skip_all)]
    pub async fn run(
        self,
        mut feed: broadcast::Receiver<Arc<ChangeBatch>>,
        progress: watch::Sender<WatchProgress>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), PipelineError> {
        tokio::pin!(shutdown);
        loop {
            let mut touched = Touched::default();
            let mut lagged = false;
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                got = feed.recv() => match got {
                    Ok(batch) => touched.add(&batch)?,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "the watch fell behind the change feed; recomputing everything");
                        lagged = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
            // Gather what arrives right behind it into the same round.
            let deadline = tokio::time::Instant::now() + self.debounce;
            loop {
                match tokio::time::timeout_at(deadline, feed.recv()).await {
                    Ok(Ok(batch)) => touched.add(&batch)?,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => lagged = true,
                    Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
                }
            }
            if lagged {
                self.recompute_all(&progress).await?;
                continue;
            }
            if touched.is_empty() {
                continue;
            }
            let lsn = touched.durable_lsn;
            let (customers, campaigns) = self.round(touched).await?;
            progress.send_modify(|p| {
                p.rounds += 1;
                p.durable_lsn = p.durable_lsn.max(lsn);
                p.customers += customers;
                p.campaigns += campaigns;
            });
        }
    }

    /// Engagement and ROI for everyone: after the watch missed changes (it fell behind the
    /// feed, or failed and was not listening).
    async fn recompute_all(&self, progress: &watch::Sender<WatchProgress>) -> Result<(), PipelineError> {
        let as_of = self.as_of.unwrap_or_else(Utc::now);
        self.pipelines.run(&[Pipeline::Engagement, Pipeline::Roi], as_of).await?;
        progress.send_modify(|p| p.rounds += 1);
        Ok(())
    }

    /// [`Watch::run`] under supervision until `stop` turns true: a failed round (Postgres
    /// restarting, the lake's storage) ends that run, and after a backoff the watch
    /// listens again and first recomputes everything, since changes that arrived while it
    /// was not listening were not followed. `/health` and `part_up{part="pipelines_watch"}`
    /// show its state.
    pub async fn follow(
        &self,
        feed: &ChangeFeed,
        progress: watch::Sender<WatchProgress>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let first = AtomicBool::new(true);
        supervise::supervise(PART, supervise::Backoff::default(), stop.clone(), || {
            // Subscribed before the catch-up reads the lake: nothing falls between.
            let rx = feed.subscribe();
            let catch_up = !first.swap(false, Ordering::SeqCst);
            let (watch, progress, stop) = (self.clone(), progress.clone(), stop.clone());
            async move {
                if catch_up {
                    watch.recompute_all(&progress).await?;
                }
                supervise::running(PART);
                watch.run(rx, progress, supervise::stopped(stop)).await
            }
        })
        .await
    }

    /// Recomputes the touched customers' engagement and the affected campaigns' ROI.
    #[tracing::instrument(skip_all, fields(customers = touched.customers.len(), campaigns = touched.campaigns.len()))]
    async fn round(&self, mut touched: Touched) -> Result<(u64, u64), PipelineError> {
        let (ctx, manifest) = view::session(&self.pipelines.lake).await?;
        touched.resolve(&ctx).await?;
        let as_of = self.as_of.unwrap_or_else(Utc::now);
        let input_lsn = format_lsn(manifest.durable_lsn);
        let hidden = ProgressBar::hidden();
        let customers: Vec<String> = touched.customers.into_iter().collect();
        let campaigns: Vec<String> = touched.campaigns.into_iter().collect();
        if !customers.is_empty() {
            let (started_at, clock) = (Utc::now(), Instant::now());
            let (rows, _, details) =
                self.pipelines.engagement(&ctx, as_of, Some(&customers), Replace::Keys, &hidden).await?;
            let record = RunRecord {
                pipeline: "engagement",
                mode: "watch",
                as_of,
                input_lsn: input_lsn.clone(),
                started_at,
                duration_ms: clock.elapsed().as_millis() as i64,
                rows_written: rows as i64,
                details,
            };
            store::record_run(&mut *self.pipelines.pool.acquire().await?, &record).await?;
        }
        if !campaigns.is_empty() {
            let (started_at, clock) = (Utc::now(), Instant::now());
            let (rows, _, details) = self.pipelines.roi(&ctx, as_of, Some(&campaigns), Replace::Keys, &hidden).await?;
            let record = RunRecord {
                pipeline: "roi",
                mode: "watch",
                as_of,
                input_lsn,
                started_at,
                duration_ms: clock.elapsed().as_millis() as i64,
                rows_written: rows as i64,
                details,
            };
            store::record_run(&mut *self.pipelines.pool.acquire().await?, &record).await?;
        }
        Ok((customers.len() as u64, campaigns.len() as u64))
    }
}
