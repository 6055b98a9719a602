//! Extractors whose failures come out as the seed's error envelope.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{header, request::Parts},
};
use fibonacco_platform::auth::{self, AuthContext, AuthenticateError};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, state::AppState};

/// The authenticated caller. Any route taking it answers 401 without a valid token.
#[derive(Debug, Clone)]
pub struct Auth(pub AuthContext);

impl Auth {
    /// 403 unless the token carries `ability` (or a wildcard covering it).
    pub fn require(&self, ability: &'static str) -> Result<(), ApiError> {
        if self.0.can(ability) { Ok(()) } else { Err(ApiError::Forbidden(ability)) }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // The rate limiter already authenticated this request.
        if let Some(crate::limits::Authenticated(ctx)) = parts.extensions.get() {
            tracing::Span::current().record("tenant_id", tracing::field::display(ctx.tenant_id));
            return Ok(Auth(ctx.clone()));
        }
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let presented = auth::parse_bearer(header).map_err(|_| ApiError::Unauthenticated)?;
        match auth::authenticate_cached(&state.pool, &state.tokens, &presented).await {
            Ok(ctx) => {
                tracing::Span::current().record("tenant_id", tracing::field::display(ctx.tenant_id));
                Ok(Auth(ctx))
            }
            Err(AuthenticateError::Rejected(reason)) => {
                tracing::debug!(%reason, "token rejected");
                Err(ApiError::Unauthenticated)
            }
            Err(AuthenticateError::Database(e)) => Err(e.into()),
        }
    }
}

/// A JSON body. Wrong content type → 415, bad syntax → 400, wrong shape → 422 naming the
/// field, too large → 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedJson("the body could not be read".into())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body sent either as JSON or as a form (`application/x-www-form-urlencoded`), as
/// webhook providers such as Twilio do.
pub struct FormOrJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for FormOrJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return JsonBody::<T>::from_request(req, state).await.map(|JsonBody(v)| FormOrJson(v));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedJson("the body could not be read".into())
            }
        })?;
        if bytes.windows(3).any(|w| w == b"%00") {
            return Err(ApiError::Validation(FieldErrors::single("body", "must not contain the NUL character (%00)")));
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(FormOrJson)
            .map_err(|e| ApiError::Validation(FieldErrors::single("body", e.to_string())))
    }
}

/// The largest magnitude a JSON number in a request may have (see [`refuse_unsafe_values`]).
pub const MAX_JSON_NUMBER: f64 = 1e300;

/// Postgres text cannot hold the NUL character: a value carrying one would fail its
/// INSERT (a 500), so it is refused up front, by field, at any depth. The body's own
/// fields (its top-level strings and lists of strings) also refuse every other control
/// character but tab, LF and CR: no field of the API has a use for them, and the
/// OpenAPI document says so once for all of them (`openapi::contract::TEXT`).
///
/// Numbers are bounded too: Postgres keeps a JSON number exactly and prints it back in
/// full, and one near `f64::MAX` (1.79e308) no longer reads back as a float, so a row
/// holding it could never be read again (every list of it a 500). JSON numbers are
/// limited to a magnitude of [`MAX_JSON_NUMBER`].
fn refuse_unsafe_values(value: &serde_json::Value) -> Result<(), ApiError> {
    fn walk(v: &serde_json::Value, path: &str, e: &mut FieldErrors) {
        const MESSAGE: &str = "must not contain the NUL character (\\u0000)";
        let here = |p: &str| if p.is_empty() { "body".to_owned() } else { p.to_owned() };
        match v {
            serde_json::Value::String(s) if s.contains('\0') => e.add(here(path), MESSAGE),
            serde_json::Value::Number(n) if n.as_f64().is_some_and(|x| x.abs() > MAX_JSON_NUMBER) => {
                e.add(here(path), "numbers must be at most 1e300 in magnitude")
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{i}]"), e);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, item) in map {
                    let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    if k.contains('\0') {
                        e.add(here(path), "keys must not contain the NUL character (\\u0000)");
                    }
                    walk(item, &child, e);
                }
            }
            _ => {}
        }
    }
    let mut e = FieldErrors::default();
    walk(value, "", &mut e);
    if let serde_json::Value::Object(fields) = value {
        let control = |s: &str| s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\0'));
        for (name, v) in fields {
            let bad = match v {
                serde_json::Value::String(s) => control(s),
                serde_json::Value::Array(items) => items.iter().any(|i| i.as_str().is_some_and(control)),
                _ => false,
            };
            if bad {
                e.add(name.clone(), "must not contain control characters (other than tab and line breaks)");
            }
        }
    }
    e.into_result()
}

/// A JSON number with no fractional part (`3.0`) is an integer to JSON Schema, so it is
/// one here too: integer fields accept it like `3`.
fn integral_floats_as_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(x) = n.as_f64()
                && x.fract() == 0.0
                && x.abs() < 9.0e15
            {
                *v = serde_json::Value::from(x as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(strip_position(&e.to_string())))?;
    if !value.is_object() {
        // serde would read a struct from an array too (`[null, null]` as its fields in order).
        return Err(ApiError::Validation(FieldErrors::single("body", "must be a JSON object")));
    }
    refuse_unsafe_values(&value)?;
    integral_floats_as_integers(&mut value);
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Ok(v),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = strip_position(&inner.to_string());
                    let field =
                        if path == "." { field_named_in(&message).unwrap_or_else(|| "body".into()) } else { path };
                    Err(ApiError::Validation(FieldErrors::single(&field, message)))
                }
                _ => Err(ApiError::MalformedJson(strip_position(&inner.to_string()))),
            }
        }
    }
}

/// serde's "unknown field `foo`, expected …" and "missing field `foo`" name the field in
/// the message only; pull it out so the 422 details point at it.
fn field_named_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters; a malformed query string is a 422, never a 400 from the framework.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A NUL character would reach a Postgres parameter (a 500): refused by name.
        if let Some(query) = parts.uri.query()
            && query.contains("%00")
        {
            let mut e = FieldErrors::default();
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
            for (k, v) in pairs {
                if v.contains('\0') || k.contains('\0') {
                    e.add(k.replace('\0', ""), "must not contain the NUL character (%00)");
                }
            }
            e.into_result()?;
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| ApiError::Validation(FieldErrors::single("query", e.body_text())))
    }
}

/// A resource id from the path. Anything that is not a UUID cannot name a row, so it is
/// a 404 like any other unknown id.
pub fn resource_id(raw: &str, resource: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: Option<String>,
        tags: Option<Vec<String>>,
    }

    fn details(err: ApiError) -> FieldErrors {
        match err {
            ApiError::Validation(f) => f,
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_fields() {
        assert!(matches!(parse_json::<Body>(b"{"), Err(ApiError::MalformedJson(_))));
        assert!(details(parse_json::<Body>(br#"{"name": 5}"#).unwrap_err()).contains("name"));
        assert!(details(parse_json::<Body>(br#"{"tags": ["a", 1]}"#).unwrap_err()).contains("tags[1]"));
        assert!(details(parse_json::<Body>(br#"{"nmae": "x"}"#).unwrap_err()).contains("nmae"));
        assert!(details(parse_json::<Body>(b"[]").unwrap_err()).contains("body"));
    }
}
