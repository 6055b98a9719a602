//! The seed's response envelopes (shared with the search service, in the platform crate)
//! and the API's page-query parsing.

use serde::Deserialize;
use utoipa::IntoParams;

pub use fibonacco_platform::envelope::{Envelope, Meta, PageRequest, Pagination};

/// `?page=&per_page=` as sent; checked by [`PageQuery::resolve`].
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub page: Option<String>,
    /// Items per page (default 15); above the configured cap (100 by default) it is the cap.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 4294967295_u64)]
    pub per_page: Option<String>,
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
