//! Knowledge entry bodies, votes and list filters.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

pub const SOURCES: &[&str] = &["manual", "import", "ai_generated", "scraped", "conversation", "faq"];
pub const VALIDATION_STATUSES: &[&str] = &["unvalidated", "pending", "validated", "rejected"];
pub const EMBEDDING_STATUSES: &[&str] = &["pending", "processing", "completed", "failed"];
const TITLE_MAX: usize = 500;
const CONTENT_MAX: usize = 100_000;
const SHORT_MAX: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKnowledgeRequest {
    #[schema(example = "What are your opening hours?")]
    pub title: Option<String>,
    #[schema(example = "Monday to Friday, 8am to 6pm.")]
    pub content: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub faq_category_id: Option<Uuid>,
    pub industry_codes: Option<Vec<String>>,
    /// Visible to every tenant's search when true.
    pub is_public: Option<bool>,
    /// Agents (assistant names) allowed to use the entry; empty means all.
    pub allowed_agents: Option<Vec<String>>,
    /// manual (default), import, ai_generated, scraped, conversation, faq.
    pub source: Option<String>,
    pub source_url: Option<String>,
    /// unvalidated (default), pending, validated, rejected.
    pub validation_status: Option<String>,
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct NewKnowledge {
    pub title: String,
    pub content: String,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub faq_category_id: Option<Uuid>,
    pub industry_codes: Vec<String>,
    pub is_public: bool,
    pub allowed_agents: Vec<String>,
    pub source: String,
    pub source_url: Option<String>,
    pub validation_status: String,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
}

fn short(value: Option<String>, field: &str, errors: &mut FieldErrors) -> Option<String> {
    value.map(|v| validate::text(&v, SHORT_MAX, field, errors)).filter(|v| !v.is_empty())
}

fn url(value: String, errors: &mut FieldErrors) -> String {
    let v = value.trim().to_owned();
    let ok = (v.starts_with("https://") || v.starts_with("http://"))
        && v.len() <= 2048
        && !v.chars().any(char::is_whitespace);
    if !ok {
        errors.add("source_url", "must be an http(s) URL of at most 2048 characters");
    }
    v
}

impl CreateKnowledgeRequest {
    pub fn parse(self) -> Result<NewKnowledge, ApiError> {
        let mut e = FieldErrors::default();
        let new = NewKnowledge {
            title: validate::required_text(self.title, TITLE_MAX, "title", &mut e),
            content: validate::required_text(self.content, CONTENT_MAX, "content", &mut e),
            category: short(self.category, "category", &mut e),
            subcategory: short(self.subcategory, "subcategory", &mut e),
            faq_category_id: self.faq_category_id,
            industry_codes: validate::labels(self.industry_codes.unwrap_or_default(), 50, 20, "industry_codes", &mut e),
            is_public: self.is_public.unwrap_or(false),
            allowed_agents: validate::labels(
                self.allowed_agents.unwrap_or_default(),
                50,
                SHORT_MAX,
                "allowed_agents",
                &mut e,
            ),
            source: validate::one_of(self.source.as_deref().unwrap_or("manual"), SOURCES, "source", &mut e),
            source_url: self.source_url.map(|u| url(u, &mut e)),
            validation_status: validate::one_of(
                self.validation_status.as_deref().unwrap_or("unvalidated"),
                VALIDATION_STATUSES,
                "validation_status",
                &mut e,
            ),
            tags: validate::labels(self.tags.unwrap_or_default(), 50, SHORT_MAX, "tags", &mut e),
            metadata: validate::object(self.metadata, "metadata", &mut e),
        };
        e.into_result()?;
        Ok(new)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKnowledgeRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    /// Changing the title or content marks the embedding stale (`pending`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub content: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub category: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub subcategory: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub faq_category_id: Patch<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub industry_codes: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub is_public: Patch<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_agents: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub source: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub source_url: Patch<String>,
    /// Setting `validated` records who validated it and when.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub validation_status: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

/// `None` leaves a column; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct KnowledgeChanges {
    pub title: Option<String>,
    pub content: Option<String>,
    pub category: Option<Option<String>>,
    pub subcategory: Option<Option<String>>,
    pub faq_category_id: Option<Option<Uuid>>,
    pub industry_codes: Option<Vec<String>>,
    pub is_public: Option<bool>,
    pub allowed_agents: Option<Vec<String>>,
    pub source: Option<String>,
    pub source_url: Option<Option<String>>,
    pub validation_status: Option<String>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
}

fn required_patch(p: Patch<String>, max: usize, field: &str, e: &mut FieldErrors) -> Option<String> {
    match p {
        Patch::Missing => None,
        Patch::Null => {
            e.add(field, "cannot be null");
            None
        }
        Patch::Value(v) => Some(validate::required_text(Some(v), max, field, e)),
    }
}

fn nullable_short(p: Patch<String>, field: &str, e: &mut FieldErrors) -> Option<Option<String>> {
    validate::optional_text(p, SHORT_MAX, field, e).map(|v| v.filter(|s| !s.is_empty()))
}

fn list_patch(p: Patch<Vec<String>>, max_len: usize, field: &str, e: &mut FieldErrors) -> Option<Vec<String>> {
    match p {
        Patch::Missing => None,
        Patch::Null => Some(Vec::new()),
        Patch::Value(v) => Some(validate::labels(v, 50, max_len, field, e)),
    }
}

impl UpdateKnowledgeRequest {
    pub fn parse(self) -> Result<KnowledgeChanges, ApiError> {
        let mut e = FieldErrors::default();
        let c = KnowledgeChanges {
            title: required_patch(self.title, TITLE_MAX, "title", &mut e),
            content: required_patch(self.content, CONTENT_MAX, "content", &mut e),
            category: nullable_short(self.category, "category", &mut e),
            subcategory: nullable_short(self.subcategory, "subcategory", &mut e),
            faq_category_id: match self.faq_category_id {
                Patch::Missing => None,
                Patch::Null => Some(None),
                Patch::Value(id) => Some(Some(id)),
            },
            industry_codes: list_patch(self.industry_codes, 20, "industry_codes", &mut e),
            is_public: match self.is_public {
                Patch::Missing => None,
                Patch::Null => {
                    e.add("is_public", "cannot be null");
                    None
                }
                Patch::Value(b) => Some(b),
            },
            allowed_agents: list_patch(self.allowed_agents, SHORT_MAX, "allowed_agents", &mut e),
            source: match self.source {
                Patch::Missing => None,
                Patch::Null => {
                    e.add("source", "cannot be null");
                    None
                }
                Patch::Value(s) => Some(validate::one_of(&s, SOURCES, "source", &mut e)),
            },
            source_url: match self.source_url {
                Patch::Missing => None,
                Patch::Null => Some(None),
                Patch::Value(u) => Some(Some(url(u, &mut e))),
            },
            validation_status: match self.validation_status {
                Patch::Missing => None,
                Patch::Null => {
                    e.add("validation_status", "cannot be null");
                    None
                }
                Patch::Value(s) => Some(validate::one_of(&s, VALIDATION_STATUSES, "validation_status", &mut e)),
            },
            tags: list_patch(self.tags, SHORT_MAX, "tags", &mut e),
            metadata: match self.metadata {
                Patch::Missing => None,
                Patch::Null => Some(Map::new()),
                Patch::Value(v) => Some(validate::object(Some(v), "metadata", &mut e)),
            },
        };
        e.into_result()?;
        Ok(c)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// true = helpful, false = not helpful.
    pub helpful: Option<bool>,
    /// Who votes, for anonymous visitors (e.g. a session id). Defaults to the caller's
    /// token. One vote per voter per entry; voting again changes the vote.
    pub voter: Option<String>,
}

impl VoteRequest {
    pub fn parse(self, default_voter: String) -> Result<(bool, String), ApiError> {
        let mut e = FieldErrors::default();
        let helpful = match self.helpful {
            Some(h) => h,
            None => {
                e.add("helpful", "is required");
                false
            }
        };
        let voter = match self.voter {
            None => default_voter,
            Some(v) => {
                let v = validate::text(&v, 200, "voter", &mut e);
                if v.is_empty() {
                    e.add("voter", "must not be empty");
                }
                format!("visitor:{v}")
            }
        };
        e.into_result()?;
        Ok((helpful, voter))
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KnowledgeListQuery {
    /// Full-text search over title, category and content (web-search syntax).
    pub search: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub faq_category_id: Option<String>,
    /// Entries carrying this tag.
    pub tag: Option<String>,
    /// Entries for this industry code.
    pub industry_code: Option<String>,
    pub is_public: Option<String>,
    pub source: Option<String>,
    pub validation_status: Option<String>,
    pub embedding_status: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct KnowledgeFilter {
    pub search: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub faq_category_id: Option<Uuid>,
    pub tag: Option<String>,
    pub industry_code: Option<String>,
    pub is_public: Option<bool>,
    pub source: Option<String>,
    pub validation_status: Option<String>,
    pub embedding_status: Option<String>,
}

impl KnowledgeListQuery {
    pub fn parse(self, e: &mut FieldErrors) -> KnowledgeFilter {
        let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let search = nonempty(self.search);
        if search.as_ref().is_some_and(|s| s.chars().count() > 500) {
            e.add("search", "must be at most 500 characters");
        }
        KnowledgeFilter {
            search,
            category: nonempty(self.category),
            subcategory: nonempty(self.subcategory),
            faq_category_id: nonempty(self.faq_category_id)
                .and_then(|s| Uuid::parse_str(&s).map_err(|_| e.add("faq_category_id", "must be a UUID")).ok()),
            tag: nonempty(self.tag),
            industry_code: nonempty(self.industry_code),
            is_public: match nonempty(self.is_public).as_deref() {
                None => None,
                Some("true" | "1") => Some(true),
                Some("false" | "0") => Some(false),
                Some(_) => {
                    e.add("is_public", "must be true or false");
                    None
                }
            },
            source: nonempty(self.source).map(|s| validate::one_of(&s, SOURCES, "source", e)),
            validation_status: nonempty(self.validation_status)
                .map(|s| validate::one_of(&s, VALIDATION_STATUSES, "validation_status", e)),
            embedding_status: nonempty(self.embedding_status)
                .map(|s| validate::one_of(&s, EMBEDDING_STATUSES, "embedding_status", e)),
        }
    }
}
