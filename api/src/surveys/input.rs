//! Survey, section and question request bodies, parsed into checked values. Answers are
//! checked against their questions in `answers.rs`.

use fibonacco_platform::domain::Slug;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

pub const STATUSES: &[&str] = &["draft", "active", "closed", "archived"];
pub const QUESTION_TYPES: &[&str] =
    &["text", "textarea", "single_choice", "multiple_choice", "rating", "scale", "yes_no", "email", "number", "date"];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSurveyRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    /// draft (default) or active.
    pub status: Option<String>,
}

/// A checked survey; `slug` is the title's, made free in the tenant on insert.
pub struct NewSurvey {
    pub title: String,
    pub slug: Slug,
    pub description: Option<String>,
    pub status: String,
}

impl CreateSurveyRequest {
    pub fn parse(self) -> Result<NewSurvey, ApiError> {
        let mut e = FieldErrors::default();
        let title = validate::required_text(self.title, 300, "title", &mut e);
        let description = self.description.map(|d| validate::text(&d, 5000, "description", &mut e));
        let status =
            validate::one_of(self.status.as_deref().unwrap_or("draft"), &["draft", "active"], "status", &mut e);
        let slug = Slug::from_text(&title);
        if slug.is_none() && !title.is_empty() {
            e.add("title", "must contain letters or digits");
        }
        e.into_result()?;
        let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("title", "is required")))?;
        Ok(NewSurvey { title, slug, description, status })
    }
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

/// Checked changes: `None` leaves a field, `description: Some(None)` clears it.
pub struct SurveyChanges {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<String>,
}

impl UpdateSurveyRequest {
    pub fn parse(self) -> Result<SurveyChanges, ApiError> {
        let mut e = FieldErrors::default();
        let title =
            self.title.non_null("title", &mut e).map(|t| validate::required_text(Some(t), 300, "title", &mut e));
        let description = validate::optional_text(self.description, 5000, "description", &mut e);
        let status = self.status.non_null("status", &mut e).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
        e.into_result()?;
        Ok(SurveyChanges { title, description, status })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    pub position: Option<i32>,
}

/// A checked section; without a position it goes last.
pub struct NewSection {
    pub title: String,
    pub description: Option<String>,
    pub position: Option<i32>,
}

impl SectionRequest {
    pub fn parse(self) -> Result<NewSection, ApiError> {
        let mut e = FieldErrors::default();
        let title = validate::required_text(self.title, 300, "title", &mut e);
        let description = self.description.map(|d| validate::text(&d, 5000, "description", &mut e));
        let position = validate::position(self.position, &mut e);
        e.into_result()?;
        Ok(NewSection { title, description, position })
    }
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

/// A checked question; its section is checked in the survey by the handler, and without a
/// position it goes last.
pub struct NewQuestion {
    pub text: String,
    pub kind: String,
    pub options: Vec<Value>,
    pub is_required: bool,
    pub section_id: Option<Uuid>,
    pub position: Option<i32>,
}

impl QuestionRequest {
    pub fn parse(self) -> Result<NewQuestion, ApiError> {
        let mut e = FieldErrors::default();
        let text = validate::required_text(self.question_text, 1000, "question_text", &mut e);
        let kind =
            validate::one_of(self.question_type.as_deref().unwrap_or(""), QUESTION_TYPES, "question_type", &mut e);
        let options = self.options.unwrap_or_default();
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
        let position = validate::position(self.position, &mut e);
        e.into_result()?;
        Ok(NewQuestion {
            text,
            kind,
            options,
            is_required: self.is_required.unwrap_or(false),
            section_id: self.section_id,
            position,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseRequest {
    /// The respondent, when known: recorded as their `survey_response` activity.
    pub customer_id: Option<Uuid>,
    /// Answers by question id.
    #[schema(value_type = Option<Object>)]
    pub answers: Option<Map<String, Value>>,
}
