//! Surveys with sections and questions, and their responses (`/api/v1/survey`). Handlers
//! here; `input.rs` parses, `answers.rs` checks answers against their questions,
//! `store.rs` holds the SQL.

pub mod answers;
pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use fibonacco_platform::db;

pub use input::{
    CreateSurveyRequest, QUESTION_TYPES, QuestionRequest, ResponseRequest, STATUSES, SectionRequest,
    UpdateSurveyRequest,
};
pub use store::{Question, Section, Survey, SurveyDetail, SurveyResponse};

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    listing::{Listing, page_of},
    state::AppState,
};

pub const READ: &str = "surveys:read";
pub const WRITE: &str = "surveys:write";
/// Submitting a response is what a respondent does, so it has its own ability.
pub const RESPOND: &str = "surveys:respond";
const RESOURCE: &str = "survey";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/survey", get(list).post(create))
        .route("/survey/{id}", get(show).put(update).delete(destroy))
        .route("/survey/{id}/sections", post(add_section))
        .route("/survey/{id}/questions", post(add_question))
        .route("/survey/{id}/responses", get(responses).post(respond))
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
    let listing = Listing { from: "surveys s", columns: store::LIST_COLUMNS, order_by: "s.created_at desc, s.id desc" };
    page_of(&state, &auth, page, &listing).await
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
    let survey = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let slug = crate::slugs::free_slug(&mut tx, "surveys", tenant, survey.slug.as_str()).await?;
    let id = store::insert(&mut tx, tenant, &slug, survey).await?;
    let survey = store::detail(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
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
    let survey = store::detail(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    survey.map(|s| Json(Envelope::data(s))).ok_or(ApiError::NotFound(RESOURCE))
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
    let changes = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if !store::update(&mut tx, tenant, id, changes).await? {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let survey = store::detail(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
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
    let section = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if store::get_survey(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let section = store::insert_section(&mut tx, tenant, id, section).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(section, "Section added."))))
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
    let question = body.parse()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if store::get_survey(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    if let Some(section) = question.section_id
        && !store::section_exists(&mut tx, tenant, id, section).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("section_id", "no such section in this survey")));
    }
    let question = store::insert_question(&mut tx, tenant, id, question).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(question, "Question added."))))
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
    let survey = store::get_survey(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    if survey.status != "active" {
        return Err(ApiError::Conflict {
            message: format!("The survey is {}; only active surveys take responses.", survey.status),
            field: None,
        });
    }
    let questions = store::question_rules(&mut tx, tenant, id).await?;
    let mut e = FieldErrors::default();
    answers::check(&questions, &answers, &mut e);
    if let Some(c) = body.customer_id
        && !customers::store::exists(&mut tx, tenant, c).await?
    {
        e.add("customer_id", "no such customer");
    }
    e.into_result()?;
    let saved = store::insert_response(&mut tx, tenant, id, body.customer_id, &answers).await?;
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
    if store::get_survey(&mut tx, tenant, id).await?.is_none() {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let (rows, total) = store::responses(&mut tx, tenant, id, page).await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}
