//! Where a run's time and memory went: wall time per step, and the process's peak
//! resident memory when each step ended (Linux), recorded in the run's `details`
//! (`pipeline_runs.details.stages_ms`, `peak_rss_mib`) so a slow or large run can be read
//! without a profiler. The peak is the process's: it includes whatever ran before.

use std::time::Instant;

pub struct Stages {
    last: Instant,
    spent: serde_json::Map<String, serde_json::Value>,
    peaks: serde_json::Map<String, serde_json::Value>,
}

impl Stages {
    pub fn start() -> Self {
        Self { last: Instant::now(), spent: serde_json::Map::new(), peaks: serde_json::Map::new() }
    }

    /// Records the time since the previous lap (or the start) under `name`.
    pub fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.record(name, now - self.last);
        self.last = now;
        if let Some(kib) = peak_rss_kib() {
            self.peaks.insert(name.to_string(), (kib / 1024).into());
        }
    }

    /// Records a duration measured elsewhere (e.g. on a blocking thread).
    pub fn record(&mut self, name: &str, spent: std::time::Duration) {
        self.spent.insert(name.to_string(), (spent.as_millis() as u64).into());
    }

    /// `details` with `stages_ms` added.
    pub fn into_details(self, mut details: serde_json::Value) -> serde_json::Value {
        if let Some(map) = details.as_object_mut() {
            map.insert("stages_ms".into(), serde_json::Value::Object(self.spent));
            if !self.peaks.is_empty() {
                map.insert("peak_rss_mib".into(), serde_json::Value::Object(self.peaks));
            }
        }
        details
    }
}

/// The process's peak resident memory (`VmHWM` of `/proc/self/status`) in KiB; None off
/// Linux.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
