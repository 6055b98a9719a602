//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

pub mod contract;
pub mod rules;

use fibonacco_platform::config::{AiSettings, RateLimits};

use crate::{
    ads, ai, analytics, articles, commerce, content, conversations, customers, envelope, error, faq_categories, health,
    knowledge, learning, outbound, personalities, presentations, search, segments, stripe, surveys, tracking, training,
    tts, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fibonacco platform API",
        description = "CRM, knowledge base, outbound campaigns, content, AI and analytics for small businesses. \
                       Authenticate with `Authorization: Bearer {id}|{secret}` (create one with `fibonacco token create`).",
    ),
    paths(
        health::health,
        customers::list, customers::create, customers::show, customers::show_by_slug,
        customers::update, customers::destroy, customers::update_business_context, customers::ai_context, customers::personal_data::export, customers::erasure::erase, customers::erasure::show,
        customers::import::create, customers::import::show, customers::import::errors, customers::export::export,
        customers::export_job::create, customers::export_job::show, customers::export_job::download, customers::consents::list, customers::consents::record,
        conversations::list, conversations::create, conversations::show, conversations::update,
        conversations::destroy, conversations::end, conversations::add_message, conversations::messages,
        knowledge::list, knowledge::create, knowledge::show, knowledge::update, knowledge::destroy,
        knowledge::vote, knowledge::generate_embedding,
        faq_categories::list, faq_categories::create, faq_categories::show, faq_categories::update,
        faq_categories::destroy,
        outbound::list, outbound::create, outbound::show, outbound::update, outbound::destroy,
        outbound::recipients, outbound::start, outbound::pause, outbound::resume, outbound::cancel, outbound::analytics,
        search::search_get, search::search_post, ai::generate_response, ai::models, ai::chat::chat, ai::context::context,
        tracking::open, tracking::click, tracking::unsubscribe_page, tracking::unsubscribe,
        outbound::list_email, outbound::create_email, outbound::list_sms, outbound::create_sms,
        outbound::list_phone, outbound::create_phone, outbound::sms_status, outbound::call_status,
        outbound::inbound::sms_inbound,
        outbound::ses::ses_events,
        outbound::suppressions::list, outbound::suppressions::create, outbound::suppressions::destroy,
        outbound::contact_policy::list, outbound::contact_policy::set, outbound::contact_policy::remove,
        webhooks::event_types, webhooks::list, webhooks::create, webhooks::show, webhooks::update, webhooks::destroy,
        webhooks::deliveries, webhooks::rotate_secret, webhooks::send_test, webhooks::retry,
        segments::list, segments::create, segments::show, segments::update, segments::destroy, segments::preview,
        segments::preview_rules,
        outbound::templates::list_email, outbound::templates::create_email,
        outbound::templates::list_sms, outbound::templates::create_sms,
        outbound::templates::list_scripts, outbound::templates::create_script,
        personalities::list, personalities::create, personalities::show, personalities::update,
        personalities::destroy, personalities::assignments, personalities::assign,
        personalities::customer_personality,
        commerce::services::list, commerce::services::create, commerce::services::show, commerce::services::update,
        commerce::services::destroy, commerce::services::list_categories, commerce::services::create_category,
        commerce::orders::list, commerce::orders::create, commerce::orders::show, commerce::orders::cancel,
        commerce::payments::pay, commerce::payments::refund,
        commerce::subscriptions::list, commerce::subscriptions::create, commerce::subscriptions::show, commerce::subscriptions::cancel,
        stripe::webhook,
        content::list, content::create, content::show, content::update, content::change_status, content::history,
        content::list_templates, content::create_template, content::generate::generate,
        content::generate::generate_from_campaign,
        content::publishing::dashboard, content::publishing::calendar, content::publishing::analytics,
        content::publishing::publish,
        ads::list, ads::create, ads::show, ads::update, ads::destroy, ads::list_templates, ads::create_template,
        ads::generate_from_campaign, ads::generate_from_content,
        learning::list, learning::templates, learning::generate, learning::suggestions, learning::show,
        learning::contact_sales, learning::guide,
        articles::list, articles::create, articles::show, articles::show_by_slug, articles::update, articles::destroy,
        articles::record_view,
        tts::list, tts::create, tts::show,
        surveys::list, surveys::create, surveys::show, surveys::update, surveys::destroy, surveys::add_section,
        surveys::add_question, surveys::respond, surveys::responses,
        presentations::list, presentations::create, presentations::show, presentations::update, presentations::destroy,
        presentations::record_view, presentations::list_presenters, presentations::create_presenter,
        training::list, training::create, training::show, training::record_progress, training::progress,
        analytics::dashboard, analytics::interest, analytics::purchases, analytics::learning,
        analytics::campaign_performance, analytics::engagement_score, analytics::campaign_roi, analytics::predictive_score,
    ),
    components(schemas(
        error::ErrorEnvelope, error::ErrorBody, envelope::Pagination, envelope::Meta,
        customers::store::Customer, customers::store::AiContext, faq_categories::store::CategoryNode,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "customers", description = "CRM customers"),
        (name = "analytics", description = "Precomputed CRM analytics: dashboard KPIs, interest, purchases, learning, campaign performance, engagement, ROI and predictive scores"),
        (name = "conversations", description = "Conversations with customers and their messages"),
        (name = "knowledge", description = "Knowledge base entries, votes, embeddings, FAQ categories"),
        (name = "personalities", description = "AI personalities and their customer assignments"),
        (name = "content", description = "Content, its publishing workflow and the publishing views"),
        (name = "ads", description = "Ads, ad templates and generated ad drafts"),
        (name = "learning", description = "Learning campaigns, guides and sales leads"),
        (name = "articles", description = "Learning-center articles"),
        (name = "tts", description = "Text-to-speech requests"),
        (name = "surveys", description = "Surveys, their sections and questions, and responses"),
        (name = "presentations", description = "Presentations and presenters"),
        (name = "training", description = "Training modules and customer progress"),
        (name = "commerce", description = "Service catalog and orders"),
        (name = "payments", description = "Stripe webhook"),
        (name = "segments", description = "Saved audiences over customer fields, tags, activity, orders and scores; a campaign may take its recipients from one"),
        (name = "webhooks", description = "Endpoints that receive signed events (Standard Webhooks) built from the change feed, and their delivery logs"),
        (name = "outbound", description = "E-mail, SMS and phone campaigns, recipients, templates, status callbacks"),
        (name = "ai", description = "AI chat with knowledge sources"),
        (name = "search", description = "Semantic, keyword and hybrid search over the knowledge base"),
        (name = "tracking", description = "Public links in campaign e-mails: open pixel, click redirect, unsubscribe"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("{id}|{secret} (Sanctum personal access token)")
                    .build(),
            ),
        );
    }
}

