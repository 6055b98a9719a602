//! `POST /content/generate` and `/content/generate-from-campaign`: ask the LLM provider
//! for a draft and store it, with the prompt and the model that wrote it.

use axum::{Json, extract::State, http::StatusCode};
use fibonacco_platform::{
    TenantId, db,
    llm::{ChatMessage, ChatRequest},
};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{CONTENT_TYPES, Content, NewContent, RESOURCE, WRITE, get_one, insert};
use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody},
    state::AppState,
    validate,
};

pub const LENGTHS: &[&str] = &["short", "medium", "long"];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateContentRequest {
    /// What to write about.
    pub topic: Option<String>,
    /// article (default), blog_post, social_post, email, newsletter, landing_page, ad_copy, video_script, other.
    pub content_type: Option<String>,
    /// e.g. friendly, professional.
    pub tone: Option<String>,
    /// Who it is for.
    pub audience: Option<String>,
    /// short, medium (default) or long.
    pub length: Option<String>,
    /// A content template whose `{{ placeholders }}` are filled from `variables`
    /// (plus `topic`, `audience` and `tone`).
    pub template_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateFromCampaignRequest {
    /// A learning campaign of this tenant.
    pub campaign_id: Option<Uuid>,
    pub content_type: Option<String>,
    pub tone: Option<String>,
    pub length: Option<String>,
}

/// What the prompt needs, checked.
struct Brief {
    topic: String,
    content_type: String,
    tone: Option<String>,
    audience: Option<String>,
    length: String,
}

fn max_tokens(length: &str) -> u32 {
    match length {
        "short" => 400,
        "long" => 1800,
        _ => 900,
    }
}

/// Fills `{{ name }}` placeholders; unknown ones are left as they are.
fn fill(template: &str, values: &Map<String, Value>) -> String {
    let mut out = template.to_owned();
    for name in fibonacco_delivery::templates::placeholders(&[template]) {
        if let Some(v) = values.get(&name) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            for pattern in [format!("{{{{ {name} }}}}"), format!("{{{{{name}}}}}")] {
                out = out.replace(&pattern, &text);
            }
        }
    }
    out
}

/// First non-empty line (without markdown heading marks or quotes) is the title.
fn split_title(text: &str, fallback: &str) -> (String, String) {
    let mut lines = text.lines();
    let title = lines.by_ref().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let title = title.trim_start_matches('#').trim().trim_matches('"').trim();
    let body = lines.collect::<Vec<_>>().join("\n").trim().to_owned();
    if title.is_empty() || body.is_empty() {
        (fallback.chars().take(500).collect(), text.trim().to_owned())
    } else {
        (title.chars().take(500).collect(), body)
    }
}

