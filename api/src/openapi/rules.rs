//! The request rules the handlers check, stated in the document: one table for body
//! fields and one for query parameters, each rule naming the same constants the checks
//! use (`validate::one_of(…, PLATFORMS, …)` ↔ `OneOf(PLATFORMS)`). A test asserts that
//! every entry names a field the document has, so a renamed field cannot leave a stale
//! rule behind; `scripts/contract.sh` checks the rules against the running code.

use fibonacco_delivery::campaigns::{CAMPAIGN_STATUSES, CAMPAIGN_TYPES, RECIPIENT_STATUSES};
use fibonacco_platform::webhooks::EventType;
use serde_json::{Value, json};

use super::contract::{PRESENT, TEXT};
use crate::{
    ads::input as ads, analytics::input as analytics, articles::input as articles, commerce, content,
    conversations::input as conversations, knowledge::input as knowledge, learning::input as learning,
    outbound::input as outbound, presentations::input as presentations, surveys::input as surveys, tts::input as tts,
};

/// What the handler checks of one field.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Must be present (and not null).
    Required,
    /// Text that must not be blank once trimmed, when given.
    Present,
    /// May be left out, but not sent as null (a patch field that cannot be cleared).
    NotNull,
    /// One of these values.
    OneOf(&'static [&'static str]),
    /// One of these values, or empty (a list filter left unset).
    OneOfOrEmpty(&'static [&'static str]),
    /// A JSON Schema `format` (`uuid`, `date`, `date-time`).
    Format(&'static str),
    /// The format, or empty (a query filter left unset).
    FormatOrEmpty(&'static str),
    Pattern(&'static str),
    /// Inclusive bounds of an integer.
    Range(i64, i64),
    /// Inclusive bounds of a number.
    Between(f64, f64),
    MaxLength(u64),
    /// Object keys without NUL.
    KeysWithoutNul,
    /// Rules for each item of a list.
    Items(&'static [Rule]),
    /// Each item an object with a non-blank `title` (slides, lessons).
    TitledObject,
    /// Any JSON value (`JsonValue`).
    AnyJson,
    MaxItems(u64),
    MinItems(u64),
}

use Rule::*;

const BOOLEAN_TEXT: &[&str] = &["true", "false", "1", "0"];
pub const CURRENCY: &str = r"^[ \t\n\r]*[A-Za-z]{3}[ \t\n\r]*$";
pub const SLUG: &str = r"^[a-z0-9]+(-[a-z0-9]+)*$";
pub const PHONE: &str = r"^(\+|00)[ .()-]*[1-9]([ .()-]*[0-9]){7,14}[ .()-]*$";
pub const EMAIL: &str = r"^[^\s@<>\x00-\x1f\x7f-\x9f]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";
/// The shape of an IANA time zone name; whether the tz database has it is the handler's
/// check (a 422 naming the field).
pub const TIME_ZONE: &str = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$";
/// A time of day, `HH:MM`.
pub const CLOCK: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
pub const HTTP_URL: &str = r"^https?://[^\s\x00-\x1f\x7f-\x9f]+$";
/// A Stripe PaymentMethod id (it goes into Stripe's URL paths: nothing but its alphabet).
const PAYMENT_METHOD: &str = r"^[ \t\n\r]*pm_[A-Za-z0-9_]{1,252}[ \t\n\r]*$";
/// One line of text (a mail subject): no control characters at all, not blank.
pub const ONE_LINE: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// A short label (a tag, a code): one line, not blank.
const LABEL: &[Rule] = &[Pattern(ONE_LINE)];
/// Text a slug is made from: not blank, with at least one ASCII letter or digit.
pub const SLUGGABLE: &str =
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*[A-Za-z0-9][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";
/// `sources` of a search: `knowledge` and/or `article(s)`, comma-separated.
pub const SEARCH_SOURCES: &str = r"^[ ]*(knowledge|articles?)?[ ]*(,[ ]*(knowledge|articles?)?[ ]*)*$";
const SEARCH_MODES: &[&str] = &["hybrid", "semantic", "keyword"];
const CAMPAIGN_SETTABLE_STATUSES: &[&str] = &["draft", "scheduled"];
const DRAFT_OR_PUBLISHED: &[&str] = &["draft", "published"];
const DRAFT_OR_ACTIVE: &[&str] = &["draft", "active"];
const CUSTOMER_SORTS: &[&str] = &["created_at", "-created_at", "name", "-name", "updated_at", "-updated_at"];

/// Body fields: (schema, field, rules).
pub const BODY: &[(&str, &str, &[Rule])] = &[
    ("CreateAdRequest", "name", &[Required, Present]),
    ("CreateAdRequest", "platform", &[Required, OneOf(ads::PLATFORMS)]),
    ("CreateAdRequest", "ad_type", &[OneOf(ads::AD_TYPES)]),
    ("CreateAdRequest", "currency", &[Pattern(CURRENCY)]),
    ("GenerateAdRequest", "source_id", &[Required]),
    ("GenerateAdRequest", "platform", &[Required, OneOf(ads::PLATFORMS)]),
    ("GenerateAdRequest", "ad_type", &[OneOf(ads::AD_TYPES)]),
    ("GenerateAdRequest", "currency", &[Pattern(CURRENCY)]),
    ("CreateAdTemplate", "name", &[Required, Present]),
    ("CreateAdTemplate", "platform", &[Required, OneOf(ads::PLATFORMS)]),
    ("CreateAdTemplate", "ad_type", &[OneOf(ads::AD_TYPES)]),
    ("UpdateAdRequest", "name", &[NotNull, Present]),
    ("UpdateAdRequest", "status", &[NotNull, OneOf(ads::STATUSES)]),
    ("ChatBody", "message", &[Required, Present]),
    ("ContextRequest", "token_budget", &[Range(100, 32000)]),
    ("CreateArticleRequest", "title", &[Required, Present]),
    ("CreateArticleRequest", "slug", &[Pattern(SLUG)]),
    ("CreateArticleRequest", "status", &[OneOf(DRAFT_OR_PUBLISHED)]),
    ("UpdateArticleRequest", "title", &[NotNull, Present]),
    ("UpdateArticleRequest", "status", &[NotNull, OneOf(articles::STATUSES)]),
    ("GenerateCampaignRequest", "topic", &[Required, Present, Pattern(SLUGGABLE)]),
    ("GenerateCampaignRequest", "campaign_type", &[OneOf(learning::CAMPAIGN_TYPES)]),
    ("SuggestionsRequest", "count", &[Range(1, 10)]),
    ("CreateContentRequest", "title", &[Required, Present]),
    ("CreateContentRequest", "content_type", &[OneOf(content::CONTENT_TYPES)]),
    ("UpdateContentRequest", "title", &[NotNull, Present]),
    ("UpdateContentRequest", "content_type", &[NotNull, OneOf(content::CONTENT_TYPES)]),
    ("GenerateContentRequest", "topic", &[Required, Present]),
    ("GenerateContentRequest", "content_type", &[OneOf(content::CONTENT_TYPES)]),
    ("GenerateContentRequest", "length", &[OneOf(content::generate::LENGTHS)]),
    ("GenerateFromCampaignRequest", "campaign_id", &[Required]),
    ("GenerateFromCampaignRequest", "content_type", &[OneOf(content::CONTENT_TYPES)]),
    ("GenerateFromCampaignRequest", "length", &[OneOf(content::generate::LENGTHS)]),
    ("CreateContentTemplate", "name", &[Required, Present]),
    ("CreateContentTemplate", "prompt_template", &[Required, Present]),
    ("CreateContentTemplate", "content_type", &[OneOf(content::CONTENT_TYPES)]),
    ("StatusRequest", "status", &[Required, OneOf(fibonacco_delivery::publishing::STATUSES)]),
    ("CreateConversationRequest", "channel", &[OneOf(conversations::CHANNELS)]),
    ("UpdateConversationRequest", "channel", &[NotNull, OneOf(conversations::CHANNELS)]),
    ("UpdateConversationRequest", "status", &[NotNull, OneOf(conversations::STATUSES)]),
    ("AddMessageRequest", "role", &[Required, OneOf(conversations::ROLES)]),
    ("AddMessageRequest", "content", &[Required, Present]),
    ("CreateCustomerRequest", "name", &[Required, Pattern(ONE_LINE)]),
    ("CreateCustomerRequest", "slug", &[Pattern(SLUG), MaxLength(120)]),
    ("CreateCustomerRequest", "email", &[Pattern(EMAIL), MaxLength(254)]),
    ("CreateCustomerRequest", "phone", &[Pattern(PHONE)]),
    ("CreateCustomerRequest", "timezone", &[Pattern(TIME_ZONE), MaxLength(64)]),
    ("ContactCapRequest", "quiet_start", &[Pattern(CLOCK)]),
    ("ContactCapRequest", "timezone", &[Pattern(TIME_ZONE), MaxLength(64)]),
    ("ContactCapRequest", "quiet_end", &[Pattern(CLOCK)]),
    ("ContactCapRequest", "max_messages", &[Range(1, 1000)]),
    ("ContactCapRequest", "window_hours", &[Range(1, 8760)]),
    ("ConsentRequest", "granted", &[Required]),
    ("ConsentRequest", "source", &[Required, Pattern(ONE_LINE), MaxLength(200)]),
    ("ImportRequest", "csv", &[Required, Present]),
    ("ImportRequest", "file_name", &[MaxLength(255), Pattern(ONE_LINE)]),
    ("ImportRequest", "mapping", &[KeysWithoutNul]),
    ("UpdateCustomerRequest", "name", &[NotNull, Pattern(ONE_LINE)]),
    ("UpdateCustomerRequest", "slug", &[NotNull, Pattern(SLUG), MaxLength(120)]),
    ("UpdateCustomerRequest", "email", &[Pattern(EMAIL), MaxLength(254)]),
    ("UpdateCustomerRequest", "phone", &[Pattern(PHONE)]),
    ("UpdateCustomerRequest", "timezone", &[Pattern(TIME_ZONE), MaxLength(64)]),
    ("CreateCategoryRequest", "name", &[Required, Present]),
    ("UpdateCategoryRequest", "name", &[NotNull, Present]),
    ("UpdateCategoryRequest", "slug", &[NotNull]),
    ("CreateKnowledgeRequest", "title", &[Required, Present]),
    ("CreateKnowledgeRequest", "content", &[Required, Present]),
    ("CreateKnowledgeRequest", "source", &[OneOf(knowledge::SOURCES)]),
    ("CreateKnowledgeRequest", "validation_status", &[OneOf(knowledge::VALIDATION_STATUSES)]),
    ("CreateKnowledgeRequest", "source_url", &[Pattern(HTTP_URL), MaxLength(2048)]),
    ("UpdateKnowledgeRequest", "title", &[NotNull, Present]),
    ("UpdateKnowledgeRequest", "content", &[NotNull, Present]),
    ("UpdateKnowledgeRequest", "is_public", &[NotNull]),
    ("UpdateKnowledgeRequest", "source", &[NotNull, OneOf(knowledge::SOURCES)]),
    ("UpdateKnowledgeRequest", "validation_status", &[NotNull, OneOf(knowledge::VALIDATION_STATUSES)]),
    ("UpdateKnowledgeRequest", "source_url", &[Pattern(HTTP_URL), MaxLength(2048)]),
    ("VoteRequest", "helpful", &[Required]),
    ("ContactSalesRequest", "name", &[Required, Pattern(ONE_LINE)]),
    ("ContactSalesRequest", "email", &[Required, Pattern(EMAIL), MaxLength(254)]),
    ("CreateOrderRequest", "quantity", &[Range(1, 10000)]),
    ("CreateOrderRequest", "stripe_payment_intent_id", &[Pattern(r"^[ \t\n\r]*pi_[A-Za-z0-9_]{0,252}[ \t\n\r]*$")]),
    ("CreateOrderRequest", "stripe_checkout_session_id", &[Pattern(r"^[ \t\n\r]*cs_[A-Za-z0-9_]{0,252}[ \t\n\r]*$")]),
    ("CreateCampaignRequest", "name", &[Required, Present]),
    ("CreateCampaignRequest", "type", &[OneOf(CAMPAIGN_TYPES)]),
    ("CreateCampaignRequest", "currency", &[Pattern(CURRENCY)]),
    ("UpdateCampaignRequest", "name", &[NotNull, Present]),
    ("UpdateCampaignRequest", "currency", &[Pattern(CURRENCY)]),
    ("UpdateCampaignRequest", "status", &[NotNull, OneOf(CAMPAIGN_SETTABLE_STATUSES)]),
    ("CreateCampaignRequest", "send_time", &[OneOf(outbound::SEND_TIMES)]),
    ("UpdateCampaignRequest", "send_time", &[OneOf(outbound::SEND_TIMES)]),
    ("AbTestRequest", "variants", &[Required, MinItems(2), MaxItems(4)]),
    ("AbTestRequest", "test_share", &[Between(0.01, 1.0)]),
    ("AbTestRequest", "metric", &[OneOf(fibonacco_delivery::experiments::METRICS)]),
    ("AbTestRequest", "wait_minutes", &[Range(1, 43_200)]),
    ("AbVariantRequest", "name", &[Required, Present, MaxLength(100)]),
    ("AbVariantRequest", "template_id", &[Required]),
    ("ExportJobRequest", "format", &[OneOf(crate::customers::export::FORMATS)]),
    ("ExportJobRequest", "sort", &[OneOfOrEmpty(CUSTOMER_SORTS)]),
    ("ExportJobRequest", "has_email", &[OneOfOrEmpty(BOOLEAN_TEXT)]),
    ("ExportJobRequest", "created_after", &[FormatOrEmpty("date-time")]),
    ("ExportJobRequest", "created_before", &[FormatOrEmpty("date-time")]),
    ("ExportJobRequest", "segment_id", &[FormatOrEmpty("uuid")]),
    ("SegmentRequest", "name", &[Required, MaxLength(200), Pattern(ONE_LINE)]),
    ("SegmentRequest", "description", &[MaxLength(1000)]),
    ("SegmentRequest", "rules", &[Required]),
    ("SegmentPreviewRequest", "rules", &[Required]),
    ("WebhookEndpointRequest", "url", &[Required, MaxLength(2048), Pattern(HTTP_URL)]),
    ("WebhookEndpointRequest", "event_types", &[Required, MaxItems(32), Items(&[OneOf(&EventType::NAMES)])]),
    ("WebhookEndpointRequest", "description", &[MaxLength(500)]),
    ("WebhookEndpointPatch", "url", &[NotNull, MaxLength(2048), Pattern(HTTP_URL)]),
    ("WebhookEndpointPatch", "event_types", &[NotNull, MaxItems(32), Items(&[OneOf(&EventType::NAMES)])]),
    ("WebhookEndpointPatch", "description", &[MaxLength(500)]),
    ("WebhookEndpointPatch", "enabled", &[NotNull]),
    ("SuppressionRequest", "channel", &[Required, OneOf(fibonacco_delivery::suppressions::CHANNELS)]),
    ("SuppressionRequest", "target", &[Required]),
    ("SuppressionRequest", "reason", &[OneOf(fibonacco_delivery::suppressions::REASONS)]),
    ("CreateEmailTemplate", "name", &[Required, Present]),
    ("CreateEmailTemplate", "subject", &[Required, Pattern(ONE_LINE)]),
    ("CreateEmailTemplate", "html_body", &[Required, Present]),
    ("CreatePhoneScript", "name", &[Required, Present]),
    ("CreatePhoneScript", "script", &[Required, Present]),
    ("CreateSmsTemplate", "name", &[Required, Present]),
    ("CreateSmsTemplate", "body", &[Required, Present]),
    ("PersonalityRequest", "name", &[Required, Present]),
    ("PersonalityRequest", "system_prompt", &[Required, Present]),
    ("PersonalityRequest", "temperature", &[Between(0.0, 2.0)]),
    ("UpdatePersonalityRequest", "name", &[NotNull, Present]),
    ("UpdatePersonalityRequest", "system_prompt", &[NotNull, Present]),
    ("UpdatePersonalityRequest", "model", &[NotNull]),
    ("UpdatePersonalityRequest", "max_tokens", &[NotNull]),
    ("UpdatePersonalityRequest", "temperature", &[NotNull, Between(0.0, 2.0)]),
    ("AssignRequest", "personality_id", &[Required]),
    ("AssignRequest", "customer_id", &[Required]),
    ("CreatePresentationRequest", "title", &[Required, Present]),
    ("UpdatePresentationRequest", "title", &[NotNull, Present]),
    ("UpdatePresentationRequest", "status", &[NotNull, OneOf(presentations::STATUSES)]),
    ("CreatePresenterRequest", "name", &[Required, Present]),
    ("SearchRequest", "q", &[Required, Present]),
    ("SearchRequest", "page", &[Range(1, 10_000)]),
    ("SearchRequest", "per_page", &[Range(1, 100)]),
    ("SearchRequest", "semantic_ratio", &[Between(0.0, 1.0)]),
    ("CreateServiceRequest", "name", &[Required, Present]),
    ("CreateServiceRequest", "price_minor", &[Required, Range(0, i64::MAX)]),
    ("CreateServiceRequest", "currency", &[Pattern(CURRENCY)]),
    ("CreateServiceRequest", "billing_period", &[OneOf(commerce::services::BILLING_PERIODS)]),
    ("UpdateServiceRequest", "name", &[NotNull, Present]),
    ("UpdateServiceRequest", "is_active", &[NotNull]),
    ("UpdateServiceRequest", "price_minor", &[NotNull, Range(0, i64::MAX)]),
    ("CreateServiceCategoryRequest", "name", &[Required, Present]),
    ("CreateSurveyRequest", "title", &[Required, Present]),
    ("CreateSurveyRequest", "status", &[OneOf(DRAFT_OR_ACTIVE)]),
    ("UpdateSurveyRequest", "title", &[NotNull, Present]),
    ("UpdateSurveyRequest", "status", &[NotNull, OneOf(surveys::STATUSES)]),
    ("QuestionRequest", "question_text", &[Required, Present]),
    ("QuestionRequest", "question_type", &[Required, OneOf(surveys::QUESTION_TYPES)]),
    ("ResponseRequest", "answers", &[KeysWithoutNul]),
    ("SectionRequest", "title", &[Required, Present]),
    ("SectionRequest", "position", &[Range(0, 1_000_000)]),
    ("QuestionRequest", "position", &[Range(0, 1_000_000)]),
    ("CreateModuleRequest", "position", &[Range(0, 1_000_000)]),
    ("CreateModuleRequest", "title", &[Required, Present, Pattern(SLUGGABLE)]),
    ("CreateModuleRequest", "status", &[OneOf(DRAFT_OR_PUBLISHED)]),
    ("CreateTtsRequest", "text", &[Required, Present]),
    ("CreateTtsRequest", "voice_id", &[Required, Present]),
    ("CreateTtsRequest", "source_type", &[OneOf(tts::SOURCE_TYPES)]),
    ("CreateArticleRequest", "tags", &[Items(LABEL), Items(&[MaxLength(100)])]),
    ("UpdateArticleRequest", "tags", &[Items(LABEL), Items(&[MaxLength(100)])]),
    ("CreateKnowledgeRequest", "tags", &[Items(LABEL), Items(&[MaxLength(100)])]),
    ("UpdateKnowledgeRequest", "tags", &[Items(LABEL), Items(&[MaxLength(100)])]),
    ("CreateKnowledgeRequest", "allowed_agents", &[Items(LABEL), Items(&[MaxLength(100)])]),
    ("UpdateKnowledgeRequest", "allowed_agents", &[Items(LABEL), Items(&[MaxLength(100)])]),
    ("CreateKnowledgeRequest", "industry_codes", &[Items(LABEL), Items(&[MaxLength(20)])]),
    ("UpdateKnowledgeRequest", "industry_codes", &[Items(LABEL), Items(&[MaxLength(20)])]),
    ("VoteRequest", "voter", &[Present]),
    ("CreateServiceRequest", "features", &[Items(&[AnyJson]), MaxItems(100)]),
    ("CreateOrderRequest", "service_id", &[Required]),
    ("PayRequest", "payment_method", &[Pattern(PAYMENT_METHOD)]),
    ("RefundRequest", "amount_minor", &[Range(1, i64::MAX)]),
    ("CreateSubscriptionRequest", "customer_id", &[Required]),
    ("CreateSubscriptionRequest", "service_id", &[Required]),
    ("CreateSubscriptionRequest", "payment_method", &[Pattern(PAYMENT_METHOD)]),
    ("CreateServiceRequest", "slug", &[Pattern(SLUG), MaxLength(120)]),
    ("CreateServiceCategoryRequest", "slug", &[Pattern(SLUG), MaxLength(120)]),
    ("CreateCategoryRequest", "slug", &[Pattern(SLUG), MaxLength(120)]),
    ("UpdateCategoryRequest", "slug", &[Pattern(SLUG), MaxLength(120)]),
    ("GenerateRequest", "message", &[Required, Present]),
    ("SearchRequest", "validation_status", &[OneOf(knowledge::VALIDATION_STATUSES)]),
    ("SearchRequest", "mode", &[OneOfOrEmpty(SEARCH_MODES)]),
    ("SearchRequest", "sources", &[Pattern(SEARCH_SOURCES)]),
    ("CreatePresentationRequest", "slides", &[Items(&[TitledObject])]),
    ("UpdatePresentationRequest", "slides", &[NotNull, Items(&[TitledObject])]),
    ("CreateModuleRequest", "lessons", &[Items(&[TitledObject])]),
    ("ProgressRequest", "lesson", &[Required, Range(0, i32::MAX as i64)]),
];

/// Query parameters: (path, parameter, rules); path `*` is every operation that has it.
pub const QUERY: &[(&str, &str, &[Rule])] = &[
    ("/api/v1/ads", "platform", &[OneOfOrEmpty(ads::PLATFORMS)]),
    ("/api/v1/ads", "status", &[OneOfOrEmpty(ads::STATUSES)]),
    ("/api/v1/articles", "status", &[OneOfOrEmpty(articles::STATUSES)]),
    ("/api/v1/campaigns", "status", &[OneOfOrEmpty(learning::STATUSES)]),
    ("/api/v1/content", "status", &[OneOfOrEmpty(fibonacco_delivery::publishing::STATUSES)]),
    ("/api/v1/content", "content_type", &[OneOfOrEmpty(content::CONTENT_TYPES)]),
    ("/api/v1/conversations", "status", &[OneOfOrEmpty(conversations::STATUSES)]),
    ("/api/v1/conversations", "channel", &[OneOfOrEmpty(conversations::CHANNELS)]),
    ("/api/v1/conversations", "customer_id", &[FormatOrEmpty("uuid")]),
    ("/api/v1/crm/analytics/campaign-performance", "channel", &[OneOfOrEmpty(analytics::CAMPAIGN_CHANNELS)]),
    ("/api/v1/crm/analytics/campaign-performance", "model", &[OneOfOrEmpty(crate::analytics::ATTRIBUTION_MODELS)]),
    ("/api/v1/webhooks/endpoints/{id}/deliveries", "status", &[OneOf(&["pending", "delivered", "failed"])]),
    ("/api/v1/crm/campaigns/{id}/roi", "model", &[OneOfOrEmpty(crate::analytics::ATTRIBUTION_MODELS)]),
    ("/api/v1/crm/analytics/interest", "channel", &[OneOfOrEmpty(analytics::CHANNELS)]),
    ("/api/v1/crm/analytics/learning", "channel", &[OneOfOrEmpty(analytics::CHANNELS)]),
    ("/api/v1/crm/analytics/purchases", "channel", &[OneOfOrEmpty(analytics::CHANNELS)]),
    ("/api/v1/crm/dashboard/analytics", "channel", &[OneOfOrEmpty(analytics::CHANNELS)]),
    ("/api/v1/customers", "sort", &[OneOfOrEmpty(CUSTOMER_SORTS)]),
    ("/api/v1/customers", "has_email", &[OneOfOrEmpty(BOOLEAN_TEXT)]),
    ("/api/v1/customers", "created_after", &[FormatOrEmpty("date-time")]),
    ("/api/v1/customers", "created_before", &[FormatOrEmpty("date-time")]),
    ("/api/v1/customers/export", "segment_id", &[FormatOrEmpty("uuid")]),
    ("/api/v1/customers", "segment_id", &[FormatOrEmpty("uuid")]),
    ("/api/v1/customers/export", "format", &[OneOfOrEmpty(crate::customers::export::FORMATS)]),
    ("/api/v1/customers/export", "sort", &[OneOfOrEmpty(CUSTOMER_SORTS)]),
    ("/api/v1/customers/export", "has_email", &[OneOfOrEmpty(BOOLEAN_TEXT)]),
    ("/api/v1/customers/export", "created_after", &[FormatOrEmpty("date-time")]),
    ("/api/v1/customers/export", "created_before", &[FormatOrEmpty("date-time")]),
    ("/api/v1/faq-categories", "tree", &[OneOfOrEmpty(BOOLEAN_TEXT)]),
    ("/api/v1/knowledge", "faq_category_id", &[FormatOrEmpty("uuid")]),
    ("/api/v1/knowledge", "is_public", &[OneOfOrEmpty(BOOLEAN_TEXT)]),
    ("/api/v1/knowledge", "source", &[OneOfOrEmpty(knowledge::SOURCES)]),
    ("/api/v1/knowledge", "validation_status", &[OneOfOrEmpty(knowledge::VALIDATION_STATUSES)]),
    ("/api/v1/knowledge", "embedding_status", &[OneOfOrEmpty(knowledge::EMBEDDING_STATUSES)]),
    ("/api/v1/orders", "status", &[OneOfOrEmpty(commerce::orders::STATUSES)]),
    ("/api/v1/orders", "customer_id", &[FormatOrEmpty("uuid")]),
    ("/api/v1/subscriptions", "status", &[OneOfOrEmpty(commerce::subscriptions::STATUSES)]),
    ("/api/v1/subscriptions", "customer_id", &[FormatOrEmpty("uuid")]),
    ("/api/v1/outbound/campaigns", "type", &[OneOfOrEmpty(CAMPAIGN_TYPES)]),
    ("/api/v1/outbound/campaigns", "status", &[OneOfOrEmpty(CAMPAIGN_STATUSES)]),
    ("/api/v1/outbound/email/campaigns", "status", &[OneOfOrEmpty(CAMPAIGN_STATUSES)]),
    ("/api/v1/outbound/sms/campaigns", "status", &[OneOfOrEmpty(CAMPAIGN_STATUSES)]),
    ("/api/v1/outbound/phone/campaigns", "status", &[OneOfOrEmpty(CAMPAIGN_STATUSES)]),
    ("/api/v1/outbound/campaigns/{id}/recipients", "status", &[OneOfOrEmpty(RECIPIENT_STATUSES)]),
    ("/api/v1/publishing/calendar", "from", &[FormatOrEmpty("date-time")]),
    ("/api/v1/publishing/calendar", "to", &[FormatOrEmpty("date-time")]),
    ("/api/v1/services", "category_id", &[FormatOrEmpty("uuid")]),
    ("/api/v1/services", "is_active", &[OneOfOrEmpty(BOOLEAN_TEXT)]),
    ("/api/v1/tts", "status", &[OneOfOrEmpty(tts::STATUSES)]),
    ("/api/v1/search", "q", &[Required, Present]),
    ("/api/v1/search", "page", &[Range(1, 10_000)]),
    ("/api/v1/search", "per_page", &[Range(1, 100)]),
    ("/api/v1/search", "mode", &[OneOfOrEmpty(SEARCH_MODES)]),
    ("/api/v1/search", "semantic_ratio", &[Between(0.0, 1.0)]),
    ("/api/v1/search", "sources", &[Pattern(SEARCH_SOURCES)]),
    ("/api/v1/search", "validation_status", &[OneOf(knowledge::VALIDATION_STATUSES)]),
    ("/api/v1/crm/analytics/campaign-performance", "from", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/analytics/campaign-performance", "to", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/analytics/interest", "from", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/analytics/interest", "to", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/analytics/learning", "from", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/analytics/learning", "to", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/analytics/purchases", "from", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/analytics/purchases", "to", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/dashboard/analytics", "from", &[FormatOrEmpty("date")]),
    ("/api/v1/crm/dashboard/analytics", "to", &[FormatOrEmpty("date")]),
    ("*", "campaign_id", &[FormatOrEmpty("uuid")]),
    ("*", "service_id", &[FormatOrEmpty("uuid")]),
];

/// Applies `rules` to a property (or parameter) schema; `required` collects the names
/// the containing object must list.
pub fn apply(schema: &mut Value, rules: &[Rule]) -> bool {
    let mut required = false;
    for rule in rules {
        match *rule {
            Required => {
                required = true;
                super::contract::not_null(schema);
            }
            NotNull => super::contract::not_null(schema),
            Present => {
                if schema.get("pattern").is_none_or(|p| p == TEXT) {
                    schema["pattern"] = Value::from(PRESENT);
                }
                schema["minLength"] = json!(1);
            }
            OneOf(values) => set_enum(schema, values, false),
            OneOfOrEmpty(values) => set_enum(schema, values, true),
            Format(f) => {
                schema["format"] = Value::from(f);
                strip_pattern(schema);
            }
            FormatOrEmpty(f) => {
                let nullable =
                    schema.get("type").is_some_and(|t| t.as_array().is_some_and(|a| a.iter().any(|x| x == "null")));
                let mut options =
                    vec![json!({"type": "string", "format": f}), json!({"type": "string", "maxLength": 0})];
                if nullable {
                    options.push(json!({"type": "null"}));
                }
                let description = schema.get("description").cloned();
                *schema = json!({"anyOf": options});
                if let Some(d) = description {
                    schema["description"] = d;
                }
            }
            Pattern(p) => schema["pattern"] = Value::from(p),
            Range(min, max) => {
                schema["minimum"] = json!(min);
                schema["maximum"] = json!(max);
            }
            Between(min, max) => {
                schema["minimum"] = json!(min);
                schema["maximum"] = json!(max);
            }
            MaxLength(n) => schema["maxLength"] = json!(n),
            KeysWithoutNul => schema["propertyNames"] = json!({"pattern": super::contract::QUERY}),
            Items(rules) => {
                if let Some(items) = schema.get_mut("items") {
                    apply(items, rules);
                }
            }
            AnyJson => *schema = json!({"$ref": "#/components/schemas/JsonValue"}),
            MaxItems(n) => schema["maxItems"] = json!(n),
            MinItems(n) => schema["minItems"] = json!(n),
            TitledObject => {
                schema["type"] = Value::from("object");
                schema["required"] = json!(["title"]);
                let properties = schema.as_object_mut().map(|o| o.entry("properties").or_insert_with(|| json!({})));
                if let Some(p) = properties {
                    p["title"] = json!({"type": "string", "pattern": PRESENT});
                }
                schema["additionalProperties"] = json!({"$ref": "#/components/schemas/JsonValue"});
            }
        }
    }
    required
}

fn strip_pattern(schema: &mut Value) {
    if let Some(o) = schema.as_object_mut() {
        o.remove("pattern");
    }
}

fn set_enum(schema: &mut Value, values: &[&str], empty: bool) {
    let mut list: Vec<Value> = values.iter().map(|v| Value::from(*v)).collect();
    if empty {
        list.push(Value::from(""));
    }
    if schema.get("type").is_some_and(|t| t.as_array().is_some_and(|a| a.iter().any(|x| x == "null"))) {
        list.push(Value::Null);
    }
    strip_pattern(schema);
    schema["enum"] = Value::Array(list);
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi;

    #[test]
    fn every_rule_names_a_field_the_document_has() {
        let doc = serde_json::to_value(super::super::ApiDoc::openapi()).unwrap();
        for (schema, field, _) in BODY {
            let pointer = format!("/components/schemas/{schema}/properties/{field}");
            assert!(doc.pointer(&pointer).is_some(), "no {pointer}: a renamed field left its rule behind");
        }
        let params = |path: &str| -> Vec<String> {
            let mut names = Vec::new();
            for (p, item) in doc["paths"].as_object().unwrap() {
                if path != "*" && p != path {
                    continue;
                }
                for op in item.as_object().unwrap().values() {
                    for param in op["parameters"].as_array().into_iter().flatten() {
                        names.push(param["name"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }
            names
        };
        for (path, param, _) in QUERY {
            assert!(params(path).iter().any(|n| n == param), "no query parameter {param} on {path}");
        }
    }
}
