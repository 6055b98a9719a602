//! Request bodies and query strings for customers, and their checks. Every check that
//! fails is reported at once, per field.

use chrono::{DateTime, Utc};
use fibonacco_platform::domain::{Email, PhoneNumber, Slug, TimeZone};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiError, error::FieldErrors, patch::Patch};

const NAME_MAX: usize = 255;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerRequest {
    /// Display name, 1 to 255 characters.
    #[schema(example = "Acme Plumbing")]
    pub name: Option<String>,
    /// URL slug, unique in the tenant; derived from the name when omitted.
    #[schema(example = "acme-plumbing")]
    pub slug: Option<String>,
    /// E-mail, unique in the tenant (case-insensitive).
    #[schema(example = "owner@acme.example")]
    pub email: Option<String>,
    /// Phone in international format; stored as E.164.
    #[schema(example = "+1 555 010 9999")]
    pub phone: Option<String>,
    /// Free-form object the AI assistant reads (industry, goals, tone, …).
    #[schema(value_type = Option<Object>)]
    pub business_context: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// IANA time zone (`Europe/Berlin`): quiet hours apply in it. Default: the contact
    /// policy's.
    #[schema(example = "Europe/Berlin")]
    pub timezone: Option<String>,
}

/// A customer ready to insert.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub name: String,
    pub slug: Slug,
    /// True when the slug was derived from the name rather than chosen by the client.
    pub slug_derived: bool,
    pub email: Option<Email>,
    pub phone: Option<PhoneNumber>,
    pub business_context: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub timezone: Option<TimeZone>,
}