/// Calls the provider with no connection held, then stores the draft in a transaction
/// of its own: a provider failure stores nothing, and a slow provider starves no one.
async fn generate_and_store(
    state: &AppState,
    tenant: TenantId,
    brief: &Brief,
    user_prompt: String,
    author: Option<Uuid>,
    learning_campaign_id: Option<Uuid>,
) -> Result<Content, ApiError> {
    let system = format!(
        "You write {} content for a small business. Reply with the title on the first line, then the body. \
         Tone: {}. Length: {}.",
        brief.content_type.replace('_', " "),
        brief.tone.as_deref().unwrap_or("friendly and clear"),
        brief.length
    );
    let request = ChatRequest {
        messages: vec![ChatMessage::system(&system), ChatMessage::user(&user_prompt)],
        model: None,
        temperature: 0.7,
        max_tokens: max_tokens(&brief.length),
    };
    let reply = crate::ai::gateway::complete(state, tenant, request).await?;
    let (title, body) = split_title(&reply.content, &brief.topic);
    let mut metadata = Map::new();
    metadata.insert("provider".into(), Value::from(reply.provider));
    metadata.insert("length".into(), Value::from(brief.length.clone()));
    if let Some(t) = &brief.tone {
        metadata.insert("tone".into(), Value::from(t.clone()));
    }
    if let Some(a) = &brief.audience {
        metadata.insert("audience".into(), Value::from(a.clone()));
    }
    let prompt = format!("{system}\n\n{user_prompt}");
    let new = NewContent {
        title: &title,
        content_type: &brief.content_type,
        body: &body,
        excerpt: None,
        prompt: Some(&prompt),
        model: Some(&reply.model),
        metadata: &metadata,
        author,
    };
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let id = insert(&mut tx, tenant, &new).await?;
    if let Some(campaign) = learning_campaign_id {
        sqlx::query("update generated_content set learning_campaign_id = $3 where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .bind(campaign)
            .execute(&mut *tx)
            .await?;
    }
    let content = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(content)
}

/// Generate a draft with the configured LLM provider (or the local one offline).
#[utoipa::path(post, path = "/api/v1/content/generate", tag = "content", request_body = GenerateContentRequest,
    responses((status = 201, description = "The stored draft, with prompt and model", body = inline(Envelope<Content>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 502, description = "The provider refused the request", body = ErrorEnvelope),
        (status = 503, description = "The provider is unavailable; try again", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn generate(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<GenerateContentRequest>,
) -> Result<(StatusCode, Json<Envelope<Content>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let brief = Brief {
        topic: validate::required_text(body.topic, 500, "topic", &mut e),
        content_type: validate::one_of(
            body.content_type.as_deref().unwrap_or("article"),
            CONTENT_TYPES,
            "content_type",
            &mut e,
        ),
        tone: body.tone.map(|t| validate::text(&t, 50, "tone", &mut e)),
        audience: body.audience.map(|a| validate::text(&a, 200, "audience", &mut e)),
        length: validate::one_of(body.length.as_deref().unwrap_or("medium"), LENGTHS, "length", &mut e),
    };
    let mut variables = validate::object(body.variables, "variables", &mut e);
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let user_prompt = match body.template_id {
        None => {
            let mut p = brief.topic.clone();
            if let Some(a) = &brief.audience {
                p.push_str(&format!("\nAudience: {a}"));
            }
            p
        }
        Some(template) => {
            let prompt: Option<String> =
                sqlx::query_scalar("select prompt_template from content_templates where tenant_id = $1 and id = $2")
                    .bind(tenant)
                    .bind(template)
                    .fetch_optional(&mut *tx)
                    .await?;
            let prompt = prompt
                .ok_or_else(|| ApiError::Validation(FieldErrors::single("template_id", "no such content template")))?;
            variables.entry("topic").or_insert_with(|| Value::from(brief.topic.clone()));
            for (k, v) in [("audience", &brief.audience), ("tone", &brief.tone)] {
                if let Some(v) = v {
                    variables.entry(k).or_insert_with(|| Value::from(v.clone()));
                }
            }
            fill(&prompt, &variables)
        }
    };
    tx.commit().await?;
    let content = generate_and_store(&state, tenant, &brief, user_prompt, auth.0.user_id, None).await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(content, "Content generated as a draft."))))
}

/// Generate a draft about a learning campaign (its title, description and content).
#[utoipa::path(post, path = "/api/v1/content/generate-from-campaign", tag = "content", request_body = GenerateFromCampaignRequest,
    responses((status = 201, body = inline(Envelope<Content>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn generate_from_campaign(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<GenerateFromCampaignRequest>,
) -> Result<(StatusCode, Json<Envelope<Content>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let content_type =
        validate::one_of(body.content_type.as_deref().unwrap_or("blog_post"), CONTENT_TYPES, "content_type", &mut e);
    let tone = body.tone.map(|t| validate::text(&t, 50, "tone", &mut e));
    let length = validate::one_of(body.length.as_deref().unwrap_or("medium"), LENGTHS, "length", &mut e);
    if body.campaign_id.is_none() {
        e.add("campaign_id", "is required");
    }
    e.into_result()?;
    let campaign_id =
        body.campaign_id.ok_or_else(|| ApiError::Validation(FieldErrors::single("campaign_id", "is required")))?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let campaign: Option<(String, Option<String>, sqlx::types::Json<Value>)> =
        sqlx::query_as("select title, description, content from learning_campaigns where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(campaign_id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    let (title, description, details) = campaign
        .ok_or_else(|| ApiError::Validation(FieldErrors::single("campaign_id", "no such learning campaign")))?;
    let mut prompt = title.clone();
    if let Some(d) = description {
        prompt.push_str(&format!("\n{d}"));
    }
    if details.0.as_object().is_some_and(|o| !o.is_empty()) {
        prompt.push_str(&format!("\nCampaign details: {}", details.0));
    }
    let brief = Brief { topic: title, content_type, tone, audience: None, length };
    let content = generate_and_store(&state, tenant, &brief, prompt, auth.0.user_id, Some(campaign_id)).await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(content, "Content generated as a draft."))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_and_splits_titles() {
        let mut v = Map::new();
        v.insert("topic".into(), Value::from("roof repair"));
        v.insert("n".into(), Value::from(3));
        assert_eq!(
            fill("Write {{ n }} tips on {{topic}} for {{ who }}", &v),
            "Write 3 tips on roof repair for {{ who }}"
        );
        assert_eq!(split_title("# Great title\n\nBody text", "x"), ("Great title".into(), "Body text".into()));
        assert_eq!(split_title("only one line", "Fallback"), ("Fallback".into(), "only one line".into()));
    }
}
