//! The server side of capture: checks that logical replication can work, the publication,
//! and the replication slot's state.

use fibonacco_platform::replication::{self, SlotHealth};
use sqlx::{AssertSqlSafe, PgPool};

use crate::{config::IngestConfig, error::IngestError, snapshot::quote_ident};

/// Refuses to start, with the fix in the message, when the server cannot replicate.
#[tracing::instrument(skip_all)]
pub async fn preflight(pool: &PgPool, config: &IngestConfig) -> Result<(), IngestError> {
    let wal_level: String = sqlx::query_scalar("select current_setting('wal_level')").fetch_one(pool).await?;
    if wal_level != "logical" {
        return Err(IngestError::WalLevel(wal_level));
    }
    let (role, allowed): (String, bool) =
        sqlx::query_as("select rolname::text, rolreplication or rolsuper from pg_roles where rolname = current_user")
            .fetch_one(pool)
            .await?;
    if !allowed {
        return Err(IngestError::NoReplicationPrivilege(role));
    }
    for table in &config.tables {
        let found: Option<(bool, String)> = sqlx::query_as(
            "select exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary), c.relreplident::text \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = current_schema() and c.relname = $1 and c.relkind in ('r', 'p')",
        )
        .bind(table)
        .fetch_optional(pool)
        .await?;
        match found {
            None => return Err(IngestError::MissingTable(table.clone())),
            // Replica identity FULL works without a key but every update then logs the whole
            // row; the lake's current-state view needs a key anyway.
            Some((false, _)) => return Err(IngestError::NoPrimaryKey(table.clone())),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Creates the publication over exactly the configured tables, or makes an existing one
/// match them.
#[tracing::instrument(skip_all, fields(publication = %config.publication))]
pub async fn ensure_publication(pool: &PgPool, config: &IngestConfig) -> Result<(), IngestError> {
    let tables = config.tables.iter().map(|t| quote_ident(t)).collect::<Vec<_>>().join(", ");
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_publication where pubname = $1)")
        .bind(&config.publication)
        .fetch_one(pool)
        .await?;
    let name = quote_ident(&config.publication);
    let sql = if exists {
        format!("alter publication {name} set table {tables}")
    } else {
        format!("create publication {name} for table {tables}")
    };
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await?;
    Ok(())
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotState {
    pub name: String,
    pub active: bool,
    pub confirmed_flush_lsn: Option<u64>,
    pub restart_lsn: Option<u64>,
    pub wal_status: Option<String>,
    pub invalidation_reason: Option<String>,
    /// WAL Postgres keeps for this slot: from its restart point to the current position.
    pub retained_wal_bytes: Option<i64>,
    /// WAL that may still be written before `max_slot_wal_keep_size` invalidates the slot
    /// (`None` without that limit: then only the disk stops it).
    pub safe_wal_bytes: Option<i64>,
}

impl SlotState {
    /// The slot against the WAL alert threshold, by the rule `/health` applies.
    pub fn health(&self, alert_bytes: u64) -> SlotHealth {
        replication::judge(
            self.wal_status.as_deref(),
            self.invalidation_reason.as_deref(),
            self.retained_wal_bytes,
            alert_bytes,
        )
    }

    /// Why the slot can no longer feed the lake without a gap, if it cannot.
    pub fn lost(&self) -> Option<String> {
        if let Some(reason) = &self.invalidation_reason {
            return Some(format!("was invalidated ({reason})"));
        }
        if self.wal_status.as_deref() == Some("lost") {
            return Some("lost WAL it still needed (max_slot_wal_keep_size?)".into());
        }
        None
    }
}

#[tracing::instrument(skip(pool))]
pub async fn slot_state(pool: &PgPool, slot: &str) -> Result<Option<SlotState>, IngestError> {
    let row: Option<SlotRow> = sqlx::query_as(
        "select slot_name::text as name, active, confirmed_flush_lsn::text as confirmed, restart_lsn::text as restart, \
                wal_status, invalidation_reason, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 as retained, \
                safe_wal_size as safe \
         from pg_replication_slots where slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| SlotState {
        name: r.name,
        active: r.active,
        confirmed_flush_lsn: r.confirmed.as_deref().and_then(parse_lsn),
        restart_lsn: r.restart.as_deref().and_then(parse_lsn),
        wal_status: r.wal_status,
        invalidation_reason: r.invalidation_reason,
        retained_wal_bytes: r.retained,
        safe_wal_bytes: r.safe,
    }))
}

#[derive(sqlx::FromRow)]
struct SlotRow {
    name: String,
    active: bool,
    confirmed: Option<String>,
    restart: Option<String>,
    wal_status: Option<String>,
    invalidation_reason: Option<String>,
    retained: Option<i64>,
    safe: Option<i64>,
}

/// Waits up to `wait` for the slot to have no session (the walsender of a process that
/// just died takes a moment to notice); `Ok(None)` when there is no such slot.
#[tracing::instrument(skip(pool))]
pub async fn wait_inactive(
    pool: &PgPool,
    slot: &str,
    wait: std::time::Duration,
) -> Result<Option<SlotState>, IngestError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match slot_state(pool, slot).await? {
            Some(state) if state.active => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(IngestError::SlotBusy(slot.to_string()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return Ok(other),
        }
    }
}

/// Drops the slot; refuses while another session streams from it.
#[tracing::instrument(skip(pool))]
pub async fn drop_slot(pool: &PgPool, slot: &str) -> Result<(), IngestError> {
    match slot_state(pool, slot).await? {
        None => Ok(()),
        Some(state) if state.active => Err(IngestError::SlotBusy(slot.to_string())),
        Some(_) => {
            sqlx::query("select pg_drop_replication_slot($1)").bind(slot).execute(pool).await?;
            Ok(())
        }
    }
}

/// `16/B374D848` → u64.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Drops a slot when it goes out of scope — on success, on an early `?` return and on a
/// panic — for runs that create a slot they do not keep (benchmarks): a slot left behind
/// keeps every WAL segment written after it. A walsender still on it is ended first.
pub struct SlotGuard {
    database_url: String,
    slot: String,
}

impl SlotGuard {
    /// `database_url` is the slot's own database (a logical slot is dropped from there).
    pub fn new(database_url: &str, slot: &str) -> Self {
        Self { database_url: database_url.to_string(), slot: slot.to_string() }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let (url, slot) = (self.database_url.clone(), self.slot.clone());
        let what = format!("dropping replication slot {slot}");
        fibonacco_platform::drop_guard::finish(what, std::time::Duration::from_secs(30), async move {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await?;
            sqlx::query(
                "select pg_terminate_backend(active_pid) from pg_replication_slots
                 where slot_name = $1 and active_pid is not null",
            )
            .bind(&slot)
            .execute(&pool)
            .await?;
            wait_inactive(&pool, &slot, std::time::Duration::from_secs(15)).await?;
            drop_slot(&pool, &slot).await
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("zz"), None);
    }
}
