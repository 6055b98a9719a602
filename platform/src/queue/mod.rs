//! The job queues (`emails`, `sms`, `calls`, `tts`, `embeddings`, `imports`, `webhooks`) on Redis.
//!
//! The layout is Laravel's Redis queue, so operators find familiar keys:
//! - `{prefix}:{queue}`: the ready list; producers `RPUSH`, workers take from the head;
//! - `{prefix}:{queue}:delayed`: a sorted set of jobs scored by the time they become ready;
//! - `{prefix}:{queue}:reserved`: a sorted set of jobs a worker holds, scored by the time
//!   the reservation lapses. A job still there after `retry_after` goes back to the ready
//!   list: delivery is at-least-once, and handlers are written to be re-run.
//! - `{prefix}:{queue}:attempts`: a hash uuid → how many times the job was taken. It lives
//!   beside the payload rather than inside it so a payload is never rewritten by Lua (whose
//!   JSON encoder turns `[]` into `{}`), and a job that crashes its worker still counts.
//!
//! Each step that moves a job between keys is one Lua script, so a crash between two Redis
//! calls never loses or doubles a job. Nothing here blocks on Redis: workers poll, which
//! keeps clear of redis-rs's response timeout for blocking reads.

pub mod batch;
pub mod failed;
pub mod jobs;
pub mod worker;

pub use jobs::Job;
pub use worker::{Handler, JobError, Worker, WorkerOptions, WorkerStats};

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{Script, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A kind of job, the queue it runs on, and its retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobKind {
    pub name: &'static str,
    pub queue: &'static str,
    pub max_tries: u32,
    /// The first retry waits this long; each further retry waits twice as long.
    pub backoff_secs: u32,
}

pub const SEND_EMAIL_CAMPAIGN: JobKind =
    JobKind { name: "SendEmailCampaign", queue: "emails", max_tries: 5, backoff_secs: 10 };
pub const SEND_SMS: JobKind = JobKind { name: "SendSMS", queue: "sms", max_tries: 5, backoff_secs: 10 };
pub const MAKE_PHONE_CALL: JobKind = JobKind { name: "MakePhoneCall", queue: "calls", max_tries: 3, backoff_secs: 30 };
pub const GENERATE_TTS: JobKind = JobKind { name: "GenerateTTS", queue: "tts", max_tries: 3, backoff_secs: 15 };
/// Tells the sales team about a lead from the learning center.
pub const SEND_SALES_NOTIFICATION: JobKind =
    JobKind { name: "SendSalesNotification", queue: "emails", max_tries: 5, backoff_secs: 30 };
pub const GENERATE_EMBEDDING: JobKind =
    JobKind { name: "GenerateEmbedding", queue: "embeddings", max_tries: 5, backoff_secs: 300 };
/// Resolves a running campaign's recipients into send jobs (on the channel's queue).
pub const DISPATCH_CAMPAIGN: JobKind =
    JobKind { name: "DispatchCampaign", queue: "emails", max_tries: 10, backoff_secs: 5 };
/// Runs (or resumes) a customer import; on a queue of its own so a large file does not
/// hold up sends.
pub const IMPORT_CUSTOMERS: JobKind =
    JobKind { name: "ImportCustomers", queue: "imports", max_tries: 5, backoff_secs: 10 };
/// Writes a customer export's file (on the `imports` queue, with the other bulk jobs).
pub const EXPORT_CUSTOMERS: JobKind =
    JobKind { name: "ExportCustomers", queue: "imports", max_tries: 3, backoff_secs: 10 };
/// Delivers one webhook endpoint's due deliveries. A receiver's failure is recorded on
/// its delivery, which carries its own retry schedule; the queue retries only a job that
/// could not record (Postgres away), and the scheduler queues the endpoint again anyway.
pub const DELIVER_WEBHOOKS: JobKind =
    JobKind { name: "DeliverWebhooks", queue: "webhooks", max_tries: 3, backoff_secs: 5 };

/// Every job the platform knows, for lookups by name (retries from `failed_jobs`).
pub const KINDS: &[JobKind] = &[
    SEND_EMAIL_CAMPAIGN,
    SEND_SMS,
    MAKE_PHONE_CALL,
    GENERATE_TTS,
    SEND_SALES_NOTIFICATION,
    GENERATE_EMBEDDING,
    DISPATCH_CAMPAIGN,
    IMPORT_CUSTOMERS,
    EXPORT_CUSTOMERS,
    DELIVER_WEBHOOKS,
];

/// The queues workers listen on by default.
pub const QUEUES: &[&str] = &["emails", "sms", "calls", "tts", "embeddings", "imports", "webhooks"];

pub fn kind_named(name: &str) -> Option<JobKind> {
    KINDS.iter().copied().find(|k| k.name == name)
}

impl JobKind {
    /// A kind that runs on another queue (campaign dispatch follows its channel).
    pub const fn on(self, queue: &'static str) -> Self {
        Self { queue, ..self }
    }

    /// The wait before retry number `attempts` (1-based), doubling, capped at an hour.
    pub fn backoff(&self, attempts: u32, base_override: Option<Duration>) -> Duration {
        let base = base_override.unwrap_or(Duration::from_secs(u64::from(self.backoff_secs)));
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        base.saturating_mul(factor).min(Duration::from_secs(3600))
    }
}

/// What goes onto the list. Never rewritten once pushed (the attempt count lives in Redis),
/// except by an erasure ([`Queue::edit_matching`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobPayload {
    pub uuid: Uuid,
    /// The job's name, e.g. `GenerateEmbedding`.
    pub job: String,
    pub queue: String,
    pub data: serde_json::Value,
    /// Attempts already used when this payload was pushed (always 0 today; kept for
    /// compatibility with payloads written before attempts moved to Redis).
    pub attempts: u32,
    pub max_tries: u32,
    pub pushed_at: DateTime<Utc>,
    /// The job batch this job belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<Uuid>,
}

