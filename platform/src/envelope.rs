//! The seed's response envelopes: `{data, message, meta}`, pagination, and the error
//! envelope `{error: {message, code, details}}`. Shared by the API and the search service
//! so both answer in one shape.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"data": …, "message": …, "meta": {…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    pub data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

impl<T> Envelope<T> {
    pub fn data(data: T) -> Self {
        Self { data, message: None, meta: None }
    }
    pub fn with_message(data: T, message: impl Into<String>) -> Self {
        Self { data, message: Some(message.into()), meta: None }
    }
    pub fn page(data: T, pagination: Pagination) -> Self {
        Self { data, message: None, meta: Some(Meta { pagination: Some(pagination), ..Meta::default() }) }
    }
    /// Results computed by a pipeline: when their inputs were taken, and the period and
    /// filters the numbers cover.
    pub fn computed(data: T, as_of: Option<DateTime<Utc>>, period: Option<Period>) -> Self {
        Self {
            data,
            message: None,
            meta: Some(Meta { as_of, period, freshness: Some(Freshness::of(as_of)), ..Meta::default() }),
        }
    }
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// For precomputed analytics: the instant the pipeline's inputs describe (null when
    /// no run has computed anything for this tenant yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

/// How old precomputed numbers are.
#[derive(Debug, Serialize, ToSchema)]
pub struct Freshness {
    /// Seconds between `as_of` and now; null when nothing was computed.
    pub age_seconds: Option<i64>,
    /// `fresh` (under an hour), `stale`, or `missing`.
    pub status: &'static str,
}

impl Freshness {
    pub fn of(as_of: Option<DateTime<Utc>>) -> Self {
        match as_of {
            None => Self { age_seconds: None, status: "missing" },
            Some(t) => {
                let age = (Utc::now() - t).num_seconds().max(0);
                Self { age_seconds: Some(age), status: if age < 3600 { "fresh" } else { "stale" } }
            }
        }
    }
}

/// The inclusive date range (and filters) an analytics answer covers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
    #[schema(value_type = Object)]
    pub filters: serde_json::Value,
}

/// Laravel's length-aware paginator fields.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct Pagination {
    pub current_page: u32,
    pub per_page: u32,
    pub total: i64,
    pub last_page: u32,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Pagination {
    pub fn new(page: PageRequest, total: i64, returned: usize) -> Self {
        let per_page = i64::from(page.per_page);
        let last_page = ((total + per_page - 1) / per_page).max(1);
        let from = (returned > 0).then(|| page.offset() + 1);
        let to = from.map(|f| f + returned as i64 - 1);
        Self {
            current_page: page.page,
            per_page: page.per_page,
            total,
            last_page: u32::try_from(last_page).unwrap_or(u32::MAX),
            from,
            to,
        }
    }
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub per_page: u32,
}

impl PageRequest {
    pub const DEFAULT_PER_PAGE: u32 = 15;

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }
    pub fn limit(&self) -> i64 {
        i64::from(self.per_page)
    }
}

/// `{"error": {"message", "code", "details"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub message: String,
    /// Stable upper-case code, e.g. `VALIDATION_FAILED`, `NOT_FOUND`.
    pub code: &'static str,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_math() {
        let p = PageRequest { page: 2, per_page: 10 };
        assert_eq!(p.offset(), 10);
        let meta = Pagination::new(p, 25, 10);
        assert_eq!((meta.last_page, meta.from, meta.to), (3, Some(11), Some(20)));
        let empty = Pagination::new(PageRequest { page: 1, per_page: 15 }, 0, 0);
        assert_eq!((empty.last_page, empty.from, empty.to), (1, None, None));
    }
}
