//! `fibonacco ingest status`: the slot, how far the lake is behind, what it holds.

use fibonacco_platform::{replication::SlotHealth, supervise::PartState};
use serde::Serialize;
use sqlx::PgPool;

use crate::{
    capture::CaptureRecord,
    config::IngestConfig,
    error::IngestError,
    lake::{Gap, Lake},
    slot::{SlotState, format_lsn, parse_lsn, slot_state},
};

#[derive(Debug, Serialize)]
pub struct TableStatus {
    pub table: String,
    pub files: usize,
    /// Changes in the lake (snapshot rows included).
    pub changes: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub lake: String,
    pub slot: Option<SlotState>,
    pub current_wal_lsn: String,
    pub durable_lsn: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    /// WAL written since what the lake (or an idle acknowledgement) covers.
    pub lag_bytes: Option<u64>,
    /// Seconds since the newest commit in the lake, while there is WAL it lacks.
    pub lag_seconds: Option<f64>,
    pub files: usize,
    pub bytes: u64,
    pub tables: Vec<TableStatus>,
    /// The slot keeps more WAL than `INGEST_WAL_ALERT_MB`, or Postgres is about to
    /// invalidate it: start the capture (or drop the slot) before the disk fills.
    pub wal_alert: bool,
    pub wal_alert_bytes: u64,
    /// Stretches of WAL the lake never saw (see [`Gap`]).
    pub gaps: Vec<Gap>,
    /// A re-snapshot started and has not finished; the next start finishes it.
    pub resnapshot_pending: Option<String>,
    /// The state the capture on this lake last recorded (`starting`, `running`,
    /// `restarting` with its restarts and last failure, `failed`, `stopped`).
    pub capture: Option<CaptureRecord>,
}