impl JobPayload {
    pub fn new(kind: JobKind, data: serde_json::Value) -> Self {
        Self {
            uuid: Uuid::now_v7(),
            job: kind.name.to_owned(),
            queue: kind.queue.to_owned(),
            data,
            attempts: 0,
            max_tries: kind.max_tries,
            pushed_at: Utc::now(),
            batch_id: None,
        }
    }
}

/// A job a worker holds. Acknowledge, release or fail it through [`Queue`].
#[derive(Debug, Clone)]
pub struct Reserved {
    pub payload: JobPayload,
    /// How many times the job has been taken, this time included.
    pub attempts: u32,
    /// The exact member in the reserved set.
    raw: String,
}

impl Reserved {
    pub fn raw(&self) -> &str {
        &self.raw
    }
}

/// A payload that was taken from the queue but is not a job we can read.
#[derive(Debug)]
pub struct Undecodable {
    pub raw: String,
    pub error: String,
}

/// What [`Queue::edit_matching`] does to one job.
#[derive(Debug, Clone)]
pub enum Edit {
    Keep,
    Remove,
    Replace(JobPayload),
}

/// How many jobs [`Queue::edit_matching`] removed and rewrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Edited {
    pub removed: u64,
    pub rewritten: u64,
}

/// How many jobs wait, are delayed, and are held by workers.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct QueueSizes {
    pub ready: u64,
    pub delayed: u64,
    pub reserved: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("job payload does not serialise: {0}")]
    Encode(#[from] serde_json::Error),
}

const POP: &str = r"
local job = redis.call('lpop', KEYS[1])
if not job then return false end
redis.call('zadd', KEYS[2], ARGV[1], job)
local ok, decoded = pcall(cjson.decode, job)
local id = (ok and type(decoded) == 'table' and decoded['uuid']) or job
local attempts = redis.call('hincrby', KEYS[3], id, 1)
return {job, attempts}
";

