//! `POST /api/ses/events`: SES's delivery, bounce, complaint, open and click events as
//! Amazon SNS posts them. Nothing is read from the payload before the topic is one of
//! `SNS_TOPIC_ARNS`, the certificate URL is on an allowed SNS host, the signature checks
//! out and the message is recent; each SNS message is then applied once
//! (`sns_messages`), through `delivery::ses_events`, in batches shared with concurrent
//! requests (`delivery::ses_sink`); the answer waits for the commit. No database
//! connection is held while a certificate is fetched or a subscription confirmed.

use axum::{Json, extract::State};
use fibonacco_delivery::{
    ses_events::{Incoming, Policy, SesEvent},
    ses_sink::{Sink, SinkError},
    sns::{self, Kind, SnsError},
};
use fibonacco_platform::db;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{ApiError, envelope::Envelope, error::ErrorEnvelope, state::AppState};

/// An Amazon SNS HTTP message (SNS posts it as `text/plain`; any content type is read).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // the schema of what `sns::Message::parse` reads
pub struct SnsEnvelope {
    /// `SubscriptionConfirmation`, `Notification` or `UnsubscribeConfirmation`.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "MessageId")]
    pub message_id: String,
    #[serde(rename = "TopicArn")]
    pub topic_arn: String,
    /// The SES event (JSON text) for a notification.
    #[serde(rename = "Message")]
    pub message: String,
    /// RFC 3339.
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    /// `1` (RSA-SHA1) or `2` (RSA-SHA256).
    #[serde(rename = "SignatureVersion")]
    pub signature_version: String,
    /// Base64.
    #[serde(rename = "Signature")]
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(rename = "Subject")]
    pub subject: Option<String>,
    #[serde(rename = "Token")]
    pub token: Option<String>,
    #[serde(rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
}

fn refused(e: SnsError) -> ApiError {
    match e {
        SnsError::Malformed(_) | SnsError::Stale(_) => ApiError::BadRequest(e.to_string()),
        SnsError::Cert(_) => ApiError::UpstreamUnavailable(e.to_string()),
        SnsError::CertHost | SnsError::Signature | SnsError::Version(_) | SnsError::Topic => {
            ApiError::BadSignature(e.to_string())
        }
    }
}

/// Receives SES events through SNS. Messages from other topics, with a certificate from
/// a host not allowed, a bad signature or an age past `SNS_MAX_AGE_SECS` change nothing
/// (403, or 400 for stale and malformed ones). A message seen before is acknowledged and
/// ignored; an event for a message id no recipient has is counted and dropped.
#[utoipa::path(post, path = "/api/ses/events", tag = "outbound",
    request_body(content = SnsEnvelope, content_type = "application/json"),
    responses((status = 200, description = "Applied, ignored or already applied; `data` says which", body = inline(Envelope<Option<String>>)),
        (status = 400, description = "Not an SNS message, or older than SNS_MAX_AGE_SECS", body = ErrorEnvelope),
        (status = 403, description = "Unknown topic, certificate host not allowed, bad signature, or SNS_TOPIC_ARNS unset; nothing changed", body = ErrorEnvelope),
        (status = 502, description = "The subscription URL refused the confirmation", body = ErrorEnvelope),
        (status = 503, description = "The signing certificate could not be fetched; SNS retries", body = ErrorEnvelope)))]
