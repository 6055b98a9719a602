//! Twilio status callbacks for SMS and call campaigns: verified by `X-Twilio-Signature`
//! before anything is read, then applied through `fibonacco_delivery::campaigns::store`.

use axum::{
    Json,
    extract::{Path, State},
};
use fibonacco_delivery::{
    campaigns::{
        RecipientStatus, call_recipient_status, sms_recipient_status,
        store::{self as campaign_store, Applied},
    },
    providers::twilio,
};
use fibonacco_platform::db;
use serde::Deserialize;
use utoipa::ToSchema;

use super::RESOURCE;
use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::resource_id,
    state::AppState,
};

/// A provider status report, with Twilio's field names.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusCallback {
    #[serde(rename = "MessageSid", alias = "CallSid", alias = "sid")]
    pub sid: Option<String>,
    #[serde(rename = "MessageStatus", alias = "CallStatus", alias = "SmsStatus", alias = "status")]
    pub status: Option<String>,
    /// `machine_start`, `human`, … for calls (voicemail detection).
    #[serde(rename = "AnsweredBy", default)]
    pub answered_by: Option<String>,
}

/// The form Twilio posted, once its `X-Twilio-Signature` over the URL it called and the
/// form checks out (and only then).
pub(crate) fn verified_form(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    kind: &'static str,
) -> Result<Vec<(String, String)>, ApiError> {
    let Some(token) = state.config.twilio_auth_token.as_ref() else {
        return Err(ApiError::BadSignature("Twilio callbacks are refused: TWILIO_AUTH_TOKEN is not set".into()));
    };
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::BadRequest(format!("the callback body is not form-encoded: {e}")))?;
    let url = format!(
        "{}{}",
        state.config.app_url.trim_end_matches('/'),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path())
    );
    let given = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if given.is_empty() || !twilio::verify(token.expose(), &url, &params, given) {
        tracing::warn!(kind, "Twilio callback with a bad or missing signature refused");
        return Err(ApiError::BadSignature("X-Twilio-Signature does not match".into()));
    }
    Ok(params)
}

/// Verifies Twilio's signature over the URL it called and the form it posted, then
/// records the status. Nothing is read or changed before the signature checks out.
async fn apply_callback(
    state: AppState,
    id: String,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
    kind: &'static str,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    let params = verified_form(&state, &uri, &headers, &body, kind)?;
    let field = |names: &[&str]| params.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone());
    let body = StatusCallback {
        sid: field(&["MessageSid", "CallSid", "SmsSid"]),
        status: field(&["MessageStatus", "CallStatus", "SmsStatus"]),
        answered_by: field(&["AnsweredBy"]),
    };
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let sid = body.sid.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| {
        e.add("MessageSid", "is required");
        String::new()
    });
    let raw = body.status.unwrap_or_default();
    let mapped = if kind == "sms" {
        sms_recipient_status(&raw)
    } else {
        call_recipient_status(&raw, body.answered_by.as_deref())
    };
    let Some(mapped) = mapped else {
        e.add("status", format!("unknown provider status `{raw}`"));
        return Err(ApiError::Validation(e));
    };
    e.into_result()?;
    // The signed URL names the campaign; its tenant comes from the campaign row.
    let tenant = campaign_store::tenant_of(&state.pool, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (campaign_kind, _) = campaign_store::lock(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if campaign_kind != kind {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let Some(to) = mapped.and_then(RecipientStatus::parse) else {
        // A provider state that changes nothing (e.g. `queued` at Twilio).
        tx.commit().await?;
        return Ok(Json(Envelope::with_message(None, "Nothing to record.")));
    };
    let applied = campaign_store::apply_provider_status(&mut tx, tenant, id, &sid, to).await?;
    // A number that can never receive (or refused this sender) is not texted again.
    let code = field(&["ErrorCode"]).unwrap_or_default();
    if kind == "sms"
        && !matches!(applied, Applied::NoSuchMessage)
        && let Some(reason) = fibonacco_delivery::suppressions::twilio_permanent(&code)
    {
        fibonacco_delivery::suppressions::suppress_sms_recipient(&mut tx, tenant, id, &sid, reason, &code).await?;
    }
    tx.commit().await?;
    match applied {
        Applied::NoSuchMessage => Err(ApiError::NotFound("recipient")),
        Applied::Moved(s) => Ok(Json(Envelope::with_message(Some(s.as_str().to_owned()), "Status recorded."))),
        // Late or replayed: acknowledged (so Twilio stops retrying) and ignored.
        Applied::Unchanged(s) => Ok(Json(Envelope::with_message(
            Some(s.as_str().to_owned()),
            "Status unchanged: the recipient is already past this report.",
        ))),
    }
}

/// Twilio message status callback (form fields `MessageSid`, `MessageStatus`), verified
/// by `X-Twilio-Signature` (HMAC-SHA1 with `TWILIO_AUTH_TOKEN` over `APP_URL` + path +
/// sorted parameters). A bad signature is a 403 and changes nothing.
#[utoipa::path(post, path = "/api/v1/outbound/sms/campaigns/{id}/sms-status", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id"),
        ("X-Twilio-Signature" = String, Header, description = "Twilio's request signature")),
    request_body(content = StatusCallback, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "`data` is the recipient status recorded", body = inline(Envelope<Option<String>>)),
        (status = 400, body = ErrorEnvelope), (status = 403, description = "Bad or missing signature; nothing changed", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn sms_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: axum::extract::OriginalUri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    apply_callback(state, id, uri.0, headers, body, "sms").await
}

/// Twilio call status callback (`CallSid`, `CallStatus`, optional `AnsweredBy`).
#[utoipa::path(post, path = "/api/v1/outbound/phone/campaigns/{id}/call-status", tag = "outbound",
    params(("id" = Uuid, Path, description = "Campaign id"),
        ("X-Twilio-Signature" = String, Header, description = "Twilio's request signature")),
    request_body(content = StatusCallback, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "`data` is the recipient status recorded", body = inline(Envelope<Option<String>>)),
        (status = 400, body = ErrorEnvelope), (status = 403, description = "Bad or missing signature; nothing changed", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn call_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: axum::extract::OriginalUri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    apply_callback(state, id, uri.0, headers, body, "phone").await
}
