//! The seed's response envelopes: `{data, message, meta}` and pagination.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
        Self { data, message: None, meta: Some(Meta { pagination: Some(pagination) }) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
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

/// `?page=&per_page=` as sent; checked by [`PageQuery::resolve`].
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    pub page: Option<String>,
    /// Items per page (default 15, at most the configured cap, 100 by default).
    pub per_page: Option<String>,
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

impl PageQuery {
    /// Per-field problems go into `errors`; a `per_page` above the cap is clamped, as
    /// Laravel users expect, rather than refused.
    pub fn resolve(&self, max_per_page: u32, errors: &mut crate::error::FieldErrors) -> PageRequest {
        let page = match self.page.as_deref() {
            None | Some("") => 1,
            Some(raw) => match raw.parse::<u32>() {
                Ok(p) if (1..=1_000_000).contains(&p) => p,
                _ => {
                    errors.add("page", "must be a whole number from 1 to 1000000");
                    1
                }
            },
        };
        let per_page = match self.per_page.as_deref() {
            None | Some("") => Self::default_per_page(max_per_page),
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if n >= 1 => n.min(max_per_page),
                _ => {
                    errors.add("per_page", "must be a whole number of at least 1");
                    Self::default_per_page(max_per_page)
                }
            },
        };
        PageRequest { page, per_page }
    }

    fn default_per_page(max: u32) -> u32 {
        PageRequest::DEFAULT_PER_PAGE.min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldErrors;

    #[test]
    fn pagination_math() {
        let p = PageRequest { page: 2, per_page: 10 };
        assert_eq!(p.offset(), 10);
        let meta = Pagination::new(p, 25, 10);
        assert_eq!((meta.last_page, meta.from, meta.to), (3, Some(11), Some(20)));
        let empty = Pagination::new(PageRequest { page: 1, per_page: 15 }, 0, 0);
        assert_eq!((empty.last_page, empty.from, empty.to), (1, None, None));
    }

    #[test]
    fn page_query_validation() {
        let mut errors = FieldErrors::default();
        let q = PageQuery { page: Some("0".into()), per_page: Some("500".into()) };
        let page = q.resolve(100, &mut errors);
        assert_eq!(page.per_page, 100);
        assert!(errors.contains("page"));
        let mut errors = FieldErrors::default();
        let page = PageQuery::default().resolve(100, &mut errors);
        assert_eq!(page, PageRequest { page: 1, per_page: 15 });
        assert!(errors.is_empty());
        let mut errors = FieldErrors::default();
        PageQuery { page: None, per_page: Some("ten".into()) }.resolve(100, &mut errors);
        assert!(errors.contains("per_page"));
    }
}
