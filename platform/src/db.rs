//! The Postgres pool, the embedded migrations, and the two ways to open a transaction:
//! scoped to one tenant (row-level security on) or as a declared system task.

use std::time::Duration;

use sqlx::{
    AssertSqlSafe, PgPool, Postgres, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{config::Config, tenancy::TenantId};

/// Every migration under `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[tracing::instrument(name = "db.connect", skip_all, fields(pool_max = config.db_pool_max))]
pub async fn connect(config: &Config) -> Result<PgPool, sqlx::Error> {
    connect_url(
        config.database_url.expose(),
        config.db_pool_max,
        config.db_acquire_timeout,
    )
    .await
}

pub async fn connect_url(
    url: &str,
    max: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        // The app-level settings are transaction-local (`set_config(.., true)`), so a
        // pooled connection never carries one request's tenant into the next.
        .connect_with(options.application_name("fibonacco"))
        .await
}

#[tracing::instrument(name = "db.migrate", skip_all)]
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// A transaction in which row-level security admits only `tenant`'s rows.
///
/// `BEGIN` and the setting travel in one simple-protocol round trip. The tenant id is a
/// parsed UUID, so formatting it into the statement cannot inject SQL.
#[tracing::instrument(name = "db.begin_tenant", skip_all)]
pub async fn begin_tenant(
    pool: &PgPool,
    tenant: TenantId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let statement = format!(
        "begin; select set_config('app.tenant_id', '{}', true)",
        tenant.as_uuid().hyphenated()
    );
    pool.begin_with(AssertSqlSafe(statement)).await
}

/// A transaction for work that spans tenants (migrations, seeding, token lookup,
/// maintenance). Callers must filter by tenant themselves where it matters.
#[tracing::instrument(name = "db.begin_system", skip_all)]
pub async fn begin_system(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with("begin; select set_config('app.bypass_rls', 'on', true)")
        .await
}

/// The name of the violated constraint, when `err` is a unique violation.
pub fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}

/// The name of the violated constraint, when `err` is a foreign-key violation.
pub fn foreign_key_violation(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => db.constraint(),
        _ => None,
    }
}