pub async fn ses_events(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    let settings = &state.config.ses_events;
    if settings.topic_arns.is_empty() {
        return Err(ApiError::BadSignature("SES events are refused: SNS_TOPIC_ARNS is not set".into()));
    }
    let message = sns::Message::parse(&body).map_err(refused)?;
    if !settings.topic_arns.contains(&message.topic_arn) {
        tracing::warn!("SNS message from a topic not in SNS_TOPIC_ARNS refused");
        return Err(refused(SnsError::Topic));
    }
    if !sns::url_allowed(&message.signing_cert_url, &settings.cert_hosts) {
        tracing::warn!("SNS message naming a certificate outside SNS_CERT_HOSTS refused");
        return Err(refused(SnsError::CertHost));
    }
    let cert = state.sns.certificate(&message.signing_cert_url).await.map_err(refused)?;
    sns::verify(&message, &cert).map_err(|e| {
        tracing::warn!(error = %e, "SNS message with a bad signature refused");
        refused(e)
    })?;
    sns::check_age(&message, chrono::Utc::now(), settings.max_age).map_err(refused)?;

    match message.kind {
        Kind::SubscriptionConfirmation => {
            let url = message.subscribe_url.as_deref().unwrap_or_default();
            if !sns::url_allowed(url, &settings.cert_hosts) {
                return Err(refused(SnsError::CertHost));
            }
            state.sns.confirm(url).await.map_err(ApiError::Upstream)?;
            record(&state, &message, "confirmed").await?;
            tracing::info!("SNS subscription confirmed");
            Ok(Json(Envelope::with_message(Some("confirmed".into()), "Subscription confirmed.")))
        }
        Kind::UnsubscribeConfirmation => {
            // Someone unsubscribed this endpoint: events stop until it is subscribed again.
            tracing::warn!("SNS says the endpoint was unsubscribed from an SES event topic");
            record(&state, &message, "ignored").await?;
            Ok(Json(Envelope::with_message(Some("ignored".into()), "Unsubscription noted.")))
        }
        Kind::Notification => notification(&state, &message).await,
    }
}

async fn notification(state: &AppState, message: &sns::Message) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    let event = match SesEvent::parse(&message.message) {
        Ok(event) => event,
        Err(why) => {
            // Signed by our topic but not an SES event: SNS would retry it in vain.
            tracing::warn!(why, "SNS notification that is not an SES event ignored");
            metrics::counter!("ses_events_total", "type" => "unreadable", "outcome" => "ignored").increment(1);
            record(state, message, "ignored").await?;
            return Ok(Json(Envelope::with_message(Some("ignored".into()), "Not an SES event; ignored.")));
        }
    };
    let settings = &state.config.ses_events;
    let policy =
        Policy { transient_limit: settings.transient_bounce_limit, transient_window: settings.transient_bounce_window };
    let kind = event.type_name().to_owned();
    let incoming = Incoming { sns_id: message.message_id.clone(), topic_arn: message.topic_arn.clone(), event };
    let sink = state.ses_sink.get_or_init(|| Sink::start(state.pool.clone()));
    let outcome = sink.submit(incoming, policy).await.map_err(|e| match e {
        SinkError::Database(e) => ApiError::from(e),
        SinkError::Stopped => ApiError::Unavailable("the SES event writer stopped"),
    })?;
    let outcome = outcome.as_str();
    metrics::counter!("ses_events_total", "type" => kind, "outcome" => outcome).increment(1);
    let text = match outcome {
        "applied" => "Event applied.",
        "duplicate" => "Already applied.",
        _ => "No recipient has this message id; dropped.",
    };
    Ok(Json(Envelope::with_message(Some(outcome.into()), text)))
}

/// Keeps a message that applied nothing (a confirmation, an unreadable event), so its
/// replay is recognised too.
async fn record(state: &AppState, message: &sns::Message, outcome: &str) -> Result<(), ApiError> {
    let kind = match message.kind {
        Kind::SubscriptionConfirmation => "SubscriptionConfirmation",
        Kind::Notification => "Notification",
        Kind::UnsubscribeConfirmation => "UnsubscribeConfirmation",
    };
    let mut tx = db::begin_system(&state.pool).await?;
    sqlx::query(
        "insert into sns_messages (message_id, topic_arn, type, outcome) values ($1, $2, $3, $4) on conflict do nothing",
    )
    .bind(&message.message_id)
    .bind(&message.topic_arn)
    .bind(kind)
    .bind(outcome)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
