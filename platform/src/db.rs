//! The Postgres pool, the embedded migrations, and the two ways to open a transaction:
//! scoped to one tenant (row-level security on) or as a declared system task.

use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::{
    AssertSqlSafe, Either, PgConnection, PgPool, Postgres, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
};
use uuid::Uuid;

use crate::{config::Config, domain::Slug, tenancy::TenantId};

/// Every migration under `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[tracing::instrument(name = "db.connect", skip_all, fields(pool_max = config.db_pool_max))]
pub async fn connect(config: &Config) -> Result<PgPool, sqlx::Error> {
    connect_url(config.database_url.expose(), config.db_pool_max, config.db_acquire_timeout).await
}

pub async fn connect_url(url: &str, max: u32, acquire_timeout: Duration) -> Result<PgPool, sqlx::Error> {
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
pub async fn begin_tenant(pool: &PgPool, tenant: TenantId) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    begin_tenant_with(pool, tenant, &[]).await
}

/// [`begin_tenant`] with transaction-local settings (e.g. `hnsw.ef_search`) applied in
/// the same round trip. Names and values are compile-time constants, never user input.
pub async fn begin_tenant_with(
    pool: &PgPool,
    tenant: TenantId,
    settings: &[(&'static str, &'static str)],
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut statement = format!("begin; select set_config('app.tenant_id', '{}', true)", tenant.as_uuid().hyphenated());
    for (name, value) in settings {
        debug_assert!(!name.contains('\'') && !value.contains('\''));
        statement.push_str(&format!(", set_config('{name}', '{value}', true)"));
    }
    pool.begin_with(AssertSqlSafe(statement)).await
}

/// A transaction for work that spans tenants (migrations, seeding, token lookup,
/// maintenance). Callers must filter by tenant themselves where it matters.
#[tracing::instrument(name = "db.begin_system", skip_all)]
pub async fn begin_system(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with("begin; select set_config('app.bypass_rls', 'on', true)").await
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

/// A statement that [`fetch_scoped`] prepares on each connection the first time it is
/// used there (`PREPARE name(types) AS sql`), then runs by name.
pub struct ScopedStatement {
    pub name: &'static str,
    /// Parameter types, e.g. `"uuid, uuid"`.
    pub param_types: &'static str,
    pub sql: &'static str,
}

/// A value whose SQL literal cannot break out of its quotes: it is written only with
/// ASCII letters, digits and hyphens.
pub trait SafeLiteral: Sync {
    fn sql_literal(&self) -> String;
}

impl SafeLiteral for Uuid {
    fn sql_literal(&self) -> String {
        format!("'{}'", self.hyphenated())
    }
}

impl SafeLiteral for TenantId {
    fn sql_literal(&self) -> String {
        self.as_uuid().sql_literal()
    }
}

impl SafeLiteral for Slug {
    fn sql_literal(&self) -> String {
        // Slug::parse admits only [a-z0-9-].
        format!("'{}'", self.as_str())
    }
}

impl SafeLiteral for i64 {
    fn sql_literal(&self) -> String {
        self.to_string()
    }
}

/// Runs one write in one round trip, committed without waiting for the WAL flush
/// (`synchronous_commit` off for this transaction only), for tenant `tenant` when given.
///
/// For bookkeeping that something else can rebuild (batch counters, a campaign's
/// completion, which the dispatch sweep also does): a Postgres crash may lose the last
/// fraction of a second of these, never a claim or a send's outcome. The settings and the
/// statement share the implicit transaction of one simple-protocol message, so an error
/// rolls all of it back and leaves the connection clean. `statement` may only hold
/// [`SafeLiteral`]-formatted values.
#[tracing::instrument(name = "db.execute_relaxed", skip_all, err)]
pub async fn execute_relaxed(
    conn: &mut PgConnection,
    tenant: Option<TenantId>,
    statement: &str,
) -> Result<(), sqlx::Error> {
    let scope = match tenant {
        Some(t) => format!("select set_config('app.tenant_id', {}, true); ", t.sql_literal()),
        None => String::new(),
    };
    let message = format!("select set_config('synchronous_commit', 'off', true); {scope}{statement}");
    sqlx::raw_sql(AssertSqlSafe(message)).execute(conn).await?;
    Ok(())
}

/// Runs `statement` for `tenant` in one round trip and returns its rows.
///
/// The tenant setting and the statement travel as one simple-protocol message, so they
/// share one transaction (the caller's, or an implicit one that ends with the message):
/// row-level security sees the tenant and the setting dies with the transaction, exactly
/// as with [`begin_tenant`], but without the `BEGIN` and `COMMIT` round trips. The
/// statement itself is prepared once per connection, so it is planned like any other
/// prepared statement. Arguments are [`SafeLiteral`]s, so writing them into the message
/// cannot inject SQL.
#[tracing::instrument(name = "db.fetch_scoped", skip_all, fields(statement = statement.name))]
pub async fn fetch_scoped(
    conn: &mut PgConnection,
    tenant: TenantId,
    statement: &ScopedStatement,
    args: &[&dyn SafeLiteral],
) -> Result<Vec<PgRow>, sqlx::Error> {
    let args: Vec<String> = args.iter().map(|a| a.sql_literal()).collect();
    let core = format!(
        "select set_config('app.tenant_id', {}, true); execute {}({})",
        tenant.sql_literal(),
        statement.name,
        args.join(", ")
    );
    // In a caller's transaction a failed EXECUTE would abort it, so a savepoint (in the
    // same message) lets the first use on a connection recover and prepare.
    let in_transaction = sqlx::Connection::is_in_transaction(&*conn);
    let (message, results_before_ours) = if in_transaction {
        (format!("savepoint fib_scoped; {core}; release savepoint fib_scoped"), 2)
    } else {
        (core, 1)
    };
    match run_scoped(conn, &message, results_before_ours).await {
        // 26000: the statement is not prepared on this connection yet.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("26000") => {
            if in_transaction {
                sqlx::raw_sql("rollback to savepoint fib_scoped; release savepoint fib_scoped")
                    .execute(&mut *conn)
                    .await?;
            }
            let prepare = format!("prepare {}({}) as {}", statement.name, statement.param_types, statement.sql);
            sqlx::raw_sql(AssertSqlSafe(prepare)).execute(&mut *conn).await?;
            run_scoped(conn, &message, results_before_ours).await
        }
        other => other,
    }
}

/// Runs the message and keeps the rows of the statement after `skip` completed results.
async fn run_scoped(conn: &mut PgConnection, message: &str, skip: usize) -> Result<Vec<PgRow>, sqlx::Error> {
    let mut stream = sqlx::raw_sql(AssertSqlSafe(message.to_owned())).fetch_many(&mut *conn);
    let mut completed = 0;
    let mut rows = Vec::new();
    while let Some(item) = stream.try_next().await? {
        match item {
            Either::Left(_) => completed += 1,
            Either::Right(row) if completed == skip => rows.push(row),
            Either::Right(_) => {}
        }
    }
    Ok(rows)
}

/// One field of `COPY … FROM STDIN` text: `\N` for NULL, backslash escapes for the
/// characters the format reserves (used by the synthetic seed and the pipelines' writers).
pub fn copy_field(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}
