//! Sanctum-compatible personal access tokens.
//!
//! The client holds `{id}|{secret}`; the database holds `sha256(secret)` in hex. A token
//! names its tenant, its abilities (`*` or named, e.g. `customers:write`) and an optional
//! expiry. Verification compares digests in constant time.

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, distr::Alphanumeric};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::tenancy::TenantId;

/// Length of the random part, as Sanctum's `Str::random(40)`.
const SECRET_LEN: usize = 40;
/// `last_used_at` is written at most this often per token, so reads stay reads.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// An ability a token may carry. `*` grants everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Ability(String);

impl Ability {
    pub fn parse(raw: &str) -> Result<Self, crate::domain::Invalid> {
        let ok = raw == "*"
            || (!raw.is_empty()
                && raw.len() <= 64
                && raw
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'-' | b'_' | b'*')));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(crate::domain::Invalid("must look like `resource:action` or `*`"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The token as the client presents it, split but not yet checked.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedToken<'a> {
    pub id: i64,
    pub secret: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("unknown or revoked token")]
    Unknown,
    #[error("token secret does not match")]
    BadSecret,
    #[error("token has expired")]
    Expired,
}

/// Parses an `Authorization` header value: `Bearer {id}|{secret}`.
pub fn parse_bearer(header: Option<&str>) -> Result<PresentedToken<'_>, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let (id, secret) = token.trim().split_once('|').ok_or(AuthError::Malformed)?;
    let id: i64 = id.parse().map_err(|_| AuthError::Malformed)?;
    if id <= 0 || secret.is_empty() || secret.len() > 128 || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AuthError::Malformed);
    }
    Ok(PresentedToken { id, secret })
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Who is calling: the tenant and what the token allows.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub token_id: i64,
    pub tenant_id: TenantId,
    pub user_id: Option<Uuid>,
    pub abilities: Vec<String>,
}

impl AuthContext {
    pub fn can(&self, ability: &str) -> bool {
        self.abilities.iter().any(|a| a == "*" || a == ability || wildcard_matches(a, ability))
    }
}

/// `customers:*` grants `customers:read` and `customers:write`.
fn wildcard_matches(granted: &str, wanted: &str) -> bool {
    granted.strip_suffix('*').is_some_and(|prefix| prefix.ends_with(':') && wanted.starts_with(prefix))
}

