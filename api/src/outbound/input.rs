//! Outbound request bodies and queries, and their parsing into checked values: every
//! field problem is collected before the answer (one 422 naming them all).

use chrono::{DateTime, Utc};
use fibonacco_delivery::campaigns::{CAMPAIGN_STATUSES, CAMPAIGN_TYPES, CampaignStatus, RECIPIENT_STATUSES};
use fibonacco_delivery::experiments::AbTest;
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
    /// An A/B test: its variants name the templates (the first is the campaign's).
    pub ab_test: Option<AbTestRequest>,
    /// `immediate` (default) or `best_hour`: each recipient at their best hour within the
    /// next 24 hours (docs/metrics.md).
    pub send_time: Option<String>,
}

/// An A/B test: a share of the audience split among 2-4 variants at random (seeded,
/// reproducible); after the wait the variant with the best rate of the metric goes to the
/// rest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbTestRequest {
    pub variants: Option<Vec<AbVariantRequest>>,
    /// The share of the audience in the test, 0.01-1 (default 0.2); 1 tests on everyone.
    pub test_share: Option<f64>,
    /// opens, clicks, replies or conversions (paid orders after the send). Default: opens
    /// for e-mail, clicks for SMS, replies for calls.
    pub metric: Option<String>,
    /// Minutes to wait after the last test send before deciding (default 240).
    pub wait_minutes: Option<i64>,
    /// The split's seed (default: the campaign id).
    pub seed: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbVariantRequest {
    pub name: Option<String>,
    /// The e-mail template, SMS template or phone script, by the campaign's type.
    pub template_id: Option<Uuid>,
}

pub const SEND_TIMES: &[&str] = &["immediate", "best_hour"];
const DEFAULT_TEST_SHARE: f64 = 0.2;
const DEFAULT_WAIT_MINUTES: u32 = 240;

/// An A/B test request, checked (`kind`: the campaign's type, for the default metric).
pub fn ab_test(body: AbTestRequest, kind: &str, e: &mut FieldErrors) -> Option<AbTest> {
    use fibonacco_delivery::experiments::{MAX_VARIANTS, METRICS, MIN_VARIANTS, Metric, Variant, WAIT_MINUTES};
    let before = e.len();
    let variants = body.variants.unwrap_or_default();
    if !(MIN_VARIANTS..=MAX_VARIANTS).contains(&variants.len()) {
        e.add("ab_test.variants", format!("give {MIN_VARIANTS} to {MAX_VARIANTS} variants"));
    }
    let variants: Vec<Variant> = variants
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let name = validate::required_text(v.name, 100, &format!("ab_test.variants[{i}].name"), e);
            if v.template_id.is_none() {
                e.add(format!("ab_test.variants[{i}].template_id"), "is required");
            }
            Variant { name, template_id: v.template_id.unwrap_or_default() }
        })
        .collect();
    let test_share = body.test_share.unwrap_or(DEFAULT_TEST_SHARE);
    if !(0.01..=1.0).contains(&test_share) {
        e.add("ab_test.test_share", "must be between 0.01 and 1");
    }
    let default_metric = match kind {
        "sms" => "clicks",
        "phone" => "replies",
        _ => "opens",
    };
    let metric = validate::one_of(body.metric.as_deref().unwrap_or(default_metric), METRICS, "ab_test.metric", e);
    let wait = body.wait_minutes.unwrap_or(i64::from(DEFAULT_WAIT_MINUTES));
    let wait_minutes = match u32::try_from(wait) {
        Ok(w) if WAIT_MINUTES.contains(&w) => w,
        _ => {
            e.add(
                "ab_test.wait_minutes",
                format!("must be between {} and {}", WAIT_MINUTES.start(), WAIT_MINUTES.end()),
            );
            0
        }
    };
    (e.len() == before).then(|| AbTest {
        variants,
        test_share,
        metric: Metric::parse(&metric).unwrap_or(Metric::Opens),
        wait_minutes,
        seed: body.seed,
    })
}

/// The campaign's own template with a test: the first variant's (a different
/// `template_id` is a mistake worth naming).
fn template_with_test(template_id: Option<Uuid>, test: Option<&AbTest>, e: &mut FieldErrors) -> Option<Uuid> {
    match test.and_then(|t| t.variants.first()) {
        Some(first) => {
            if template_id.is_some_and(|t| t != first.template_id) {
                e.add(
                    "template_id",
                    "with an A/B test the variants name the templates: leave it out or give the first variant's",
                );
            }
            Some(first.template_id)
        }
        None => template_id,
    }
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
    /// Replaces the A/B test (its first variant's template becomes the campaign's);
    /// `null` removes it.
    #[serde(default)]
    #[schema(value_type = Option<AbTestRequest>)]
    pub ab_test: Patch<AbTestRequest>,
    /// immediate or best_hour.
    pub send_time: Option<String>,
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
    let ab_test = body.ab_test.and_then(|t| ab_test(t, &kind, &mut e));
    let template_id = template_with_test(body.template_id, ab_test.as_ref(), &mut e);
    let send_time = validate::one_of(body.send_time.as_deref().unwrap_or("immediate"), SEND_TIMES, "send_time", &mut e);
    e.into_result()?;
    let audience = match (body.customer_ids, body.all_customers) {
        (Some(ids), _) => Audience::Customers(ids),
        (None, Some(true)) => Audience::AllCustomers,
        _ => Audience::Nobody,
    };
    let new = NewCampaign {
        name,
        kind,
        template_id,
        scheduled_at: body.scheduled_at,
        fixed_cost_minor,
        currency,
        config,
        metadata,
        segment_id: body.segment_id,
        ab_test,
        send_time,
    };
    Ok((new, audience))
}

/// An update request, checked (`kind`: the campaign's type).
pub fn changes(body: UpdateCampaignRequest, kind: &str) -> Result<CampaignChanges, ApiError> {
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
    match body.ab_test {
        Patch::Missing => {}
        Patch::Null => c.ab_test = Some(None),
        Patch::Value(t) => {
            if let Some(test) = ab_test(t, kind, &mut e) {
                let given = c.template_id.flatten();
                c.template_id = Some(template_with_test(given, Some(&test), &mut e));
                c.ab_test = Some(Some(test));
            }
        }
    }
    c.send_time = body.send_time.map(|s| validate::one_of(&s, SEND_TIMES, "send_time", &mut e));
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
