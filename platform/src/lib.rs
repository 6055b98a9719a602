//! The shared kernel of the Fibonacco platform: configuration, the Postgres pool and
//! its embedded migrations, tenancy and row-level-security transactions, personal
//! access tokens, domain newtypes, the job queue and its worker loop, telemetry, and the
//! event types of outgoing webhooks. It
//! knows nothing about HTTP: the response envelopes (`envelope`) exist only with the
//! `http` feature, which the HTTP surfaces enable.

pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod drop_guard;
#[cfg(feature = "http")]
pub mod envelope;
pub mod llm;
pub mod queue;
pub mod quota;
pub mod replication;
pub mod scratch;
pub mod supervise;
pub mod telemetry;
pub mod tenancy;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use config::Config;
pub use tenancy::TenantId;

/// Installs the process-wide TLS crypto provider (ring, which sqlx already uses) once.
/// HTTP clients (reqwest is built without a provider of its own) need it before the
/// first client is built; the binary calls this at start, tests through their helpers.
pub fn install_tls_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
