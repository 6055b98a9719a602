//! The capture loop: slot and snapshot on first start, then pgoutput changes into Arrow
//! batches, Parquet files and the manifest, acknowledging only what the manifest holds.
//!
//! Resume rule: the manifest's `durable_lsn` is the end of the last transaction in the
//! lake. A restart streams from there (the slot was never acknowledged past it) and skips
//! any transaction whose commit record starts before it, so the lake never holds a
//! change twice nor misses one.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use datafusion::arrow::array::RecordBatch;
use fibonacco_platform::supervise::{self, PartStatus};
use pg_walstream::{LogicalReplicationMessage, LogicalReplicationParser, TupleData};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use sqlx::{PgPool, postgres::PgConnectOptions};
use tokio::sync::watch;

use crate::{
    batch::{RowMeta, TableBatch, Value},
    compact,
    config::IngestConfig,
    erase,
    error::IngestError,
    feed::{ChangeBatch, ChangeFeed},
    lake::{FileEntry, Gap, Lake, Manifest, TableMeta},
    pgtype::SESSION_SETTINGS,
    schema::{Column, Op, TableSchema, TypeCatalog},
    slot::{self, format_lsn},
    snapshot::{self, SnapshotPlan},
};

/// How often an idle capture looks for erasures to apply to the lake.
const ERASURE_POLL: Duration = Duration::from_secs(2);

/// Microseconds between the Unix epoch and Postgres' (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// What the loop has made durable so far, for status lines, tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// End LSN of the last transaction in the lake.
    pub durable_lsn: u64,
    /// The position last acknowledged to the server (≥ `durable_lsn` when idle).
    pub acknowledged_lsn: u64,
    pub snapshot_rows: u64,
    pub changes: u64,
    pub transactions: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    /// Whether the initial snapshot is done and the stream is running.
    pub streaming: bool,
}

/// The capture's name among the process's supervised parts (`/health`, `part_up`).
pub const PART: &str = "capture";

/// What `_capture.json` beside the lake holds: the state of the capture that runs (or
/// last ran) on it, for `fibonacco ingest status` in another process.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CaptureRecord {
    pub slot: String,
    pub pid: u32,
    #[serde(flatten)]
    pub status: PartStatus,
}

/// One capture process: `run` it until `shutdown` resolves.
pub struct Ingest {
    config: IngestConfig,
    pool: PgPool,
    lake: Lake,
    feed: ChangeFeed,
    progress: watch::Sender<Progress>,
    /// Commit-to-durable latency of each transaction, when asked for (benchmarks).
    lag_samples: Option<Arc<std::sync::Mutex<Vec<f64>>>>,
}

impl Ingest {
    #[tracing::instrument(skip_all, fields(slot = %config.slot, lake = %config.lake))]
    pub async fn connect(config: IngestConfig) -> Result<Self, IngestError> {
        let pool =
            fibonacco_platform::db::connect_url(config.database_url.expose(), 4, Duration::from_secs(10)).await?;
        let lake = Lake::open(&config.lake)?;
        Ok(Self {
            config,
            pool,
            lake,
            feed: ChangeFeed::default(),
            progress: watch::channel(Progress::default()).0,
            lag_samples: None,
        })
    }

    pub fn feed(&self) -> ChangeFeed {
        self.feed.clone()
    }

    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Keeps every transaction's commit-to-durable latency (seconds) for a benchmark.
    pub fn record_lag(&mut self) -> Arc<std::sync::Mutex<Vec<f64>>> {
        self.lag_samples.get_or_insert_with(Default::default).clone()
    }

    /// [`Ingest::run`] under supervision until `stop` turns true: a failure a restart can
    /// cure (Postgres restarting, a dropped connection, the lake's storage for a moment)
    /// runs it again after a backoff, resuming from the manifest; any other ends it with
    /// that error. Each change of state is written to `_capture.json` beside the lake.
    #[tracing::instrument(skip_all, fields(slot = %self.config.slot))]
    pub async fn run_supervised(&self, stop: watch::Receiver<bool>) -> Result<(), IngestError> {
        let mut states = supervise::subscribe(PART);
        let record =
            |status: PartStatus| CaptureRecord { slot: self.config.slot.clone(), pid: std::process::id(), status };
        let reporter = async {
            // Best effort: the lake's storage may be what is failing.
            loop {
                let status = states.borrow_and_update().clone();
                self.write_state(&record(status)).await;
                if states.changed().await.is_err() {
                    return;
                }
            }
        };
        let run = supervise::supervise(PART, supervise::Backoff::default(), stop.clone(), || async {
            let result = self.run(supervise::stopped(stop.clone())).await;
            if result.is_err() {
                self.progress.send_modify(|p| p.streaming = false);
            }
            result
        });
        tokio::pin!(run);
        let result = tokio::select! {
            result = &mut run => result,
            // The registry keeps every sender for the process's life, so this does not
            // happen; if it did, the capture would go on unreported.
            () = reporter => run.await,
        };
        self.write_state(&record(supervise::parts().get(PART).cloned().unwrap_or_else(|| states.borrow().clone())))
            .await;
        result
    }