impl CreateCustomerRequest {
    pub fn parse(self) -> Result<NewCustomer, ApiError> {
        let mut errors = FieldErrors::default();
        let name = match self.name {
            None => {
                errors.add("name", "is required");
                None
            }
            Some(n) => check_name(&n, &mut errors),
        };
        let (slug, slug_derived) = match (self.slug, &name) {
            (Some(raw), _) => (check(Slug::parse(raw.trim()), "slug", &mut errors), false),
            (None, Some(name)) => match Slug::from_text(name) {
                Some(s) => (Some(s), true),
                None => {
                    errors.add("slug", "cannot be derived from the name; give one");
                    (None, true)
                }
            },
            (None, None) => (None, true),
        };
        let email = self.email.and_then(|e| check(Email::parse(&e), "email", &mut errors));
        let phone = self.phone.and_then(|p| check(PhoneNumber::parse(&p), "phone", &mut errors));
        let business_context = object_or_empty(self.business_context, "business_context", &mut errors);
        let metadata = object_or_empty(self.metadata, "metadata", &mut errors);
        let timezone = self.timezone.and_then(|t| check(TimeZone::parse(&t), "timezone", &mut errors));
        errors.into_result()?;
        match (name, slug) {
            (Some(name), Some(slug)) => {
                Ok(NewCustomer { name, slug, slug_derived, email, phone, business_context, metadata, timezone })
            }
            // Unreachable in practice: a missing name or slug added an error above.
            _ => Err(ApiError::Validation(FieldErrors::single("name", "is required"))),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomerRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub slug: Patch<String>,
    /// `null` removes the e-mail.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub email: Patch<String>,
    /// `null` removes the phone.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub phone: Patch<String>,
    /// Replaces the whole object; `null` empties it.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub business_context: Patch<Value>,
    /// Replaces the whole object; `null` empties it.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
    /// IANA time zone; `null` falls back to the contact policy's.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub timezone: Patch<String>,
}

/// Checked changes; `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct CustomerChanges {
    pub name: Option<String>,
    pub slug: Option<Slug>,
    pub email: Option<Option<Email>>,
    pub phone: Option<Option<PhoneNumber>>,
    pub business_context: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
    pub timezone: Option<Option<TimeZone>>,
}

impl UpdateCustomerRequest {
    pub fn parse(self) -> Result<CustomerChanges, ApiError> {
        let mut errors = FieldErrors::default();
        let mut changes = CustomerChanges::default();
        match self.name {
            Patch::Missing => {}
            Patch::Null => errors.add("name", "cannot be null"),
            Patch::Value(n) => changes.name = check_name(&n, &mut errors),
        }
        match self.slug {
            Patch::Missing => {}
            Patch::Null => errors.add("slug", "cannot be null"),
            Patch::Value(s) => changes.slug = check(Slug::parse(s.trim()), "slug", &mut errors),
        }
        match self.email {
            Patch::Missing => {}
            Patch::Null => changes.email = Some(None),
            Patch::Value(e) => changes.email = check(Email::parse(&e), "email", &mut errors).map(Some),
        }
        match self.phone {
            Patch::Missing => {}
            Patch::Null => changes.phone = Some(None),
            Patch::Value(p) => changes.phone = check(PhoneNumber::parse(&p), "phone", &mut errors).map(Some),
        }
        match self.business_context {
            Patch::Missing => {}
            Patch::Null => changes.business_context = Some(Map::new()),
            Patch::Value(v) => {
                changes.business_context = Some(object_or_empty(Some(v), "business_context", &mut errors))
            }
        }
        match self.metadata {
            Patch::Missing => {}
            Patch::Null => changes.metadata = Some(Map::new()),
            Patch::Value(v) => changes.metadata = Some(object_or_empty(Some(v), "metadata", &mut errors)),
        }
        match self.timezone {
            Patch::Missing => {}
            Patch::Null => changes.timezone = Some(None),
            Patch::Value(t) => changes.timezone = check(TimeZone::parse(&t), "timezone", &mut errors).map(Some),
        }
        errors.into_result()?;
        Ok(changes)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessContextRequest {
    /// The new business context; replaces the old one entirely.
    #[schema(value_type = Object)]
    pub business_context: Option<Value>,
}

impl BusinessContextRequest {
    pub fn parse(self) -> Result<Map<String, Value>, ApiError> {
        let mut errors = FieldErrors::default();
        let Some(value) = self.business_context else {
            return Err(ApiError::Validation(FieldErrors::single("business_context", "is required")));
        };
        let map = object_or_empty(Some(value), "business_context", &mut errors);
        errors.into_result()?;
        Ok(map)
    }
}

/// `GET /customers` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerListQuery {
    /// Case-insensitive substring of name, e-mail or slug.
    pub search: Option<String>,
    /// Exact e-mail (case-insensitive).
    pub email: Option<String>,
    /// Only customers with (`true`) or without (`false`) an e-mail.
    pub has_email: Option<String>,
    /// RFC 3339 timestamps bounding `created_at`.
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    /// `created_at`, `-created_at` (default), `name`, `-name`, `updated_at`, `-updated_at`.
    pub sort: Option<String>,
    /// Only the customers a saved segment selects now.
    pub segment_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    CreatedAt,
    Name,
    UpdatedAt,
}

#[derive(Debug, Clone)]
pub struct CustomerFilter {
    pub search: Option<String>,
    pub email: Option<String>,
    pub has_email: Option<bool>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub sort: SortKey,
    pub descending: bool,
    pub segment_id: Option<uuid::Uuid>,
    /// The segment's rule, read by [`super::with_segment`] before the query.
    pub segment: Option<fibonacco_delivery::segments::Rule>,
}

impl CustomerListQuery {
    pub fn parse(self, errors: &mut FieldErrors) -> CustomerFilter {
        let search = self.search.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
            errors.add("search", "must be at most 200 characters");
        }
        let email = self.email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty());
        let has_email = match self.has_email.as_deref() {
            None | Some("") => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            Some(_) => {
                errors.add("has_email", "must be true or false");
                None
            }
        };
        let mut time = |raw: Option<String>, field: &str| -> Option<DateTime<Utc>> {
            let raw = raw.filter(|r| !r.is_empty())?;
            match DateTime::parse_from_rfc3339(&raw) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(_) => {
                    errors.add(field, "must be an RFC 3339 timestamp, e.g. 2026-01-31T00:00:00Z");
                    None
                }
            }
        };
        let created_after = time(self.created_after, "created_after");
        let created_before = time(self.created_before, "created_before");
        if let (Some(a), Some(b)) = (created_after, created_before)
            && a > b
        {
            errors.add("created_before", "must not be earlier than created_after");
        }
        let (sort, descending) = match self.sort.as_deref() {
            None | Some("") | Some("-created_at") => (SortKey::CreatedAt, true),
            Some("created_at") => (SortKey::CreatedAt, false),
            Some("name") => (SortKey::Name, false),
            Some("-name") => (SortKey::Name, true),
            Some("updated_at") => (SortKey::UpdatedAt, false),
            Some("-updated_at") => (SortKey::UpdatedAt, true),
            Some(_) => {
                errors.add("sort", "must be one of created_at, -created_at, name, -name, updated_at, -updated_at");
                (SortKey::CreatedAt, true)
            }
        };
        let segment_id = match self.segment_id.as_deref().filter(|s| !s.is_empty()).map(uuid::Uuid::parse_str) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                errors.add("segment_id", "must be a segment's id (a UUID)");
                None
            }
        };
        CustomerFilter {
            search,
            email,
            has_email,
            created_after,
            created_before,
            sort,
            descending,
            segment_id,
            segment: None,
        }
    }
}

