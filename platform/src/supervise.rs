//! Long-running parts of a process that heal by themselves. Change data capture and the
//! pipelines' watch fail when Postgres restarts, a connection drops or the disk is full
//! for a moment; each such failure used to end the part for good while the process went on
//! serving, stale. [`supervise`] runs a part again after a failure a restart can cure
//! (exponential backoff from 1 s to 60 s, back to 1 s after a run that lasted a minute)
//! and gives up only on one it cannot (a configuration error, a lost slot), saying so.
//!
//! Each part's state is kept in one process-wide registry, like the metrics recorder: the
//! API's `/health` and the parts are built independently and meet only here.
//! `part_up{part}` and `part_restarts_total{part}` carry the same to `/metrics`.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Where a supervised part stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum PartState {
    /// Connecting, copying its first snapshot, catching up.
    Starting,
    /// Doing its work.
    Running,
    /// Failed; runs again after a backoff.
    Restarting,
    /// Failed in a way a restart cannot cure; an operator must act (the log says how).
    Failed,
    /// Ended because the process is shutting down.
    Stopped,
}

/// A part's state as `/health` and the status commands show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct PartStatus {
    pub state: PartState,
    /// Restarts since the process started.
    pub restarts: u64,
    /// The kind of the last failure (`replication`, `database`, `lake`, …). The full
    /// message goes to the log only: it can name hosts, tables or values, and `/health`
    /// answers anyone.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the part entered its current state.
    pub since: DateTime<Utc>,
}

impl PartStatus {
    fn new(state: PartState) -> Self {
        Self { state, restarts: 0, last_error: None, last_error_at: None, since: Utc::now() }
    }

    /// Restarting or failed: the process serves, but with stale derived data.
    pub fn is_degraded(&self) -> bool {
        matches!(self.state, PartState::Restarting | PartState::Failed)
    }
}

/// What a part's error says about running it again.
pub trait Fault: std::fmt::Display {
    /// A restart can cure it (a dropped connection, a restarting server, a full disk).
    fn transient(&self) -> bool;
    /// A short name for the status that identifies nothing and no one.
    fn kind(&self) -> &'static str;
}

static PARTS: Mutex<BTreeMap<&'static str, watch::Sender<PartStatus>>> = Mutex::new(BTreeMap::new());

fn sender(part: &'static str) -> watch::Sender<PartStatus> {
    let mut parts = PARTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    parts.entry(part).or_insert_with(|| watch::channel(PartStatus::new(PartState::Starting)).0).clone()
}

/// Every part this process has supervised, by name.
pub fn parts() -> BTreeMap<&'static str, PartStatus> {
    let parts = PARTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    parts.iter().map(|(name, tx)| (*name, tx.borrow().clone())).collect()
}

/// Follows one part's state (the capture writes it beside its lake for `ingest status`).
pub fn subscribe(part: &'static str) -> watch::Receiver<PartStatus> {
    sender(part).subscribe()
}

/// The part reached its working state (a capture streams, a watch listens).
pub fn running(part: &'static str) {
    set(part, PartState::Running, None);
}

fn set(part: &'static str, state: PartState, failure: Option<&'static str>) {
    sender(part).send_modify(|s| {
        if s.state != state {
            s.since = Utc::now();
        }
        s.state = state;
        if state == PartState::Restarting {
            s.restarts += 1;
        }
        if let Some(kind) = failure {
            s.last_error = Some(kind.to_owned());
            s.last_error_at = Some(Utc::now());
        }
    });
    metrics::gauge!("part_up", "part" => part).set(if state == PartState::Running { 1.0 } else { 0.0 });
    if state == PartState::Restarting {
        metrics::counter!("part_restarts_total", "part" => part).increment(1);
    }
}

/// Delays between restarts: doubling from `initial` to `max`, back to `initial` after a
/// run that lasted `settled` (a part that worked for a while failed afresh, not again).
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub settled: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, settled: Duration) -> Self {
        Self { initial, max, settled, next: initial }
    }

    /// The delay before the next run, after one that lasted `ran_for`.
    pub fn after(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.settled {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60), Duration::from_secs(60))
    }
}

/// Resolves once `stop` holds `true` (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs `attempt` until it ends without error, `stop` turns true, or it fails in a way a
/// restart cannot cure (that error is returned). Each attempt should finish soon after
/// `stop` turns true; it calls [`running`] once it works.
#[tracing::instrument(skip(backoff, stop, attempt))]
pub async fn supervise<E, F, Fut>(
    part: &'static str,
    mut backoff: Backoff,
    stop: watch::Receiver<bool>,
    mut attempt: F,
) -> Result<(), E>
where
    E: Fault,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    loop {
        set(part, PartState::Starting, None);
        let started = Instant::now();
        let result = attempt().await;
        if *stop.borrow() {
            set(part, PartState::Stopped, None);
            return result;
        }
        let error = match result {
            Ok(()) => {
                set(part, PartState::Stopped, None);
                return Ok(());
            }
            Err(e) => e,
        };
        if !error.transient() {
            tracing::error!(part, kind = error.kind(), error = %error, "stopped; a restart cannot cure this");
            set(part, PartState::Failed, Some(error.kind()));
            return Err(error);
        }
        let delay = backoff.after(started.elapsed());
        tracing::warn!(part, kind = error.kind(), error = %error, retry_in_ms = delay.as_millis() as u64, "failed; restarting");
        set(part, PartState::Restarting, Some(error.kind()));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(stop.clone()) => {
                set(part, PartState::Stopped, None);
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Oops(bool);

    impl std::fmt::Display for Oops {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "oops")
        }
    }

    impl Fault for Oops {
        fn transient(&self) -> bool {
            self.0
        }
        fn kind(&self) -> &'static str {
            if self.0 { "blip" } else { "config" }
        }
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_and_starts_over_after_a_settled_run() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5), Duration::from_secs(60));
        let short = Duration::from_millis(10);
        let delays: Vec<u64> = (0..5).map(|_| b.after(short).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(b.after(Duration::from_secs(61)).as_secs(), 1);
        assert_eq!(b.after(short).as_secs(), 2);
    }

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(4), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_transient_failure_is_run_again_and_counted_and_a_permanent_one_ends_it() {
        let (_stop_tx, stop) = watch::channel(false);
        let calls = AtomicU32::new(0);
        let result = supervise("test_part", quick(), stop, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(Oops(true)),
                _ => {
                    running("test_part");
                    Err(Oops(false))
                }
            }
        })
        .await;
        assert!(matches!(result, Err(Oops(false))));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let status = parts()["test_part"].clone();
        assert_eq!((status.state, status.restarts), (PartState::Failed, 2));
        assert_eq!(status.last_error.as_deref(), Some("config"));
        assert!(status.is_degraded());
    }

    #[tokio::test]
    async fn stopping_during_the_backoff_ends_it_at_once() {
        let (stop_tx, stop) = watch::channel(false);
        // An hour's backoff: only the stop can end the wait within the test's time.
        let hour = Duration::from_secs(3600);
        let task =
            tokio::spawn(supervise("stop_part", Backoff::new(hour, hour, hour), stop, || async { Err(Oops(true)) }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop_tx.send(true).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(ended.expect("stopped within 5 s of an hour's backoff").unwrap().is_ok());
        let status = parts()["stop_part"].clone();
        assert_eq!(status.state, PartState::Stopped);
        assert!(status.restarts >= 1 && !status.is_degraded());
    }
}
