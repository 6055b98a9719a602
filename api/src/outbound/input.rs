//! Outbound request bodies and queries, and their parsing into checked values: every
//! field problem is collected before the answer (one 422 naming them all).

use chrono::{DateTime, Utc};
use fibonacco_delivery::campaigns::{CAMPAIGN_STATUSES, CAMPAIGN_TYPES, CampaignStatus, RECIPIENT_STATUSES};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::store::{CampaignChanges, NewCampaign};
use crate::{ApiError, commerce::currency, error::FieldErrors, patch::Patch, validate};

/// Recipients given in one request.
const MAX_RECIPIENTS_PER_REQUEST: usize = 50_000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampaignListQuery {
    /// email, sms or phone (on `/outbound/campaigns` only).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignRequest {
    pub name: Option<String>,
    /// email, sms or phone. Implied by the typed routes (`/outbound/email/campaigns`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// E-mail template, SMS template or phone script id, matching the type.
    pub template_id: Option<Uuid>,
    /// When set (in the future), the campaign is `scheduled`; otherwise `draft`.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Customers to reach.
    pub customer_ids: Option<Vec<Uuid>>,
    /// Reach every customer of the tenant (instead of `customer_ids`).
    pub all_customers: Option<bool>,
    /// Reach the customers a segment selects when the campaign starts (instead of
    /// `customer_ids` or `all_customers`).
    pub segment_id: Option<Uuid>,
    /// Fixed cost in minor units, for ROI.
    pub fixed_cost_minor: Option<i64>,
    /// ISO 4217, e.g. USD.
    pub currency: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCampaignRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    /// draft or scheduled (needs `scheduled_at` in the future); other statuses come from actions.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub template_id: Patch<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub scheduled_at: Patch<DateTime<Utc>>,
    /// Replaces the recipients.
    pub customer_ids: Option<Vec<Uuid>>,
    /// Takes the recipients from this segment when the campaign starts; `null` stops.
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub segment_id: Patch<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub fixed_cost_minor: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub currency: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecipientQuery {
    /// One of the recipient statuses (pending, queued, sent, delivered, …).
    pub status: Option<String>,
}

fn check_recipient_list(ids: &[Uuid], e: &mut FieldErrors) {
    if ids.len() > MAX_RECIPIENTS_PER_REQUEST {
        e.add("customer_ids", format!("at most {MAX_RECIPIENTS_PER_REQUEST} per request"));
    }
}

/// Who a new campaign reaches.
pub enum Audience {
    Customers(Vec<Uuid>),
    AllCustomers,
    Nobody,
}

/// A create request, checked. `forced_kind` is the type a typed route implies.
pub fn new_campaign(
    body: CreateCampaignRequest,
    forced_kind: Option<&'static str>,
) -> Result<(NewCampaign, Audience), ApiError> {
    let mut e = FieldErrors::default();
    let name = validate::required_text(body.name, 200, "name", &mut e);
    let kind = match (forced_kind, body.kind) {
        (Some(forced), Some(given)) if given != forced => {
            e.add("type", format!("this route creates {forced} campaigns"));
            forced.to_owned()
        }
        (Some(forced), _) => forced.to_owned(),
        (None, Some(k)) => validate::one_of(&k, CAMPAIGN_TYPES, "type", &mut e),
        (None, None) => {
            e.add("type", "is required");
            String::new()
        }
    };
    if body.scheduled_at.is_some_and(|t| t <= Utc::now()) {
        e.add("scheduled_at", "must be in the future");
    }
    if body.customer_ids.is_some() && body.all_customers == Some(true) {
        e.add("customer_ids", "give either customer_ids or all_customers, not both");
    }
    if body.segment_id.is_some() && (body.customer_ids.is_some() || body.all_customers == Some(true)) {
        e.add("segment_id", "give a segment, customer_ids or all_customers, one of them");
    }
    if let Some(ids) = &body.customer_ids {
        check_recipient_list(ids, &mut e);
    }
    let fixed_cost_minor = body.fixed_cost_minor.unwrap_or(0);
    if fixed_cost_minor < 0 {
        e.add("fixed_cost_minor", "must not be negative");
    }
    let currency = currency(body.currency.as_deref().unwrap_or("USD"), &mut e);
    let config = validate::object(body.config, "config", &mut e);
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let audience = match (body.customer_ids, body.all_customers) {
        (Some(ids), _) => Audience::Customers(ids),
        (None, Some(true)) => Audience::AllCustomers,
        _ => Audience::Nobody,
    };
    let new = NewCampaign {
        name,
        kind,
        template_id: body.template_id,
        scheduled_at: body.scheduled_at,
        fixed_cost_minor,
        currency,
        config,
        metadata,
        segment_id: body.segment_id,
    };
    Ok((new, audience))
}

/// An update request, checked.
pub fn changes(body: UpdateCampaignRequest) -> Result<CampaignChanges, ApiError> {
    let mut e = FieldErrors::default();
    let mut c = CampaignChanges::default();
    match body.name {
        Patch::Missing => {}
        Patch::Null => e.add("name", "cannot be null"),
        Patch::Value(n) => c.name = Some(validate::required_text(Some(n), 200, "name", &mut e)),
    }
    match body.status {
        Patch::Missing => {}
        Patch::Value(s) if s == "draft" || s == "scheduled" => c.status = CampaignStatus::parse(&s),
        _ => e.add("status", "can be set to draft or scheduled; other statuses come from start, pause and cancel"),
    }
    c.template_id = body.template_id.nullable();
    c.scheduled_at = match body.scheduled_at {
        Patch::Missing => None,
        Patch::Null => Some(None),
        Patch::Value(t) => {
            if t <= Utc::now() {
                e.add("scheduled_at", "must be in the future");
            }
            Some(Some(t))
        }
    };
    match body.fixed_cost_minor {
        Patch::Missing => {}
        Patch::Value(v) if v >= 0 => c.fixed_cost_minor = Some(v),
        _ => e.add("fixed_cost_minor", "must be a non-negative whole number"),
    }
    match body.currency {
        Patch::Missing => {}
        Patch::Null => e.add("currency", "cannot be null"),
        Patch::Value(v) => c.currency = Some(currency(&v, &mut e)),
    }
    match body.config {
        Patch::Missing => {}
        Patch::Null => c.config = Some(Default::default()),
        Patch::Value(v) => c.config = Some(validate::object(Some(v), "config", &mut e)),
    }
    match body.metadata {
        Patch::Missing => {}
        Patch::Null => c.metadata = Some(Default::default()),
        Patch::Value(v) => c.metadata = Some(validate::object(Some(v), "metadata", &mut e)),
    }
    if let Some(ids) = &body.customer_ids {
        check_recipient_list(ids, &mut e);
    }
    if body.customer_ids.is_some() && matches!(body.segment_id, Patch::Value(_)) {
        e.add("segment_id", "give a segment or customer_ids, not both");
    }
    c.recipients = body.customer_ids;
    c.segment_id = body.segment_id.nullable();
    e.into_result()?;
    Ok(c)
}

/// The list filters, checked.
pub fn list_filters(
    query: CampaignListQuery,
    forced_kind: Option<&'static str>,
    e: &mut FieldErrors,
) -> (Option<String>, Option<String>) {
    let kind = match forced_kind {
        Some(k) => Some(k.to_owned()),
        None => query.kind.filter(|k| !k.is_empty()).map(|k| validate::one_of(&k, CAMPAIGN_TYPES, "type", e)),
    };
    let status = query.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, CAMPAIGN_STATUSES, "status", e));
    (kind, status)
}

/// The recipient filter, checked.
pub fn recipient_filter(query: RecipientQuery, e: &mut FieldErrors) -> Option<String> {
    query.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, RECIPIENT_STATUSES, "status", e))
}