    async fn write_state(&self, record: &CaptureRecord) {
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        if let Err(e) = self.lake.put_bytes(crate::lake::CAPTURE_STATE, bytes).await {
            tracing::warn!(error = %e, "cannot write the capture's state beside the lake");
        }
    }

    /// Runs the capture on its own task until [`Running::stop`].
    pub fn spawn(self) -> Running {
        let progress = self.progress();
        let feed = self.feed();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            self.run(async {
                let _ = stopped.await;
            })
            .await
        });
        Running { stop, task: Some(task), progress, feed }
    }

    /// Snapshot (first run) or resume, then stream until `shutdown` or an error. Returns
    /// after the last complete transactions are durable and acknowledged.
    #[tracing::instrument(skip_all, fields(slot = %self.config.slot))]
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), IngestError> {
        let config = &self.config;
        slot::preflight(&self.pool, config).await?;
        let mut types = TypeCatalog::load(&self.pool).await?;
        slot::wait_inactive(&self.pool, &config.slot, config.slot_wait).await?;
        if config.resnapshot {
            slot::drop_slot(&self.pool, &config.slot).await?;
            self.lake.clear().await?;
        }
        let (mut client, manifest) = match self.lake.read_manifest().await? {
            // A re-snapshot that did not finish: its slot may already have moved past the gap.
            Some(manifest) if manifest.resnapshot_pending.is_some() => {
                self.resnapshot_after_gap(manifest, &mut types).await?
            }
            Some(manifest) => match self.resume(&manifest).await {
                Ok(client) => (client, manifest),
                Err(IngestError::SlotLost { what, .. }) if config.auto_resnapshot => {
                    let mut manifest = manifest;
                    manifest.resnapshot_pending = Some(format!("slot {what}"));
                    self.resnapshot_after_gap(manifest, &mut types).await?
                }
                Err(e) => return Err(e),
            },
            None => self.start_fresh(&mut types).await?,
        };
        self.progress.send_modify(|p| {
            p.durable_lsn = manifest.durable_lsn;
            p.acknowledged_lsn = manifest.durable_lsn;
            p.streaming = true;
        });
        fibonacco_platform::supervise::running(PART);
        tracing::info!(durable_lsn = %format_lsn(manifest.durable_lsn), "streaming changes");
        let mut stream = Stream {
            ingest: self,
            manifest,
            types,
            parser: LogicalReplicationParser::with_protocol_version(1),
            relations: HashMap::new(),
            open: HashMap::new(),
            sealed: Vec::new(),
            staged: Vec::new(),
            pending_meta: HashMap::new(),
            txn: None,
            last_end_lsn: 0,
            last_commit_ts: None,
            pending_commits: Vec::new(),
            buffered_bytes: 0,
            flush_due: false,
            files_since_compaction: 0,
            erasures_checked: std::time::Instant::now(),
            erasures_table: true,
        };
        stream.last_end_lsn = stream.manifest.durable_lsn;
        let result = stream.run(&mut client, shutdown).await;
        client.stop();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
        result
    }

    fn replication_config(&self, start: u64) -> Result<ReplicationConfig, IngestError> {
        let url = url::Url::parse(self.config.database_url.expose())
            .map_err(|e| IngestError::Config(format!("DATABASE_URL: {e}")))?;
        let decode =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        let user = decode(url.username()).unwrap_or_default();
        let password = url.password().and_then(decode).unwrap_or_default();
        let database = url.path().trim_start_matches('/').to_string();
        let host = url.host_str().unwrap_or("127.0.0.1").to_string();
        let options = SESSION_SETTINGS
            .iter()
            .map(|(k, v)| format!("-c {k}={}", v.replace(' ', "")))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(ReplicationConfig::new(host, user, password, database, &self.config.slot, self.config.publication.as_str())
            .with_port(url.port().unwrap_or(5432))
            .with_tls(replication_tls(&url, &|k| std::env::var(k).ok())?)
            .with_options(options)
            .with_application_name("fibonacco-ingest")
            .with_status_interval(Duration::from_millis(500))
            .with_wakeup_interval(Duration::from_secs(5))
            .with_buffer_size(4096)
            .with_start_lsn(Lsn(start))
            .with_ack_lsn(Lsn(start)))
    }

    /// A lake that exists: check it belongs to this slot and the slot can still feed it,
    /// drop what a crashed run left, and stream from the manifest's position.
    async fn resume(&self, manifest: &Manifest) -> Result<ReplicationClient, IngestError> {
        let config = &self.config;
        if manifest.slot != config.slot {
            return Err(IngestError::LakeMismatch {
                lake: self.lake.display().to_string(),
                found: manifest.slot.clone(),
                expected: config.slot.clone(),
            });
        }
        let missing: Vec<&String> = config.tables.iter().filter(|t| !manifest.tables.contains_key(*t)).collect();
        if !missing.is_empty() {
            return Err(IngestError::Config(format!(
                "INGEST_TABLES adds {missing:?}, which the lake has no snapshot of: run `fibonacco ingest --resnapshot`"
            )));
        }
        match slot::slot_state(&self.pool, &config.slot).await? {
            None => {
                return Err(IngestError::SlotLost { slot: config.slot.clone(), what: "was dropped".into() });
            }
            Some(state) => {
                if let Some(what) = state.lost() {
                    return Err(IngestError::SlotLost { slot: config.slot.clone(), what });
                }
            }
        }
        slot::ensure_publication(&self.pool, config).await?;
        self.lake.remove_orphans(manifest).await?;
        let mut client = ReplicationClient::connect(self.replication_config(manifest.durable_lsn)?).await?;
        client.wait_started().await.map_err(|e| self.replication_error(e))?;
        Ok(client)
    }

    fn replication_error(&self, e: pgwire_replication::PgWireError) -> IngestError {
        let text = e.to_string();
        if text.contains("is active for PID") {
            IngestError::SlotBusy(self.config.slot.clone())
        } else if text.contains("does not exist") && text.contains("slot") {
            IngestError::SlotLost { slot: self.config.slot.clone(), what: "was dropped".into() }
        } else if text.contains("can no longer") || text.contains("invalidated") {
            IngestError::SlotLost { slot: self.config.slot.clone(), what: format!("cannot be used ({text})") }
        } else {
            IngestError::Replication(e)
        }
    }

    /// No lake yet: publication, a new slot exporting its snapshot, the copy under that
    /// snapshot, the first manifest; then the same session starts streaming.
    async fn start_fresh(&self, types: &mut TypeCatalog) -> Result<(ReplicationClient, Manifest), IngestError> {
        // A slot without a manifest is from a run that died during its snapshot.
        slot::drop_slot(&self.pool, &self.config.slot).await?;
        self.lake.clear().await?;
        self.copy_under_new_slot(types, None).await
    }

    /// The slot cannot feed the lake any more (invalidated, dropped) and
    /// `INGEST_AUTO_RESNAPSHOT` is on, or an earlier attempt at this did not finish: a new
    /// slot and a new copy of every table, written beside the lake's files. The manifest
    /// records the gap, and each table's current state starts from the copy (as after a
    /// TRUNCATE), so rows deleted during the gap do not linger.
    async fn resnapshot_after_gap(
        &self,
        manifest: Manifest,
        types: &mut TypeCatalog,
    ) -> Result<(ReplicationClient, Manifest), IngestError> {
        tracing::warn!(
            reason = manifest.resnapshot_pending.as_deref().unwrap_or(""),
            durable_lsn = %format_lsn(manifest.durable_lsn),
            "the slot cannot resume; copying the tables again and recording the gap"
        );
        // Durable before the old slot goes: a crash from here on comes back to this path.
        self.lake.write_manifest(&manifest).await?;
        self.lake.remove_orphans(&manifest).await?;
        slot::drop_slot(&self.pool, &self.config.slot).await?;
        self.copy_under_new_slot(types, Some(manifest)).await
    }

    /// Publication, a new slot exporting its snapshot, the copy under that snapshot, the
    /// manifest that lists it (a fresh one, or `previous` with the gap recorded); then the
    /// same session starts streaming.
    async fn copy_under_new_slot(
        &self,
        types: &mut TypeCatalog,
        previous: Option<Manifest>,
    ) -> Result<(ReplicationClient, Manifest), IngestError> {
        let config = &self.config;
        slot::ensure_publication(&self.pool, config).await?;
        let mut client = ReplicationClient::connect_gated(self.replication_config(0)?).await?;
        let rows = client
            .simple_query(&format!("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')", config.slot))
            .await
            .map_err(|e| self.replication_error(e))?;
        let row =
            rows.first().ok_or_else(|| IngestError::Protocol("CREATE_REPLICATION_SLOT returned no row".into()))?;
        let text = |i: usize| {
            row.get(i)
                .and_then(|v| v.as_ref())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| IngestError::Protocol(format!("CREATE_REPLICATION_SLOT: column {i} missing")))
        };
        let consistent = slot::parse_lsn(&text(1)?)
            .ok_or_else(|| IngestError::Protocol("CREATE_REPLICATION_SLOT: bad consistent_point".into()))?;
        let snapshot_name = text(2)?;
        tracing::info!(consistent_point = %format_lsn(consistent), tables = config.tables.len(), "slot created; copying tables");
        *types = TypeCatalog::load(&self.pool).await?;
        let options: PgConnectOptions = config.database_url.expose().parse()?;
        let resumed = previous.is_some();
        let mut manifest = match previous {
            None => Manifest::new(&config.slot, &config.publication, consistent),
            Some(mut m) => {
                m.gaps.push(Gap {
                    after_lsn: m.durable_lsn,
                    resumed_lsn: consistent,
                    detected_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    reason: m.resnapshot_pending.take().unwrap_or_default(),
                });
                metrics::counter!("ingest_gaps_total").increment(1);
                m.consistent_lsn = consistent;
                m.durable_lsn = consistent;
                m
            }
        };
        let next_file = AtomicU64::new(manifest.next_file);
        let plan = SnapshotPlan {
            options: &options,
            snapshot_name: &snapshot_name,
            consistent_lsn: consistent,
            tables: &config.tables,
            parallelism: config.snapshot_parallelism,
            batch_rows: config.snapshot_batch_rows,
            progress: config.progress,
        };
        let copies = snapshot::copy_tables(plan, &self.lake, types, &next_file).await?;
        manifest.next_file = next_file.into_inner();
        let mut total = 0;
        for copy in copies {
            metrics::counter!("ingest_snapshot_rows_total", "table" => copy.schema.table.clone()).increment(copy.rows);
            total += copy.rows;
            let meta = manifest.tables.entry(copy.schema.table.clone()).or_insert_with(TableMeta::default);
            meta.keys = copy.schema.keys();
            meta.rows += copy.rows;
            if resumed {
                // Only the copy and what follows it is the current state: every older row
                // has `_lsn` < `consistent` (the new slot starts after all of them).
                meta.truncated_at = Some((consistent - 1, u32::MAX));
            }
            manifest.files.extend(copy.files);
        }
        manifest.last_commit_ts = Some(chrono::Utc::now().timestamp_micros());
        self.lake.write_manifest(&manifest).await?;
        self.progress.send_modify(|p| p.snapshot_rows = total);
        tracing::info!(rows = total, files = manifest.files.len(), "snapshot durable");
        // START_REPLICATION ends the exported snapshot; every copy above has committed.
        client.start().await?;
        client.wait_started().await.map_err(|e| self.replication_error(e))?;
        Ok((client, manifest))
    }
}

