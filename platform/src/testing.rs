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
        Self::create_on(&database_url(), max).await
    }

    /// A test database on another server (a [`ScratchCluster`]).
    pub async fn create_on(base_url: &str, max: u32) -> Self {
        match ScratchDatabase::create(base_url, max).await {
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

/// A private PostgreSQL cluster (`scripts/stack.sh scratch-pg`) for a test that changes
/// server-wide settings or lets Postgres invalidate a slot: 1 MB WAL segments and
/// `max_slot_wal_keep_size` of `keep_mb`, on a free loopback port. Stopped and deleted on
/// drop, also when the test fails. Declare it before the databases created on it, so they
/// are dropped first.
pub struct ScratchCluster {
    dir: std::path::PathBuf,
    /// The app role's URL on this cluster (it may create databases, replicate and
    /// `CHECKPOINT`).
    pub url: String,
}

impl ScratchCluster {
    pub fn start(keep_mb: u32) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port for a scratch cluster: {e}"));
        let dir = std::env::temp_dir().join(format!("fib-cluster-{}", uuid::Uuid::new_v4().simple()));
        let out = std::process::Command::new("bash")
            .arg(stack_script())
            .args(["scratch-pg", "up"])
            .arg(&dir)
            .args([port.to_string(), keep_mb.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/stack.sh: {e}"));
        let cluster = Self { dir, url: String::from_utf8_lossy(&out.stdout).trim().to_string() };
        assert!(
            out.status.success() && cluster.url.starts_with("postgres://"),
            "scratch cluster did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }
}

impl ScratchCluster {
    /// Restarts the server (a fast shutdown: every connection is cut, as in a crash or a
    /// failover) on the same port; returns once it accepts connections again.
    pub fn restart(&self) {
        let out = std::process::Command::new("bash")
            .arg(stack_script())
            .args(["scratch-pg", "restart"])
            .arg(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/stack.sh: {e}"));
        assert!(out.status.success(), "scratch cluster did not restart: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("bash").arg(stack_script()).args(["scratch-pg", "down"]).arg(&self.dir).output();
    }
}

fn stack_script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack.sh")
}
