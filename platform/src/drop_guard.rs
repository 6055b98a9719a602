//! Async clean-up from a synchronous `Drop` (a scratch database, a benchmark's slot): the
//! work gets a thread and a runtime of its own, so it runs whether the drop happens inside
//! a runtime, outside one, or while unwinding from a panic, and a deadline so a drop never
//! hangs the process.

use std::{fmt::Display, future::Future, time::Duration};

/// Runs `work` to its end (or `deadline`) and waits for it; failures are logged as `what`.
pub fn finish<F, E>(what: String, deadline: Duration, work: F)
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    let cleanup = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            tracing::warn!("{what}: no runtime for the clean-up");
            return;
        };
        match runtime.block_on(async { tokio::time::timeout(deadline, work).await }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed"),
            Err(_) => tracing::warn!("{what} timed out"),
        }
    });
    let _ = cleanup.join();
}