/// The replication connection's TLS, from the same `DATABASE_URL` parameters (and `PG*`
/// variables) the pool's connections honour: `sslmode` (`disable`, `allow`, `prefer` the
/// default, `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file, or
/// `system` for the built-in roots), `sslcert` + `sslkey` (a client certificate). As in
/// libpq, `require` with a root certificate verifies the chain like `verify-ca`; `allow`
/// tries TLS first (`prefer`), which is never less private.
fn replication_tls(url: &url::Url, env: &dyn Fn(&str) -> Option<String>) -> Result<TlsConfig, IngestError> {
    let param = |name: &str, var: &str| {
        url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).or_else(|| env(var))
    };
    let root = param("sslrootcert", "PGSSLROOTCERT").filter(|r| !r.is_empty());
    let ca = root.as_deref().filter(|r| *r != "system").map(std::path::PathBuf::from);
    let mode = param("sslmode", "PGSSLMODE").unwrap_or_else(|| "prefer".into());
    let mut tls = match mode.as_str() {
        "disable" => return Ok(TlsConfig::disabled()),
        "allow" | "prefer" => TlsConfig { mode: pgwire_replication::SslMode::Prefer, ..TlsConfig::require() },
        "require" if root.is_none() => TlsConfig::require(),
        "require" | "verify-ca" => TlsConfig::verify_ca(ca),
        "verify-full" => TlsConfig::verify_full(ca),
        other => {
            return Err(IngestError::Config(format!(
                "DATABASE_URL sslmode={other:?}: use disable, allow, prefer, require, verify-ca or verify-full"
            )));
        }
    };
    match (param("sslcert", "PGSSLCERT"), param("sslkey", "PGSSLKEY")) {
        (Some(cert), Some(key)) => tls = tls.with_client_cert(cert, key),
        (None, None) => {}
        _ => return Err(IngestError::Config("DATABASE_URL: sslcert and sslkey go together".into())),
    }
    // An address checks against the certificate's IP names, as libpq and the pool do
    // (the replication client refuses an address in verify-full unless it is named so).
    // (`postgres:` is no special scheme to the url crate: its hosts are all names.)
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    if host.parse::<std::net::IpAddr>().is_ok() {
        tls = tls.with_sni_hostname(host);
    }
    Ok(tls)
}

