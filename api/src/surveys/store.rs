//! Survey, section, question and response SQL.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    answers::QuestionRule,
    input::{NewQuestion, NewSection, NewSurvey, SurveyChanges},
};
use crate::envelope::PageRequest;

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

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SurveyResponse {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub answers: SqlJson<Map<String, Value>>,
    pub submitted_at: DateTime<Utc>,
}

/// A row of the list and of single reads.
pub const LIST_COLUMNS: &str = "s.id, s.title, s.slug, s.description, s.status,
        (select count(*) from survey_responses r where r.survey_id = s.id) as response_count, s.created_at, s.updated_at";

#[tracing::instrument(name = "surveys.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get_survey(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Survey>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {LIST_COLUMNS} from surveys s where s.tenant_id = $1 and s.id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The survey with its sections and questions in order.
#[tracing::instrument(name = "surveys.detail", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn detail(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<SurveyDetail>, sqlx::Error> {
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

#[tracing::instrument(name = "surveys.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, slug: &str, s: NewSurvey) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into surveys (tenant_id, title, slug, description, status) values ($1, $2, $3, $4, $5) returning id",
    )
    .bind(tenant)
    .bind(s.title)
    .bind(slug)
    .bind(s.description)
    .bind(s.status)
    .fetch_one(conn)
    .await
}

/// Applies `changes`; false when there is no such survey.
#[tracing::instrument(name = "surveys.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    c: SurveyChanges,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "update surveys set title = coalesce($3, title), description = case when $4 then $5 else description end,
            status = coalesce($6, status) where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(c.title)
    .bind(c.description.is_some())
    .bind(c.description.flatten())
    .bind(c.status)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

#[tracing::instrument(name = "surveys.insert_section", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert_section(
    conn: &mut PgConnection,
    tenant: TenantId,
    survey: Uuid,
    s: NewSection,
) -> Result<Section, sqlx::Error> {
    sqlx::query_as(
        "insert into survey_sections (tenant_id, survey_id, title, description, position)
         values ($1, $2, $3, $4, coalesce($5, (select coalesce(max(position), 0) + 1 from survey_sections where survey_id = $2)))
         returning id, title, description, position",
    )
    .bind(tenant)
    .bind(survey)
    .bind(s.title)
    .bind(s.description)
    .bind(s.position)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(name = "surveys.section_exists", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn section_exists(
    conn: &mut PgConnection,
    tenant: TenantId,
    survey: Uuid,
    section: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from survey_sections where tenant_id = $1 and survey_id = $2 and id = $3)",
    )
    .bind(tenant)
    .bind(survey)
    .bind(section)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(name = "surveys.insert_question", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert_question(
    conn: &mut PgConnection,
    tenant: TenantId,
    survey: Uuid,
    q: NewQuestion,
) -> Result<Question, sqlx::Error> {
    sqlx::query_as(
        "insert into survey_questions (tenant_id, survey_id, section_id, question_text, question_type, options, is_required, position)
         values ($1, $2, $3, $4, $5, $6, $7, coalesce($8, (select coalesce(max(position), 0) + 1 from survey_questions where survey_id = $2)))
         returning id, section_id, question_text, question_type, options, is_required, position",
    )
    .bind(tenant)
    .bind(survey)
    .bind(q.section_id)
    .bind(q.text)
    .bind(q.kind)
    .bind(SqlJson(Value::Array(q.options)))
    .bind(q.is_required)
    .bind(q.position)
    .fetch_one(conn)
    .await
}

/// The survey's questions as the answer checker needs them.
#[tracing::instrument(name = "surveys.question_rules", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn question_rules(
    conn: &mut PgConnection,
    tenant: TenantId,
    survey: Uuid,
) -> Result<Vec<QuestionRule>, sqlx::Error> {
    sqlx::query_as(
        "select id, question_type, options, is_required from survey_questions where tenant_id = $1 and survey_id = $2",
    )
    .bind(tenant)
    .bind(survey)
    .fetch_all(conn)
    .await
}

/// Stores checked answers, and the respondent's `survey_response` activity when known.
#[tracing::instrument(name = "surveys.insert_response", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert_response(
    conn: &mut PgConnection,
    tenant: TenantId,
    survey: Uuid,
    customer: Option<Uuid>,
    answers: &Map<String, Value>,
) -> Result<SurveyResponse, sqlx::Error> {
    let saved: SurveyResponse = sqlx::query_as(
        "insert into survey_responses (tenant_id, survey_id, customer_id, answers) values ($1, $2, $3, $4)
         returning id, customer_id, answers, submitted_at",
    )
    .bind(tenant)
    .bind(survey)
    .bind(customer)
    .bind(SqlJson(answers))
    .fetch_one(&mut *conn)
    .await?;
    if let Some(customer) = customer {
        crate::customers::store::record_web_activity(conn, tenant, customer, "survey_response", "survey", survey)
            .await?;
    }
    Ok(saved)
}

/// One page of a survey's responses, newest first, and the total.
#[tracing::instrument(name = "surveys.responses", skip(conn, page), fields(tenant_id = %tenant), err)]
pub async fn responses(
    conn: &mut PgConnection,
    tenant: TenantId,
    survey: Uuid,
    page: PageRequest,
) -> Result<(Vec<SurveyResponse>, i64), sqlx::Error> {
    let total: i64 =
        sqlx::query_scalar("select count(*) from survey_responses where tenant_id = $1 and survey_id = $2")
            .bind(tenant)
            .bind(survey)
            .fetch_one(&mut *conn)
            .await?;
    let rows = sqlx::query_as(
        "select id, customer_id, answers, submitted_at from survey_responses where tenant_id = $1 and survey_id = $2
         order by submitted_at desc, id desc limit $3 offset $4",
    )
    .bind(tenant)
    .bind(survey)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}