// Moves due members of a sorted set (delayed, or lapsed reservations) to the ready list.
const MIGRATE: &str = r"
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'limit', 0, 1000)
if #due > 0 then
  redis.call('zremrangebyrank', KEYS[1], 0, #due - 1)
  for i = 1, #due, 100 do
    redis.call('rpush', KEYS[2], unpack(due, i, math.min(i + 99, #due)))
  end
end
return #due
";

const RELEASE: &str = r"
if redis.call('zrem', KEYS[1], ARGV[1]) == 1 then
  redis.call('zadd', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
return 0
";

/// Removes a job from a list; pushes its replacement (if any) at the tail. KEYS[1] the
/// list; ARGV[1] the job; ARGV[2] the replacement or ''.
const REPLACE_IN_LIST: &str = r"
local n = redis.call('LREM', KEYS[1], 0, ARGV[1])
if n > 0 and ARGV[2] ~= '' then redis.call('RPUSH', KEYS[1], ARGV[2]) end
return n
";

/// Removes a job from a sorted set; adds its replacement (if any) with the same score.
const REPLACE_IN_SET: &str = r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], s, ARGV[2]) end
return 1
";

const ACK: &str = r"
local removed = redis.call('zrem', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[2])
return removed
";

/// A handle on the queues; cheap to clone (one multiplexed, self-reconnecting connection).
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    prefix: String,
}

fn epoch_secs(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

impl Queue {
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self { conn, prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of a queue's ready list.
    pub fn list_key(&self, queue: &str) -> String {
        format!("{}:{queue}", self.prefix)
    }

    fn key(&self, queue: &str, part: &str) -> String {
        format!("{}:{queue}:{part}", self.prefix)
    }

    /// Appends a job and returns its uuid.
    #[tracing::instrument(name = "queue.push", skip(self, data), fields(job = kind.name, queue = kind.queue))]
    pub async fn push(&self, kind: JobKind, data: serde_json::Value) -> Result<Uuid, QueueError> {
        let payload = JobPayload::new(kind, data);
        self.push_payload(&payload, None).await?;
        Ok(payload.uuid)
    }

    /// Pushes a prepared payload, now or once `delay` has passed. After a Redis restart the
    /// first command on the old connection fails while the manager reconnects; a push is
    /// worth one more try then. If the first try did land, the job runs twice, which
    /// at-least-once handlers already allow.
    #[tracing::instrument(name = "queue.push_payload", skip_all, fields(job = %payload.job, queue = %payload.queue))]
    pub async fn push_payload(&self, payload: &JobPayload, delay: Option<Duration>) -> Result<(), QueueError> {
        match self.push_once(payload, delay).await {
            Err(QueueError::Redis(e)) if e.is_io_error() || e.is_connection_dropped() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.push_once(payload, delay).await
            }
            other => other,
        }
    }

    async fn push_once(&self, payload: &JobPayload, delay: Option<Duration>) -> Result<(), QueueError> {
        let body = serde_json::to_string(payload)?;
        let mut conn = self.conn.clone();
        match delay {
            Some(d) if !d.is_zero() => {
                let at = Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
                let _: i64 = redis::cmd("ZADD")
                    .arg(self.key(&payload.queue, "delayed"))
                    .arg(epoch_secs(at))
                    .arg(body)
                    .query_async(&mut conn)
                    .await?;
            }
            _ => {
                let _: i64 =
                    redis::cmd("RPUSH").arg(self.list_key(&payload.queue)).arg(body).query_async(&mut conn).await?;
            }
        }
        Ok(())
    }

    /// Pushes many payloads of one queue in one round trip.
    #[tracing::instrument(name = "queue.push_many", skip_all, fields(jobs = payloads.len()))]
    pub async fn push_many(&self, payloads: &[JobPayload]) -> Result<(), QueueError> {
        match self.push_many_once(payloads).await {
            Err(QueueError::Redis(e)) if e.is_io_error() || e.is_connection_dropped() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.push_many_once(payloads).await
            }
            other => other,
        }
    }

    async fn push_many_once(&self, payloads: &[JobPayload]) -> Result<(), QueueError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for p in payloads {
            pipe.cmd("RPUSH").arg(self.list_key(&p.queue)).arg(serde_json::to_string(p)?).ignore();
        }
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Moves delayed jobs that are due, and reservations that lapsed, back to the ready list.
    #[tracing::instrument(name = "queue.migrate", skip(self))]
    pub async fn migrate_due(&self, queue: &str) -> Result<u64, QueueError> {
        let now = epoch_secs(Utc::now());
        let script = Script::new(MIGRATE);
        let mut conn = self.conn.clone();
        let mut moved = 0u64;
        for part in ["delayed", "reserved"] {
            let n: u64 =
                script.key(self.key(queue, part)).key(self.list_key(queue)).arg(now).invoke_async(&mut conn).await?;
            moved += n;
        }
        Ok(moved)
    }

    /// Takes the next ready job and reserves it for `retry_after`. `Ok(None)` when empty.
    pub async fn pop(
        &self,
        queue: &str,
        retry_after: Duration,
    ) -> Result<Option<Result<Reserved, Undecodable>>, QueueError> {
        let until = Utc::now() + chrono::Duration::from_std(retry_after).unwrap_or(chrono::Duration::seconds(90));
        let mut conn = self.conn.clone();
        let got: Option<(String, u32)> = Script::new(POP)
            .key(self.list_key(queue))
            .key(self.key(queue, "reserved"))
            .key(self.key(queue, "attempts"))
            .arg(epoch_secs(until))
            .invoke_async(&mut conn)
            .await?;
        Ok(got.map(|(raw, attempts)| match serde_json::from_str::<JobPayload>(&raw) {
            Ok(payload) => Ok(Reserved { payload, attempts, raw }),
            Err(e) => Err(Undecodable { raw, error: e.to_string() }),
        }))
    }

    /// The job is done (or failed for good): forget it.
    #[tracing::instrument(name = "queue.ack", skip_all, fields(job = %job.payload.job))]
    pub async fn ack(&self, job: &Reserved) -> Result<bool, QueueError> {
        self.ack_raw(&job.payload.queue, &job.raw, &job.payload.uuid.to_string()).await
    }

    /// Acknowledges a member that could not be decoded (it is moved to `failed_jobs` first).
    pub async fn ack_raw(&self, queue: &str, raw: &str, id: &str) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let removed: i64 = Script::new(ACK)
            .key(self.key(queue, "reserved"))
            .key(self.key(queue, "attempts"))
            .arg(raw)
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        Ok(removed == 1)
    }

    /// Gives the job back, to become ready again after `delay`. `false` when the
    /// reservation had already lapsed (another worker may hold the job by now).
    #[tracing::instrument(name = "queue.release", skip_all, fields(job = %job.payload.job, delay_ms = delay.as_millis() as u64))]
    pub async fn release(&self, job: &Reserved, delay: Duration) -> Result<bool, QueueError> {
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
        let mut conn = self.conn.clone();
        let moved: i64 = Script::new(RELEASE)
            .key(self.key(&job.payload.queue, "reserved"))
            .key(self.key(&job.payload.queue, "delayed"))
            .arg(&job.raw)
            .arg(epoch_secs(at))
            .invoke_async(&mut conn)
            .await?;
        Ok(moved == 1)
    }

    /// Applies `edit` to every job of `queue` (ready, delayed or reserved): a job may stay,
    /// go, or be replaced by another payload (same place in the delayed and reserved sets,
    /// the tail of the ready list). For erasure: a job about a person who is gone must not
    /// stay in Redis, and a send job naming them among others loses only their id. Each
    /// change is one Lua script (a crash never loses the job being rewritten). Read in
    /// pages of 1,000 so a long queue is not one reply; a job a worker takes meanwhile is
    /// simply not found (its handler finds its rows gone). `edit` must be idempotent: a
    /// rewritten job at the tail of the list may be read again.
    #[tracing::instrument(name = "queue.edit_matching", skip(self, edit))]
    pub async fn edit_matching(&self, queue: &str, edit: impl Fn(&JobPayload) -> Edit) -> Result<Edited, QueueError> {
        const PAGE: isize = 1000;
        let mut conn = self.conn.clone();
        let mut done = Edited::default();
        let mut apply = async |key: &str, raw: &str, list: bool| -> Result<isize, QueueError> {
            let Ok(payload) = serde_json::from_str::<JobPayload>(raw) else { return Ok(0) };
            let new = match edit(&payload) {
                Edit::Keep => return Ok(0),
                Edit::Remove => String::new(),
                Edit::Replace(p) => serde_json::to_string(&p)?,
            };
            let n: i64 = Script::new(if list { REPLACE_IN_LIST } else { REPLACE_IN_SET })
                .key(key)
                .arg(raw)
                .arg(&new)
                .invoke_async(&mut conn)
                .await?;
            if n > 0 {
                if new.is_empty() {
                    done.removed += n as u64;
                } else {
                    done.rewritten += n as u64;
                }
            }
            Ok(n.max(0) as isize)
        };
        let list = self.list_key(queue);
        let mut start = 0isize;
        loop {
            let raw: Vec<String> = redis::cmd("LRANGE")
                .arg(&list)
                .arg(start)
                .arg(start + PAGE - 1)
                .query_async(&mut self.conn.clone())
                .await?;
            let mut gone = 0isize;
            for r in &raw {
                gone += apply(&list, r, true).await?;
            }
            if (raw.len() as isize) < PAGE {
                break;
            }
            start += PAGE - gone;
        }
        for part in ["delayed", "reserved"] {
            let key = self.key(queue, part);
            let raw: Vec<String> =
                redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut self.conn.clone()).await?;
            for r in &raw {
                apply(&key, r, false).await?;
            }
        }
        Ok(done)
    }

    /// Forgets how many times a job was taken (before a retry from `failed_jobs`).
    pub async fn reset_attempts(&self, queue: &str, uuid: Uuid) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let _: i64 =
            redis::cmd("HDEL").arg(self.key(queue, "attempts")).arg(uuid.to_string()).query_async(&mut conn).await?;
        Ok(())
    }

    #[tracing::instrument(name = "queue.sizes", skip(self))]
    pub async fn sizes(&self, queue: &str) -> Result<QueueSizes, QueueError> {
        let mut conn = self.conn.clone();
        let (ready, delayed, reserved): (u64, u64, u64) = redis::pipe()
            .cmd("LLEN")
            .arg(self.list_key(queue))
            .cmd("ZCARD")
            .arg(self.key(queue, "delayed"))
            .cmd("ZCARD")
            .arg(self.key(queue, "reserved"))
            .query_async(&mut conn)
            .await?;
        Ok(QueueSizes { ready, delayed, reserved })
    }

    /// Every payload waiting on a queue's ready list (tests and operators' inspection).
    pub async fn ready_payloads(&self, queue: &str) -> Result<Vec<JobPayload>, QueueError> {
        let mut conn = self.conn.clone();
        let raw: Vec<String> =
            redis::cmd("LRANGE").arg(self.list_key(queue)).arg(0).arg(-1).query_async(&mut conn).await?;
        Ok(raw.iter().filter_map(|r| serde_json::from_str(r).ok()).collect())
    }

    /// Drops everything on a queue (ready, delayed, reserved, attempt counts).
    #[tracing::instrument(name = "queue.clear", skip(self))]
    pub async fn clear(&self, queue: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.list_key(queue))
            .arg(self.key(queue, "delayed"))
            .arg(self.key(queue, "reserved"))
            .arg(self.key(queue, "attempts"))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The connection, for callers that keep other small state in Redis (rate limits).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(SEND_SMS.backoff(1, None), Duration::from_secs(10));
        assert_eq!(SEND_SMS.backoff(2, None), Duration::from_secs(20));
        assert_eq!(SEND_SMS.backoff(4, None), Duration::from_secs(80));
        assert_eq!(SEND_SMS.backoff(40, None), Duration::from_secs(3600));
        assert_eq!(SEND_SMS.backoff(3, Some(Duration::from_millis(100))), Duration::from_millis(400));
    }

    #[test]
    fn every_kind_is_found_by_name() {
        for k in KINDS {
            assert_eq!(kind_named(k.name), Some(*k));
        }
        assert_eq!(kind_named("Nope"), None);
    }
}
