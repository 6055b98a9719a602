//! `fibonacco scheduler`: the seed's scheduled tasks plus scheduled publishing and
//! campaign starts, on cron expressions (`SCHEDULE_<TASK>` overrides each one).
//!
//! A tick of a task runs once however many schedulers are up: each instance inserts
//! `(task, tick)` into `scheduled_task_runs` and only the one whose insert lands runs it.
//! Tasks marked `no_overlap` are skipped (and the skip recorded) while an earlier run of
//! theirs is unfinished. Runs enqueue jobs or make small status changes; slow work is
//! the workers'.

pub mod tasks;

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use fibonacco_platform::queue::Queue;
use sqlx::PgPool;

/// A provider call (30 s at most) plus the outcome record's retries (about 7 s), with room.
pub const MIN_ATTEMPT_EXPIRY: Duration = Duration::from_secs(45);

/// A scheduled task as configured.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: &'static str,
    pub description: &'static str,
    pub cron: String,
    schedule: cron::Schedule,
    /// Skip a tick while an earlier run is unfinished (Laravel's `withoutOverlapping`).
    pub no_overlap: bool,
}

/// The tasks, their default schedules (seconds first: `sec min hour day month weekday`).
const DEFAULTS: &[(&str, &str, &str, bool)] = &[
    ("embeddings:process", "0 */5 * * * *", "queue embedding jobs for pending knowledge entries", true),
    ("embeddings:generate-pending", "0 0 * * * *", "mark entries without an embedding pending and queue them", true),
    (
        "cleanup:old-data",
        "0 30 3 * * *",
        "delete old activities, failed jobs, batches, task runs, finished imports and expired tokens",
        true,
    ),
    ("content:publish-scheduled", "0 * * * * *", "publish content whose scheduled time has come", false),
    ("campaigns:start-scheduled", "0 * * * * *", "start campaigns whose scheduled time has come", false),
    (
        "imports:resume",
        "0 */5 * * * *",
        "re-queue customer imports and exports whose job is gone (the imports queue drained, the work unfinished)",
        true,
    ),
    ("webhooks:deliver", "*/5 * * * * *", "queue webhook deliveries whose time has come, one job per endpoint", true),
    (
        "campaigns:ab-decide",
        "15 * * * * *",
        "decide A/B tests whose wait is over and send the winner to the rest of the audience",
        true,
    ),
    (
        "campaigns:dispatch",
        "30 * * * * *",
        "expire unfinished sends to unknown, recover recipients whose job Redis lost, re-queue pending ones",
        false,
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{variable}: `{cron}` is not a cron expression: {reason}")]
    BadCron { variable: String, cron: String, reason: String },
    #[error("no task named `{0}` (see `fibonacco schedule list`)")]
    UnknownTask(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

fn variable(name: &str) -> String {
    format!("SCHEDULE_{}", name.to_ascii_uppercase().replace([':', '-'], "_"))
}

impl Task {
    /// The next fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&after).next()
    }
}

/// Every task with its cron from `SCHEDULE_<TASK>` (e.g. `SCHEDULE_EMBEDDINGS_PROCESS`) or the default.
pub fn tasks(get: impl Fn(&str) -> Option<String>) -> Result<Vec<Task>, ScheduleError> {
    DEFAULTS
        .iter()
        .map(|(name, default, description, no_overlap)| {
            let var = variable(name);
            let cron = get(&var).filter(|v| !v.trim().is_empty()).unwrap_or_else(|| (*default).to_owned());
            let schedule = cron::Schedule::from_str(cron.trim()).map_err(|e| ScheduleError::BadCron {
                variable: var,
                cron: cron.clone(),
                reason: e.to_string(),
            })?;
            Ok(Task { name, description, cron, schedule, no_overlap: *no_overlap })
        })
        .collect()
}

pub fn find<'a>(tasks: &'a [Task], name: &str) -> Result<&'a Task, ScheduleError> {
    tasks.iter().find(|t| t.name == name).ok_or_else(|| ScheduleError::UnknownTask(name.to_owned()))
}

#[derive(Clone)]
pub struct Scheduler {
    pub pool: PgPool,
    pub queue: Queue,
    /// Names this process in `scheduled_task_runs`.
    pub instance: String,
    /// An unfinished run older than this no longer blocks the next (its process died).
    pub stale_after: Duration,
    /// The queue's `retry_after`: a queued recipient older than this whose queue has
    /// drained lost its job (Redis lost data) and is dispatched again.
    pub retry_after: Duration,
    /// A send still `sending` after this did not finish (its worker died, or the provider
    /// never answered): it becomes `unknown`. Longer than a provider call plus the outcome
    /// record's retries, so a slow send records its own outcome first.
    pub attempt_expiry: Duration,
}

/// What happened to one tick of one task on this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// This instance ran it; the detail says what it did.
    Ran(String),
    /// Another instance took the tick.
    TakenElsewhere,
    /// An earlier run is still going.
    SkippedOverlap,
    Failed(String),
}

impl Scheduler {
    pub fn new(pool: PgPool, queue: Queue) -> Self {
        let instance = format!("{}:{}", hostname(), std::process::id());
        Self {
            pool,
            queue,
            instance,
            stale_after: Duration::from_secs(3600),
            retry_after: Duration::from_secs(90),
            attempt_expiry: Duration::from_secs(90),
        }
    }

