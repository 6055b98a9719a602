//! `/api/v1/customers/{id}/consents`: whether a customer opted in (or out) of a channel,
//! with where that came from and when. A channel whose contact policy requires consent
//! sends only to customers opted in (`delivery::contact_policy`).

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use fibonacco_delivery::contact_policy::CHANNELS;
use fibonacco_platform::db;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{READ, RESOURCE, WRITE};
use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, resource_id},
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Consent {
    /// `email`, `sms` or `phone`.
    pub channel: String,
    /// Opted in (true) or out (false).
    pub granted: bool,
    /// Where the answer came from (a sign-up form, a call, an import, …).
    pub source: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    pub granted: Option<bool>,
    /// Where the answer came from, one line, at most 200 characters.
    pub source: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/consents", tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, body = inline(Envelope<Vec<Consent>>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Vec<Consent>>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !super::store::exists(&mut tx, tenant, id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let rows = sqlx::query_as(
        "select channel, granted, source, recorded_at from customer_consents
         where tenant_id = $1 and customer_id = $2 order by channel",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(rows)))
}

/// Record a customer's answer for a channel (the latest answer counts).
#[utoipa::path(put, path = "/api/v1/customers/{id}/consents/{channel}", tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id"), ("channel" = String, Path, description = "`email`, `sms` or `phone`")),
    request_body = ConsentRequest,
    responses((status = 200, body = inline(Envelope<Consent>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn record(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, channel)): Path<(String, String)>,
    JsonBody(body): JsonBody<ConsentRequest>,
) -> Result<Json<Envelope<Consent>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let channel = CHANNELS.iter().copied().find(|c| *c == channel).ok_or(ApiError::NotFound("channel"))?;
    let mut e = FieldErrors::default();
    if body.granted.is_none() {
        e.add("granted", "is required");
    }
    let source = crate::validate::required_text(body.source, 200, "source", &mut e);
    if source.chars().any(char::is_control) {
        e.add("source", "must be one line, without control characters");
    }
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !super::store::exists(&mut tx, tenant, id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let consent: Consent = sqlx::query_as(
        "insert into customer_consents (tenant_id, customer_id, channel, granted, source) values ($1, $2, $3, $4, $5)
         on conflict (tenant_id, customer_id, channel)
         do update set granted = excluded.granted, source = excluded.source, recorded_at = now()
         returning channel, granted, source, recorded_at",
    )
    .bind(tenant)
    .bind(id)
    .bind(channel)
    .bind(body.granted.unwrap_or(false))
    .bind(&source)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(consent, "Consent recorded.")))
}
