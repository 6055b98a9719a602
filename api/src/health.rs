//! `/health`: is the process able to serve? Checks Postgres and Redis.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every check passed, else `degraded`.
    pub status: &'static str,
    pub checks: Checks,
    pub version: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub postgres: &'static str,
    pub redis: &'static str,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "A dependency is down", body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let pg = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query_scalar::<_, i32>("select 1").fetch_one(&state.pool));
    let mut redis = state.redis.clone();
    let rd = tokio::time::timeout(CHECK_TIMEOUT, fibonacco_platform::cache::ping(&mut redis));
    let (pg, rd) = tokio::join!(pg, rd);
    let postgres = if matches!(pg, Ok(Ok(1))) { "ok" } else { "down" };
    let redis = if matches!(rd, Ok(Ok(()))) { "ok" } else { "down" };
    let healthy = postgres == "ok" && redis == "ok";
    if !healthy {
        tracing::warn!(postgres, redis, "health check failed");
    }
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(Health {
            status: if healthy { "ok" } else { "degraded" },
            checks: Checks { postgres, redis },
            version: env!("CARGO_PKG_VERSION"),
        }),
    )
}
