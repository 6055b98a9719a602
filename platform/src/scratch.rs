//! Fresh, migrated databases for work that must not touch the application's own: the
//! benchmarks (`fibonacco bench …`) and, through `testing`, every test. Each is cloned from
//! a template, so one costs a `CREATE DATABASE`.
//!
//! The template's name carries a hash of the migrations, so a changed migration builds a
//! new template; `scripts/stack.sh drop-test-dbs` removes old ones and the scratch
//! databases themselves (`fibtest_*`).

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, postgres::PgConnectOptions};

use crate::db;

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("DATABASE_URL is not a valid postgres URL")]
    Url(#[source] sqlx::Error),
    #[error("cannot connect to the server of DATABASE_URL")]
    Connect(#[source] sqlx::Error),
    #[error("cannot build the migrated template {template}")]
    Template {
        template: String,
        #[source]
        source: anyhow::Error,
    },
    #[error("cannot create the scratch database {name}")]
    Create {
        name: String,
        #[source]
        source: sqlx::Error,
    },
}

fn template_name() -> String {
    let mut hasher = Sha256::new();
    for m in db::MIGRATOR.iter() {
        hasher.update(m.version.to_le_bytes());
        hasher.update(&m.checksum);
    }
    format!("fib_tpl_{}", &hex::encode(hasher.finalize())[..16])
}

/// A database of its own (`fibtest_<uuid>`), migrated, with a pool of `max` connections.
///
/// Dropping it drops the database and first its replication slots, also when a test or a
/// benchmark fails (unwinding runs the drop): an inactive slot left behind would keep
/// every WAL segment written after it until the disk is full. `FIB_KEEP_SCRATCH_DBS=1`
/// keeps them for a post-mortem (`scripts/stack.sh drop-test-dbs` removes them later).
pub struct ScratchDatabase {
    pub pool: PgPool,
    pub name: String,
    pub url: String,
    /// The URL it was created from: the connection that drops it.
    base_url: String,
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if std::env::var_os("FIB_KEEP_SCRATCH_DBS").is_some_and(|v| v != "0") {
            return;
        }
        let (base, name) = (self.base_url.clone(), self.name.clone());
        crate::drop_guard::finish(format!("dropping scratch database {name}"), Duration::from_secs(90), async move {
            drop_database(&base, &name).await
        });
    }
}

/// Ends the walsenders of `name`'s slots, then drops the database with its slots (closing
/// any connection still open to it). A capture task may reconnect in between: retried.
#[tracing::instrument(name = "scratch.drop", skip(base_url), err)]
pub async fn drop_database(base_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let base: PgConnectOptions = base_url.parse()?;
    let mut admin = PgConnection::connect_with(&base).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        sqlx::query(
            "select pg_terminate_backend(active_pid) from pg_replication_slots
             where database = $1 and active_pid is not null",
        )
        .bind(name)
        .execute(&mut admin)
        .await?;
        // DROP DATABASE drops the database's inactive slots itself (and refuses while one
        // is active, hence the terminate above).
        let dropped = sqlx::query(AssertSqlSafe(format!("drop database if exists {name} with (force)")))
            .execute(&mut admin)
            .await
            .map(|_| ());
        match dropped {
            Ok(()) => break,
            // An autovacuum worker busy with a freshly loaded table cannot be terminated by
            // a non-superuser ("permission denied to terminate process"): wait it out, for
            // up to a minute.
            Err(e) if attempt < 40 => {
                tracing::debug!(error = %e, "retrying the scratch database's drop");
                tokio::time::sleep(Duration::from_millis((100 * attempt).min(2000))).await;
            }
            Err(e) => return Err(e),
        }
    }
    let _ = admin.close().await;
    Ok(())
}

impl ScratchDatabase {
    /// Creates a database on the server of `base_url` from the migrated template.
    #[tracing::instrument(name = "scratch.create", skip(base_url), err)]
    pub async fn create(base_url: &str, max: u32) -> Result<Self, ScratchError> {
        let base: PgConnectOptions = base_url.parse().map_err(ScratchError::Url)?;
        let template = template_name();
        let mut admin = PgConnection::connect_with(&base).await.map_err(ScratchError::Connect)?;
        ensure_template(&mut admin, &base, &template)
            .await
            .map_err(|source| ScratchError::Template { template: template.clone(), source })?;

        let name = format!("fibtest_{}", uuid::Uuid::new_v4().simple());
        let create = format!("create database {name} template {template}");
        let mut attempt = 0;
        loop {
            match sqlx::query(AssertSqlSafe(create.clone())).execute(&mut admin).await {
                Ok(_) => break,
                // Another process may be connected to the template for an instant.
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "retrying create database");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(source) => return Err(ScratchError::Create { name, source }),
            }
        }
        let _ = admin.close().await;
        let url = replace_database(base_url, &name);
        let pool = db::connect_url(&url, max, Duration::from_secs(10))
            .await
            .map_err(|source| ScratchError::Create { name: name.clone(), source })?;
        Ok(Self { pool, name, url, base_url: base_url.to_string() })
    }
}

async fn ensure_template(admin: &mut PgConnection, base: &PgConnectOptions, template: &str) -> anyhow::Result<()> {
    // One builder at a time across all processes.
    sqlx::query("select pg_advisory_lock(hashtext($1))").bind(template).execute(&mut *admin).await?;
    let built = build_template(admin, base, template).await;
    sqlx::query("select pg_advisory_unlock(hashtext($1))").bind(template).execute(&mut *admin).await?;
    built
}

async fn build_template(admin: &mut PgConnection, base: &PgConnectOptions, template: &str) -> anyhow::Result<()> {
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(template)
        .fetch_one(&mut *admin)
        .await?;
    if exists {
        return Ok(());
    }
    let building = format!("{template}_building");
    let _ = sqlx::query(AssertSqlSafe(format!("drop database if exists {building}"))).execute(&mut *admin).await;
    sqlx::query(AssertSqlSafe(format!("create database {building}"))).execute(&mut *admin).await?;
    let mut conn = PgConnection::connect_with(&base.clone().database(&building)).await?;
    db::MIGRATOR.run(&mut conn).await?;
    conn.close().await?;
    sqlx::query(AssertSqlSafe(format!("alter database {building} rename to {template}"))).execute(&mut *admin).await?;
    Ok(())
}

/// Swaps the database name (the path) of a postgres URL, keeping any query string.
pub fn replace_database(url: &str, database: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let authority_start = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[authority_start..].find('/') {
        Some(i) => &head[..authority_start + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_database_name() {
        assert_eq!(super::replace_database("postgres://u:p@h:5/app", "t1"), "postgres://u:p@h:5/t1");
        assert_eq!(
            super::replace_database("postgres://u:p@h:5/app?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(super::replace_database("postgres://h", "t1"), "postgres://h/t1");
    }
}