/// A capture running on its own task (tests, benchmarks, `fibonacco run`).
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    /// Taken by the first call that sees the capture end, which reports how it ended.
    task: Option<tokio::task::JoinHandle<Result<(), IngestError>>>,
    pub progress: watch::Receiver<Progress>,
    pub feed: ChangeFeed,
}

impl Running {
    /// Waits until `done(progress)` holds. If the capture ends first, its own error (a lost
    /// slot, a refused connection, a full disk) rather than only the fact that it ended.
    pub async fn wait_until(&mut self, done: impl Fn(&Progress) -> bool) -> Result<Progress, IngestError> {
        let reached = self.progress.wait_for(|p| done(p)).await.map(|p| p.clone());
        match reached {
            Ok(p) => Ok(p),
            Err(_) => Err(match ended(&mut self.task).await {
                Err(e) => e,
                Ok(()) => IngestError::Protocol("the capture stopped before it got there".into()),
            }),
        }
    }

    /// Stops after the complete transactions received so far are durable; returns how the
    /// run ended.
    pub async fn stop(self) -> Result<(), IngestError> {
        let Running { stop, mut task, .. } = self;
        let _ = stop.send(());
        ended(&mut task).await
    }
}

/// How a capture's task ended, once; later calls only say that it was already reported.
async fn ended(task: &mut Option<tokio::task::JoinHandle<Result<(), IngestError>>>) -> Result<(), IngestError> {
    match task.take() {
        Some(task) => task.await.map_err(|e| IngestError::Protocol(format!("capture task: {e}")))?,
        None => Err(IngestError::Protocol("the capture had already ended (its outcome was returned before)".into())),
    }
}

