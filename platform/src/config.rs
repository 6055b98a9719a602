//! Configuration from the environment, with the names Laravel users know.

use std::{fmt, net::IpAddr, time::Duration};

/// A value that must never reach a log line or a terminal.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Shows a connection URL with its password replaced, for start-up banners.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return redact_query(url) };
    let (head, rest) = url.split_at(scheme_end + 3);
    // The authority ends at the first '/', '?' or '#': an '@' after it (in a query value)
    // is not a user-info separator.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!("{user}:***{}", &authority[at..])
        }
        None => authority.to_string(),
    };
    format!("{head}{authority}{}", redact_query(tail))
}

/// Query parameters that carry credentials (`?password=`, libpq's `sslpassword`, tokens
/// and keys) keep their name and lose their value.
fn redact_query(tail: &str) -> String {
    const SENSITIVE: &[&str] =
        &["password", "pass", "pwd", "sslpassword", "secret", "token", "key", "api_key", "apikey"];
    let Some(q) = tail.find('?') else { return tail.to_string() };
    let (path, query) = tail.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if SENSITIVE.contains(&k.to_ascii_lowercase().as_str()) => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}{}{fragment}", pairs.join("&"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `APP_ENV`: local, testing, production.
    pub app_env: String,
    /// `APP_HOST` (default 127.0.0.1) and `APP_PORT` (default 8000).
    pub app_host: IpAddr,
    pub app_port: u16,
    /// `SEARCH_PORT` (default 8001): the search service's own port, on `APP_HOST`.
    pub search_port: u16,
    /// `APP_URL`: the public base URL, used in links the platform sends out.
    pub app_url: String,
    /// `DATABASE_URL`: postgres://user:pass@host:port/db
    pub database_url: Secret,
    /// `DB_POOL_MAX` (default 32): connections in the pool.
    pub db_pool_max: u32,
    /// `DB_ACQUIRE_TIMEOUT_MS` (default 5000).
    pub db_acquire_timeout: Duration,
    /// `REDIS_URL`: redis://host:port
    pub redis_url: Secret,
    /// `LOG_FORMAT`: pretty (default) or json. `RUST_LOG` sets levels.
    pub log_format: LogFormat,
    /// `PAGINATION_MAX_PER_PAGE` (default 100).
    pub max_per_page: u32,
    /// `REQUEST_TIMEOUT_SECS` (default 30).
    pub request_timeout: Duration,
    /// `STRIPE_WEBHOOK_SECRET` (`whsec_…`): verifies `Stripe-Signature`. Without it the
    /// webhook answers 503 and stores nothing.
    pub stripe_webhook_secret: Option<Secret>,
    /// `STRIPE_SECRET` (`sk_…`): the API key payments, refunds and subscriptions are made
    /// with. Without it those routes answer 503 `PAYMENTS_NOT_CONFIGURED`.
    pub stripe_secret: Option<Secret>,
    /// `STRIPE_API_BASE` (default `https://api.stripe.com`): where the Stripe API is, e.g.
    /// localstripe in the local stack. Only `https` unless the host is loopback.
    pub stripe_api_base: String,
    /// `APP_KEY`: signs the tracking links in e-mails (open, click, unsubscribe). Required
    /// outside `APP_ENV=local|testing`; never a built-in default (see [`app_key`]).
    pub app_key: Secret,
    /// `TWILIO_AUTH_TOKEN`: verifies `X-Twilio-Signature` on status callbacks.
    pub twilio_auth_token: Option<Secret>,
    /// `AUTH_CACHE_TTL_SECS` (default 5; 0 disables): how long a token row is reused
    /// without a database read. A deleted token keeps working for at most this long.
    pub auth_cache_ttl: Duration,
    /// `QUEUE_PREFIX`: the Redis key prefix of the job queues (`queues` → `queues:emails`).
    pub queue_prefix: String,
    /// `QUEUE_RETRY_AFTER_SECS`: a job taken and not acknowledged within this time is
    /// delivered again (at-least-once).
    pub queue_retry_after: Duration,
    /// `INGEST_WAL_ALERT_MB` (default 1024): a replication slot keeping more WAL than this
    /// makes `/health` degraded (see [`crate::replication`]).
    pub wal_alert_bytes: u64,
    /// What the AI routes may spend and read (`AI_*`).
    pub ai: AiSettings,
    /// Requests per minute before 429 (`RATE_LIMIT_*`).
    pub rate_limits: RateLimits,
    /// `METRICS_TOKEN`: `/metrics` answers only `Authorization: Bearer <token>`. Without it
    /// `/metrics` is open under `APP_ENV=local|testing` and refused (403) elsewhere: its
    /// figures (routes, tenants' traffic, slot names) are not for anyone on the network.
    pub metrics_token: Option<Secret>,
    /// `SHUTDOWN_GRACE_SECS` (default 30): how long a stopping process lets in-flight
    /// requests and jobs finish before it exits anyway.
    pub shutdown_grace: Duration,
    /// Where SES events may come from and what they suppress (`SNS_*`, `SES_*`).
    pub ses_events: SesEventSettings,
    /// `WEBHOOK_ALLOW_PRIVATE_TARGETS` (default false): let webhook endpoints name
    /// loopback, private, link-local and other non-public addresses (a receiver on the
    /// same network; tests). Off, such targets are refused when an endpoint is saved and
    /// again when a delivery resolves its host.
    pub webhook_private_targets: bool,
}

