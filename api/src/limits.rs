//! Rate limits on `/api/v1` (`RATE_LIMIT_*`), so one tenant cannot starve the others:
//! per token, per tenant (all its tokens together), and a stricter per-tenant rate for
//! the routes that spend provider money (LLM, embeddings, text-to-speech). Counted in
//! Redis ([`fibonacco_platform::quota`]) so every API process shares one count.
//!
//! Answers carry `X-RateLimit-Limit`, `-Remaining` and `-Reset` for the tightest limit;
//! a refusal is 429 with `Retry-After` and costs nothing against the other limits. The
//! caller is authenticated once here and the handler's `Auth` reuses it. Requests
//! without a valid token pass through untouched (the handler answers 401). When Redis is
//! unreachable requests are served unlimited (logged): Redis down is already reported by
//! `/health`, and refusing every tenant would be the outage the limits exist to prevent.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use fibonacco_platform::{
    auth::{self, AuthContext},
    config::RateLimits,
    quota::{self, Rate},
};

use crate::{ApiError, error::rate_limit_headers, state::AppState};

const MINUTE: Duration = Duration::from_secs(60);
const REDIS_WAIT: Duration = Duration::from_millis(500);

/// The caller the limiter authenticated, for [`crate::extract::Auth`].
#[derive(Debug, Clone)]
pub struct Authenticated(pub AuthContext);

/// True for the routes that call a paid provider: text generation, AI chat and context,
/// embeddings on demand, text-to-speech. `path` is under `/api/v1` (with or without it).
pub fn is_generation(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["ai", "chat" | "context"]
            | ["content", "generate" | "generate-from-campaign"]
            | ["ads", "generate-from-campaign" | "generate-from-content"]
            | ["campaigns", "generate" | "suggestions"]
            | ["personalities", _, "generate-response"]
            | ["knowledge", _, "generate-embedding"]
            | ["tts"]
    )
}

/// The rates a request is counted against (limits of 0 are off).
pub fn rates_for(limits: &RateLimits, prefix: &str, caller: &AuthContext, method: &Method, path: &str) -> Vec<Rate> {
    let tenant = caller.tenant_id;
    let mut rates = Vec::new();
    let mut add = |key: String, limit: u32| {
        if limit > 0 {
            rates.push(Rate { key: format!("{prefix}:rate:{key}"), limit, period: MINUTE });
        }
    };
    add(format!("token:{}", caller.token_id), limits.per_token);
    add(format!("tenant:{tenant}"), limits.per_tenant);
    if is_generation(method, path) {
        add(format!("generation:{tenant}"), limits.generation_per_tenant);
    }
    rates
}

/// The middleware: authenticate, count, refuse or pass on, and label the answer.
pub async fn enforce(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Ok(presented) = auth::parse_bearer(header) else { return next.run(req).await };
    let caller = match auth::authenticate_cached(&state.pool, &state.tokens, &presented).await {
        Ok(caller) => caller,
        // Unknown token or database trouble: the handler's `Auth` answers it as before.
        Err(_) => return next.run(req).await,
    };
    let rates =
        rates_for(&state.config.rate_limits, &state.config.queue_prefix, &caller, req.method(), req.uri().path());
    req.extensions_mut().insert(Authenticated(caller));
    // A Redis that hangs is treated like one that is down: the limits wait for it at most
    // this long on every request.
    let decision = match tokio::time::timeout(REDIS_WAIT, quota::check(&state.redis, &rates)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "rate limits unavailable; serving without them");
            return next.run(req).await;
        }
        Err(_) => {
            tracing::error!("rate limits did not answer in time; serving without them");
            return next.run(req).await;
        }
    };
    if !decision.allowed {
        metrics::counter!("rate_limited_total").increment(1);
        return ApiError::RateLimited(decision).into_response();
    }
    let mut response = next.run(req).await;
    if !rates.is_empty() {
        response.headers_mut().extend(rate_limit_headers(&decision));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_routes_are_the_ones_that_spend_provider_money() {
        for path in [
            "/api/v1/ai/chat",
            "/ai/context",
            "/api/v1/content/generate",
            "/api/v1/content/generate-from-campaign",
            "/api/v1/ads/generate-from-content",
            "/api/v1/campaigns/suggestions",
            "/api/v1/personalities/0199/generate-response",
            "/api/v1/knowledge/0199/generate-embedding",
            "/api/v1/tts",
        ] {
            assert!(is_generation(&Method::POST, path), "{path}");
        }
        for (method, path) in [
            (Method::GET, "/api/v1/ai/chat"),
            (Method::GET, "/api/v1/tts"),
            (Method::POST, "/api/v1/customers"),
            (Method::POST, "/api/v1/content"),
            (Method::GET, "/api/v1/ai/models"),
            (Method::POST, "/api/v1/personalities/0199/generate-response/extra"),
        ] {
            assert!(!is_generation(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn a_limit_of_zero_is_off() {
        let caller = AuthContext {
            token_id: 7,
            tenant_id: fibonacco_platform::TenantId::from_uuid(uuid::Uuid::nil()),
            user_id: None,
            abilities: vec![],
        };
        let limits = RateLimits { per_token: 10, per_tenant: 0, generation_per_tenant: 3 };
        let keys: Vec<String> =
            rates_for(&limits, "q", &caller, &Method::POST, "/ai/chat").into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["q:rate:token:7", format!("q:rate:generation:{}", uuid::Uuid::nil()).as_str()]);
    }
}
