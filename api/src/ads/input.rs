//! Ad and ad-template request bodies, parsed into checked values.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

pub const PLATFORMS: &[&str] =
    &["facebook", "instagram", "google", "linkedin", "twitter", "tiktok", "youtube", "other"];
pub const STATUSES: &[&str] = &["draft", "review", "approved", "scheduled", "active", "paused", "archived"];
pub const AD_TYPES: &[&str] = &["text", "image", "video", "carousel", "search", "story"];

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdListQuery {
    pub platform: Option<String>,
    pub status: Option<String>,
}

/// Checked list filters.
pub struct AdFilter {
    pub platform: Option<String>,
    pub status: Option<String>,
}

impl AdListQuery {
    pub fn parse(self, e: &mut FieldErrors) -> AdFilter {
        let platform = self.platform.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, PLATFORMS, "platform", e));
        let status = self.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", e));
        AdFilter { platform, status }
    }
}

/// A checked ad, ready to insert.
pub struct NewAd {
    pub name: String,
    pub platform: String,
    pub ad_type: String,
    pub content: Map<String, Value>,
    pub targeting: Map<String, Value>,
    pub budget: Option<i64>,
    pub currency: String,
    pub scheduled_start_at: Option<DateTime<Utc>>,
    pub scheduled_end_at: Option<DateTime<Utc>>,
    pub template_id: Option<Uuid>,
    pub source_campaign_id: Option<Uuid>,
    pub source_content_id: Option<Uuid>,
    pub prompt: Option<String>,
    pub model: Option<String>,
    pub metadata: Map<String, Value>,
}

pub fn check_window(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, e: &mut FieldErrors) {
    if let (Some(s), Some(t)) = (start, end)
        && t <= s
    {
        e.add("scheduled_end_at", "must be after scheduled_start_at");
    }
}

