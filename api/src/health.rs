//! `/health`: is the process able to serve, and is anything about to take it down?
//! Postgres and Redis decide the status code (503 when either is down); a replication
//! slot keeping too much WAL, or invalidated, makes the status `degraded` with 200 — the
//! API still serves, but an operator must act before the disk fills (see
//! `fibonacco_platform::replication`).

use std::{collections::BTreeMap, time::Duration};

use axum::{Json, extract::State, http::StatusCode};
use fibonacco_platform::{
    replication::{self, SlotHealth, SlotWal},
    supervise::{self, PartStatus},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every check passed, else `degraded`.
    pub status: &'static str,
    pub checks: Checks,
    /// The logical replication slots of this database (the lake's capture) and the WAL
    /// each keeps.
    pub replication_slots: Vec<SlotWal>,
    /// The long-running parts this process supervises, by name (`capture`,
    /// `pipelines_watch` in `fibonacco run`; none in `fibonacco api`): state, restarts and
    /// the kind of the last failure.
    pub parts: BTreeMap<String, PartStatus>,
    pub version: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub postgres: &'static str,
    pub redis: &'static str,
    /// `ok`; `retaining` (a slot keeps more WAL than `INGEST_WAL_ALERT_MB`, or Postgres is
    /// about to invalidate it); `lost` (a slot was invalidated: the capture needs a new
    /// snapshot); `unknown` (the slots could not be read).
    pub replication: &'static str,
    /// `ok`, or `degraded` while a supervised part is restarting or has failed (the API
    /// serves; what the part derives goes stale).
    pub background: &'static str,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Serving; `degraded` when a replication slot needs an operator or a background part is restarting or failed", body = Health),
        (status = 503, description = "Postgres or Redis is down", body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let pg = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query_scalar::<_, i32>("select 1").fetch_one(&state.pool));
    let mut redis = state.redis.clone();
    let rd = tokio::time::timeout(CHECK_TIMEOUT, fibonacco_platform::cache::ping(&mut redis));
    let slots = tokio::time::timeout(CHECK_TIMEOUT, replication::slots(&state.pool));
    let (pg, rd, slots) = tokio::join!(pg, rd, slots);
    let postgres = if matches!(pg, Ok(Ok(1))) { "ok" } else { "down" };
    let redis = if matches!(rd, Ok(Ok(()))) { "ok" } else { "down" };
    let (replication, slots) = match slots {
        Ok(Ok(slots)) => {
            replication::record_gauges(&slots);
            let health = match replication::worst(&slots, state.config.wal_alert_bytes) {
                SlotHealth::Ok => "ok",
                SlotHealth::Retaining => "retaining",
                SlotHealth::Lost => "lost",
            };
            (health, slots)
        }
        _ => ("unknown", Vec::new()),
    };
    let parts: BTreeMap<String, PartStatus> =
        supervise::parts().into_iter().map(|(name, status)| (name.to_owned(), status)).collect();
    let background = if parts.values().any(PartStatus::is_degraded) { "degraded" } else { "ok" };
    let serving = postgres == "ok" && redis == "ok";
    let healthy = serving && replication == "ok" && background == "ok";
    if !healthy {
        tracing::warn!(postgres, redis, replication, background, "health check failed");
    }
    let status = if serving { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(Health {
            status: if healthy { "ok" } else { "degraded" },
            checks: Checks { postgres, redis, replication, background },
            replication_slots: slots,
            parts,
            version: env!("CARGO_PKG_VERSION"),
        }),
    )
}
