//! FAQ category request bodies and list options, parsed into checked values.

use fibonacco_platform::domain::Slug;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::store::CategoryChanges;
use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CategoryListQuery {
    /// `true` returns the categories nested under their parents.
    pub tree: Option<String>,
}

impl CategoryListQuery {
    /// Whether the caller asked for the tree.
    pub fn parse(&self) -> Result<bool, ApiError> {
        match self.tree.as_deref() {
            None | Some("" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(ApiError::Validation(FieldErrors::single("tree", "must be true or false"))),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCategoryRequest {
    pub name: Option<String>,
    /// Unique in the tenant; derived from the name when omitted.
    pub slug: Option<String>,
    pub parent_id: Option<Uuid>,
    pub display_order: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A checked category. A `derived` slug came from the name and is made free in the tenant
/// by the handler; a given one must be free (409 otherwise). The parent is checked in the
/// tenant by the handler.
pub struct CategoryDraft {
    pub name: String,
    pub slug: Slug,
    pub derived: bool,
    pub parent_id: Option<Uuid>,
    pub display_order: i32,
    pub metadata: Map<String, Value>,
}

impl CreateCategoryRequest {
    pub fn parse(self) -> Result<CategoryDraft, ApiError> {
        let mut e = FieldErrors::default();
        let name = validate::required_text(self.name, 200, "name", &mut e);
        let (slug, derived) = match self.slug {
            Some(s) => (Slug::parse(s.trim()).map_err(|err| e.add("slug", err.0)).ok(), false),
            None => (Slug::from_text(&name), true),
        };
        if slug.is_none() && derived && !name.is_empty() {
            e.add("slug", "cannot be derived from the name; give one");
        }
        let metadata = validate::object(self.metadata, "metadata", &mut e);
        e.into_result()?;
        let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("slug", "is required")))?;
        Ok(CategoryDraft {
            name,
            slug,
            derived,
            parent_id: self.parent_id,
            display_order: self.display_order.unwrap_or(0),
            metadata,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCategoryRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub slug: Patch<String>,
    /// `null` makes it a root; a category can never sit under itself or its descendants.
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub parent_id: Patch<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<i32>)]
    pub display_order: Patch<i32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

impl UpdateCategoryRequest {
    /// Checked changes; a new parent is checked against the tree by the handler.
    pub fn parse(self) -> Result<CategoryChanges, ApiError> {
        let mut e = FieldErrors::default();
        let mut changes = CategoryChanges::default();
        if let Some(n) = self.name.non_null("name", &mut e) {
            changes.name = Some(validate::required_text(Some(n), 200, "name", &mut e));
        }
        if let Some(s) = self.slug.non_null("slug", &mut e) {
            changes.slug = Slug::parse(s.trim()).map_err(|err| e.add("slug", err.0)).ok().map(Slug::into_inner);
        }
        changes.parent_id = self.parent_id.nullable();
        changes.display_order = self.display_order.non_null("display_order", &mut e);
        match self.metadata {
            Patch::Missing => {}
            Patch::Null => changes.metadata = Some(Default::default()),
            Patch::Value(v) => changes.metadata = Some(validate::object(Some(v), "metadata", &mut e)),
        }
        e.into_result()?;
        Ok(changes)
    }
}