/// The document with this deployment's rate limits: every bearer-authenticated
/// operation may answer 429, and says so with the headers it carries.
pub fn document(limits: &RateLimits, ai: &AiSettings) -> serde_json::Value {
    use utoipa::openapi::{
        Content, Ref, ResponseBuilder,
        header::HeaderBuilder,
        schema::{ObjectBuilder, Type},
    };
    let mut doc = ApiDoc::openapi();
    let off = |n: u32| if n == 0 { "off".to_owned() } else { format!("{n} per minute") };
    let described = format!(
        "Too many requests. Limits: {} per token, {} per tenant, and {} per tenant on the routes that call a paid \
         provider (generation, AI chat and context, embeddings on demand, text-to-speech); \
         `LLM_BUDGET_EXHAUSTED` when the tenant's daily LLM token budget is spent. Wait `Retry-After` seconds.",
        off(limits.per_token),
        off(limits.per_tenant),
        off(limits.generation_per_tenant)
    );
    let integer = |what: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .description(Some(what))
            .build()
    };
    let response = ResponseBuilder::new()
        .description(described)
        .header("Retry-After", integer("Seconds until the request may be made again"))
        .header("X-RateLimit-Limit", integer("Requests per minute of the tightest limit"))
        .header("X-RateLimit-Remaining", integer("Requests left under it"))
        .header("X-RateLimit-Reset", integer("Seconds until it is whole again"))
        .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))))
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
        {
            let bearer = op.security.as_ref().is_some_and(|s| !s.is_empty());
            if bearer {
                op.responses.responses.entry("429".into()).or_insert_with(|| response.clone().into());
            }
        }
    }
    let mut value = serde_json::to_value(&doc).expect("the OpenAPI document serialises");
    contract::complete(&mut value);
    // The deployment's model list and answer cap, as `personalities::input` checks them.
    for schema in ["PersonalityRequest", "UpdatePersonalityRequest"] {
        if let Some(p) = value.pointer_mut(&format!("/components/schemas/{schema}/properties/model")) {
            let nullable = schema == "PersonalityRequest";
            let mut models: Vec<serde_json::Value> =
                ai.models.iter().map(|m| serde_json::Value::from(m.as_str())).collect();
            if nullable {
                models.push(serde_json::Value::Null);
            }
            p["enum"] = serde_json::Value::Array(models);
            if let Some(o) = p.as_object_mut() {
                o.remove("pattern");
            }
        }
        if let Some(p) = value.pointer_mut(&format!("/components/schemas/{schema}/properties/max_tokens")) {
            p["minimum"] = serde_json::json!(1);
            p["maximum"] = serde_json::json!(ai.max_tokens);
        }
    }
    value
}

/// The spec as pretty JSON, for `fibonacco openapi` (default limits) and
/// `/api/v1/openapi.json` (this deployment's).
pub fn json() -> String {
    serde_json::to_string_pretty(&document(&RateLimits::default(), &AiSettings::default()))
        .expect("the OpenAPI document serialises")
}