/// The SES event endpoint (`POST /api/ses/events`): SES publishes through SNS, and SNS
/// signs every message with a certificate it names by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesEventSettings {
    /// `SNS_TOPIC_ARNS` (comma-separated; default none): the topics whose messages are
    /// applied and whose subscriptions are confirmed. Empty, the endpoint refuses all.
    pub topic_arns: Vec<String>,
    /// `SNS_CERT_HOSTS` (default `sns.*.amazonaws.com,sns.*.amazonaws.com.cn`): hosts a
    /// signing certificate or a subscription URL may be fetched from, over HTTPS; `*` is
    /// one DNS label. An entry `http://host:port` admits plain HTTP to exactly that host
    /// (local tests).
    pub cert_hosts: Vec<String>,
    /// `SNS_MAX_AGE_SECS` (default 3600): an older message is a replay and is refused.
    pub max_age: Duration,
    /// `SES_TRANSIENT_BOUNCE_LIMIT` (default 3; 0 never): transient bounces of one
    /// customer within the window that suppress the address.
    pub transient_bounce_limit: u32,
    /// `SES_TRANSIENT_BOUNCE_WINDOW_DAYS` (default 7).
    pub transient_bounce_window: Duration,
}

impl Default for SesEventSettings {
    fn default() -> Self {
        ses_event_settings(&|_: &str| None).expect("the defaults are valid")
    }
}

/// What the AI routes may spend and read. The platform pays the LLM provider for every
/// tenant, so model and length are bounded here rather than by what a tenant asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiSettings {
    /// `AI_PUBLIC_KNOWLEDGE` (default false): give the assistant other tenants' public
    /// knowledge entries, as quoted reference text labelled with their provenance (never as
    /// system-prompt text). Off, the assistant reads only the tenant's own knowledge.
    pub public_knowledge: bool,
    /// `AI_MODELS` (comma-separated; default `gpt-4o-mini,gpt-4o` plus `LLM_MODEL`): the
    /// chat models a personality may name. A stored personality naming another model is
    /// answered with the provider's default model.
    pub models: Vec<String>,
    /// `AI_MAX_TOKENS` (default 4096): the largest answer any request may ask for.
    pub max_tokens: u32,
    /// `AI_TENANT_DAILY_TOKENS` (default 500000; 0 turns the budget off): LLM tokens a
    /// tenant may use per UTC day, prompt and answer, before generation answers 429.
    pub tenant_daily_tokens: u64,
    /// `AI_LOCAL_TEMPLATES` (default false): without a provider key, generation routes
    /// answer with canned demo text (model `local-template-v1`) instead of 503
    /// `AI_PROVIDER_NOT_CONFIGURED`. For demos and tests; never a real answer.
    pub local_templates: bool,
}

impl Default for AiSettings {
    /// What an empty environment gives (see [`ai_settings`]).
    fn default() -> Self {
        ai_settings(&|_: &str| None).expect("the defaults are valid")
    }
}

impl AiSettings {
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }
}

