//! `/api/v1/outbound/contact-policy`: a tenant's rules per channel: a frequency cap
//! across campaigns, and whether customers must have opted in (`customers::consents`).
//! Sends check them (`delivery::contact_policy`); a recipient they refuse ends `failed`
//! with the reason.

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use fibonacco_delivery::contact_policy::CHANNELS;
use fibonacco_platform::db;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{READ, WRITE};
use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody},
    state::AppState,
};

const RESOURCE: &str = "contact policy";

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ContactCap {
    /// `email`, `sms` or `phone`.
    pub channel: String,
    /// At most this many messages to one customer… (null: no cap)
    pub max_messages: Option<i32>,
    /// …within this many hours, across campaigns.
    pub window_hours: Option<i32>,
    /// Send only to customers who opted in on this channel.
    pub require_consent: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactCapRequest {
    /// 1 to 1000; with `window_hours`, or neither (no cap).
    pub max_messages: Option<i64>,
    /// 1 to 8760 (a year).
    pub window_hours: Option<i64>,
    /// Send only to customers who opted in on this channel (default false).
    pub require_consent: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/outbound/contact-policy", tag = "outbound",
    responses((status = 200, body = inline(Envelope<Vec<ContactCap>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<Envelope<Vec<ContactCap>>>, ApiError> {
    auth.require(READ)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let caps = sqlx::query_as(
        "select channel, max_messages, window_hours, require_consent, updated_at from contact_policies
         where tenant_id = $1 order by channel",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(caps)))
}

/// Set a channel's rules: a frequency cap (at most `max_messages` to one customer within
/// `window_hours`, across campaigns) and/or `require_consent` (only customers who opted in).
#[utoipa::path(put, path = "/api/v1/outbound/contact-policy/{channel}", tag = "outbound",
    params(("channel" = String, Path, description = "`email`, `sms` or `phone`")),
    request_body = ContactCapRequest,
    responses((status = 200, body = inline(Envelope<ContactCap>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn set(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel): Path<String>,
    JsonBody(body): JsonBody<ContactCapRequest>,
) -> Result<Json<Envelope<ContactCap>>, ApiError> {
    auth.require(WRITE)?;
    let channel = known(&channel)?;
    let mut e = FieldErrors::default();
    let mut bounded = |value: Option<i64>, field: &str, max: i64| match value {
        None => None,
        Some(v) if !(1..=max).contains(&v) => {
            e.add(field, format!("must be between 1 and {max}"));
            None
        }
        Some(v) => Some(v as i32),
    };
    let max_messages = bounded(body.max_messages, "max_messages", 1000);
    let window_hours = bounded(body.window_hours, "window_hours", 8760);
    let require_consent = body.require_consent.unwrap_or(false);
    match (body.max_messages, body.window_hours) {
        (Some(_), None) => e.add("window_hours", "is required with max_messages"),
        (None, Some(_)) => e.add("max_messages", "is required with window_hours"),
        (None, None) if !require_consent => {
            e.add("max_messages", "is required (with window_hours) unless require_consent is true")
        }
        _ => {}
    }
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let cap: ContactCap = sqlx::query_as(
        "insert into contact_policies (tenant_id, channel, max_messages, window_hours, require_consent)
         values ($1, $2, $3, $4, $5)
         on conflict (tenant_id, channel) do update set max_messages = excluded.max_messages,
            window_hours = excluded.window_hours, require_consent = excluded.require_consent
         returning channel, max_messages, window_hours, require_consent, updated_at",
    )
    .bind(tenant)
    .bind(channel)
    .bind(max_messages)
    .bind(window_hours)
    .bind(require_consent)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(cap, "Contact policy set.")))
}

/// Remove a channel's rules.
#[utoipa::path(delete, path = "/api/v1/outbound/contact-policy/{channel}", tag = "outbound",
    params(("channel" = String, Path, description = "`email`, `sms` or `phone`")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let channel = known(&channel)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let gone = sqlx::query("delete from contact_policies where tenant_id = $1 and channel = $2")
        .bind(tenant)
        .bind(channel)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    if gone == 0 {
        return Err(ApiError::NotFound(RESOURCE));
    }
    Ok(Json(Envelope::with_message(None, "Contact policy removed.")))
}

fn known(channel: &str) -> Result<&'static str, ApiError> {
    CHANNELS.iter().copied().find(|c| *c == channel).ok_or(ApiError::NotFound(RESOURCE))
}
