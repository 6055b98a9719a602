//! Query parameters of the analytics routes, checked into a [`Range`] and filters.

use chrono::{Datelike, Duration, NaiveDate};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::FieldErrors;

/// The widest range one request may ask for.
pub const MAX_DAYS: i64 = 731;
/// Days covered when `from` is not given.
pub const DEFAULT_DAYS: i64 = 30;

pub const CHANNELS: &[&str] = &["web", "email", "sms", "phone", "chat", "survey", "none"];
pub const CAMPAIGN_CHANNELS: &[&str] = &["email", "sms", "phone"];

/// `?from=&to=&channel=&category=&campaign_id=&service_id=` as sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// First day, YYYY-MM-DD (default: 29 days before `to`).
    pub from: Option<String>,
    /// Last day, inclusive, YYYY-MM-DD (default: the day of the latest computation, or today).
    pub to: Option<String>,
    /// Only this channel (web, email, sms, phone, chat, survey).
    pub channel: Option<String>,
    /// Only this category (knowledge, article or service category name).
    pub category: Option<String>,
    /// Only this campaign (campaign performance).
    pub campaign_id: Option<String>,
    /// Only this service (purchases).
    pub service_id: Option<String>,
}

/// An inclusive, checked date range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub channel: Option<String>,
    pub category: Option<String>,
    pub campaign_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
}

impl Filters {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "channel": self.channel, "category": self.category,
            "campaign_id": self.campaign_id, "service_id": self.service_id,
        })
    }
}

fn date(raw: Option<&str>, field: &str, errors: &mut FieldErrors) -> Option<NaiveDate> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty())?;
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        // Years outside 1..=9999 are no business day, and some are beyond what Postgres
        // stores or date arithmetic can shift (a 500 before this check).
        Ok(d) if !(1..=9999).contains(&d.year()) => {
            errors.add(field, "must be a date between 0001-01-01 and 9999-12-31");
            None
        }
        Ok(d) => Some(d),
        Err(_) => {
            errors.add(field, "must be a date in the form YYYY-MM-DD");
            None
        }
    }
}

fn id(raw: Option<&str>, field: &str, errors: &mut FieldErrors) -> Option<Uuid> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty())?;
    match Uuid::parse_str(raw) {
        Ok(u) => Some(u),
        Err(_) => {
            errors.add(field, "must be a UUID");
            None
        }
    }
}

impl RangeQuery {
    /// Checks every parameter; `latest` is the day of the newest computation (the default
    /// end of the range). `channels` are the channels this route knows.
    pub fn resolve(&self, latest: NaiveDate, channels: &[&str]) -> Result<(Range, Filters), crate::ApiError> {
        let mut errors = FieldErrors::default();
        let to = date(self.to.as_deref(), "to", &mut errors);
        let from = date(self.from.as_deref(), "from", &mut errors);
        let channel = self.channel.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
        if let Some(c) = &channel
            && !channels.contains(&c.as_str())
        {
            errors.add("channel", format!("must be one of: {}", channels.join(", ")));
        }
        let category = self.category.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        if category.as_ref().is_some_and(|c| c.chars().count() > 100) {
            errors.add("category", "must be at most 100 characters");
        }
        let campaign_id = id(self.campaign_id.as_deref(), "campaign_id", &mut errors);
        let service_id = id(self.service_id.as_deref(), "service_id", &mut errors);
        let to = to.unwrap_or(latest);
        let from = from.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
        if errors.is_empty() {
            if from > to {
                errors.add("from", "must not be after `to`");
            } else if (to - from).num_days() + 1 > MAX_DAYS {
                errors.add("to", format!("the range may cover at most {MAX_DAYS} days"));
            }
        }
        errors.into_result()?;
        Ok((Range { from, to }, Filters { channel, category, campaign_id, service_id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<&str>, to: Option<&str>) -> RangeQuery {
        RangeQuery { from: from.map(String::from), to: to.map(String::from), ..Default::default() }
    }

    #[test]
    fn defaults_and_bad_ranges() {
        let latest = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let (range, _) = q(None, None).resolve(latest, CHANNELS).unwrap();
        assert_eq!(range, Range { from: NaiveDate::from_ymd_opt(2026, 10, 22).unwrap(), to: latest });
        assert!(q(Some("2026-11-21"), Some("2026-11-20")).resolve(latest, CHANNELS).is_err());
        assert!(q(Some("2020-01-01"), Some("2026-11-20")).resolve(latest, CHANNELS).is_err());
        assert!(q(Some("yesterday"), None).resolve(latest, CHANNELS).is_err());
        let bad_channel = RangeQuery { channel: Some("fax".into()), ..Default::default() };
        assert!(bad_channel.resolve(latest, CHANNELS).is_err());
        let ok = RangeQuery { channel: Some("Email".into()), ..Default::default() };
        assert_eq!(ok.resolve(latest, CHANNELS).unwrap().1.channel.as_deref(), Some("email"));
    }
}
