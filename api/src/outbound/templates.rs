//! E-mail templates, SMS templates and phone scripts: the content outbound campaigns send.
//! Placeholders look like `{{ first_name }}`; their names are collected into `variables`.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use fibonacco_delivery::templates::placeholders;
use fibonacco_platform::db;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::types::Json as SqlJson;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{READ, WRITE};
use crate::{
    ApiError,
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams},
    listing::{Listing, page_of},
    state::AppState,
    validate,
};

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct EmailTemplate {
    pub id: Uuid,
    pub name: String,
    pub subject: String,
    pub html_body: String,
    pub text_body: Option<String>,
    pub variables: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SmsTemplate {
    pub id: Uuid,
    pub name: String,
    pub body: String,
    pub variables: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PhoneScript {
    pub id: Uuid,
    pub name: String,
    pub script: String,
    pub voice_id: Option<String>,
    pub variables: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEmailTemplate {
    pub name: Option<String>,
    /// May contain placeholders, e.g. `Hello {{ first_name }}`.
    pub subject: Option<String>,
    pub html_body: Option<String>,
    /// Plain-text alternative; derived by the sender from the HTML when absent.
    pub text_body: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSmsTemplate {
    pub name: Option<String>,
    /// At most 1600 characters (ten concatenated segments).
    pub body: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePhoneScript {
    pub name: Option<String>,
    /// What the call says; placeholders allowed.
    pub script: Option<String>,
    /// Text-to-speech voice to use.
    pub voice_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

const EMAIL_COLUMNS: &str = "id, name, subject, html_body, text_body, variables, metadata, created_at, updated_at";
const SMS_COLUMNS: &str = "id, name, body, variables, metadata, created_at, updated_at";
const SCRIPT_COLUMNS: &str = "id, name, script, voice_id, variables, metadata, created_at, updated_at";

#[utoipa::path(get, path = "/api/v1/outbound/email/templates", tag = "outbound", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<EmailTemplate>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_email(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<EmailTemplate>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "email_templates", columns: EMAIL_COLUMNS, order_by: "created_at desc, id desc" },
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/outbound/email/templates", tag = "outbound", request_body = CreateEmailTemplate,
    responses((status = 201, body = inline(Envelope<EmailTemplate>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_email(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateEmailTemplate>,
) -> Result<(StatusCode, Json<Envelope<EmailTemplate>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let subject = validate::header_text(body.subject, 998, "subject", &mut e);
    let html = validate::required_text(body.html_body, 500_000, "html_body", &mut e);
    let text = body.text_body.map(|t| validate::text(&t, 500_000, "text_body", &mut e));
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let variables = placeholders(&[&subject, &html, text.as_deref().unwrap_or("")]);
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row: EmailTemplate = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into email_templates (tenant_id, name, subject, html_body, text_body, variables, metadata)
         values ($1, $2, $3, $4, $5, $6, $7) returning {EMAIL_COLUMNS}"
    )))
    .bind(tenant)
    .bind(name)
    .bind(subject)
    .bind(html)
    .bind(text)
    .bind(variables)
    .bind(SqlJson(metadata))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "E-mail template created."))))
}

#[utoipa::path(get, path = "/api/v1/outbound/sms/templates", tag = "outbound", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<SmsTemplate>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_sms(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<SmsTemplate>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "sms_templates", columns: SMS_COLUMNS, order_by: "created_at desc, id desc" },
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/outbound/sms/templates", tag = "outbound", request_body = CreateSmsTemplate,
    responses((status = 201, body = inline(Envelope<SmsTemplate>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_sms(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateSmsTemplate>,
) -> Result<(StatusCode, Json<Envelope<SmsTemplate>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let text = validate::required_text(body.body, 1600, "body", &mut e);
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let variables = placeholders(&[&text]);
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row: SmsTemplate = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into sms_templates (tenant_id, name, body, variables, metadata)
         values ($1, $2, $3, $4, $5) returning {SMS_COLUMNS}"
    )))
    .bind(tenant)
    .bind(name)
    .bind(text)
    .bind(variables)
    .bind(SqlJson(metadata))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "SMS template created."))))
}

#[utoipa::path(get, path = "/api/v1/outbound/phone/scripts", tag = "outbound", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<PhoneScript>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_scripts(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<PhoneScript>>>, ApiError> {
    auth.require(READ)?;
    page_of(
        &state,
        &auth,
        page,
        &Listing { from: "phone_scripts", columns: SCRIPT_COLUMNS, order_by: "created_at desc, id desc" },
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/outbound/phone/scripts", tag = "outbound", request_body = CreatePhoneScript,
    responses((status = 201, body = inline(Envelope<PhoneScript>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_script(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreatePhoneScript>,
) -> Result<(StatusCode, Json<Envelope<PhoneScript>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let script = validate::required_text(body.script, 20_000, "script", &mut e);
    let voice = body.voice_id.map(|v| validate::text(&v, 100, "voice_id", &mut e));
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let variables = placeholders(&[&script]);
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row: PhoneScript = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into phone_scripts (tenant_id, name, script, voice_id, variables, metadata)
         values ($1, $2, $3, $4, $5, $6) returning {SCRIPT_COLUMNS}"
    )))
    .bind(tenant)
    .bind(name)
    .bind(script)
    .bind(voice)
    .bind(variables)
    .bind(SqlJson(metadata))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(row, "Phone script created."))))
}
