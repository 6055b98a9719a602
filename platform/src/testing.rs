//! Test support shared by every crate's tests and the benchmarks: a fresh, migrated
//! database per test, cloned from a template so each costs one `CREATE DATABASE`.
//!
//! The template's name carries a hash of the migrations, so a changed migration builds a
//! new template; `scripts/stack.sh drop-test-dbs` removes old ones.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, postgres::PgConnectOptions};

use crate::db;

/// The database URL for tests: `DATABASE_URL`, else the one the stack script wrote.
pub fn database_url() -> String {
    stack_setting("DATABASE_URL")
}

/// The Redis URL for tests, found like [`database_url`].
pub fn redis_url() -> String {
    stack_setting("REDIS_URL")
}

/// Any setting of the local stack (`SES_ENDPOINT`, `AWS_ACCESS_KEY_ID`, …), found like
/// [`database_url`].
pub fn stack_setting(key: &str) -> String {
    try_stack_setting(key).unwrap_or_else(|| {
        panic!("{key} is not set and .stack/env is missing: run `scripts/stack.sh up` (or `make test`)")
    })
}

/// [`stack_setting`] for settings a stack may lack.
pub fn try_stack_setting(key: &str) -> Option<String> {
    if let Ok(value) = std::env::var(key) {
        return Some(value);
    }
    let env_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../.stack/env");
    std::fs::read_to_string(env_file)
        .ok()
        .and_then(|t| crate::config::parse_dotenv(&t).into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
}

fn template_name() -> String {
    let mut hasher = Sha256::new();
    for m in db::MIGRATOR.iter() {
        hasher.update(m.version.to_le_bytes());
        hasher.update(&m.checksum);
    }
    format!("fib_tpl_{}", &hex::encode(hasher.finalize())[..16])
}

pub struct TestDatabase {
    pub pool: PgPool,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// Creates `fibtest_<uuid>` from the migrated template and connects a small pool.
    pub async fn create() -> Self {
        Self::create_with_pool_size(5).await
    }

    pub async fn create_with_pool_size(max: u32) -> Self {
        let base_url = database_url();
        let base: PgConnectOptions = base_url.parse().expect("DATABASE_URL is not a valid postgres URL");
        let template = template_name();
        let mut admin = PgConnection::connect_with(&base).await.expect("cannot connect to DATABASE_URL");
        ensure_template(&mut admin, &base, &template).await;

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
                Err(e) => panic!("cannot create test database {name}: {e}"),
            }
        }
        let _ = admin.close().await;
        let url = replace_database(&base_url, &name);
        let pool =
            db::connect_url(&url, max, Duration::from_secs(10)).await.expect("cannot connect to the test database");
        Self { pool, name, url }
    }
}

async fn ensure_template(admin: &mut PgConnection, base: &PgConnectOptions, template: &str) {
    // One builder at a time across all test processes.
    sqlx::query("select pg_advisory_lock(hashtext($1))")
        .bind(template)
        .execute(&mut *admin)
        .await
        .expect("advisory lock");
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(template)
        .fetch_one(&mut *admin)
        .await
        .expect("query pg_database");
    if !exists {
        let building = format!("{template}_building");
        let _ = sqlx::query(AssertSqlSafe(format!("drop database if exists {building}"))).execute(&mut *admin).await;
        sqlx::query(AssertSqlSafe(format!("create database {building}")))
            .execute(&mut *admin)
            .await
            .expect("create template");
        let mut conn = PgConnection::connect_with(&base.clone().database(&building)).await.expect("connect template");
        db::MIGRATOR.run(&mut conn).await.expect("migrations must apply to an empty database");
        conn.close().await.expect("close template connection");
        sqlx::query(AssertSqlSafe(format!("alter database {building} rename to {template}")))
            .execute(&mut *admin)
            .await
            .expect("rename template");
    }
    sqlx::query("select pg_advisory_unlock(hashtext($1))").bind(template).execute(&mut *admin).await.expect("unlock");
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
