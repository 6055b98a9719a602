//! `/api/v1/outbound/contact-policy`: a tenant's rules per channel: a frequency cap
//! across campaigns, whether customers must have opted in (`customers::consents`), and
//! quiet hours in the customer's time zone. Sends check them (`delivery::contact_policy`,
//! `delivery::jobs::campaign`): a recipient the cap or consent refuses ends `failed` with
//! the reason; one inside quiet hours waits, pending, until they end.

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use fibonacco_delivery::contact_policy::CHANNELS;
use fibonacco_platform::{db, domain::TimeZone};
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
    /// Quiet hours, `HH:MM` local time (null: none). The window may wrap midnight.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    /// The time zone of customers without one of their own (IANA, e.g. `Europe/Berlin`).
    pub timezone: String,
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
    /// Start of quiet hours, `HH:MM` in the customer's local time; with `quiet_end`.
    pub quiet_start: Option<String>,
    /// End of quiet hours, `HH:MM` (before `quiet_start` for a window across midnight).
    pub quiet_end: Option<String>,
    /// IANA time zone for customers without their own (default `UTC`).
    pub timezone: Option<String>,
}

/// Minutes after midnight from `HH:MM`.
fn minutes(raw: &str) -> Option<i16> {
    let (h, m) = raw.split_once(':')?;
    let (h, m): (i16, i16) = (h.parse().ok()?, m.parse().ok()?);
    (raw.len() == 5 && (0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

/// What the database stores (minutes) as the API shows it.
const SELECT: &str = "select channel, max_messages, window_hours, require_consent,
    case when quiet_start is not null then to_char(make_time(quiet_start / 60, quiet_start % 60, 0), 'HH24:MI') end as quiet_start,
    case when quiet_end is not null then to_char(make_time(quiet_end / 60, quiet_end % 60, 0), 'HH24:MI') end as quiet_end,
    timezone, updated_at";

#[utoipa::path(get, path = "/api/v1/outbound/contact-policy", tag = "outbound",
    responses((status = 200, body = inline(Envelope<Vec<ContactCap>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<Envelope<Vec<ContactCap>>>, ApiError> {
    auth.require(READ)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let caps = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} from contact_policies where tenant_id = $1 order by channel"
    )))
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(caps)))
}

/// Set a channel's rules: a frequency cap (at most `max_messages` to one customer within
/// `window_hours`, across campaigns), `require_consent` (only customers who opted in),
/// and/or quiet hours (`quiet_start`-`quiet_end` local time, in the customer's `timezone`
/// or this policy's), during which sends wait.
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
    let mut clock = |value: Option<&str>, field: &str| match value.map(|v| (v, minutes(v))) {
        None => None,
        Some((_, Some(m))) => Some(m),
        Some(_) => {
            e.add(field, "must be a time of day as HH:MM (00:00 to 23:59)");
            None
        }
    };
    let quiet_start = clock(body.quiet_start.as_deref(), "quiet_start");
    let quiet_end = clock(body.quiet_end.as_deref(), "quiet_end");
    match (&body.quiet_start, &body.quiet_end) {
        (Some(_), None) => e.add("quiet_end", "is required with quiet_start"),
        (None, Some(_)) => e.add("quiet_start", "is required with quiet_end"),
        _ if quiet_start.is_some() && quiet_start == quiet_end => e.add("quiet_end", "must differ from quiet_start"),
        _ => {}
    }
    let quiet = body.quiet_start.is_some() || body.quiet_end.is_some();
    let timezone = match body.timezone.as_deref().map(TimeZone::parse) {
        None => "UTC".to_owned(),
        Some(Ok(tz)) => tz.into_inner(),
        Some(Err(why)) => {
            e.add("timezone", why.to_string());
            String::new()
        }
    };
    match (body.max_messages, body.window_hours) {
        (Some(_), None) => e.add("window_hours", "is required with max_messages"),
        (None, Some(_)) => e.add("max_messages", "is required with window_hours"),
        (None, None) if !require_consent && !quiet => e.add(
            "max_messages",
            "is required (with window_hours) unless require_consent is true or quiet hours are set",
        ),
        _ => {}
    }
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let cap: ContactCap = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with saved as (
           insert into contact_policies
             (tenant_id, channel, max_messages, window_hours, require_consent, quiet_start, quiet_end, timezone)
           values ($1, $2, $3, $4, $5, $6, $7, $8)
           on conflict (tenant_id, channel) do update set max_messages = excluded.max_messages,
              window_hours = excluded.window_hours, require_consent = excluded.require_consent,
              quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, timezone = excluded.timezone
           returning *)
         {SELECT} from saved"
    )))
    .bind(tenant)
    .bind(channel)
    .bind(max_messages)
    .bind(window_hours)
    .bind(require_consent)
    .bind(quiet_start)
    .bind(quiet_end)
    .bind(&timezone)
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
