//! The shared kernel of the Fibonacco platform: configuration, the Postgres pool and
//! its embedded migrations, tenancy and row-level-security transactions, personal
//! access tokens, domain newtypes and telemetry. It knows nothing about HTTP.

pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod queue;
pub mod telemetry;
pub mod tenancy;
pub mod testing;

pub use config::Config;
pub use tenancy::TenantId;
