//! Presentation and presenter request bodies, parsed into checked values.

use fibonacco_platform::domain::Slug;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

pub const STATUSES: &[&str] = &["draft", "published", "archived"];
const MAX_SLIDES: usize = 200;

/// Slides must be objects with a non-empty `title`.
fn check_slides(slides: &[Value], e: &mut FieldErrors) {
    if slides.len() > MAX_SLIDES {
        e.add("slides", format!("at most {MAX_SLIDES} slides"));
    }
    for (i, slide) in slides.iter().enumerate() {
        let ok = slide
            .as_object()
            .and_then(|o| o.get("title"))
            .and_then(Value::as_str)
            .is_some_and(|t| !t.trim().is_empty());
        if !ok {
            e.add(format!("slides[{i}]"), "must be an object with a non-empty title");
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePresentationRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub slides: Option<Vec<Value>>,
    pub presenter_id: Option<Uuid>,
    pub is_template: Option<bool>,
}

/// A checked presentation; its presenter is checked in the tenant by the handler.
pub struct NewPresentation {
    pub title: String,
    pub slug: Slug,
    pub description: Option<String>,
    pub slides: Vec<Value>,
    pub presenter_id: Option<Uuid>,
    pub is_template: bool,
}

impl CreatePresentationRequest {
    pub fn parse(self) -> Result<NewPresentation, ApiError> {
        let mut e = FieldErrors::default();
        let title = validate::required_text(self.title, 300, "title", &mut e);
        let description = self.description.map(|d| validate::text(&d, 5000, "description", &mut e));
        let slides = self.slides.unwrap_or_default();
        check_slides(&slides, &mut e);
        let slug = Slug::from_text(&title);
        if slug.is_none() && !title.is_empty() {
            e.add("title", "must contain letters or digits");
        }
        e.into_result()?;
        let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("title", "is required")))?;
        Ok(NewPresentation {
            title,
            slug,
            description,
            slides,
            presenter_id: self.presenter_id,
            is_template: self.is_template.unwrap_or(false),
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePresentationRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub slides: Patch<Vec<Value>>,
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub presenter_id: Patch<Uuid>,
    /// draft, published or archived.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
}

/// Checked changes: `None` leaves a field, `presenter_id: Some(None)` clears it.
pub struct PresentationChanges {
    pub title: Option<String>,
    pub slides: Option<Vec<Value>>,
    pub presenter_id: Option<Option<Uuid>>,
    pub status: Option<String>,
}

impl UpdatePresentationRequest {
    pub fn parse(self) -> Result<PresentationChanges, ApiError> {
        let mut e = FieldErrors::default();
        let title =
            self.title.non_null("title", &mut e).map(|t| validate::required_text(Some(t), 300, "title", &mut e));
        let slides = self.slides.non_null("slides", &mut e);
        if let Some(s) = &slides {
            check_slides(s, &mut e);
        }
        let status = self.status.non_null("status", &mut e).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
        let presenter_id = self.presenter_id.nullable();
        e.into_result()?;
        Ok(PresentationChanges { title, slides, presenter_id, status })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PresentationViewRequest)]
pub struct ViewRequest {
    /// The viewer, when known: recorded as their `presentation_view` activity.
    pub customer_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePresenterRequest {
    pub name: Option<String>,
    pub bio: Option<String>,
    pub avatar_url: Option<String>,
    pub voice_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub voice_settings: Option<Value>,
}

pub struct NewPresenter {
    pub name: String,
    pub bio: Option<String>,
    pub avatar_url: Option<String>,
    pub voice_id: Option<String>,
    pub voice_settings: Map<String, Value>,
}

impl CreatePresenterRequest {
    pub fn parse(self) -> Result<NewPresenter, ApiError> {
        let mut e = FieldErrors::default();
        let name = validate::required_text(self.name, 200, "name", &mut e);
        let bio = self.bio.map(|b| validate::text(&b, 5000, "bio", &mut e));
        let avatar_url = self.avatar_url.map(|a| validate::text(&a, 2048, "avatar_url", &mut e));
        let voice_id = self.voice_id.map(|v| validate::text(&v, 100, "voice_id", &mut e));
        let voice_settings = validate::object(self.voice_settings, "voice_settings", &mut e);
        e.into_result()?;
        Ok(NewPresenter { name, bio, avatar_url, voice_id, voice_settings })
    }
}
