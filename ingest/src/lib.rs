//! Change data capture: a logical replication slot (pgoutput) feeds Arrow record batches
//! into a Parquet lake with a manifest, a current-state view per table in DataFusion,
//! and an in-process change feed.
//!
//! Transport is `pgwire-replication` (replication protocol, keepalives, standby status);
//! `pg_walstream` decodes pgoutput. sqlx cannot speak replication; it does the snapshot
//! copy and the catalog reads.

pub mod batch;
pub mod capture;
pub mod compact;
pub mod config;
pub mod erase;
pub mod error;
pub mod feed;
pub mod lake;
pub mod pgtype;
pub mod schema;
pub mod slot;
pub mod snapshot;
pub mod status;
pub mod view;

pub use capture::{Ingest, Progress, Running};
pub use config::IngestConfig;
pub use error::IngestError;
pub use feed::{ChangeBatch, ChangeFeed};
pub use lake::{Lake, Manifest};
