//! Limits shared by every API process, counted in Redis: request rates (GCRA, a smooth
//! rate with a burst) and a daily token budget. Both are one Lua script each, so the
//! check and the update are one atomic step and the clock is Redis's own (`TIME`), the
//! same for every process.

use std::{sync::LazyLock, time::Duration};

use redis::{Script, aio::ConnectionManager};

/// One rate to check: at most `limit` requests per `period` under `key`, with bursts of
/// up to `limit` at once.
#[derive(Debug, Clone)]
pub struct Rate {
    pub key: String,
    pub limit: u32,
    pub period: Duration,
}

/// The answer for a request: allowed or not, and the figures of the tightest rate (the
/// one with the fewest requests left), for `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the tightest rate is whole again.
    pub reset: Duration,
    /// When refused: how long until the request would be allowed.
    pub retry_after: Duration,
}

/// GCRA over several keys at once: a request is allowed only when every rate allows it,
/// and only then is it counted against each of them (a refused request costs nothing).
/// Times are microseconds. ARGV: per key, its emission interval (period / limit) and its
/// period. Returns {allowed, index of the tightest key, remaining, reset, retry_after}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new = {}
local worst, worst_left, wait = 1, math.huge, 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local next_tat = tat + interval
  local allow_at = next_tat - period
  if allow_at > now then
    if allow_at - now > wait then wait = allow_at - now end
    worst, worst_left = i, 0
  else
    new[i] = next_tat
    local left = math.floor((period - (next_tat - now)) / interval)
    if left < worst_left then worst, worst_left = i, left end
  end
end
if wait > 0 then
  local tat = tonumber(redis.call('GET', KEYS[worst]) or now)
  return {0, worst, 0, math.max(tat - now, 0), wait}
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', new[i]), 'PX', math.ceil((new[i] - now) / 1000) + 1)
end
return {1, worst, worst_left, new[worst] - now, 0}
"#;

// Each script is hashed once (its SHA1 is what EVALSHA sends), not on every request.
static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));
static TAKE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE));
static GIVE_BACK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GIVE_BACK));

/// Checks `rates` together (see [`GCRA`]); an empty list is always allowed.
#[tracing::instrument(name = "quota.check", skip_all, fields(rates = rates.len()), err)]
pub async fn check(redis: &ConnectionManager, rates: &[Rate]) -> redis::RedisResult<Decision> {
    if rates.is_empty() {
        return Ok(Decision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset: Duration::ZERO,
            retry_after: Duration::ZERO,
        });
    }
    let mut invocation = GCRA_SCRIPT.prepare_invoke();
    for rate in rates {
        let period = rate.period.as_micros().max(1) as u64;
        let interval = (period / u64::from(rate.limit.max(1))).max(1);
        invocation.key(&rate.key).arg(interval).arg(period);
    }
    let mut conn = redis.clone();
    let (allowed, worst, remaining, reset, wait): (i64, usize, i64, i64, i64) =
        invocation.invoke_async(&mut conn).await?;
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    Ok(Decision {
        allowed: allowed == 1,
        limit: rates[worst.saturating_sub(1).min(rates.len() - 1)].limit,
        remaining: u32::try_from(remaining).unwrap_or(0),
        reset: micros(reset),
        retry_after: micros(wait),
    })
}

/// Adds `tokens` to today's (UTC) count under `key` unless that would pass `budget`.
/// Returns {1, used} when taken, {0, used} when refused, and the seconds to midnight.
const TAKE: &str = r#"
local t = redis.call('TIME')
local secs = tonumber(t[1])
local day = math.floor(secs / 86400)
local key = KEYS[1] .. ':' .. day
local used = tonumber(redis.call('GET', key) or 0)
local want = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local left = 86400 - (secs % 86400)
if used + want > budget then return {0, used, left} end
used = redis.call('INCRBY', key, want)
redis.call('EXPIRE', key, 2 * 86400)
return {1, used, left}
"#;

/// A daily allowance of tokens, reserved before work and corrected after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Taken; `used` tokens so far today.
    Taken { used: u64 },
    /// Would pass the budget: nothing was taken; the day turns over in `resets_in`.
    Exhausted { used: u64, resets_in: Duration },
}

/// Reserves `tokens` of `budget` for today under `key` (see [`TAKE`]).
#[tracing::instrument(name = "quota.take", skip_all, fields(tokens), err)]
pub async fn take(redis: &ConnectionManager, key: &str, tokens: u64, budget: u64) -> redis::RedisResult<Budget> {
    let mut conn = redis.clone();
    let (taken, used, left): (i64, i64, i64) =
        TAKE_SCRIPT.key(key).arg(tokens).arg(budget).invoke_async(&mut conn).await?;
    let used = u64::try_from(used).unwrap_or(0);
    Ok(if taken == 1 {
        Budget::Taken { used }
    } else {
        Budget::Exhausted { used, resets_in: Duration::from_secs(u64::try_from(left).unwrap_or(0)) }
    })
}

/// Gives back part of a reservation (the answer was shorter than the tokens reserved).
/// The day is read again, so a refund that crosses midnight lands on the new day, where
/// it only makes room: never below zero.
const GIVE_BACK: &str = r#"
local t = redis.call('TIME')
local key = KEYS[1] .. ':' .. math.floor(tonumber(t[1]) / 86400)
local used = tonumber(redis.call('GET', key) or 0)
local back = math.min(tonumber(ARGV[1]), used)
if back > 0 then redis.call('DECRBY', key, back) end
return used - back
"#;

#[tracing::instrument(name = "quota.give_back", skip_all, fields(tokens), err)]
pub async fn give_back(redis: &ConnectionManager, key: &str, tokens: u64) -> redis::RedisResult<u64> {
    if tokens == 0 {
        return Ok(0);
    }
    let mut conn = redis.clone();
    let left: i64 = GIVE_BACK_SCRIPT.key(key).arg(tokens).invoke_async(&mut conn).await?;
    Ok(u64::try_from(left).unwrap_or(0))
}

/// How much of today's budget is used under `key`.
pub async fn used_today(redis: &ConnectionManager, key: &str) -> redis::RedisResult<u64> {
    let mut conn = redis.clone();
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
    let used: Option<u64> = redis::cmd("GET").arg(format!("{key}:{}", secs / 86400)).query_async(&mut conn).await?;
    Ok(used.unwrap_or(0))
}