/// Requests per minute; 0 turns a limit off. Each is a smooth rate with a burst of the
/// same size (GCRA), counted in Redis so every API process shares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `RATE_LIMIT_PER_TOKEN` (default 600): one API token.
    pub per_token: u32,
    /// `RATE_LIMIT_PER_TENANT` (default 1200): all of a tenant's tokens together.
    pub per_tenant: u32,
    /// `RATE_LIMIT_GENERATION_PER_TENANT` (default 30): the routes that call the LLM or
    /// embed text (generation, AI chat and context), per tenant.
    pub generation_per_tenant: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { per_token: 600, per_tenant: 1200, generation_per_tenant: 30 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set; see .env.example")]
    Missing(&'static str),
    #[error("{name} has an invalid value: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    /// Reads the process environment, then `.env` for keys the environment lacks (the
    /// environment wins, as with Laravel's dotenv).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_lookup())
    }

    /// Builds a config from any key lookup; tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| get(name).filter(|v| !v.is_empty()).ok_or(ConfigError::Missing(name));
        fn parsed<T: std::str::FromStr>(name: &'static str, raw: Option<String>, default: T) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            match raw.filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: e.to_string() }),
            }
        }
        let app_host: IpAddr = parsed("APP_HOST", get("APP_HOST"), IpAddr::from([127, 0, 0, 1]))?;
        let app_port: u16 = parsed("APP_PORT", get("APP_PORT"), 8000)?;
        let search_port: u16 = parsed("SEARCH_PORT", get("SEARCH_PORT"), 8001)?;
        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("") | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    reason: format!("`{other}` is not pretty or json"),
                });
            }
        };
        let db_pool_max: u32 = parsed("DB_POOL_MAX", get("DB_POOL_MAX"), 32)?;
        if db_pool_max == 0 {
            return Err(ConfigError::Invalid { name: "DB_POOL_MAX", reason: "must be at least 1".into() });
        }
        let max_per_page: u32 = parsed("PAGINATION_MAX_PER_PAGE", get("PAGINATION_MAX_PER_PAGE"), 100)?;
        if max_per_page == 0 {
            return Err(ConfigError::Invalid { name: "PAGINATION_MAX_PER_PAGE", reason: "must be at least 1".into() });
        }
        let app_env = get("APP_ENV").filter(|v| !v.is_empty()).unwrap_or_else(|| "local".into());
        let app_key = app_key(get("APP_KEY"), &app_env)?;
        Ok(Self {
            app_env,
            app_host,
            app_port,
            search_port,
            app_url: get("APP_URL")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| format!("http://{app_host}:{app_port}")),
            database_url: Secret::new(required("DATABASE_URL")?),
            db_pool_max,
            db_acquire_timeout: Duration::from_millis(parsed(
                "DB_ACQUIRE_TIMEOUT_MS",
                get("DB_ACQUIRE_TIMEOUT_MS"),
                5000,
            )?),
            redis_url: Secret::new(required("REDIS_URL")?),
            log_format,
            max_per_page,
            request_timeout: Duration::from_secs(parsed("REQUEST_TIMEOUT_SECS", get("REQUEST_TIMEOUT_SECS"), 30)?),
            stripe_webhook_secret: get("STRIPE_WEBHOOK_SECRET").filter(|v| !v.is_empty()).map(Secret::new),
            stripe_secret: get("STRIPE_SECRET").filter(|v| !v.is_empty()).map(Secret::new),
            stripe_api_base: stripe_api_base(get("STRIPE_API_BASE"))?,
            app_key,
            twilio_auth_token: get("TWILIO_AUTH_TOKEN").filter(|v| !v.is_empty()).map(Secret::new),
            auth_cache_ttl: Duration::from_secs(parsed("AUTH_CACHE_TTL_SECS", get("AUTH_CACHE_TTL_SECS"), 5)?),
            queue_prefix: get("QUEUE_PREFIX").filter(|v| !v.is_empty()).unwrap_or_else(|| "queues".into()),
            queue_retry_after: Duration::from_secs(
                parsed("QUEUE_RETRY_AFTER_SECS", get("QUEUE_RETRY_AFTER_SECS"), 90u64)?.max(1),
            ),
            wal_alert_bytes: crate::replication::alert_bytes(get("INGEST_WAL_ALERT_MB").as_deref())
                .map_err(|reason| ConfigError::Invalid { name: "INGEST_WAL_ALERT_MB", reason })?,
            webhook_private_targets: parsed(
                "WEBHOOK_ALLOW_PRIVATE_TARGETS",
                get("WEBHOOK_ALLOW_PRIVATE_TARGETS"),
                false,
            )?,
            ai: ai_settings(&get)?,
            rate_limits: {
                let d = RateLimits::default();
                RateLimits {
                    per_token: parsed("RATE_LIMIT_PER_TOKEN", get("RATE_LIMIT_PER_TOKEN"), d.per_token)?,
                    per_tenant: parsed("RATE_LIMIT_PER_TENANT", get("RATE_LIMIT_PER_TENANT"), d.per_tenant)?,
                    generation_per_tenant: parsed(
                        "RATE_LIMIT_GENERATION_PER_TENANT",
                        get("RATE_LIMIT_GENERATION_PER_TENANT"),
                        d.generation_per_tenant,
                    )?,
                }
            },
            metrics_token: match get("METRICS_TOKEN").filter(|v| !v.is_empty()) {
                Some(t) if t.len() < 16 => {
                    return Err(ConfigError::Invalid {
                        name: "METRICS_TOKEN",
                        reason: "must be at least 16 characters".into(),
                    });
                }
                other => other.map(Secret::new),
            },
            shutdown_grace: Duration::from_secs(parsed("SHUTDOWN_GRACE_SECS", get("SHUTDOWN_GRACE_SECS"), 30)?),
            ses_events: ses_event_settings(&get)?,
        })
    }
}

