//! Per-channel send caps shared by every worker: a counter per channel per second in
//! Redis. A worker over the cap waits for the next second instead of calling the provider.

use std::time::Duration;

use fibonacco_platform::queue::Queue;

/// Waits until this send fits under `per_second` sends for `channel`. A cap of 0 means
/// no cap. Redis errors let the send through: losing the cap for a moment is better than
/// stopping all sends when the limiter cannot count.
#[tracing::instrument(name = "rate.acquire", skip(queue))]
pub async fn acquire(queue: &Queue, channel: &str, per_second: u32) {
    if per_second == 0 {
        return;
    }
    let mut conn = queue.connection();
    loop {
        let now = chrono::Utc::now();
        let key = format!("{}:rate:{channel}:{}", queue.prefix(), now.timestamp());
        let counted: redis::RedisResult<(i64, i64)> =
            redis::pipe().cmd("INCR").arg(&key).cmd("EXPIRE").arg(&key).arg(2).query_async(&mut conn).await;
        match counted {
            Ok((n, _)) if n <= i64::from(per_second) => return,
            Ok(_) => {
                let into_second = u64::from(now.timestamp_subsec_millis());
                tokio::time::sleep(Duration::from_millis(1000u64.saturating_sub(into_second).max(1))).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; sending without it");
                return;
            }
        }
    }
}
