//! What `fibonacco ingest` captures and where it writes, from the environment.

use std::time::Duration;

use fibonacco_platform::config::Secret;

use crate::error::IngestError;

/// The tables the analytics read (the seed's names): customers, conversations and their
/// messages, campaigns and recipients, activities, orders, knowledge, content, ads,
/// surveys and responses.
pub const DEFAULT_TABLES: &[&str] = &[
    "crm_customers",
    "crm_conversations",
    "crm_conversation_messages",
    "outbound_campaigns",
    "outbound_campaign_recipients",
    "customer_activities",
    "orders",
    "services",
    "service_categories",
    "knowledge_base",
    "knowledge_votes",
    "articles",
    "generated_content",
    "ads",
    "surveys",
    "survey_responses",
];

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub database_url: Secret,
    /// `INGEST_SLOT` (default `fibonacco_lake`).
    pub slot: String,
    /// `INGEST_PUBLICATION` (default `fibonacco_lake`).
    pub publication: String,
    /// `INGEST_TABLES`: comma-separated (default [`DEFAULT_TABLES`]).
    pub tables: Vec<String>,
    /// `INGEST_LAKE`: a directory (default `lake`) or `s3://bucket/prefix`.
    pub lake: String,
    /// `INGEST_FLUSH_MS` (default 250): committed changes wait at most this long before
    /// they are written and acknowledged.
    pub flush_interval: Duration,
    /// `INGEST_FLUSH_MB` (default 32): buffered changes above this are written at once,
    /// inside a transaction too, so memory stays bounded whatever the transaction size.
    pub flush_bytes: usize,
    /// `INGEST_SNAPSHOT_PARALLELISM` (default 2): tables copied at once.
    pub snapshot_parallelism: usize,
    /// Rows per snapshot file.
    pub snapshot_batch_rows: usize,
    /// `INGEST_COMPACT_FILES` (default 16): a date partition of a table with this many
    /// small files is merged into one.
    pub compact_min_files: usize,
    /// Drop the slot and the lake and copy everything again.
    pub resnapshot: bool,
    /// `INGEST_AUTO_RESNAPSHOT` (default false): when the slot was invalidated or dropped,
    /// create a new one and copy the tables again on start, keeping the lake's files and
    /// recording the gap, instead of stopping with an error.
    pub auto_resnapshot: bool,
    /// `INGEST_WAL_ALERT_MB` (default 1024): `ingest status` warns when the slot keeps more
    /// WAL than this (the same threshold makes `/health` degraded).
    pub wal_alert_bytes: u64,
    /// How long a start waits for the slot's previous session (a process that just died)
    /// to go away before it reports the slot busy.
    pub slot_wait: Duration,
    /// Draw a progress bar during the snapshot.
    pub progress: bool,
}

impl IngestConfig {
    pub fn new(database_url: Secret, lake: impl Into<String>) -> Self {
        Self {
            database_url,
            slot: "fibonacco_lake".into(),
            publication: "fibonacco_lake".into(),
            tables: DEFAULT_TABLES.iter().map(|t| t.to_string()).collect(),
            lake: lake.into(),
            flush_interval: Duration::from_millis(250),
            flush_bytes: 32 << 20,
            snapshot_parallelism: 2,
            snapshot_batch_rows: 100_000,
            compact_min_files: 16,
            resnapshot: false,
            auto_resnapshot: false,
            wal_alert_bytes: fibonacco_platform::replication::DEFAULT_WAL_ALERT_BYTES,
            slot_wait: Duration::from_secs(15),
            progress: false,
        }
    }

    /// Reads the `INGEST_*` settings (from `lookup`: the environment, then `.env`) over
    /// [`IngestConfig::new`]'s defaults.
    pub fn from_lookup(database_url: Secret, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, IngestError> {
        let var = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let mut config = Self::new(database_url, var("INGEST_LAKE").unwrap_or_else(|| "lake".into()));
        if let Some(v) = var("INGEST_SLOT") {
            config.slot = identifier("INGEST_SLOT", &v)?;
        }
        if let Some(v) = var("INGEST_PUBLICATION") {
            config.publication = identifier("INGEST_PUBLICATION", &v)?;
        }
        if let Some(v) = var("INGEST_TABLES") {
            config.tables =
                v.split(',').map(|t| identifier("INGEST_TABLES", t.trim())).collect::<Result<Vec<_>, _>>()?;
        }
        let number = |k: &str, default: u64| -> Result<u64, IngestError> {
            match var(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| IngestError::Config(format!("{k} must be a positive integer, not {v:?}"))),
            }
        };
        config.flush_interval = Duration::from_millis(number("INGEST_FLUSH_MS", 250)?);
        config.flush_bytes = (number("INGEST_FLUSH_MB", 32)? as usize) << 20;
        config.snapshot_parallelism = number("INGEST_SNAPSHOT_PARALLELISM", 2)? as usize;
        config.compact_min_files = number("INGEST_COMPACT_FILES", 16)?.max(2) as usize;
        config.wal_alert_bytes = fibonacco_platform::replication::alert_bytes(var("INGEST_WAL_ALERT_MB").as_deref())
            .map_err(IngestError::Config)?;
        config.auto_resnapshot = match var("INGEST_AUTO_RESNAPSHOT").as_deref().map(str::trim) {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(v) => {
                return Err(IngestError::Config(format!("INGEST_AUTO_RESNAPSHOT must be true or false, not {v:?}")));
            }
        };
        Ok(config)
    }
}

/// Slot, publication and table names go into replication commands and DDL: lowercase
/// letters, digits and underscores only, so no quoting question arises.
pub fn identifier(setting: &str, value: &str) -> Result<String, IngestError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(value.to_string())
    } else {
        Err(IngestError::Config(format!(
            "{setting}: {value:?} is not a plain identifier (lowercase letters, digits, underscores; at most 63)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain() {
        assert!(identifier("X", "fibonacco_lake").is_ok());
        for bad in ["", "Lake", "a-b", "a;drop", "1abc", &"x".repeat(64)] {
            assert!(identifier("X", bad).is_err(), "{bad:?}");
        }
    }
}
