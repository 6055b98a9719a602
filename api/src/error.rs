//! One error type for the HTTP surface. Its `IntoResponse` writes the seed's error
//! envelope; server-side failures are logged with their cause chain and shown to the
//! client only as a generic message.

use std::collections::BTreeMap;

use axum::{
    Json,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

pub use fibonacco_platform::envelope::{ErrorBody, ErrorEnvelope};

/// Per-field validation messages, Laravel style: `{"email": ["must be a valid e-mail address"]}`.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq, ToSchema)]
#[serde(transparent)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// How many problems were added (a field can have several).
    pub fn len(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }
    pub fn contains(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
    /// `Ok(())` when nothing was added, else the 422 error.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() { Ok(()) } else { Err(ApiError::Validation(self)) }
    }
    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::default();
        e.add(field, message);
        e
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("the token lacks the `{0}` ability")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A provider callback whose signature does not verify (nothing is changed).
    #[error("{0}")]
    BadSignature(String),
    #[error("route not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("{message}")]
    Conflict { message: String, field: Option<&'static str> },
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("expected a JSON body with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// A provider we call (LLM, …) failed in a way that may heal: try again later.
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// A provider we call refused the request.
    #[error("{0}")]
    Upstream(String),
    /// No language model is configured (and `AI_LOCAL_TEMPLATES` is off): generation
    /// would only be canned text.
    #[error(
        "no language model is configured: set OPENAI_API_KEY or OPENROUTER_API_KEY (AI_LOCAL_TEMPLATES=true gives demo text)"
    )]
    AiNotConfigured,
    /// `STRIPE_SECRET` is not set: payments, refunds and subscriptions cannot be made.
    #[error("payments are not configured: set STRIPE_SECRET (and STRIPE_API_BASE for a local Stripe)")]
    PaymentsNotConfigured,
    /// The payer's card was declined; Stripe's message says why.
    #[error("{message}")]
    PaymentDeclined { message: String, decline_code: Option<String> },
    #[error("request timed out")]
    Timeout,
    /// A rate limit (per token, per tenant, or the generation routes') is reached.
    #[error("too many requests; try again in {} s", whole_seconds(.0.retry_after))]
    RateLimited(fibonacco_platform::quota::Decision),
    /// The tenant's daily LLM token budget (`AI_TENANT_DAILY_TOKENS`) is spent.
    #[error("the daily AI token budget of this account is spent; it renews at midnight UTC")]
    LlmBudgetExhausted { resets_in: std::time::Duration },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<fibonacco_platform::llm::LlmError> for ApiError {
    fn from(e: fibonacco_platform::llm::LlmError) -> Self {
        use fibonacco_platform::llm::LlmError;
        tracing::warn!(error = %e, "LLM provider call failed");
        match e {
            LlmError::Retryable(why) => ApiError::UpstreamUnavailable(format!(
                "The text generation provider is unavailable ({why}); try again later."
            )),
            LlmError::Rejected(why) => {
                ApiError::Upstream(format!("The text generation provider refused the request: {why}"))
            }
        }
    }
}

impl From<fibonacco_search::service::ServiceError> for ApiError {
    fn from(e: fibonacco_search::service::ServiceError) -> Self {
        use fibonacco_search::service::ServiceError as S;
        match e {
            S::Unauthenticated => ApiError::Unauthenticated,
            S::Forbidden(ability) => ApiError::Forbidden(ability),
            S::Validation(problems) => {
                let mut fields = FieldErrors::default();
                for (field, messages) in problems {
                    for m in messages {
                        fields.add(field.clone(), m);
                    }
                }
                ApiError::Validation(fields)
            }
            S::MalformedJson(m) => ApiError::MalformedJson(m),
            S::UnsupportedMediaType => ApiError::UnsupportedMediaType,
            S::RouteNotFound => ApiError::RouteNotFound,
            S::Unavailable(m) => ApiError::UpstreamUnavailable(m),
            S::Busy => ApiError::Unavailable("database busy"),
            S::Internal(cause) => ApiError::Internal(anyhow::anyhow!("search: {cause}")),
        }
    }
}

impl From<crate::stripe::client::StripeError> for ApiError {
    fn from(e: crate::stripe::client::StripeError) -> Self {
        use crate::stripe::client::StripeError as S;
        match e {
            S::Declined { code, message, .. } => ApiError::PaymentDeclined { message, decline_code: code },
            // 400 and 404 are about what was asked (an unknown PaymentMethod, an amount
            // under Stripe's minimum, a currency it does not take): the caller's to fix.
            S::Rejected { status: 400 | 404, message, .. } => {
                ApiError::Validation(FieldErrors::single("stripe", format!("Stripe refused it: {message}")))
            }
            S::Rejected { status: 409, message, .. } => {
                ApiError::Conflict { message: format!("Stripe refused it: {message}"), field: None }
            }
            // 401 and 403: our key is wrong or lacks a permission; an operator's problem.
            S::Rejected { message, .. } => ApiError::Upstream(format!("Stripe refused the request: {message}")),
            S::Unavailable(why) => ApiError::UpstreamUnavailable(format!(
                "Stripe is unavailable ({why}); try again: the request is idempotent, nothing is done twice."
            )),
            S::Unexpected(why) => ApiError::Upstream(format!("Stripe answered unexpectedly: {why}")),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => ApiError::Unavailable("database busy"),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::BadSignature(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::MalformedJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::PaymentDeclined { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Unavailable(_)
            | Self::UpstreamUnavailable(_)
            | Self::AiNotConfigured
            | Self::PaymentsNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited(_) | Self::LlmBudgetExhausted { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::BadSignature(_) => "INVALID_SIGNATURE",
            Self::NotFound(_) => "NOT_FOUND",
            Self::RouteNotFound => "ROUTE_NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Validation(_) => "VALIDATION_FAILED",
            Self::Conflict { .. } => "CONFLICT",
            Self::MalformedJson(_) => "MALFORMED_JSON",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::UpstreamUnavailable(_) => "UPSTREAM_UNAVAILABLE",
            Self::Upstream(_) => "UPSTREAM_ERROR",
            Self::AiNotConfigured => "AI_PROVIDER_NOT_CONFIGURED",
            Self::PaymentsNotConfigured => "PAYMENTS_NOT_CONFIGURED",
            Self::PaymentDeclined { .. } => "PAYMENT_DECLINED",
            Self::Timeout => "REQUEST_TIMEOUT",
            Self::RateLimited(_) => "RATE_LIMITED",
            Self::LlmBudgetExhausted { .. } => "LLM_BUDGET_EXHAUSTED",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    fn body(&self) -> ErrorBody {
        let (message, details) = match self {
            Self::Unauthenticated => ("Unauthenticated.".to_owned(), serde_json::json!({})),
            Self::Forbidden(ability) => {
                (format!("This action requires the `{ability}` ability."), serde_json::json!({ "ability": ability }))
            }
            Self::Validation(fields) => ("The given data was invalid.".to_owned(), serde_json::json!(fields)),
            Self::Conflict { message, field } => (
                message.clone(),
                match field {
                    Some(f) => serde_json::json!({ "field": f }),
                    None => serde_json::json!({}),
                },
            ),
            Self::Internal(_) => ("Internal server error.".to_owned(), serde_json::json!({})),
            Self::PaymentDeclined { message, decline_code } => {
                (message.clone(), serde_json::json!({ "decline_code": decline_code }))
            }
            other => (capitalise(&other.to_string()), serde_json::json!({})),
        };
        ErrorBody { message, code: self.code(), details }
    }
}

/// Seconds for `Retry-After`: rounded up, and at least 1 (0 would invite a busy loop).
pub fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the limit is whole).
pub fn rate_limit_headers(d: &fibonacco_platform::quota::Decision) -> [(HeaderName, HeaderValue); 3] {
    [
        (HeaderName::from_static("x-ratelimit-limit"), HeaderValue::from(d.limit)),
        (HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from(d.remaining)),
        (HeaderName::from_static("x-ratelimit-reset"), HeaderValue::from(d.reset.as_secs_f64().ceil() as u64)),
    ]
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => {
            let mut out: String = first.to_uppercase().collect();
            out.push_str(chars.as_str());
            if !out.ends_with('.') {
                out.push('.');
            }
            out
        }
        None => String::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "request failed");
        }
        let mut response = (status, Json(ErrorEnvelope { error: self.body() })).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::RateLimited(d) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(d.retry_after)));
                headers.extend(rate_limit_headers(d));
            }
            Self::LlmBudgetExhausted { resets_in } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(*resets_in)));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_hide_internal_causes() {
        let err = ApiError::Internal(anyhow::anyhow!("password=hunter2 connection refused"));
        let body = err.body();
        assert_eq!(body.code, "INTERNAL_ERROR");
        assert!(!body.message.contains("hunter2"));
    }

    #[test]
    fn validation_details_are_per_field() {
        let mut f = FieldErrors::default();
        f.add("email", "must be a valid e-mail address");
        let body = ApiError::Validation(f).body();
        assert_eq!(body.details, serde_json::json!({"email": ["must be a valid e-mail address"]}));
        assert_eq!(ApiError::NotFound("customer").body().message, "Customer not found.");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        use std::time::Duration;
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }
}
