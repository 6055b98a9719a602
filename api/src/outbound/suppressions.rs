//! `/api/v1/outbound/suppressions`: the addresses and numbers a tenant must not contact.
//! Sends skip them (`delivery::jobs::campaign`), ending the recipient `failed` with the
//! reason. Entries are per tenant: one tenant's complaint does not silence another's
//! customer (see ARCHITECTURE.md, "Suppression").

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use fibonacco_delivery::suppressions::{self, CHANNELS, REASONS};
use fibonacco_platform::db;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{READ, WRITE};
use crate::{
    ApiError,
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, delete_one, page_of},
    state::AppState,
    validate,
};

const RESOURCE: &str = "suppression";
const COLUMNS: &str = "id, channel, target, reason, note, created_at";

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Suppression {
    pub id: Uuid,
    /// `email` or `phone` (SMS and calls).
    pub channel: String,
    /// The address (lower-cased) or the number (E.164).
    pub target: String,
    /// `manual`, `bounce`, `complaint`, `unsubscribe` or `stop`.
    pub reason: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionRequest {
    /// `email` or `phone`.
    pub channel: Option<String>,
    /// An e-mail address or a phone number in international format.
    pub target: Option<String>,
    /// `manual` (default), `bounce`, `complaint`, `unsubscribe` or `stop`.
    pub reason: Option<String>,
    /// Why, for the team (at most 1000 characters).
    pub note: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/outbound/suppressions", tag = "outbound", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Suppression>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Suppression>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "outbound_suppressions", columns: COLUMNS, order_by: "created_at desc, id desc" },
    )
    .await
}

/// Suppress an address or a number: sends to it are skipped from now on.
#[utoipa::path(post, path = "/api/v1/outbound/suppressions", tag = "outbound", request_body = SuppressionRequest,
    responses((status = 201, body = inline(Envelope<Suppression>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, description = "Already suppressed", body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<SuppressionRequest>,
) -> Result<(StatusCode, Json<Envelope<Suppression>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let channel = match body.channel {
        Some(c) => validate::one_of(&c, CHANNELS, "channel", &mut e),
        None => {
            e.add("channel", "is required");
            String::new()
        }
    };
    let target = match body.target {
        Some(t) if CHANNELS.contains(&channel.as_str()) => {
            suppressions::normalise(&channel, &t).map_err(|why| e.add("target", why)).unwrap_or_default()
        }
        Some(_) => String::new(),
        None => {
            e.add("target", "is required");
            String::new()
        }
    };
    let reason = validate::one_of(body.reason.as_deref().unwrap_or("manual"), REASONS, "reason", &mut e);
    let note = body.note.map(|n| validate::text(&n, 1000, "note", &mut e)).filter(|n| !n.is_empty());
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row: Suppression = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into outbound_suppressions (tenant_id, channel, target, reason, note) values ($1, $2, $3, $4, $5)
         returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(&channel)
    .bind(&target)
    .bind(&reason)
    .bind(note)
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| match db::unique_violation(&err) {
        Some("outbound_suppressions_target_key") => {
            ApiError::Conflict { message: "This target is already suppressed.".into(), field: Some("target") }
        }
        _ => err.into(),
    })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Suppressed: sends to it are skipped."))))
}

/// Lift a suppression: sends to the target resume.
#[utoipa::path(delete, path = "/api/v1/outbound/suppressions/{id}", tag = "outbound",
    params(("id" = Uuid, Path, description = "Suppression id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if !delete_one(&state, &auth, "outbound_suppressions", id).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    Ok(Json(Envelope::with_message(None, "Suppression lifted.")))
}