#[derive(Clone, sqlx::FromRow)]
struct TokenRow {
    tenant_id: TenantId,
    user_id: Option<Uuid>,
    token: String,
    abilities: sqlx::types::Json<Vec<String>>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

/// Checks a presented token against the database and returns who is calling.
#[tracing::instrument(name = "auth.authenticate", skip_all, fields(token_id = presented.id))]
pub async fn authenticate(pool: &PgPool, presented: &PresentedToken<'_>) -> Result<AuthContext, AuthenticateError> {
    let row = load_token(pool, presented.id).await?;
    verify(presented, &row, Utc::now()).map_err(AuthenticateError::from)
}

/// Like [`authenticate`], but remembers token rows for a short time so that a busy
/// client does not cost a database round trip per request. The secret's digest and the
/// expiry are still checked on every request; a deleted token stops working once its
/// entry ages out (at most the cache's TTL).
#[tracing::instrument(name = "auth.authenticate_cached", skip_all, fields(token_id = presented.id))]
pub async fn authenticate_cached(
    pool: &PgPool,
    cache: &TokenCache,
    presented: &PresentedToken<'_>,
) -> Result<AuthContext, AuthenticateError> {
    let now = Utc::now();
    if let Some(row) = cache.get(presented.id, now) {
        return verify(presented, &row, now).map_err(AuthenticateError::from);
    }
    let row = load_token(pool, presented.id).await?;
    cache.put(presented.id, row.clone(), now);
    verify(presented, &row, now).map_err(AuthenticateError::from)
}

async fn load_token(pool: &PgPool, id: i64) -> Result<TokenRow, AuthenticateError> {
    let row: Option<TokenRow> = sqlx::query_as(
        "select tenant_id, user_id, token, abilities, expires_at, last_used_at
         from personal_access_tokens where id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let row = row.ok_or(AuthError::Unknown)?;
    let now = Utc::now();
    if row.last_used_at.is_none_or(|t| (now - t).num_seconds() >= LAST_USED_GRANULARITY_SECS) {
        // Best effort: a failed bookkeeping write must not fail the request.
        if let Err(e) = sqlx::query("update personal_access_tokens set last_used_at = now() where id = $1")
            .bind(id)
            .execute(pool)
            .await
        {
            tracing::warn!(error = %e, "could not record token last_used_at");
        }
    }
    Ok(row)
}

fn verify(presented: &PresentedToken<'_>, row: &TokenRow, now: DateTime<Utc>) -> Result<AuthContext, AuthError> {
    let digest = hash_secret(presented.secret);
    if !bool::from(digest.as_bytes().ct_eq(row.token.as_bytes())) {
        return Err(AuthError::BadSecret);
    }
    if row.expires_at.is_some_and(|exp| exp <= now) {
        return Err(AuthError::Expired);
    }
    Ok(AuthContext {
        token_id: presented.id,
        tenant_id: row.tenant_id,
        user_id: row.user_id,
        abilities: row.abilities.0.clone(),
    })
}

/// Token rows by id, each kept for `ttl`. Bounded: when full, it starts over, which
/// costs one database read per active token and nothing else.
pub struct TokenCache {
    ttl: Duration,
    capacity: usize,
    entries: std::sync::Mutex<std::collections::HashMap<i64, (DateTime<Utc>, TokenRow)>>,
}

impl TokenCache {
    /// `ttl` of zero disables caching.
    pub fn new(ttl: std::time::Duration, capacity: usize) -> Self {
        Self {
            ttl: Duration::from_std(ttl).unwrap_or(Duration::zero()),
            capacity: capacity.max(1),
            entries: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn get(&self, id: i64, now: DateTime<Utc>) -> Option<TokenRow> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(&id).filter(|(at, _)| now - *at < self.ttl).map(|(_, row)| row.clone())
    }

    fn put(&self, id: i64, row: TokenRow, now: DateTime<Utc>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&id) {
            entries.clear();
        }
        entries.insert(id, (now, row));
    }

    /// Drops a token's entry at once (after revoking it in this process).
    pub fn forget(&self, id: i64) {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    #[error(transparent)]
    Rejected(#[from] AuthError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A freshly issued token. `plain_text` is shown once and never stored.
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub id: i64,
    pub plain_text: String,
    pub abilities: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[tracing::instrument(name = "auth.issue_token", skip(pool, abilities))]
pub async fn issue_token(
    pool: &PgPool,
    tenant: TenantId,
    name: &str,
    abilities: &[Ability],
    expires_in: Option<Duration>,
) -> Result<IssuedToken, sqlx::Error> {
    let secret: String = rand::rng().sample_iter(&Alphanumeric).take(SECRET_LEN).map(char::from).collect();
    let abilities: Vec<String> = if abilities.is_empty() {
        vec!["*".to_owned()]
    } else {
        abilities.iter().map(|a| a.as_str().to_owned()).collect()
    };
    let expires_at = expires_in.map(|d| Utc::now() + d);
    let id: i64 = sqlx::query_scalar(
        "insert into personal_access_tokens (tenant_id, name, token, abilities, expires_at)
         values ($1, $2, $3, $4, $5) returning id",
    )
    .bind(tenant)
    .bind(name)
    .bind(hash_secret(&secret))
    .bind(sqlx::types::Json(&abilities))
    .bind(expires_at)
    .fetch_one(pool)
    .await?;
    Ok(IssuedToken { id, plain_text: format!("{id}|{secret}"), abilities, expires_at })
}

/// Parses durations such as `30d`, `12h`, `45m`, `3600s` for `--expires-in`.
pub fn parse_expires_in(raw: &str) -> Result<Duration, crate::domain::Invalid> {
    let raw = raw.trim();
    let bad = crate::domain::Invalid("use a number followed by s, m, h or d, e.g. 30d");
    let unit = raw.chars().last().ok_or(bad.clone())?;
    let n: i64 = raw[..raw.len() - unit.len_utf8()].parse().map_err(|_| bad.clone())?;
    if n <= 0 {
        return Err(crate::domain::Invalid("must be positive"));
    }
    let d = match unit {
        's' => Duration::try_seconds(n),
        'm' => Duration::try_minutes(n),
        'h' => Duration::try_hours(n),
        'd' => Duration::try_days(n),
        _ => None,
    };
    d.ok_or(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(parse_bearer(Some("Bearer 12|abcDEF123")).unwrap(), PresentedToken { id: 12, secret: "abcDEF123" });
        assert_eq!(parse_bearer(Some("bearer 1|x")).unwrap().id, 1);
        assert_eq!(parse_bearer(None), Err(AuthError::Missing));
        for bad in [
            "Bearer",
            "Basic 1|x",
            "Bearer 1",
            "Bearer x|abc",
            "Bearer 0|abc",
            "Bearer -1|abc",
            "Bearer 1|",
            "Bearer 1|a b",
            "Bearer 1|ab;c",
        ] {
            assert_eq!(parse_bearer(Some(bad)), Err(AuthError::Malformed), "{bad}");
        }
    }

    #[test]
    fn hashing_matches_sanctum() {
        // Sanctum stores hash('sha256', $plainTextToken-secret-part).
        assert_eq!(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn abilities() {
        let ctx = |a: &[&str]| AuthContext {
            token_id: 1,
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            user_id: None,
            abilities: a.iter().map(|s| s.to_string()).collect(),
        };
        assert!(ctx(&["*"]).can("customers:write"));
        assert!(ctx(&["customers:*"]).can("customers:write"));
        assert!(!ctx(&["customers:*"]).can("orders:read"));
        assert!(ctx(&["customers:read"]).can("customers:read"));
        assert!(!ctx(&["customers:read"]).can("customers:write"));
        assert!(!ctx(&[]).can("customers:read"));
        assert!(Ability::parse("customers:read").is_ok());
        assert!(Ability::parse("Customers Read").is_err());
    }

    #[test]
    fn expiry_parsing() {
        assert_eq!(parse_expires_in("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_expires_in("90m").unwrap(), Duration::minutes(90));
        assert!(parse_expires_in("0d").is_err());
        assert!(parse_expires_in("d").is_err());
        assert!(parse_expires_in("5w").is_err());
    }
}
