//! Redis connection. The connection manager reconnects by itself after a Redis restart.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

#[tracing::instrument(name = "redis.connect", skip_all)]
pub async fn connect(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(3);
    ConnectionManager::new_with_config(client, config).await
}

/// `PING`, for health checks.
#[tracing::instrument(name = "redis.ping", skip_all)]
pub async fn ping(conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    let pong: String = redis::cmd("PING").query_async(conn).await?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "unexpected PING reply")))
    }
}