/// The transaction being decoded.
struct Txn {
    /// Its commit record's LSN (pgoutput's `final_lsn`): the `_lsn` of its rows.
    lsn: u64,
    xid: u32,
    commit_ts: i64,
    date: String,
    seq: u32,
    /// Already in the lake (a replay after a crash): decoded for its schema messages only.
    skip: bool,
}

/// Per-table facts of rows written but not yet in the manifest.
#[derive(Default)]
struct PendingMeta {
    keys: Vec<String>,
    rows: u64,
    unchanged: BTreeSet<String>,
    truncated_at: Option<(u64, u32)>,
}

struct Stream<'a> {
    ingest: &'a Ingest,
    manifest: Manifest,
    types: TypeCatalog,
    parser: LogicalReplicationParser,
    relations: HashMap<u32, Arc<TableSchema>>,
    /// Batches being filled, per relation and commit date.
    open: HashMap<(u32, String), TableBatch>,
    /// Full batches of an older schema of their table, waiting for the next write.
    sealed: Vec<TableBatch>,
    /// Files written inside a large transaction; listed by the manifest at its commit.
    staged: Vec<FileEntry>,
    pending_meta: HashMap<String, PendingMeta>,
    txn: Option<Txn>,
    /// End LSN of the last decoded commit.
    last_end_lsn: u64,
    last_commit_ts: Option<i64>,
    /// Commit times of transactions buffered since the last flush.
    pending_commits: Vec<i64>,
    buffered_bytes: usize,
    flush_due: bool,
    files_since_compaction: usize,
    erasures_checked: std::time::Instant,
    /// False once the database turned out to have no `erasures` table.
    erasures_table: bool,
}