/// The Stripe API's base URL: `https://…`, or `http://` to a loopback host (localstripe);
/// the secret key travels in every request, so never in clear over a network.
fn stripe_api_base(raw: Option<String>) -> Result<String, ConfigError> {
    let Some(raw) = raw.filter(|v| !v.trim().is_empty()) else { return Ok("https://api.stripe.com".into()) };
    let invalid = |reason: &str| ConfigError::Invalid { name: "STRIPE_API_BASE", reason: reason.into() };
    let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(invalid("has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(invalid("must be https (http only to a loopback host)")),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("must be a bare base URL"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn ses_event_settings(get: &impl Fn(&str) -> Option<String>) -> Result<SesEventSettings, ConfigError> {
    let list = |name: &str| -> Option<Vec<String>> {
        get(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect())
    };
    let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
        match get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|e: std::num::ParseIntError| ConfigError::Invalid { name, reason: e.to_string() })
            }
        }
    };
    let topic_arns = list("SNS_TOPIC_ARNS").unwrap_or_default();
    if let Some(bad) =
        topic_arns.iter().find(|a| !a.starts_with("arn:") || a.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ConfigError::Invalid { name: "SNS_TOPIC_ARNS", reason: format!("`{bad}` is not a topic ARN") });
    }
    let cert_hosts =
        list("SNS_CERT_HOSTS").unwrap_or_else(|| vec!["sns.*.amazonaws.com".into(), "sns.*.amazonaws.com.cn".into()]);
    if let Some(bad) = cert_hosts.iter().find(|h| {
        h.contains('/') && !h.starts_with("http://") && !h.starts_with("https://")
            || h.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@')
    }) {
        return Err(ConfigError::Invalid { name: "SNS_CERT_HOSTS", reason: format!("`{bad}` is not a host pattern") });
    }
    let max_age = number("SNS_MAX_AGE_SECS", 3600)?;
    if max_age == 0 {
        return Err(ConfigError::Invalid { name: "SNS_MAX_AGE_SECS", reason: "must be at least 1".into() });
    }
    let window_days = number("SES_TRANSIENT_BOUNCE_WINDOW_DAYS", 7)?;
    if !(1..=365).contains(&window_days) {
        return Err(ConfigError::Invalid {
            name: "SES_TRANSIENT_BOUNCE_WINDOW_DAYS",
            reason: "must be from 1 to 365".into(),
        });
    }
    Ok(SesEventSettings {
        topic_arns,
        cert_hosts,
        max_age: Duration::from_secs(max_age),
        transient_bounce_limit: u32::try_from(number("SES_TRANSIENT_BOUNCE_LIMIT", 3)?)
            .map_err(|e| ConfigError::Invalid { name: "SES_TRANSIENT_BOUNCE_LIMIT", reason: e.to_string() })?,
        transient_bounce_window: Duration::from_secs(window_days * 86_400),
    })
}

