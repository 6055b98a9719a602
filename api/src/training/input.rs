//! Training request bodies, parsed into checked values.

use fibonacco_platform::domain::Slug;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, validate};

const MAX_LESSONS: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModuleRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    /// `{title, content, knowledge_id?}` in order; a `knowledge_id` must name an entry of this tenant.
    #[schema(value_type = Option<Vec<Object>>)]
    pub lessons: Option<Vec<Value>>,
    /// draft (default) or published.
    pub status: Option<String>,
    pub position: Option<i32>,
}

/// A checked module; the knowledge entries its lessons name are checked in the tenant
/// by the handler (`knowledge_ids`: lesson index and entry id).
pub struct NewModule {
    pub title: String,
    pub slug: Slug,
    pub description: Option<String>,
    pub lessons: Vec<Value>,
    pub status: String,
    pub position: i32,
    pub knowledge_ids: Vec<(usize, Uuid)>,
}

impl CreateModuleRequest {
    pub fn parse(self) -> Result<NewModule, ApiError> {
        let mut e = FieldErrors::default();
        let title = validate::required_text(self.title, 300, "title", &mut e);
        let description = self.description.map(|d| validate::text(&d, 5000, "description", &mut e));
        let status =
            validate::one_of(self.status.as_deref().unwrap_or("draft"), &["draft", "published"], "status", &mut e);
        let lessons = self.lessons.unwrap_or_default();
        if lessons.len() > MAX_LESSONS {
            e.add("lessons", format!("at most {MAX_LESSONS} lessons"));
        }
        let mut knowledge_ids = Vec::new();
        for (i, lesson) in lessons.iter().enumerate() {
            let Some(obj) = lesson.as_object() else {
                e.add(format!("lessons[{i}]"), "must be an object");
                continue;
            };
            if obj.get("title").and_then(Value::as_str).is_none_or(|t| t.trim().is_empty()) {
                e.add(format!("lessons[{i}].title"), "is required");
            }
            match obj.get("knowledge_id") {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                    Some(id) => knowledge_ids.push((i, id)),
                    None => e.add(format!("lessons[{i}].knowledge_id"), "must be a UUID"),
                },
            }
        }
        let slug = Slug::from_text(&title);
        if slug.is_none() && !title.is_empty() {
            e.add("title", "must contain letters or digits");
        }
        let position = validate::position(self.position, &mut e).unwrap_or(0);
        e.into_result()?;
        let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("title", "is required")))?;
        Ok(NewModule { title, slug, description, lessons, status, position, knowledge_ids })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    pub customer_id: Option<Uuid>,
    /// The 0-based index of the lesson finished.
    pub lesson: Option<i32>,
}
