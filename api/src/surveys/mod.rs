//! Surveys with sections and questions, and their responses (`/api/v1/survey`).

pub mod answers;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db, domain::Slug};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    patch::Patch,
    state::AppState,
    validate,
};

pub const READ: &str = "surveys:read";
pub const WRITE: &str = "surveys:write";
/// Submitting a response is what a respondent does, so it has its own ability.
pub const RESPOND: &str = "surveys:respond";
const RESOURCE: &str = "survey";
pub const STATUSES: &[&str] = &["draft", "active", "closed", "archived"];
pub const QUESTION_TYPES: &[&str] =
    &["text", "textarea", "single_choice", "multiple_choice", "rating", "scale", "yes_no", "email", "number", "date"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/survey", get(list).post(create))
        .route("/survey/{id}", get(show).put(update).delete(destroy))
        .route("/survey/{id}/sections", post(add_section))
        .route("/survey/{id}/questions", post(add_question))
        .route("/survey/{id}/responses", get(responses).post(respond))
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Survey {
    pub id: Uuid,
    pub title: String,
    pub slug: String,
    pub description: Option<String>,
    /// draft, active (takes responses), closed or archived.
    pub status: String,
    pub response_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Section {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub position: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Question {
    pub id: Uuid,
    pub section_id: Option<Uuid>,
    pub question_text: String,
    pub question_type: String,
    #[schema(value_type = Vec<Object>)]
    pub options: SqlJson<Value>,
    pub is_required: bool,
    pub position: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyDetail {
    #[serde(flatten)]
    pub survey: Survey,
    pub sections: Vec<Section>,
    pub questions: Vec<Question>,
}

/// A row of the list and of single reads.
const LIST_COLUMNS: &str = "s.id, s.title, s.slug, s.description, s.status,
        (select count(*) from survey_responses r where r.survey_id = s.id) as response_count, s.created_at, s.updated_at";

async fn get_survey(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Survey>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {LIST_COLUMNS} from surveys s where s.tenant_id = $1 and s.id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

async fn detail(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<SurveyDetail>, sqlx::Error> {
    let Some(survey) = get_survey(conn, tenant, id).await? else { return Ok(None) };
    let sections = sqlx::query_as(
        "select id, title, description, position from survey_sections where tenant_id = $1 and survey_id = $2 order by position, id",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let questions = sqlx::query_as(
        "select id, section_id, question_text, question_type, options, is_required, position from survey_questions
         where tenant_id = $1 and survey_id = $2 order by position, id",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(Some(SurveyDetail { survey, sections, questions }))
}

#[utoipa::path(get, path = "/api/v1/survey", tag = "surveys", params(PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<Survey>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<Survey>>>, ApiError> {
    auth.require(READ)?;
    let listing = Listing { from: "surveys s", columns: LIST_COLUMNS, order_by: "s.created_at desc, s.id desc" };
    page_of(&state, &auth, page, &listing).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSurveyRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    /// draft (default) or active.
    pub status: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/survey", tag = "surveys", request_body = CreateSurveyRequest,
    responses((status = 201, body = inline(Envelope<SurveyDetail>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateSurveyRequest>,
) -> Result<(StatusCode, Json<Envelope<SurveyDetail>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let title = validate::required_text(body.title, 300, "title", &mut e);
    let description = body.description.map(|d| validate::text(&d, 5000, "description", &mut e));
    let status = validate::one_of(body.status.as_deref().unwrap_or("draft"), &["draft", "active"], "status", &mut e);
    let slug = Slug::from_text(&title);
    if slug.is_none() && !title.is_empty() {
        e.add("title", "must contain letters or digits");
    }
    e.into_result()?;
    let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("title", "is required")))?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let slug = crate::slugs::free_slug(&mut tx, "surveys", tenant, slug.as_str()).await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into surveys (tenant_id, title, slug, description, status) values ($1, $2, $3, $4, $5) returning id",
    )
    .bind(tenant)
    .bind(title)
    .bind(slug)
    .bind(description)
    .bind(status)
    .fetch_one(&mut *tx)
    .await?;
    let survey = detail(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(survey, "Survey created."))))
}

#[utoipa::path(get, path = "/api/v1/survey/{id}", tag = "surveys", params(("id" = Uuid, Path, description = "Survey id")),
    responses((status = 200, description = "The survey with its sections and questions in order", body = inline(Envelope<SurveyDetail>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<SurveyDetail>>, ApiError> {
    auth.require(READ).or_else(|_| auth.require(RESPOND))?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let survey = detail(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    survey.map(|s| Json(Envelope::data(s))).ok_or(ApiError::NotFound(RESOURCE))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSurveyRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
}

#[utoipa::path(put, path = "/api/v1/survey/{id}", tag = "surveys", params(("id" = Uuid, Path, description = "Survey id")), request_body = UpdateSurveyRequest,
    responses((status = 200, body = inline(Envelope<SurveyDetail>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateSurveyRequest>,
) -> Result<Json<Envelope<SurveyDetail>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let title = body.title.non_null("title", &mut e).map(|t| validate::required_text(Some(t), 300, "title", &mut e));
    let description = validate::optional_text(body.description, 5000, "description", &mut e);
    let status = body.status.non_null("status", &mut e).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let r = sqlx::query(
        "update surveys set title = coalesce($3, title), description = case when $4 then $5 else description end,
            status = coalesce($6, status) where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(title)
    .bind(description.is_some())
    .bind(description.flatten())
    .bind(status)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let survey = detail(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(survey, "Survey updated.")))
}

#[utoipa::path(delete, path = "/api/v1/survey/{id}", tag = "surveys", params(("id" = Uuid, Path, description = "Survey id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "surveys", id).await? {
        Ok(Json(Envelope::with_message(None, "Survey deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    pub position: Option<i32>,
}

#[utoipa::path(post, path = "/api/v1/survey/{id}/sections", tag = "surveys", params(("id" = Uuid, Path, description = "Survey id")), request_body = SectionRequest,
    responses((status = 201, body = inline(Envelope<Section>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn add_section(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SectionRequest>,
) -> Result<(StatusCode, Json<Envelope<Section>>), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let title = validate::required_text(body.title, 300, "title", &mut e);
    let description = body.description.map(|d| validate::text(&d, 5000, "description", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if get_survey(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let section: Section = sqlx::query_as(
        "insert into survey_sections (tenant_id, survey_id, title, description, position)
         values ($1, $2, $3, $4, coalesce($5, (select coalesce(max(position), 0) + 1 from survey_sections where survey_id = $2)))
         returning id, title, description, position",
    )
    .bind(tenant)
    .bind(id)
    .bind(title)
    .bind(description)
    .bind(body.position)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(section, "Section added."))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionRequest {
    pub question_text: Option<String>,
    /// text, textarea, single_choice, multiple_choice, rating (1-5), scale (0-10), yes_no, email, number, date.
    pub question_type: Option<String>,
    /// Choices for single_choice and multiple_choice: strings or {value, label}.
    #[schema(value_type = Option<Vec<Object>>)]
    pub options: Option<Vec<Value>>,
    pub is_required: Option<bool>,
    pub section_id: Option<Uuid>,
    pub position: Option<i32>,
}

#[utoipa::path(post, path = "/api/v1/survey/{id}/questions", tag = "surveys", params(("id" = Uuid, Path, description = "Survey id")), request_body = QuestionRequest,
    responses((status = 201, body = inline(Envelope<Question>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn add_question(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<QuestionRequest>,
) -> Result<(StatusCode, Json<Envelope<Question>>), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let text = validate::required_text(body.question_text, 1000, "question_text", &mut e);
    let kind = validate::one_of(body.question_type.as_deref().unwrap_or(""), QUESTION_TYPES, "question_type", &mut e);
    let options = body.options.unwrap_or_default();
    let is_choice = kind == "single_choice" || kind == "multiple_choice";
    if is_choice && options.len() < 2 {
        e.add("options", "choice questions need at least two options");
    }
    if !is_choice && !options.is_empty() {
        e.add("options", "only choice questions take options");
    }
    if options.len() > 100 {
        e.add("options", "at most 100 options");
    }
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if get_survey(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    if let Some(section) = body.section_id {
        let found: bool = sqlx::query_scalar(
            "select exists (select 1 from survey_sections where tenant_id = $1 and survey_id = $2 and id = $3)",
        )
        .bind(tenant)
        .bind(id)
        .bind(section)
        .fetch_one(&mut *tx)
        .await?;
        if !found {
            return Err(ApiError::Validation(FieldErrors::single("section_id", "no such section in this survey")));
        }
    }
    let question: Question = sqlx::query_as(
        "insert into survey_questions (tenant_id, survey_id, section_id, question_text, question_type, options, is_required, position)
         values ($1, $2, $3, $4, $5, $6, $7, coalesce($8, (select coalesce(max(position), 0) + 1 from survey_questions where survey_id = $2)))
         returning id, section_id, question_text, question_type, options, is_required, position",
    )
    .bind(tenant)
    .bind(id)
    .bind(body.section_id)
    .bind(text)
    .bind(kind)
    .bind(SqlJson(Value::Array(options)))
    .bind(body.is_required.unwrap_or(false))
    .bind(body.position)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(question, "Question added."))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseRequest {
    /// The respondent, when known: recorded as their `survey_response` activity.
    pub customer_id: Option<Uuid>,
    /// Answers by question id.
    #[schema(value_type = Object)]
    pub answers: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SurveyResponse {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub answers: SqlJson<Map<String, Value>>,
    pub submitted_at: DateTime<Utc>,
}

/// Submit answers to an active survey; every answer is checked against its question.
#[utoipa::path(post, path = "/api/v1/survey/{id}/responses", tag = "surveys", params(("id" = Uuid, Path, description = "Survey id")), request_body = ResponseRequest,
    responses((status = 201, body = inline(Envelope<SurveyResponse>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "The survey is not active", body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn respond(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResponseRequest>,
) -> Result<(StatusCode, Json<Envelope<SurveyResponse>>), ApiError> {
    auth.require(RESPOND).or_else(|_| auth.require(WRITE))?;
    let id = resource_id(&id, RESOURCE)?;
    let answers = body.answers.unwrap_or_default();
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let survey = get_survey(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if survey.status != "active" {
        return Err(ApiError::Conflict {
            message: format!("The survey is {}; only active surveys take responses.", survey.status),
            field: None,
        });
    }
    let questions: Vec<answers::QuestionRule> = sqlx::query_as(
        "select id, question_type, options, is_required from survey_questions where tenant_id = $1 and survey_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let mut e = FieldErrors::default();
    answers::check(&questions, &answers, &mut e);
    if let Some(c) = body.customer_id
        && !customers::store::exists(&mut tx, tenant, c).await?
    {
        e.add("customer_id", "no such customer");
    }
    e.into_result()?;
    let saved: SurveyResponse = sqlx::query_as(
        "insert into survey_responses (tenant_id, survey_id, customer_id, answers) values ($1, $2, $3, $4)
         returning id, customer_id, answers, submitted_at",
    )
    .bind(tenant)
    .bind(id)
    .bind(body.customer_id)
    .bind(SqlJson(&answers))
    .fetch_one(&mut *tx)
    .await?;
    if let Some(customer) = body.customer_id {
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id)
             values ($1, $2, 'survey_response', 'web', 'survey', $3)",
        )
        .bind(tenant)
        .bind(customer)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(saved, "Thank you for your answers."))))
}

#[utoipa::path(get, path = "/api/v1/survey/{id}/responses", tag = "surveys", params(("id" = Uuid, Path, description = "Survey id"), PageQuery),
    responses((status = 200, body = inline(Envelope<Vec<SurveyResponse>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn responses(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Envelope<Vec<SurveyResponse>>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if get_survey(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let total: i64 =
        sqlx::query_scalar("select count(*) from survey_responses where tenant_id = $1 and survey_id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let rows: Vec<SurveyResponse> = sqlx::query_as(
        "select id, customer_id, answers, submitted_at from survey_responses where tenant_id = $1 and survey_id = $2
         order by submitted_at desc, id desc limit $3 offset $4",
    )
    .bind(tenant)
    .bind(id)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}