fn ai_settings(get: &impl Fn(&str) -> Option<String>) -> Result<AiSettings, ConfigError> {
    let nonempty = |k: &str| get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let flag = |name: &'static str| match nonempty(name).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ConfigError::Invalid { name, reason: format!("`{other}` is not true or false") }),
    };
    let public_knowledge = flag("AI_PUBLIC_KNOWLEDGE")?;
    let local_templates = flag("AI_LOCAL_TEMPLATES")?;
    let mut models: Vec<String> = match nonempty("AI_MODELS") {
        Some(list) => list.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect(),
        None => vec!["gpt-4o-mini".into(), "gpt-4o".into()],
    };
    if let Some(default) = nonempty("LLM_MODEL")
        && !models.contains(&default)
    {
        models.push(default);
    }
    if models.iter().any(|m| m.len() > 200 || m.chars().any(char::is_control)) {
        return Err(ConfigError::Invalid {
            name: "AI_MODELS",
            reason: "a model name is too long or has control characters".into(),
        });
    }
    let max_tokens: u32 = match nonempty("AI_MAX_TOKENS") {
        None => 4096,
        Some(v) => v.parse().ok().filter(|n| (1..=128_000).contains(n)).ok_or_else(|| ConfigError::Invalid {
            name: "AI_MAX_TOKENS",
            reason: format!("`{v}` is not a number from 1 to 128000"),
        })?,
    };
    let tenant_daily_tokens: u64 = match nonempty("AI_TENANT_DAILY_TOKENS") {
        None => 500_000,
        Some(v) => v.parse().map_err(|e: std::num::ParseIntError| ConfigError::Invalid {
            name: "AI_TENANT_DAILY_TOKENS",
            reason: e.to_string(),
        })?,
    };
    Ok(AiSettings { public_knowledge, models, max_tokens, tenant_daily_tokens, local_templates })
}

/// `APP_KEY` signs tracking, click and unsubscribe links: a key anyone knows would let
/// anyone mint them (an open redirect on the platform's domain, forged unsubscribes). So
/// there is no default key. Outside `APP_ENV=local|testing` the key is required; locally a
/// missing key becomes a random one for this process (links it signs stop working when it
/// exits; `make run` writes a lasting one into `.stack/env`).
fn app_key(raw: Option<String>, app_env: &str) -> Result<Secret, ConfigError> {
    match raw.filter(|v| !v.is_empty()) {
        Some(k) if k.len() < 16 => {
            Err(ConfigError::Invalid { name: "APP_KEY", reason: "must be at least 16 characters".into() })
        }
        Some(k) => Ok(Secret::new(k)),
        None if matches!(app_env, "local" | "testing") => {
            tracing::warn!("APP_KEY is not set: links are signed with a random key for this process only");
            Ok(Secret::new(hex::encode(rand::random::<[u8; 32]>())))
        }
        None => Err(ConfigError::Invalid {
            name: "APP_KEY",
            reason: format!(
                "is required when APP_ENV={app_env} (it signs tracking and unsubscribe links): set it to a long \
                 random value, e.g. APP_KEY=$(openssl rand -hex 32), and keep it stable across restarts"
            ),
        }),
    }
}

/// Looks keys up in the process environment, then in `.env` (read once, now). Every
/// part of the platform that reads settings goes through this, so `.env` works the same
/// for all of them.
pub fn env_lookup() -> impl Fn(&str) -> Option<String> {
    let dotenv: std::collections::HashMap<String, String> =
        std::fs::read_to_string(".env").map(|t| parse_dotenv(&t).into_iter().collect()).unwrap_or_default();
    move |k| std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
}

