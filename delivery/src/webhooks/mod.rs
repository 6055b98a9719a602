//! Outgoing webhooks, the sending side. Events are built from the change feed by the
//! outbox builder (`pipelines::webhooks`), which also writes one `webhook_deliveries`
//! row per subscribed endpoint; here they leave: the scheduler's `webhooks:deliver`
//! (and the builder, right after its commit) queues `DeliverWebhooks` per endpoint with
//! due deliveries; the job leases the endpoint (one worker per endpoint, so a slow
//! receiver holds one worker, not all), posts its due deliveries oldest first, signed
//! ([`signature`]), through a resolver that refuses inward addresses ([`target`]), with a
//! timeout and a bounded read of the answer, and records each attempt ([`attempts`]).
//!
//! At-least-once: a delivery is marked delivered only after a 2xx, so a worker dying
//! between the receiver's answer and the record sends it again, with the same
//! `webhook-id` for the receiver to dedupe on. A failed attempt waits the next step of
//! the retry schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: a day and a bit); the last
//! failure marks the delivery failed and, if the endpoint has not answered 2xx since
//! failures began that long ago, disables it with the reason.

#[cfg(feature = "runtime")]
pub mod attempts;
#[cfg(feature = "runtime")]
pub mod sender;
pub mod signature;
pub mod target;

use std::time::Duration;

/// Waits between attempts, after the first (Standard Webhooks' and Svix's schedule).
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// How deliveries are made (`WEBHOOK_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `WEBHOOK_ALLOW_PRIVATE_TARGETS` (default false): see [`target`].
    pub allow_private: bool,
    /// `WEBHOOK_TIMEOUT_SECS` (default 10, 1-60): one attempt, connection included.
    pub timeout: Duration,
    /// `WEBHOOK_RETRY_SCHEDULE` (default [`DEFAULT_SCHEDULE`]): comma-separated waits
    /// (`30s`, `5m`, `2h`), one per retry; 1 to 20 of them.
    pub schedule: Vec<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct WebhookSettingsError {
    pub name: &'static str,
    pub reason: String,
}

impl WebhookSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, WebhookSettingsError> {
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_owned());
        let allow_private = match set("WEBHOOK_ALLOW_PRIVATE_TARGETS") {
            None => false,
            Some(v) => v.parse().map_err(|_| WebhookSettingsError {
                name: "WEBHOOK_ALLOW_PRIVATE_TARGETS",
                reason: format!("`{v}` is not true or false"),
            })?,
        };
        let timeout = match set("WEBHOOK_TIMEOUT_SECS") {
            None => 10,
            Some(v) => v.parse::<u64>().ok().filter(|s| (1..=60).contains(s)).ok_or_else(|| WebhookSettingsError {
                name: "WEBHOOK_TIMEOUT_SECS",
                reason: format!("`{v}` is not a number of seconds from 1 to 60"),
            })?,
        };
        let schedule = parse_schedule(set("WEBHOOK_RETRY_SCHEDULE").as_deref().unwrap_or(DEFAULT_SCHEDULE))
            .map_err(|reason| WebhookSettingsError { name: "WEBHOOK_RETRY_SCHEDULE", reason })?;
        Ok(Self { allow_private, timeout: Duration::from_secs(timeout), schedule })
    }

    /// How long a delivery is retried: the whole schedule.
    pub fn retry_span(&self) -> Duration {
        self.schedule.iter().sum()
    }
}

fn parse_schedule(raw: &str) -> Result<Vec<Duration>, String> {
    let steps = raw
        .split(',')
        .map(|s| {
            let s = s.trim();
            let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a wait like 30s, 5m or 2h"))?;
            let secs = match unit {
                "s" => n,
                "m" => n.saturating_mul(60),
                "h" => n.saturating_mul(3600),
                _ => return Err(format!("`{s}` is not a wait like 30s, 5m or 2h")),
            };
            if secs == 0 || secs > 7 * 86_400 {
                return Err(format!("`{s}` must be between 1s and 168h"));
            }
            Ok(Duration::from_secs(secs))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if steps.len() > 20 {
        return Err("at most 20 retries".into());
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_retries_for_a_day_and_a_bit() {
        let s = WebhookSettings::from_lookup(|_| None).unwrap();
        assert_eq!(s.schedule.len(), 7);
        assert_eq!(s.retry_span(), Duration::from_secs(5 + 300 + 1800 + 7200 + 18_000 + 72_000));
        assert!(!s.allow_private);
        assert_eq!(s.timeout, Duration::from_secs(10));
    }

    #[test]
    fn settings_refuse_what_they_cannot_read() {
        for (k, v) in [
            ("WEBHOOK_RETRY_SCHEDULE", "5x"),
            ("WEBHOOK_RETRY_SCHEDULE", "0s"),
            ("WEBHOOK_RETRY_SCHEDULE", "5s,,1m"),
            ("WEBHOOK_RETRY_SCHEDULE", "99999999999999999999s"),
            ("WEBHOOK_TIMEOUT_SECS", "0"),
            ("WEBHOOK_TIMEOUT_SECS", "61"),
            ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "yes please"),
        ] {
            let err = WebhookSettings::from_lookup(|key| (key == k).then(|| v.to_string())).unwrap_err();
            assert_eq!(err.name, k, "{v}");
        }
        let s =
            WebhookSettings::from_lookup(|k| (k == "WEBHOOK_RETRY_SCHEDULE").then(|| "1s, 2m".to_string())).unwrap();
        assert_eq!(s.schedule, vec![Duration::from_secs(1), Duration::from_secs(120)]);
    }
}
