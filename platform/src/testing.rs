//! Test support shared by every crate's tests (the `testing` feature, enabled by
//! dev-dependencies only): the local stack's settings and a fresh, migrated database per
//! test ([`crate::scratch`]).

use std::ops::Deref;

use crate::scratch::ScratchDatabase;

pub use crate::scratch::replace_database;

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

/// Polls `check` every 50 ms until it holds; fails the test naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A test's own database on the stack's server; panics (failing the test) when the stack
/// is not up.
pub struct TestDatabase(ScratchDatabase);

impl TestDatabase {
    /// Creates `fibtest_<uuid>` from the migrated template and connects a small pool.
    pub async fn create() -> Self {
        Self::create_with_pool_size(5).await
    }

    pub async fn create_with_pool_size(max: u32) -> Self {
        match ScratchDatabase::create(&database_url(), max).await {
            Ok(db) => Self(db),
            Err(e) => panic!("cannot create a test database: {:#}", anyhow::Error::from(e)),
        }
    }
}

impl Deref for TestDatabase {
    type Target = ScratchDatabase;

    fn deref(&self) -> &ScratchDatabase {
        &self.0
    }
}