fn check_budget(budget: Option<i64>, e: &mut FieldErrors) {
    if budget.is_some_and(|b| b < 0) {
        e.add("budget", "must not be negative");
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdRequest {
    pub name: Option<String>,
    /// facebook, instagram, google, linkedin, twitter, tiktok, youtube, other.
    pub platform: Option<String>,
    /// text (default), image, video, carousel, search, story.
    pub ad_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub targeting: Option<Value>,
    /// Minor units.
    pub budget: Option<i64>,
    pub currency: Option<String>,
    pub scheduled_start_at: Option<DateTime<Utc>>,
    pub scheduled_end_at: Option<DateTime<Utc>>,
    pub template_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

impl CreateAdRequest {
    /// The ad as typed by a user; its template is checked in the tenant by the handler.
    pub fn parse(self) -> Result<NewAd, ApiError> {
        let mut e = FieldErrors::default();
        let ad = NewAd {
            name: validate::required_text(self.name, 200, "name", &mut e),
            platform: validate::one_of(&self.platform.unwrap_or_default(), PLATFORMS, "platform", &mut e),
            ad_type: validate::one_of(self.ad_type.as_deref().unwrap_or("text"), AD_TYPES, "ad_type", &mut e),
            content: validate::object(self.content, "content", &mut e),
            targeting: validate::object(self.targeting, "targeting", &mut e),
            budget: self.budget,
            currency: crate::commerce::currency(self.currency.as_deref().unwrap_or("USD"), &mut e),
            scheduled_start_at: self.scheduled_start_at,
            scheduled_end_at: self.scheduled_end_at,
            template_id: self.template_id,
            source_campaign_id: None,
            source_content_id: None,
            prompt: None,
            model: None,
            metadata: validate::object(self.metadata, "metadata", &mut e),
        };
        check_budget(ad.budget, &mut e);
        check_window(ad.scheduled_start_at, ad.scheduled_end_at, &mut e);
        e.into_result()?;
        Ok(ad)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAdRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    /// Any of the seed's ad statuses; `scheduled` needs a future `scheduled_start_at`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub content: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub targeting: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub budget: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub scheduled_start_at: Patch<DateTime<Utc>>,
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub scheduled_end_at: Patch<DateTime<Utc>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

/// Checked changes: `None` leaves a field, `Some(None)` clears a nullable one. The schedule
/// window is checked against the stored ad by the handler.
pub struct AdChanges {
    pub name: Option<String>,
    pub status: Option<String>,
    pub content: Option<Map<String, Value>>,
    pub targeting: Option<Map<String, Value>>,
    pub budget: Option<Option<i64>>,
    pub scheduled_start_at: Option<Option<DateTime<Utc>>>,
    pub scheduled_end_at: Option<Option<DateTime<Utc>>>,
    pub metadata: Option<Map<String, Value>>,
}

impl UpdateAdRequest {
    pub fn parse(self) -> Result<AdChanges, ApiError> {
        let mut e = FieldErrors::default();
        let name = self.name.non_null("name", &mut e).map(|n| validate::required_text(Some(n), 200, "name", &mut e));
        let status = self.status.non_null("status", &mut e).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
        let object = |p: Patch<Value>, field: &str, e: &mut FieldErrors| match p {
            Patch::Missing => None,
            Patch::Null => Some(Map::new()),
            Patch::Value(v) => Some(validate::object(Some(v), field, e)),
        };
        let content = object(self.content, "content", &mut e);
        let targeting = object(self.targeting, "targeting", &mut e);
        let metadata = object(self.metadata, "metadata", &mut e);
        let budget = self.budget.nullable();
        check_budget(budget.flatten(), &mut e);
        let scheduled_start_at = self.scheduled_start_at.nullable();
        let scheduled_end_at = self.scheduled_end_at.nullable();
        e.into_result()?;
        Ok(AdChanges { name, status, content, targeting, budget, scheduled_start_at, scheduled_end_at, metadata })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdTemplate {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub ad_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub structure: Option<Value>,
    pub prompt_template: Option<String>,
}

/// A checked ad template.
pub struct NewAdTemplate {
    pub name: String,
    pub platform: String,
    pub ad_type: String,
    pub structure: Map<String, Value>,
    pub prompt_template: Option<String>,
}

impl CreateAdTemplate {
    pub fn parse(self) -> Result<NewAdTemplate, ApiError> {
        let mut e = FieldErrors::default();
        let name = validate::required_text(self.name, 200, "name", &mut e);
        let platform = validate::one_of(&self.platform.unwrap_or_default(), PLATFORMS, "platform", &mut e);
        let ad_type = validate::one_of(self.ad_type.as_deref().unwrap_or("text"), AD_TYPES, "ad_type", &mut e);
        let structure = validate::object(self.structure, "structure", &mut e);
        let prompt_template = self.prompt_template.map(|p| validate::text(&p, 20_000, "prompt_template", &mut e));
        e.into_result()?;
        Ok(NewAdTemplate { name, platform, ad_type, structure, prompt_template })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateAdRequest {
    /// The outbound campaign (for generate-from-campaign) or content (generate-from-content).
    pub source_id: Option<Uuid>,
    pub platform: Option<String>,
    pub ad_type: Option<String>,
    /// Minor units.
    pub budget: Option<i64>,
    pub currency: Option<String>,
}

/// A checked generation request.
pub struct AdBrief {
    pub source: Uuid,
    pub platform: String,
    pub ad_type: String,
    pub budget: Option<i64>,
    pub currency: String,
}

impl GenerateAdRequest {
    pub fn parse(self) -> Result<AdBrief, ApiError> {
        let mut e = FieldErrors::default();
        let platform = validate::one_of(&self.platform.unwrap_or_default(), PLATFORMS, "platform", &mut e);
        let ad_type = validate::one_of(self.ad_type.as_deref().unwrap_or("text"), AD_TYPES, "ad_type", &mut e);
        check_budget(self.budget, &mut e);
        let currency = crate::commerce::currency(self.currency.as_deref().unwrap_or("USD"), &mut e);
        if self.source_id.is_none() {
            e.add("source_id", "is required");
        }
        e.into_result()?;
        let source =
            self.source_id.ok_or_else(|| ApiError::Validation(FieldErrors::single("source_id", "is required")))?;
        Ok(AdBrief { source, platform, ad_type, budget: self.budget, currency })
    }
}
