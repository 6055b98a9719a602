//! Where a run's time went: wall time per step, recorded in the run's `details`
//! (`pipeline_runs.details.stages_ms`) so a slow run can be read without a profiler.

use std::time::Instant;

pub struct Stages {
    last: Instant,
    spent: serde_json::Map<String, serde_json::Value>,
}

impl Stages {
    pub fn start() -> Self {
        Self { last: Instant::now(), spent: serde_json::Map::new() }
    }

    /// Records the time since the previous lap (or the start) under `name`.
    pub fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.record(name, now - self.last);
        self.last = now;
    }

    /// Records a duration measured elsewhere (e.g. on a blocking thread).
    pub fn record(&mut self, name: &str, spent: std::time::Duration) {
        self.spent.insert(name.to_string(), (spent.as_millis() as u64).into());
    }

    /// `details` with `stages_ms` added.
    pub fn into_details(self, mut details: serde_json::Value) -> serde_json::Value {
        if let Some(map) = details.as_object_mut() {
            map.insert("stages_ms".into(), serde_json::Value::Object(self.spent));
        }
        details
    }
}