/// Minimal `.env` parser: `KEY=value` lines, `#` comments, optional `export` and quotes.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_and_required() {
        let err = Config::from_lookup(lookup(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Missing("DATABASE_URL")));
        let cfg = Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://u:p@h/db"), ("REDIS_URL", "redis://h")]))
            .unwrap();
        assert_eq!(cfg.app_port, 8000);
        assert_eq!(cfg.app_url, "http://127.0.0.1:8000");
        assert_eq!(cfg.log_format, LogFormat::Pretty);
        assert!(!format!("{cfg:?}").contains("u:p"), "secrets must not appear in Debug output");
        assert!(!cfg.ai.public_knowledge, "other tenants' entries stay out of prompts unless asked for");
        assert_eq!((cfg.ai.max_tokens, cfg.ai.tenant_daily_tokens), (4096, 500_000));
        assert!(cfg.ai.allows_model("gpt-4o-mini") && !cfg.ai.allows_model("o1-pro"));
        assert_eq!(cfg.rate_limits, RateLimits { per_token: 600, per_tenant: 1200, generation_per_tenant: 30 });
        assert_eq!(cfg.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn the_stripe_key_never_travels_in_clear_over_a_network() {
        let base = [("DATABASE_URL", "postgres://x"), ("REDIS_URL", "redis://x")];
        let with = |v: &'static str| Config::from_lookup(lookup(&[base[0], base[1], ("STRIPE_API_BASE", v)]));
        assert_eq!(with("").unwrap().stripe_api_base, "https://api.stripe.com");
        assert_eq!(with("http://127.0.0.1:58420/").unwrap().stripe_api_base, "http://127.0.0.1:58420");
        assert_eq!(with("https://stripe.internal").unwrap().stripe_api_base, "https://stripe.internal");
        for bad in
            ["http://stripe.example", "ftp://127.0.0.1", "https://u:p@api.stripe.com", "https://x/?a=1", "nonsense"]
        {
            assert!(matches!(with(bad), Err(ConfigError::Invalid { name: "STRIPE_API_BASE", .. })), "{bad}");
        }
    }

    #[test]
    fn ai_limits_are_checked() {
        let base = [("DATABASE_URL", "postgres://x"), ("REDIS_URL", "redis://x")];
        let with = |k: &'static str, v: &'static str| Config::from_lookup(lookup(&[base[0], base[1], (k, v)]));
        assert!(matches!(
            with("AI_PUBLIC_KNOWLEDGE", "yes"),
            Err(ConfigError::Invalid { name: "AI_PUBLIC_KNOWLEDGE", .. })
        ));
        assert!(matches!(with("AI_MAX_TOKENS", "0"), Err(ConfigError::Invalid { name: "AI_MAX_TOKENS", .. })));
        assert!(matches!(with("AI_MAX_TOKENS", "999999"), Err(ConfigError::Invalid { .. })));
        assert!(matches!(with("RATE_LIMIT_PER_TOKEN", "-1"), Err(ConfigError::Invalid { .. })));
        let cfg = with("AI_MODELS", " llama-3 , mistral-small ,").unwrap();
        assert_eq!(cfg.ai.models, ["llama-3", "mistral-small"]);
        let cfg = Config::from_lookup(lookup(&[base[0], base[1], ("LLM_MODEL", "meta/llama")])).unwrap();
        assert!(cfg.ai.allows_model("meta/llama"), "the default model is always allowed");
    }

    #[test]
    fn no_default_app_key() {
        let base = [("DATABASE_URL", "postgres://x"), ("REDIS_URL", "redis://x")];
        // Production without a key refuses to start, saying how to fix it.
        let err = Config::from_lookup(lookup(&[base[0], base[1], ("APP_ENV", "production")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("APP_KEY") && text.contains("openssl rand"), "{text}");
        let cfg = Config::from_lookup(lookup(&[
            base[0],
            base[1],
            ("APP_ENV", "production"),
            ("APP_KEY", "k".repeat(32).as_str()),
        ]))
        .unwrap();
        assert_eq!(cfg.app_key.expose(), "k".repeat(32));
        // Locally a missing key is random per process: nobody else knows it.
        let a = Config::from_lookup(lookup(&base)).unwrap();
        let b = Config::from_lookup(lookup(&[base[0], base[1], ("APP_ENV", "testing")])).unwrap();
        assert_ne!(a.app_key.expose(), b.app_key.expose());
        assert!(a.app_key.expose().len() >= 32);
        assert_ne!(a.app_key.expose(), "fibonacco-development-key-change-me");
    }

    #[test]
    fn invalid_values_are_named() {
        let err = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("APP_PORT", "eighty"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("APP_PORT"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        // libpq takes the password as a query parameter too.
        assert_eq!(
            redact_url("postgres://db:5432/x?user=app&password=s3cret&sslmode=require"),
            "postgres://db:5432/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/x?sslpassword=k#frag"), "postgres://db/x?sslpassword=***#frag");
        // An '@' in a query value is not user info.
        assert_eq!(redact_url("https://h/p?to=a@b.example"), "https://h/p?to=a@b.example");
    }

    #[test]
    fn dotenv_lines() {
        let parsed = parse_dotenv("# c\nA=1\nexport B=\"two words\"\n\nC = 3\n");
        assert_eq!(parsed, vec![("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "3".into())]);
    }
}
