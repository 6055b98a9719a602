//! Learning-center request bodies, parsed into checked values.

use fibonacco_platform::domain::{Email, PhoneNumber, Slug};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, validate};

pub const STATUSES: &[&str] = &["draft", "active", "archived"];
pub const CAMPAIGN_TYPES: &[&str] = &["educational", "promotional", "onboarding", "seasonal"];

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampaignListQuery {
    /// draft, active or archived.
    pub status: Option<String>,
}

/// A checked status filter; empty means any.
pub fn status_filter(status: Option<String>, e: &mut FieldErrors) -> Option<String> {
    status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", e))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateCampaignRequest {
    /// What the campaign teaches.
    pub topic: Option<String>,
    /// educational (default), promotional, onboarding, seasonal.
    pub campaign_type: Option<String>,
    pub audience: Option<String>,
    /// Store it as a template for future campaigns.
    pub is_template: Option<bool>,
}

/// A checked generation request; `slug` is the topic's, made free in the tenant on insert.
pub struct CampaignBrief {
    pub topic: String,
    pub kind: String,
    pub audience: Option<String>,
    pub slug: Slug,
    pub is_template: bool,
}

impl GenerateCampaignRequest {
    pub fn parse(self) -> Result<CampaignBrief, ApiError> {
        let mut e = FieldErrors::default();
        let topic = validate::required_text(self.topic, 300, "topic", &mut e);
        let kind = validate::one_of(
            self.campaign_type.as_deref().unwrap_or("educational"),
            CAMPAIGN_TYPES,
            "campaign_type",
            &mut e,
        );
        let audience = self.audience.map(|a| validate::text(&a, 200, "audience", &mut e));
        let slug = Slug::from_text(&topic);
        if slug.is_none() && !topic.is_empty() {
            e.add("topic", "must contain letters or digits");
        }
        e.into_result()?;
        let slug = slug.ok_or_else(|| ApiError::Validation(FieldErrors::single("topic", "is required")))?;
        Ok(CampaignBrief { topic, kind, audience, slug, is_template: self.is_template.unwrap_or(false) })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestionsRequest {
    pub industry: Option<String>,
    pub goal: Option<String>,
    /// 1 to 10 (default 5).
    pub count: Option<u8>,
}

/// A checked suggestions request, with its defaults filled in.
pub struct SuggestionsBrief {
    pub industry: String,
    pub goal: String,
    pub count: u8,
}

impl SuggestionsRequest {
    pub fn parse(self) -> Result<SuggestionsBrief, ApiError> {
        let mut e = FieldErrors::default();
        let industry = self
            .industry
            .map(|i| validate::text(&i, 100, "industry", &mut e))
            .unwrap_or_else(|| "small business".into());
        let goal = self
            .goal
            .map(|g| validate::text(&g, 300, "goal", &mut e))
            .unwrap_or_else(|| "win more repeat customers".into());
        let count = self.count.unwrap_or(5);
        if !(1..=10).contains(&count) {
            e.add("count", "must be between 1 and 10");
        }
        e.into_result()?;
        Ok(SuggestionsBrief { industry, goal, count })
    }
}

/// Numbered or bulleted lines of a reply, without their markers.
pub fn list_items(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let stripped =
                l.trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, '.' | ')' | '-' | '*' | ' '));
            (stripped.len() < l.len() && !stripped.is_empty()).then(|| stripped.to_owned())
        })
        .collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactSalesRequest {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub message: Option<String>,
    /// The learning campaign the visitor came from.
    pub campaign_id: Option<Uuid>,
}

/// A checked sales lead; its campaign is checked in the tenant by the handler.
pub struct NewSalesLead {
    /// Required and free of CR/LF: it goes into the notification's subject.
    pub name: String,
    pub email: Email,
    pub phone: Option<PhoneNumber>,
    pub company: Option<String>,
    pub message: Option<String>,
    pub campaign_id: Option<Uuid>,
}

impl ContactSalesRequest {
    pub fn parse(self) -> Result<NewSalesLead, ApiError> {
        let mut e = FieldErrors::default();
        let name = validate::header_text(self.name, 200, "name", &mut e);
        let email = match self.email {
            None => {
                e.add("email", "is required");
                None
            }
            Some(raw) => Email::parse(&raw).map_err(|err| e.add("email", err.0)).ok(),
        };
        let phone = self.phone.and_then(|p| PhoneNumber::parse(&p).map_err(|err| e.add("phone", err.0)).ok());
        let company = self.company.map(|c| validate::text(&c, 200, "company", &mut e));
        let message = self.message.map(|m| validate::text(&m, 5000, "message", &mut e));
        e.into_result()?;
        let email = email.ok_or_else(|| ApiError::Validation(FieldErrors::single("email", "is required")))?;
        Ok(NewSalesLead { name, email, phone, company, message, campaign_id: self.campaign_id })
    }
}
