//! Tests of the built `fibonacco` binary: its commands, and the processes it runs
//! (a worker finishing its job on SIGTERM, the capture surviving SIGKILLs, the search
//! service until SIGTERM). Each crate's own behaviour is tested in that crate's binary.

mod cli;
mod ingest;
mod pipelines;
mod search;
mod worker;

use std::process::Command;

/// The binary with a clean environment: `PATH`, this database, the stack's Redis, and
/// warnings only.
pub fn fibonacco(database_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fibonacco"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", fibonacco_platform::testing::redis_url())
        .env("RUST_LOG", "warn");
    cmd
}
