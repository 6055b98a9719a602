//! `POST /api/twilio/sms/inbound`: SMS replies to the platform's number, Twilio-signed.
//! STOP-like keywords suppress the sender's number, START-like ones lift it
//! (`delivery::suppressions::apply_sms_keyword`); other replies are acknowledged and left
//! alone. The answer is empty TwiML: Twilio sends its own opt-out confirmation.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use fibonacco_delivery::suppressions;
use fibonacco_platform::db;

use crate::{ApiError, error::ErrorEnvelope, state::AppState};

/// Receives an inbound SMS from Twilio (form fields `From`, `Body`, …).
#[utoipa::path(post, path = "/api/twilio/sms/inbound", tag = "outbound",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's inbound message form (`From`, `To`, `Body`, `MessageSid`)"),
    responses((status = 200, description = "Empty TwiML", content_type = "text/xml", body = String),
        (status = 400, description = "Not a form", body = ErrorEnvelope),
        (status = 403, description = "Bad or missing X-Twilio-Signature (or TWILIO_AUTH_TOKEN unset); nothing changed", body = ErrorEnvelope)))]
pub async fn sms_inbound(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let params = super::callbacks::verified_form(&state, &uri, &headers, &body, "sms-inbound")?;
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    let keyword = suppressions::sms_keyword(field("Body"));
    let phone = suppressions::normalise("phone", field("From")).ok();
    if let (Some(keyword), Some(phone)) = (keyword, phone) {
        let mut tx = db::begin_system(&state.pool).await?;
        let touched = suppressions::apply_sms_keyword(&mut tx, &phone, keyword).await?;
        tx.commit().await?;
        tracing::info!(?keyword, customers = touched, "SMS opt-out keyword applied");
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>")
        .into_response())
}