    /// With the queue's `retry_after`; attempts expire after the longer of it and
    /// [`MIN_ATTEMPT_EXPIRY`].
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self.attempt_expiry = retry_after.max(MIN_ATTEMPT_EXPIRY);
        self
    }

    /// Runs forever (until `shutdown`): sleeps to the next due tick, runs what is due.
    pub async fn run(&self, tasks: Vec<Task>, shutdown: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut next: Vec<Option<DateTime<Utc>>> = tasks.iter().map(|t| t.next_after(Utc::now())).collect();
        tracing::info!(tasks = tasks.len(), instance = %self.instance, "scheduler started");
        loop {
            let Some(soonest) = next.iter().flatten().min().copied() else { return };
            let wait = (soonest - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!("scheduler stopping");
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            for (i, task) in tasks.iter().enumerate() {
                if let Some(at) = next[i]
                    && at <= Utc::now()
                {
                    let outcome = self.run_tick(task, at).await;
                    tracing::info!(task = task.name, tick = %at, ?outcome, "scheduled task tick");
                    next[i] = task.next_after(at.max(Utc::now()));
                }
            }
        }
    }

    /// Claims and runs one tick of a task (what each scheduler process does at `tick`).
    #[tracing::instrument(name = "scheduler.tick", skip(self, task), fields(task = task.name))]
    pub async fn run_tick(&self, task: &Task, tick: DateTime<Utc>) -> TickOutcome {
        match self.claim(task, tick).await {
            Ok(Claim::Run(id)) => self.execute(task, id).await,
            Ok(Claim::Taken) => TickOutcome::TakenElsewhere,
            Ok(Claim::Overlap) => TickOutcome::SkippedOverlap,
            Err(e) => TickOutcome::Failed(format!("could not claim the tick: {e}")),
        }
    }

    /// Runs a task now, outside its schedule (`fibonacco schedule run <task>`). It still
    /// records a run and still respects overlap.
    pub async fn run_now(&self, task: &Task) -> TickOutcome {
        self.run_tick(task, Utc::now()).await
    }

    async fn claim(&self, task: &Task, tick: DateTime<Utc>) -> Result<Claim, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // Serialises claims of one task across instances, so the overlap check and the
        // insert see the same picture.
        sqlx::query("select pg_advisory_xact_lock(hashtext('fibonacco.schedule:' || $1))")
            .bind(task.name)
            .execute(&mut *tx)
            .await?;
        let taken: bool =
            sqlx::query_scalar("select exists (select 1 from scheduled_task_runs where task = $1 and tick = $2)")
                .bind(task.name)
                .bind(tick)
                .fetch_one(&mut *tx)
                .await?;
        if taken {
            return Ok(Claim::Taken);
        }
        if task.no_overlap {
            let busy: bool = sqlx::query_scalar(
                "select exists (select 1 from scheduled_task_runs
                 where task = $1 and finished_at is null and started_at > now() - $2::interval)",
            )
            .bind(task.name)
            .bind(format!("{} seconds", self.stale_after.as_secs()))
            .fetch_one(&mut *tx)
            .await?;
            if busy {
                sqlx::query(
                    "insert into scheduled_task_runs (task, tick, instance, finished_at, outcome, detail)
                     values ($1, $2, $3, now(), 'skipped_overlap', 'an earlier run is unfinished')",
                )
                .bind(task.name)
                .bind(tick)
                .bind(&self.instance)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(Claim::Overlap);
            }
        }
        let id: i64 = sqlx::query_scalar(
            "insert into scheduled_task_runs (task, tick, instance) values ($1, $2, $3) returning id",
        )
        .bind(task.name)
        .bind(tick)
        .bind(&self.instance)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Claim::Run(id))
    }

    async fn execute(&self, task: &Task, run: i64) -> TickOutcome {
        let result = tasks::run(self, task.name).await;
        let (outcome, detail) = match &result {
            Ok(detail) => ("ok", detail.clone()),
            Err(e) => ("failed", format!("{e:#}")),
        };
        if let Err(e) =
            sqlx::query("update scheduled_task_runs set finished_at = now(), outcome = $2, detail = $3 where id = $1")
                .bind(run)
                .bind(outcome)
                .bind(&detail)
                .execute(&self.pool)
                .await
        {
            tracing::warn!(error = %e, "task run not recorded as finished");
        }
        match result {
            Ok(detail) => TickOutcome::Ran(detail),
            Err(e) => TickOutcome::Failed(format!("{e:#}")),
        }
    }
}

enum Claim {
    Run(i64),
    Taken,
    Overlap,
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_overrides_apply() {
        let all = tasks(|_| None).unwrap();
        assert_eq!(all.len(), DEFAULTS.len());
        let t = find(&all, "embeddings:process").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-01-01T10:02:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(t.next_after(at).unwrap().to_rfc3339(), "2026-01-01T10:05:00+00:00");
        let custom = tasks(|k| (k == "SCHEDULE_EMBEDDINGS_PROCESS").then(|| "0 0 * * * *".to_owned())).unwrap();
        assert_eq!(find(&custom, "embeddings:process").unwrap().cron, "0 0 * * * *");
        let bad = tasks(|k| (k == "SCHEDULE_CLEANUP_OLD_DATA").then(|| "every day".to_owned()));
        assert!(matches!(bad, Err(ScheduleError::BadCron { .. })));
        assert!(matches!(find(&all, "nope"), Err(ScheduleError::UnknownTask(_))));
    }
}