fn check<T>(
    result: Result<T, fibonacco_platform::domain::Invalid>,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<T> {
    result.map_err(|e| errors.add(field, e.0)).ok()
}

fn check_name(raw: &str, errors: &mut FieldErrors) -> Option<String> {
    let name = raw.trim();
    if name.is_empty() {
        errors.add("name", "must not be empty");
        None
    } else if name.chars().count() > NAME_MAX {
        errors.add("name", "must be at most 255 characters");
        None
    } else if name.chars().any(char::is_control) {
        errors.add("name", "must not contain control characters");
        None
    } else {
        Some(name.to_owned())
    }
}

fn object_or_empty(value: Option<Value>, field: &str, errors: &mut FieldErrors) -> Map<String, Value> {
    crate::validate::object(value, field, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(err: ApiError) -> FieldErrors {
        match err {
            ApiError::Validation(f) => f,
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn create_reports_every_bad_field() {
        let req: CreateCustomerRequest =
            serde_json::from_value(serde_json::json!({"email": "nope", "phone": "123", "business_context": [1]}))
                .unwrap();
        let errors = fields(req.parse().unwrap_err());
        for f in ["name", "email", "phone", "business_context"] {
            assert!(errors.contains(f), "{f} missing from {errors:?}");
        }
    }

    #[test]
    fn create_derives_slug() {
        let req: CreateCustomerRequest = serde_json::from_value(serde_json::json!({"name": " Joe's Café "})).unwrap();
        let new = req.parse().unwrap();
        assert_eq!(new.name, "Joe's Café");
        assert_eq!(new.slug.as_str(), "joe-s-cafe");
        assert!(new.slug_derived);
    }

    #[test]
    fn update_distinguishes_null_from_missing() {
        let req: UpdateCustomerRequest = serde_json::from_value(serde_json::json!({"email": null})).unwrap();
        let c = req.parse().unwrap();
        assert_eq!(c.email, Some(None));
        assert!(c.name.is_none() && c.phone.is_none());
        let req: UpdateCustomerRequest = serde_json::from_value(serde_json::json!({"name": null})).unwrap();
        assert!(fields(req.parse().unwrap_err()).contains("name"));
    }

    #[test]
    fn list_query_checks() {
        let mut errors = FieldErrors::default();
        let q = CustomerListQuery {
            sort: Some("bogus".into()),
            created_after: Some("2026-02-01T00:00:00Z".into()),
            created_before: Some("2026-01-01T00:00:00Z".into()),
            has_email: Some("maybe".into()),
            ..Default::default()
        };
        q.parse(&mut errors);
        for f in ["sort", "created_before", "has_email"] {
            assert!(errors.contains(f), "{f}");
        }
    }
}
