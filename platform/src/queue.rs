//! Pushing jobs onto the Redis queues (`emails`, `sms`, `calls`, `tts`, `embeddings`).
//!
//! Layout follows Laravel's Redis queue so operators find familiar keys: a job is a JSON
//! payload appended to the list `queues:{name}`. Workers (the queue issue) take from the
//! head, keep a reservation until they acknowledge, and move exhausted jobs to
//! `failed_jobs`. This module only enqueues.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A kind of job and the queue it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobKind {
    pub name: &'static str,
    pub queue: &'static str,
    pub max_tries: u32,
}

pub const SEND_EMAIL_CAMPAIGN: JobKind = JobKind { name: "SendEmailCampaign", queue: "emails", max_tries: 5 };
pub const SEND_SMS: JobKind = JobKind { name: "SendSMS", queue: "sms", max_tries: 5 };
pub const MAKE_PHONE_CALL: JobKind = JobKind { name: "MakePhoneCall", queue: "calls", max_tries: 3 };
pub const GENERATE_TTS: JobKind = JobKind { name: "GenerateTTS", queue: "tts", max_tries: 3 };
/// Tells the sales team about a lead from the learning center.
pub const SEND_SALES_NOTIFICATION: JobKind = JobKind { name: "SendSalesNotification", queue: "emails", max_tries: 5 };
pub const GENERATE_EMBEDDING: JobKind = JobKind { name: "GenerateEmbedding", queue: "embeddings", max_tries: 5 };

/// What goes onto the list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobPayload {
    pub uuid: Uuid,
    /// The job's name, e.g. `GenerateEmbedding`.
    pub job: String,
    pub queue: String,
    pub data: serde_json::Value,
    pub attempts: u32,
    pub max_tries: u32,
    pub pushed_at: DateTime<Utc>,
}

/// The Redis key of a queue's pending list.
pub fn list_key(queue: &str) -> String {
    format!("queues:{queue}")
}

/// Appends a job and returns its uuid.
#[tracing::instrument(name = "queue.push", skip(conn, data), fields(job = kind.name, queue = kind.queue))]
pub async fn push(conn: &mut ConnectionManager, kind: JobKind, data: serde_json::Value) -> redis::RedisResult<Uuid> {
    let payload = JobPayload {
        uuid: Uuid::now_v7(),
        job: kind.name.to_owned(),
        queue: kind.queue.to_owned(),
        data,
        attempts: 0,
        max_tries: kind.max_tries,
        pushed_at: Utc::now(),
    };
    let body = serde_json::to_string(&payload).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "job payload does not serialise", e.to_string()))
    })?;
    let _: i64 = redis::cmd("RPUSH").arg(list_key(kind.queue)).arg(body).query_async(conn).await?;
    Ok(payload.uuid)
}