#[tracing::instrument(skip_all, fields(slot = %config.slot))]
pub async fn status(pool: &PgPool, config: &IngestConfig) -> Result<Status, IngestError> {
    let lake = Lake::open(&config.lake)?;
    let manifest = lake.read_manifest().await?;
    let slot = slot_state(pool, &config.slot).await?;
    let current: String = sqlx::query_scalar("select pg_current_wal_lsn()::text").fetch_one(pool).await?;
    let current_lsn = parse_lsn(&current).unwrap_or(0);
    let durable = manifest.as_ref().map(|m| m.durable_lsn);
    let covered = durable.map(|d| d.max(slot.as_ref().and_then(|s| s.confirmed_flush_lsn).unwrap_or(0)));
    let lag_bytes = covered.map(|c| current_lsn.saturating_sub(c));
    // While the capture runs, Postgres measures the lag from its standby status updates
    // (NULL once it has caught up); otherwise it is the age of the newest commit in the
    // lake, if WAL was written after it.
    let flush_lag: Option<Option<f64>> = sqlx::query_scalar(
        "select extract(epoch from s.flush_lag)::float8 from pg_stat_replication s \
         join pg_replication_slots r on r.active_pid = s.pid where r.slot_name = $1",
    )
    .bind(&config.slot)
    .fetch_optional(pool)
    .await?;
    let lag_seconds = match (flush_lag, lag_bytes, manifest.as_ref().and_then(|m| m.last_commit_ts)) {
        (Some(lag), _, _) => Some(lag.unwrap_or(0.0)),
        (None, Some(0), _) => Some(0.0),
        (None, Some(_), Some(ts)) => Some(((chrono::Utc::now().timestamp_micros() - ts).max(0)) as f64 / 1e6),
        _ => None,
    };
    let mut tables = Vec::new();
    if let Some(m) = &manifest {
        for (table, meta) in &m.tables {
            let files: Vec<_> = m.files_of(table).collect();
            tables.push(TableStatus {
                table: table.clone(),
                files: files.len(),
                changes: meta.rows,
                bytes: files.iter().map(|f| f.bytes).sum(),
            });
        }
    }
    // An unreadable record is no reason to hide the rest of the status.
    let capture = match lake.read_bytes(crate::lake::CAPTURE_STATE).await {
        Ok(bytes) => bytes.and_then(|b| serde_json::from_slice::<CaptureRecord>(&b).ok()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the capture's state");
            None
        }
    };
    let wal_alert = slot.as_ref().is_some_and(|s| s.health(config.wal_alert_bytes) == SlotHealth::Retaining);
    Ok(Status {
        wal_alert,
        wal_alert_bytes: config.wal_alert_bytes,
        gaps: manifest.as_ref().map(|m| m.gaps.clone()).unwrap_or_default(),
        resnapshot_pending: manifest.as_ref().and_then(|m| m.resnapshot_pending.clone()),
        capture,
        lake: lake.display().to_string(),
        confirmed_flush_lsn: slot.as_ref().and_then(|s| s.confirmed_flush_lsn).map(format_lsn),
        slot,
        current_wal_lsn: current,
        durable_lsn: durable.map(format_lsn),
        lag_bytes,
        lag_seconds,
        files: manifest.as_ref().map_or(0, |m| m.files.len()),
        bytes: manifest.as_ref().map_or(0, |m| m.files.iter().map(|f| f.bytes).sum()),
        tables,
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "lake:           {}", self.lake)?;
        match &self.slot {
            Some(s) => {
                let state = match s.lost() {
                    Some(why) => format!("LOST: {why}; run `fibonacco ingest --resnapshot`"),
                    None if s.active => "active".into(),
                    None => "inactive".into(),
                };
                writeln!(f, "slot:           {} ({state})", s.name)?;
                let safe = match s.safe_wal_bytes {
                    Some(b) => format!("{} more before Postgres invalidates the slot", bytes(b.max(0) as u64)),
                    None => "no max_slot_wal_keep_size: only the disk limits it".into(),
                };
                match s.retained_wal_bytes {
                    Some(b) => writeln!(f, "retained WAL:   {} ({safe})", bytes(b.max(0) as u64))?,
                    None => writeln!(f, "retained WAL:   -")?,
                }
                if self.wal_alert {
                    writeln!(
                        f,
                        "WARNING:        the slot keeps more than {} of WAL; start `fibonacco ingest` (or `fibonacco run`) \
                         so it catches up, or the slot will be invalidated (or the disk fill)",
                        bytes(self.wal_alert_bytes)
                    )?;
                }
            }
            None => writeln!(f, "slot:           none (run `fibonacco ingest`)")?,
        }
        if let Some(c) = &self.capture {
            let s = &c.status;
            let state = format!("{:?}", s.state).to_lowercase();
            let streaming = self.slot.as_ref().is_some_and(|slot| slot.active);
            let stale = matches!(s.state, PartState::Running | PartState::Starting) && !streaming;
            let mut line = if stale {
                format!("not running (pid {} last recorded {state} since {})", c.pid, s.since.to_rfc3339())
            } else {
                format!("{state} since {} (pid {})", s.since.to_rfc3339(), c.pid)
            };
            if s.restarts > 0 {
                line.push_str(&format!(", {} restarts", s.restarts));
            }
            if let (Some(kind), Some(at)) = (&s.last_error, s.last_error_at) {
                line.push_str(&format!(", last failure: {kind} at {} (details in its log)", at.to_rfc3339()));
            }
            writeln!(f, "capture:        {line}")?;
        }
        writeln!(f, "current WAL:    {}", self.current_wal_lsn)?;
        writeln!(f, "durable LSN:    {}", self.durable_lsn.as_deref().unwrap_or("-"))?;
        writeln!(f, "confirmed LSN:  {}", self.confirmed_flush_lsn.as_deref().unwrap_or("-"))?;
        match (self.lag_bytes, self.lag_seconds) {
            (Some(b), Some(s)) => writeln!(f, "lag:            {b} bytes, {s:.1} s")?,
            (Some(b), None) => writeln!(f, "lag:            {b} bytes")?,
            _ => writeln!(f, "lag:            -")?,
        }
        for g in &self.gaps {
            writeln!(
                f,
                "gap:            changes after {} and before {} are missing from the history ({}, found {}); \
                 the tables were copied again at {}",
                format_lsn(g.after_lsn),
                format_lsn(g.resumed_lsn),
                g.reason,
                g.detected_at,
                format_lsn(g.resumed_lsn)
            )?;
        }
        if let Some(why) = &self.resnapshot_pending {
            writeln!(f, "re-snapshot:    started and unfinished ({why}); the next start completes it")?;
        }
        writeln!(f, "files:          {} ({} bytes)", self.files, self.bytes)?;
        writeln!(f, "{:<32} {:>8} {:>12} {:>14}", "table", "files", "changes", "bytes")?;
        for t in &self.tables {
            writeln!(f, "{:<32} {:>8} {:>12} {:>14}", t.table, t.files, t.changes, t.bytes)?;
        }
        Ok(())
    }
}

/// `1536 MiB`-style sizes for people.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
