//! Replication slots as the operators must watch them: a slot is a promise Postgres keeps
//! at the cost of the disk. An inactive slot (a stopped capture) keeps every WAL segment
//! written after it, until `max_slot_wal_keep_size` invalidates it (or, without that
//! setting, until the disk is full and Postgres stops). `/health`, `/metrics` and
//! `fibonacco ingest status` read the same [`slots`].

use serde::Serialize;
use sqlx::PgPool;

/// Retained WAL above this is reported (`INGEST_WAL_ALERT_MB`, default 1024): well below
/// the stack's `max_slot_wal_keep_size` (4 GB locally), so the alert comes first.
pub const DEFAULT_WAL_ALERT_BYTES: u64 = 1 << 30;

/// One logical slot of the connected database.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct SlotWal {
    pub name: String,
    /// A process is streaming from it now.
    pub active: bool,
    /// Postgres' `wal_status`: `reserved`, `extended`, `unreserved` (about to be
    /// invalidated) or `lost`.
    pub wal_status: Option<String>,
    /// Why Postgres invalidated it (`wal_removed`, `idle_timeout`, …), if it did.
    pub invalidation_reason: Option<String>,
    /// WAL kept for this slot: from its restart point to the current write position.
    pub retained_wal_bytes: Option<i64>,
    /// WAL that may still be written before the slot is invalidated (`null` without
    /// `max_slot_wal_keep_size`: then the disk is the only limit).
    pub safe_wal_bytes: Option<i64>,
}

/// How a slot stands against the alert threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotHealth {
    Ok,
    /// Keeps more WAL than the threshold, or Postgres says it is about to be invalidated.
    Retaining,
    /// Invalidated: the capture cannot resume without a new snapshot.
    Lost,
}

/// `INGEST_WAL_ALERT_MB` as bytes: a positive number of MiB (unset or empty: the default).
/// The API's config and the capture's read it through this one parser.
pub fn alert_bytes(raw: Option<&str>) -> Result<u64, String> {
    match raw.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_WAL_ALERT_BYTES),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|mb| *mb > 0)
            .map(|mb| mb.saturating_mul(1 << 20))
            .ok_or_else(|| format!("INGEST_WAL_ALERT_MB must be a positive number of MiB, not {v:?}")),
    }
}

/// The one rule for a slot, from what `pg_replication_slots` says of it: invalidated is
/// `Lost`; more WAL than `alert_bytes`, or `unreserved` (Postgres is about to invalidate
/// it), is `Retaining`.
pub fn judge(
    wal_status: Option<&str>,
    invalidation_reason: Option<&str>,
    retained_wal_bytes: Option<i64>,
    alert_bytes: u64,
) -> SlotHealth {
    if invalidation_reason.is_some() || wal_status == Some("lost") {
        SlotHealth::Lost
    } else if wal_status == Some("unreserved")
        || retained_wal_bytes.is_some_and(|b| b > i64::try_from(alert_bytes).unwrap_or(i64::MAX))
    {
        SlotHealth::Retaining
    } else {
        SlotHealth::Ok
    }
}

impl SlotWal {
    pub fn health(&self, alert_bytes: u64) -> SlotHealth {
        judge(self.wal_status.as_deref(), self.invalidation_reason.as_deref(), self.retained_wal_bytes, alert_bytes)
    }
}

/// The worst of the slots' states (`Ok` without slots).
pub fn worst(slots: &[SlotWal], alert_bytes: u64) -> SlotHealth {
    let rank = |h: SlotHealth| match h {
        SlotHealth::Ok => 0,
        SlotHealth::Retaining => 1,
        SlotHealth::Lost => 2,
    };
    slots.iter().map(|s| s.health(alert_bytes)).max_by_key(|h| rank(*h)).unwrap_or(SlotHealth::Ok)
}

/// The logical slots of the connected database (other databases' slots are other
/// deployments' business; `pg_replication_slots` is readable without privileges).
#[tracing::instrument(name = "replication.slots", skip_all, err)]
pub async fn slots(pool: &PgPool) -> Result<Vec<SlotWal>, sqlx::Error> {
    sqlx::query_as(
        "select slot_name::text as name, active, wal_status, invalidation_reason,
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 as retained_wal_bytes,
                safe_wal_size as safe_wal_bytes
         from pg_replication_slots
         where database = current_database() and slot_type = 'logical'
         order by slot_name",
    )
    .fetch_all(pool)
    .await
}

/// Sets `replication_slot_retained_wal_bytes{slot}` and `replication_slot_lost{slot}`
/// (1 once invalidated), so an alert can fire long before the disk is full. A slot seen
/// before and gone now (dropped) reads 0 on both, rather than its last value forever.
pub fn record_gauges(slots: &[SlotWal]) {
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let set = |name: &str, retained: f64, lost: bool| {
        metrics::gauge!("replication_slot_retained_wal_bytes", "slot" => name.to_owned()).set(retained);
        metrics::gauge!("replication_slot_lost", "slot" => name.to_owned()).set(if lost { 1.0 } else { 0.0 });
    };
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for gone in seen.iter().filter(|n| !slots.iter().any(|s| &s.name == *n)) {
        set(gone, 0.0, false);
    }
    seen.clear();
    for s in slots {
        set(&s.name, s.retained_wal_bytes.unwrap_or(0).max(0) as f64, s.health(u64::MAX) == SlotHealth::Lost);
        seen.insert(s.name.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(wal_status: &str, retained: i64, reason: Option<&str>) -> SlotWal {
        SlotWal {
            name: "s".into(),
            active: false,
            wal_status: Some(wal_status.into()),
            invalidation_reason: reason.map(Into::into),
            retained_wal_bytes: Some(retained),
            safe_wal_bytes: None,
        }
    }

    #[test]
    fn a_slot_is_judged_by_its_retained_wal_and_postgres_status() {
        assert_eq!(slot("reserved", 10, None).health(100), SlotHealth::Ok);
        assert_eq!(slot("reserved", 101, None).health(100), SlotHealth::Retaining);
        assert_eq!(slot("unreserved", 10, None).health(100), SlotHealth::Retaining);
        assert_eq!(slot("lost", 0, None).health(100), SlotHealth::Lost);
        assert_eq!(slot("lost", 0, Some("wal_removed")).health(100), SlotHealth::Lost);
        assert_eq!(worst(&[slot("reserved", 1, None), slot("lost", 0, None)], 100), SlotHealth::Lost);
        assert_eq!(worst(&[], 100), SlotHealth::Ok);
    }

    #[test]
    fn the_alert_threshold_is_a_positive_number_of_mib() {
        assert_eq!(alert_bytes(None), Ok(DEFAULT_WAL_ALERT_BYTES));
        assert_eq!(alert_bytes(Some(" ")), Ok(DEFAULT_WAL_ALERT_BYTES));
        assert_eq!(alert_bytes(Some("2")), Ok(2 << 20));
        assert!(
            alert_bytes(Some("0")).is_err() && alert_bytes(Some("-1")).is_err() && alert_bytes(Some("1GB")).is_err()
        );
    }
}
