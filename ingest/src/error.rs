//! One error enum for change data capture; each says what to do about it.

use crate::pgtype::ValueError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "wal_level is '{0}', logical replication needs 'logical': set wal_level = logical in postgresql.conf and restart PostgreSQL"
    )]
    WalLevel(String),
    #[error(
        "role '{0}' may not use replication: run ALTER ROLE {0} REPLICATION (as a superuser), or connect as a role that has it"
    )]
    NoReplicationPrivilege(String),
    #[error("table '{0}' does not exist; remove it from INGEST_TABLES or run the migrations")]
    MissingTable(String),
    #[error(
        "table '{0}' has no primary key: publishing it would make its UPDATE and DELETE fail; add a primary key or leave it out of INGEST_TABLES"
    )]
    NoPrimaryKey(String),
    #[error(
        "replication slot '{slot}' {what}; the lake cannot continue without a gap. Either run `fibonacco ingest --resnapshot` (drops the lake, its change history with it, and copies every table again) or set INGEST_AUTO_RESNAPSHOT=true (copies every table again into the same lake, keeping the history and recording the gap in the manifest and `fibonacco ingest status`)"
    )]
    SlotLost { slot: String, what: String },
    #[error(
        "the lake at {lake} belongs to slot '{found}', not '{expected}'; point INGEST_LAKE elsewhere or run with --resnapshot"
    )]
    LakeMismatch { lake: String, found: String, expected: String },
    #[error("replication slot '{0}' is in use by another process (another `fibonacco ingest`?)")]
    SlotBusy(String),
    #[error(
        "writing the lake failed ({0}); nothing after the last durable file was acknowledged, so a restart resumes there"
    )]
    Lake(#[from] LakeError),
    #[error("column {table}.{column}: {source}")]
    Value {
        table: String,
        column: String,
        #[source]
        source: ValueError,
    },
    #[error("replication protocol: {0}")]
    Protocol(String),
    #[error("replication connection: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("lake query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("bad configuration: {0}")]
    Config(String),
}

/// Failures of the lake's storage (local disk or object store).
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("file system: {0}")]
    Io(#[from] std::io::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("manifest: {0}")]
    Manifest(String),
}

impl fibonacco_platform::supervise::Fault for IngestError {
    /// What a restart can cure: connections, the server, the lake's storage, a slot still
    /// held by the walsender of a connection that just died. The rest waits for an
    /// operator: settings, privileges, tables, a lost slot, a value the decoder refuses
    /// (it would refuse it again).
    fn transient(&self) -> bool {
        matches!(
            self,
            Self::Replication(_)
                | Self::Database(_)
                | Self::Lake(_)
                | Self::Protocol(_)
                | Self::SlotBusy(_)
                | Self::Query(_)
        )
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::WalLevel(_) => "wal_level",
            Self::NoReplicationPrivilege(_) => "privilege",
            Self::MissingTable(_) | Self::NoPrimaryKey(_) => "table",
            Self::SlotLost { .. } => "slot_lost",
            Self::LakeMismatch { .. } => "lake_mismatch",
            Self::SlotBusy(_) => "slot_busy",
            Self::Lake(_) => "lake",
            Self::Value { .. } => "value",
            Self::Protocol(_) | Self::Replication(_) => "replication",
            Self::Database(_) => "database",
            Self::Query(_) => "query",
            Self::Config(_) => "config",
        }
    }
}