impl Stream<'_> {
    async fn run(
        &mut self,
        client: &mut ReplicationClient,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), IngestError> {
        let mut tick = tokio::time::interval(self.ingest.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    // Rows of a half-received transaction are dropped: unacknowledged, they
                    // come again on the next start.
                    if self.txn.is_none() {
                        self.flush(client).await?;
                    }
                    return Ok(());
                }
                event = client.recv() => {
                    match event.map_err(|e| self.ingest.replication_error(e))? {
                        Some(event) => self.handle(client, event).await?,
                        None => {
                            if self.txn.is_none() {
                                self.flush(client).await?;
                            }
                            return Ok(());
                        }
                    }
                }
                _ = tick.tick() => {
                    self.flush_due = true;
                    if self.txn.is_none() {
                        self.flush(client).await?;
                        self.erase_due().await?;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, client: &ReplicationClient, event: ReplicationEvent) -> Result<(), IngestError> {
        match event {
            ReplicationEvent::Begin { final_lsn, xid, commit_time_micros } => {
                let commit_ts = commit_time_micros + PG_EPOCH_OFFSET_MICROS;
                let date = chrono::DateTime::from_timestamp_micros(commit_ts)
                    .unwrap_or_default()
                    .format("%Y-%m-%d")
                    .to_string();
                let skip = final_lsn.0 < self.manifest.durable_lsn;
                self.txn = Some(Txn { lsn: final_lsn.0, xid, commit_ts, date, seq: 0, skip });
            }
            ReplicationEvent::XLogData { data, .. } => {
                let message =
                    self.parser.parse_wal_message_bytes(data).map_err(|e| IngestError::Protocol(e.to_string()))?;
                self.decode(message.message).await?;
            }
            ReplicationEvent::Commit { end_lsn, commit_time_micros, .. } => {
                let txn = self.txn.take();
                if let Some(txn) = txn.filter(|t| !t.skip) {
                    self.last_end_lsn = end_lsn.0;
                    self.last_commit_ts = Some(commit_time_micros + PG_EPOCH_OFFSET_MICROS);
                    self.pending_commits.push(txn.commit_ts);
                    if self.flush_due || self.buffered_bytes >= self.ingest.config.flush_bytes {
                        self.flush(client).await?;
                    }
                }
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                let durable = self.manifest.durable_lsn;
                metrics::gauge!("ingest_lag_bytes").set(wal_end.0.saturating_sub(durable) as f64);
                // Idle with nothing buffered: everything the server sent is in the lake, so
                // the slot may move on (it would otherwise hold WAL other databases wrote).
                if self.txn.is_none() && self.nothing_buffered() && self.last_end_lsn <= durable {
                    client.update_applied_lsn(wal_end);
                    self.ingest.progress.send_modify(|p| p.acknowledged_lsn = p.acknowledged_lsn.max(wal_end.0));
                }
            }
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    fn nothing_buffered(&self) -> bool {
        self.open.is_empty() && self.sealed.is_empty() && self.staged.is_empty()
    }

    async fn decode(&mut self, message: LogicalReplicationMessage) -> Result<(), IngestError> {
        match message {
            LogicalReplicationMessage::Relation { relation_id, namespace, relation_name, columns, .. } => {
                if columns.iter().any(|c| !self.types.knows(c.type_id)) {
                    // A type created after start (an enum, a domain): read the catalog again.
                    self.types = TypeCatalog::load(&self.ingest.pool).await?;
                }
                let table = if &*namespace == "public" {
                    relation_name.to_string()
                } else {
                    format!("{namespace}.{relation_name}")
                };
                let columns = columns
                    .iter()
                    .map(|c| Column {
                        name: c.name.to_string(),
                        type_oid: c.type_id,
                        typmod: c.type_modifier,
                        kind: self.types.kind(c.type_id, c.type_modifier),
                        key: c.is_key(),
                    })
                    .collect();
                let schema = Arc::new(TableSchema { table, columns });
                if self.relations.get(&relation_id).is_some_and(|old| *old != schema) {
                    // A schema change: batches of the old shape are written as they are.
                    let keys: Vec<(u32, String)> =
                        self.open.keys().filter(|(oid, _)| *oid == relation_id).cloned().collect();
                    for key in keys {
                        if let Some(batch) = self.open.remove(&key) {
                            self.sealed.push(batch);
                        }
                    }
                }
                self.relations.insert(relation_id, schema);
            }
            LogicalReplicationMessage::Insert { relation_id, tuple } => {
                self.push_tuple(relation_id, Op::Insert, &tuple, None).await?;
            }
            LogicalReplicationMessage::Update { relation_id, old_tuple, new_tuple, key_type } => {
                if let Some(old) = &old_tuple {
                    let schema = self.schema(relation_id)?;
                    // The table's primary key (from the manifest): under REPLICA IDENTITY
                    // FULL every column is flagged as key in the Relation message.
                    let keys = self.manifest.tables.get(&schema.table).map(|m| m.keys.as_slice()).unwrap_or_default();
                    let is_key = |c: &Column| if keys.is_empty() { c.key } else { keys.contains(&c.name) };
                    let key_changed = schema.columns.iter().enumerate().filter(|(_, c)| is_key(c)).any(|(i, _)| {
                        old.get_column(i).map(|c| c.as_bytes()) != new_tuple.get_column(i).map(|c| c.as_bytes())
                    });
                    if key_changed {
                        // The row moved to a new key: the old key is gone.
                        self.push_tuple(relation_id, Op::Delete, old, None).await?;
                    }
                }
                // With REPLICA IDENTITY FULL the old image carries unchanged TOASTed values.
                let previous = old_tuple.as_ref().filter(|_| key_type == Some('O'));
                self.push_tuple(relation_id, Op::Update, &new_tuple, previous).await?;
            }
            LogicalReplicationMessage::Delete { relation_id, old_tuple, .. } => {
                self.push_tuple(relation_id, Op::Delete, &old_tuple, None).await?;
            }
            LogicalReplicationMessage::Truncate { relation_ids, .. } => {
                for relation_id in relation_ids {
                    let width = self.schema(relation_id)?.columns.len();
                    self.push_values(relation_id, Op::Truncate, vec![Value::Null; width]).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn schema(&self, relation_id: u32) -> Result<Arc<TableSchema>, IngestError> {
        self.relations.get(&relation_id).cloned().ok_or_else(|| {
            IngestError::Protocol(format!("a change for relation {relation_id} came before its Relation message"))
        })
    }

    async fn push_tuple(
        &mut self,
        relation_id: u32,
        op: Op,
        tuple: &TupleData,
        previous: Option<&TupleData>,
    ) -> Result<(), IngestError> {
        if self.txn.as_ref().is_none_or(|t| t.skip) {
            return Ok(());
        }
        let mut values = Vec::with_capacity(tuple.column_count());
        for (i, column) in tuple.columns.iter().enumerate() {
            values.push(match column.data_type {
                b'n' => Value::Null,
                b't' => Value::Text(utf8(column.as_bytes())?),
                b'u' => match previous.and_then(|p| p.get_column(i)).filter(|c| c.is_text()) {
                    Some(old) => Value::Text(utf8(old.as_bytes())?),
                    None => Value::Unchanged,
                },
                other => {
                    return Err(IngestError::Protocol(format!("unexpected tuple value kind {:?}", other as char)));
                }
            });
        }
        self.push_values(relation_id, op, values).await
    }

    async fn push_values(&mut self, relation_id: u32, op: Op, values: Vec<Value<'_>>) -> Result<(), IngestError> {
        let schema = self.schema(relation_id)?;
        let Some(txn) = self.txn.as_mut().filter(|t| !t.skip) else { return Ok(()) };
        let meta = RowMeta { op, lsn: txn.lsn, seq: txn.seq, commit_ts: txn.commit_ts, xid: Some(txn.xid) };
        txn.seq += 1;
        let batch = self.open.entry((relation_id, txn.date.clone())).or_insert_with(|| TableBatch::new(schema));
        let before = batch.bytes();
        batch.append(meta, values.into_iter())?;
        self.buffered_bytes += batch.bytes() - before;
        if self.buffered_bytes >= self.ingest.config.flush_bytes {
            // Inside a large transaction: write what is buffered now, list it at the commit.
            let written = self.write_buffers(false).await?;
            self.staged.extend(written.into_iter().map(|(entry, _)| entry));
        }
        Ok(())
    }

    /// Writes every buffered batch as a file; returns the entries (and the batches when
    /// `keep` and someone subscribes to the feed). Not yet in the manifest.
    async fn write_buffers(&mut self, keep: bool) -> Result<Vec<(FileEntry, Option<RecordBatch>)>, IngestError> {
        let mut batches: Vec<TableBatch> = std::mem::take(&mut self.sealed);
        batches.extend(self.open.drain().map(|(_, b)| b));
        self.buffered_bytes = 0;
        let mut written = Vec::with_capacity(batches.len());
        for batch in batches {
            if batch.rows() == 0 {
                continue;
            }
            let table = batch.schema.table.clone();
            let date = chrono::DateTime::from_timestamp_micros(batch.max_commit_ts)
                .unwrap_or_default()
                .format("%Y-%m-%d")
                .to_string();
            let pending = self.pending_meta.entry(table.clone()).or_default();
            pending.keys = batch.schema.keys();
            pending.rows += batch.rows() as u64;
            pending.unchanged.extend(batch.unchanged_columns.iter().cloned());
            if batch.truncated_at.is_some() {
                pending.truncated_at = batch.truncated_at;
            }
            let (min_lsn, max_lsn, rows) = (batch.min_lsn, batch.max_lsn, batch.rows() as u64);
            let record = batch.finish()?;
            let path = self.manifest.allocate_path(&table, &date, min_lsn);
            let bytes = self.ingest.lake.write_parquet(&path, std::slice::from_ref(&record)).await?;
            metrics::counter!("ingest_changes_total", "table" => table.clone()).increment(rows);
            metrics::counter!("ingest_bytes_written_total").increment(bytes);
            self.ingest.progress.send_modify(|p| {
                p.files_written += 1;
                p.bytes_written += bytes;
                p.changes += rows;
            });
            let inserts_only = crate::batch::inserts_only(&record);
            let entry = FileEntry { table, path, date, rows, bytes, min_lsn, max_lsn, merged: 1, inserts_only };
            written.push((entry, (keep && self.ingest.feed.has_subscribers()).then_some(record)));
        }
        Ok(written)
    }

    /// At a transaction boundary: write the buffers, list them and the staged files in a
    /// new manifest, acknowledge its LSN, then tell the change feed.
    async fn flush(&mut self, client: &ReplicationClient) -> Result<(), IngestError> {
        self.flush_due = false;
        if self.last_end_lsn <= self.manifest.durable_lsn && self.nothing_buffered() {
            return Ok(());
        }
        let written = self.write_buffers(true).await?;
        let staged = std::mem::take(&mut self.staged);
        let new_files = staged.len() + written.len();
        self.manifest.files.extend(staged.iter().cloned());
        self.manifest.files.extend(written.iter().map(|(e, _)| e.clone()));
        for (table, pending) in self.pending_meta.drain() {
            let meta = self.manifest.tables.entry(table).or_default();
            // The snapshot recorded the primary key; the stream's key flags are the replica
            // identity, which is every column under REPLICA IDENTITY FULL.
            if meta.keys.is_empty() {
                meta.keys = pending.keys;
            }
            meta.rows += pending.rows;
            meta.unchanged_columns.extend(pending.unchanged);
            if pending.truncated_at.is_some() {
                meta.truncated_at = pending.truncated_at;
            }
        }
        self.manifest.durable_lsn = self.manifest.durable_lsn.max(self.last_end_lsn);
        if self.last_commit_ts.is_some() {
            self.manifest.last_commit_ts = self.last_commit_ts;
        }
        self.ingest.lake.write_manifest(&self.manifest).await?;
        let durable = self.manifest.durable_lsn;
        client.update_applied_lsn(Lsn(durable));

        let now = chrono::Utc::now().timestamp_micros();
        let commits = std::mem::take(&mut self.pending_commits);
        for ts in &commits {
            let lag = (now - ts).max(0) as f64 / 1e6;
            metrics::histogram!("ingest_commit_to_durable_seconds").record(lag);
        }
        if let Some(samples) = &self.ingest.lag_samples {
            let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
            samples.extend(commits.iter().map(|ts| (now - ts).max(0) as f64 / 1e6));
        }
        metrics::gauge!("ingest_durable_lsn").set(durable as f64);
        metrics::gauge!("ingest_lake_files").set(self.manifest.files.len() as f64);
        self.ingest.progress.send_modify(|p| {
            p.durable_lsn = durable;
            p.acknowledged_lsn = p.acknowledged_lsn.max(durable);
            p.transactions += commits.len() as u64;
        });

        if self.ingest.feed.has_subscribers() {
            for entry in &staged {
                for rows in self.ingest.lake.read_parquet(&entry.path).await? {
                    self.publish(&entry.table, rows, durable);
                }
            }
            for (entry, rows) in written {
                if let Some(rows) = rows {
                    self.publish(&entry.table, rows, durable);
                }
            }
        }

        self.files_since_compaction += new_files;
        if self.files_since_compaction >= self.ingest.config.compact_min_files {
            self.files_since_compaction = 0;
            compact::compact(&self.ingest.lake, &mut self.manifest, self.ingest.config.compact_min_files).await?;
        }
        Ok(())
    }

    /// Every few seconds while idle: erasures whose WAL the lake has taken are applied to
    /// its files (see [`crate::erase`]); this process is the manifest's only writer.
    async fn erase_due(&mut self) -> Result<(), IngestError> {
        if !self.nothing_buffered() || self.erasures_checked.elapsed() < ERASURE_POLL || !self.erasures_table {
            return Ok(());
        }
        self.erasures_checked = std::time::Instant::now();
        let taken = self.ingest.progress.borrow().acknowledged_lsn.max(self.manifest.durable_lsn);
        let Some(due) = erase::due(&self.ingest.pool, taken).await? else {
            self.erasures_table = false;
            return Ok(());
        };
        if due.is_empty() {
            return Ok(());
        }
        let files = erase::apply(&self.ingest.lake, &mut self.manifest, &due).await?;
        erase::mark_done(&self.ingest.pool, &due, files).await
    }

    fn publish(&self, table: &str, rows: RecordBatch, durable_lsn: u64) {
        let keys = self.manifest.tables.get(table).map(|m| m.keys.clone()).unwrap_or_default();
        self.ingest.feed.publish(ChangeBatch { table: table.to_string(), keys, rows, durable_lsn });
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, IngestError> {
    std::str::from_utf8(bytes).map_err(|_| IngestError::Protocol("a text value is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use pgwire_replication::SslMode;

    use super::*;

    fn tls(url: &str, env: &[(&str, &str)]) -> Result<TlsConfig, IngestError> {
        let url = url::Url::parse(url).unwrap();
        replication_tls(&url, &|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_replication_connection_takes_its_tls_from_the_url_like_the_pool() {
        let base = "postgres://u:p@db.example:5432/app";
        assert_eq!(tls(base, &[]).unwrap().mode, SslMode::Prefer, "libpq's default");
        assert_eq!(tls(&format!("{base}?sslmode=disable"), &[]).unwrap().mode, SslMode::Disable);
        assert_eq!(tls(&format!("{base}?sslmode=require"), &[]).unwrap().mode, SslMode::Require);
        let ca = tls(&format!("{base}?sslmode=require&sslrootcert=/ca.pem"), &[]).unwrap();
        assert_eq!((ca.mode, ca.ca_pem_path.as_deref()), (SslMode::VerifyCa, Some(std::path::Path::new("/ca.pem"))));
        let full = tls(&format!("{base}?sslmode=verify-full&sslrootcert=system"), &[]).unwrap();
        assert_eq!((full.mode, full.ca_pem_path, full.sni_hostname), (SslMode::VerifyFull, None, None));
        let env = tls(base, &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", "/env.pem")]).unwrap();
        assert_eq!((env.mode, env.ca_pem_path.unwrap().to_str().unwrap()), (SslMode::VerifyFull, "/env.pem"));
        let url_wins = tls(&format!("{base}?sslmode=disable"), &[("PGSSLMODE", "verify-full")]).unwrap();
        assert_eq!(url_wins.mode, SslMode::Disable);
        let ip = tls("postgres://u:p@127.0.0.1/app?sslmode=verify-full", &[]).unwrap();
        assert_eq!(ip.sni_hostname.as_deref(), Some("127.0.0.1"));
        let mtls = tls(&format!("{base}?sslmode=verify-full&sslcert=/c.pem&sslkey=/k.pem"), &[]).unwrap();
        assert!(mtls.is_mtls());
    }

    #[test]
    fn a_bad_tls_setting_is_a_clear_configuration_error() {
        let base = "postgres://u:p@db.example/app";
        for (query, says) in [("sslmode=verify_full", "verify-full"), ("sslmode=require&sslcert=/c.pem", "sslkey")] {
            match tls(&format!("{base}?{query}"), &[]) {
                Err(IngestError::Config(message)) => assert!(message.contains(says), "{query}: {message}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
