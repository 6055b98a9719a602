//! Content request bodies and list filters, parsed into checked values.

use chrono::{DateTime, Utc};
use fibonacco_delivery::publishing as workflow;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

pub const CONTENT_TYPES: &[&str] =
    &["article", "blog_post", "social_post", "email", "newsletter", "landing_page", "ad_copy", "video_script", "other"];

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContentListQuery {
    pub status: Option<String>,
    pub content_type: Option<String>,
    /// Case-insensitive substring of the title.
    pub search: Option<String>,
}

/// Checked list filters; `title_like` is an escaped `ilike` pattern.
pub struct ContentFilter {
    pub status: Option<String>,
    pub content_type: Option<String>,
    pub title_like: Option<String>,
}

impl ContentListQuery {
    pub fn parse(self, e: &mut FieldErrors) -> ContentFilter {
        let status =
            self.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, workflow::STATUSES, "status", e));
        let content_type =
            self.content_type.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, CONTENT_TYPES, "content_type", e));
        let title_like = self
            .search
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(|s| format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        ContentFilter { status, content_type, title_like }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContentRequest {
    pub title: Option<String>,
    /// article (default), blog_post, social_post, email, newsletter, landing_page, ad_copy, video_script, other.
    pub content_type: Option<String>,
    pub body: Option<String>,
    pub excerpt: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Checked hand-written content.
pub struct ContentDraft {
    pub title: String,
    pub content_type: String,
    pub body: String,
    pub excerpt: Option<String>,
    pub metadata: Map<String, Value>,
}

impl CreateContentRequest {
    pub fn parse(self) -> Result<ContentDraft, ApiError> {
        let mut e = FieldErrors::default();
        let title = validate::required_text(self.title, 500, "title", &mut e);
        let content_type =
            validate::one_of(self.content_type.as_deref().unwrap_or("article"), CONTENT_TYPES, "content_type", &mut e);
        let body = self.body.map(|b| validate::text(&b, 200_000, "body", &mut e)).unwrap_or_default();
        let excerpt = self.excerpt.map(|x| validate::text(&x, 2000, "excerpt", &mut e));
        let metadata = validate::object(self.metadata, "metadata", &mut e);
        e.into_result()?;
        Ok(ContentDraft { title, content_type, body, excerpt, metadata })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContentRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub body: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub excerpt: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub content_type: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

/// Checked changes: `None` leaves a field, `excerpt: Some(None)` clears it.
pub struct ContentChanges {
    pub title: Option<String>,
    pub body: Option<String>,
    pub excerpt: Option<Option<String>>,
    pub content_type: Option<String>,
    pub metadata: Option<Map<String, Value>>,
}

impl UpdateContentRequest {
    pub fn parse(self) -> Result<ContentChanges, ApiError> {
        let mut e = FieldErrors::default();
        let title =
            self.title.non_null("title", &mut e).map(|t| validate::required_text(Some(t), 500, "title", &mut e));
        let body = match self.body {
            Patch::Missing => None,
            Patch::Null => Some(String::new()),
            Patch::Value(b) => Some(validate::text(&b, 200_000, "body", &mut e)),
        };
        let excerpt = validate::optional_text(self.excerpt, 2000, "excerpt", &mut e);
        let content_type = self
            .content_type
            .non_null("content_type", &mut e)
            .map(|k| validate::one_of(&k, CONTENT_TYPES, "content_type", &mut e));
        let metadata = match self.metadata {
            Patch::Missing => None,
            Patch::Null => Some(Map::new()),
            Patch::Value(v) => Some(validate::object(Some(v), "metadata", &mut e)),
        };
        e.into_result()?;
        Ok(ContentChanges { title, body, excerpt, content_type, metadata })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// The status to move to.
    pub status: Option<String>,
    /// Required (and in the future) when moving to `scheduled`.
    pub scheduled_publish_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
}

/// A checked status move; whether it is legal from the current status is the workflow's call.
pub struct StatusMove {
    pub to: String,
    pub scheduled_publish_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
}

impl StatusRequest {
    pub fn parse(self) -> Result<StatusMove, ApiError> {
        let mut e = FieldErrors::default();
        let to = validate::required_text(self.status, 20, "status", &mut e);
        if !to.is_empty() {
            validate::one_of(&to, workflow::STATUSES, "status", &mut e);
        }
        let notes = self.notes.map(|n| validate::text(&n, 5000, "notes", &mut e));
        if to == "scheduled" {
            match self.scheduled_publish_at {
                None => e.add("scheduled_publish_at", "is required to schedule"),
                Some(t) if t <= Utc::now() => e.add("scheduled_publish_at", "must be in the future"),
                Some(_) => {}
            }
        }
        e.into_result()?;
        Ok(StatusMove { to, scheduled_publish_at: self.scheduled_publish_at, notes })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContentTemplate {
    pub name: Option<String>,
    pub content_type: Option<String>,
    /// The prompt, with `{{ placeholders }}` filled at generation time.
    pub prompt_template: Option<String>,
    /// Expected sections or fields of the output.
    #[schema(value_type = Option<Object>)]
    pub structure: Option<Value>,
}

/// A checked content template; `variables` are the prompt's placeholders.
pub struct NewContentTemplate {
    pub name: String,
    pub content_type: String,
    pub prompt_template: String,
    pub variables: Vec<String>,
    pub structure: Map<String, Value>,
}

impl CreateContentTemplate {
    pub fn parse(self) -> Result<NewContentTemplate, ApiError> {
        let mut e = FieldErrors::default();
        let name = validate::required_text(self.name, 200, "name", &mut e);
        let content_type =
            validate::one_of(self.content_type.as_deref().unwrap_or("article"), CONTENT_TYPES, "content_type", &mut e);
        let prompt_template = validate::required_text(self.prompt_template, 20_000, "prompt_template", &mut e);
        let structure = validate::object(self.structure, "structure", &mut e);
        e.into_result()?;
        let variables = fibonacco_delivery::templates::placeholders(&[&prompt_template]);
        Ok(NewContentTemplate { name, content_type, prompt_template, variables, structure })
    }
}
