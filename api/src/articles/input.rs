//! Article request bodies and list filters, parsed into checked values.

use fibonacco_platform::domain::Slug;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

pub const STATUSES: &[&str] = &["draft", "published", "archived"];

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArticleListQuery {
    pub status: Option<String>,
    pub category: Option<String>,
    pub tag: Option<String>,
    /// Full-text search over title, excerpt and body (web-search syntax).
    pub search: Option<String>,
}

/// Checked list filters; `None` matches everything.
pub struct ArticleFilter {
    pub status: Option<String>,
    pub category: Option<String>,
    pub tag: Option<String>,
    pub search: Option<String>,
}

impl ArticleListQuery {
    pub fn parse(self, e: &mut FieldErrors) -> ArticleFilter {
        let status = self.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", e));
        let search = self.search.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        if search.as_ref().is_some_and(|s| s.chars().count() > 500) {
            e.add("search", "must be at most 500 characters");
        }
        ArticleFilter {
            status,
            category: self.category.filter(|s| !s.is_empty()),
            tag: self.tag.filter(|s| !s.is_empty()),
            search,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArticleRequest {
    pub title: Option<String>,
    /// Derived from the title when omitted.
    pub slug: Option<String>,
    pub excerpt: Option<String>,
    pub body: Option<String>,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    /// draft (default) or published.
    pub status: Option<String>,
    pub author_name: Option<String>,
    pub featured_image_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A checked article. A `derived` slug came from the title and is made free in the tenant
/// by the handler; a given one must be free (409 otherwise).
pub struct NewArticle {
    pub title: String,
    pub slug: Slug,
    pub derived: bool,
    pub excerpt: Option<String>,
    pub body: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub status: String,
    pub author_name: Option<String>,
    pub featured_image_url: Option<String>,
    pub metadata: Map<String, Value>,
}

impl CreateArticleRequest {
    pub fn parse(self) -> Result<NewArticle, ApiError> {
        let mut e = FieldErrors::default();
        let title = validate::required_text(self.title, 500, "title", &mut e);
        let (slug, derived) = match self.slug {
            Some(s) => (Slug::parse(s.trim()).map_err(|err| e.add("slug", err.0)).ok(), false),
            None => (Slug::from_text(&title), true),
        };
        if slug.is_none() && derived && !title.is_empty() {
            e.add("slug", "cannot be derived from the title; give one");
        }
        let excerpt = self.excerpt.map(|x| validate::text(&x, 2000, "excerpt", &mut e));
        let body = self.body.map(|b| validate::text(&b, 500_000, "body", &mut e)).unwrap_or_default();
        let category = self.category.map(|c| validate::text(&c, 100, "category", &mut e)).filter(|c| !c.is_empty());
        let tags = validate::labels(self.tags.unwrap_or_default(), 50, 100, "tags", &mut e);
        let status =
            validate::one_of(self.status.as_deref().unwrap_or("draft"), &["draft", "published"], "status", &mut e);
        let author_name = self.author_name.map(|a| validate::text(&a, 200, "author_name", &mut e));
        let featured_image_url =
            self.featured_image_url.map(|u| validate::text(&u, 2048, "featured_image_url", &mut e));
        let metadata = validate::object(self.metadata, "metadata", &mut e);
        e.into_result()?;
        let Some(slug) = slug else { return Err(ApiError::Validation(FieldErrors::single("slug", "is required"))) };
        Ok(NewArticle {
            title,
            slug,
            derived,
            excerpt,
            body,
            category,
            tags,
            status,
            author_name,
            featured_image_url,
            metadata,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArticleRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub excerpt: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub body: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub category: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Patch<Vec<String>>,
    /// draft, published (sets `published_at` the first time) or archived.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
}

/// Checked changes: `None` leaves a field, `Some(None)` clears a nullable one.
pub struct ArticleChanges {
    pub title: Option<String>,
    pub excerpt: Option<Option<String>>,
    pub body: Option<String>,
    pub category: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub status: Option<String>,
}

impl UpdateArticleRequest {
    pub fn parse(self) -> Result<ArticleChanges, ApiError> {
        let mut e = FieldErrors::default();
        let title =
            self.title.non_null("title", &mut e).map(|t| validate::required_text(Some(t), 500, "title", &mut e));
        let excerpt = validate::optional_text(self.excerpt, 2000, "excerpt", &mut e);
        let body = match self.body {
            Patch::Missing => None,
            Patch::Null => Some(String::new()),
            Patch::Value(b) => Some(validate::text(&b, 500_000, "body", &mut e)),
        };
        let category = validate::optional_text(self.category, 100, "category", &mut e);
        let tags = match self.tags {
            Patch::Missing => None,
            Patch::Null => Some(Vec::new()),
            Patch::Value(t) => Some(validate::labels(t, 50, 100, "tags", &mut e)),
        };
        let status = self.status.non_null("status", &mut e).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
        e.into_result()?;
        Ok(ArticleChanges { title, excerpt, body, category, tags, status })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ArticleViewRequest)]
pub struct ViewRequest {
    /// The reader, when known: the read is recorded as their `article_read` activity.
    pub customer_id: Option<Uuid>,
}
