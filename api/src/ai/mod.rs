//! AI endpoints: a personality answering a message (stored as a conversation), and the
//! models this deployment uses. The provider is the platform's `LlmProvider`:
//! OpenAI-compatible when a key is set, a deterministic local generator otherwise.

pub mod chat;
pub mod context;
pub mod extractive;
pub mod gateway;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, post},
};
use fibonacco_platform::{
    TenantId, db,
    llm::{ChatMessage, ChatRequest, LlmProvider},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    ApiError,
    conversations::{input::NewConversation, input::NewMessage, store as conversations},
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, resource_id},
    personalities,
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ai/models", get(models))
        .route("/ai/chat", post(chat::chat))
        .route("/ai/context", post(context::context))
        .route("/personalities/{id}/generate-response", post(generate_response))
}

/// Longest message accepted, in characters.
const MAX_MESSAGE_CHARS: usize = 8000;
/// Earlier messages of the conversation sent along as context.
const HISTORY: i64 = 20;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// What the user (or customer) said.
    pub message: Option<String>,
    /// The customer the personality talks to; their business context is given to it.
    pub customer_id: Option<Uuid>,
    /// Continue this conversation (its recent messages are context); a new one otherwise.
    pub conversation_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GeneratedResponse {
    pub response: String,
    pub model: String,
    pub provider: &'static str,
    pub personality_id: Uuid,
    pub conversation_id: Uuid,
    /// The stored assistant message.
    pub message_id: Uuid,
}

/// The last messages of a conversation as chat turns, oldest first (agents and the
/// assistant speak as `assistant`, customers and users as `user`).
pub(crate) async fn conversation_history(
    conn: &mut PgConnection,
    tenant: TenantId,
    conversation: Uuid,
) -> Result<Vec<ChatMessage>, sqlx::Error> {
    let rows = store::recent_turns(conn, tenant, conversation, HISTORY).await?;
    Ok(rows
        .into_iter()
        .map(|(role, content)| ChatMessage {
            role: if role == "assistant" || role == "agent" { "assistant".into() } else { "user".into() },
            content,
        })
        .collect())
}

/// The customer the assistant talks to, as a system message (their own tenant's data).
pub(crate) async fn customer_context(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    let row = store::customer(conn, tenant, id).await?;
    Ok(row.map(|(name, context)| {
        let context =
            if context.as_object().is_some_and(|m| !m.is_empty()) { context.to_string() } else { "{}".into() };
        format!("You are talking to the customer \"{name}\". Their business context (JSON): {context}")
    }))
}

/// A personality answers a message with its system prompt, model, temperature and token
/// limit. The exchange is stored as a conversation (channel `ai`): the user's message and
/// the answer, with the model and provider in the answer's metadata.
#[utoipa::path(post, path = "/api/v1/personalities/{id}/generate-response", tag = "personalities",
    params(("id" = Uuid, Path, description = "Personality id")), request_body = GenerateRequest,
    responses((status = 200, body = inline(Envelope<GeneratedResponse>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 502, description = "The provider refused the request", body = ErrorEnvelope),
        (status = 503, description = "The provider is unavailable; nothing stored", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn generate_response(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<GenerateRequest>,
) -> Result<Json<Envelope<GeneratedResponse>>, ApiError> {
    auth.require(personalities::WRITE)?;
    let id = resource_id(&id, "personality")?;
    let tenant = auth.0.tenant_id;
    let mut e = FieldErrors::default();
    let message = body.message.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if message.is_empty() {
        e.add("message", "is required");
    } else if message.chars().count() > MAX_MESSAGE_CHARS {
        e.add("message", format!("must be at most {MAX_MESSAGE_CHARS} characters"));
    }

    // Read everything the prompt needs, then let the transaction go before calling out.
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let personality = store::personality(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound("personality"))?;
    let customer = match body.customer_id {
        Some(c) => {
            let context = customer_context(&mut tx, tenant, c).await?;
            if context.is_none() {
                e.add("customer_id", "no such customer");
            }
            context
        }
        None => None,
    };
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(conversation) = body.conversation_id {
        if conversations::exists(&mut tx, tenant, conversation).await? {
            history = conversation_history(&mut tx, tenant, conversation).await?;
        } else {
            e.add("conversation_id", "no such conversation");
        }
    }
    tx.commit().await?;
    e.into_result()?;

    let mut messages = vec![ChatMessage::system(personality.system_prompt.clone())];
    if let Some(c) = customer {
        messages.push(ChatMessage::system(c));
    }
    messages.extend(history);
    messages.push(ChatMessage::user(message.clone()));
    let request = ChatRequest {
        messages,
        // A local provider has one model; a remote one uses the personality's.
        model: matches!(*state.llm, LlmProvider::OpenAiCompatible(_)).then(|| personality.model.clone()),
        temperature: personality.temperature,
        max_tokens: u32::try_from(personality.max_tokens).unwrap_or(1024),
    };
    // No language model: the answer quotes the tenant's knowledge that matches, and says so.
    let answer = if matches!(*state.llm, LlmProvider::Local) {
        let found = state
            .search
            .for_assistant(tenant, &message, chat::SOURCES, "message", state.config.ai.public_knowledge)
            .await?;
        fibonacco_platform::llm::ChatResponse {
            content: extractive::answer(&found.hits, personality.greeting.as_deref(), personality.sign_off.as_deref()),
            model: extractive::EXTRACTIVE_MODEL.into(),
            provider: "local",
        }
    } else {
        gateway::complete(&state, tenant, request).await?
    };

    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let conversation = match body.conversation_id {
        Some(c) => c,
        None => {
            let mut metadata = Map::new();
            metadata.insert("personality_id".into(), json!(id));
            let summary = Some(format!("{} conversation", personality.name));
            let new = NewConversation { customer_id: body.customer_id, channel: "ai".into(), summary, metadata };
            conversations::insert(&mut tx, tenant, &new).await?
        }
    };
    let user = NewMessage { role: "user".into(), content: message, metadata: Map::new() };
    conversations::add_message(&mut tx, tenant, conversation, &user).await?;
    let mut metadata = Map::new();
    metadata.insert("model".into(), json!(answer.model));
    metadata.insert("provider".into(), json!(answer.provider));
    metadata.insert("personality_id".into(), json!(id));
    let reply = NewMessage { role: "assistant".into(), content: answer.content.clone(), metadata };
    let stored = conversations::add_message(&mut tx, tenant, conversation, &reply).await?;
    tx.commit().await?;
    Ok(Json(Envelope::data(GeneratedResponse {
        response: answer.content,
        model: answer.model,
        provider: answer.provider,
        personality_id: id,
        conversation_id: conversation,
        message_id: stored.id,
    })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub id: String,
    /// `chat` or `embedding`.
    pub kind: &'static str,
    pub provider: String,
    /// Used when a request or personality names no model (chat), or the embedder search
    /// uses now (embedding).
    pub default: bool,
    /// Vector size (embedding models).
    pub dimensions: Option<usize>,
    /// Chat: whether the provider's model list has it (`GET /models`, read at most every
    /// 10 minutes); null when the list could not be read or there is no provider.
    pub offered: Option<bool>,
    /// Embedding: this tenant's knowledge entries indexed with it.
    pub indexed_entries: Option<i64>,
}

/// How long the provider's model list is reused.
const MODELS_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The provider's model list, cached; `None` without a provider or when it cannot be read.
async fn offered_models(state: &AppState) -> Option<Vec<String>> {
    let LlmProvider::OpenAiCompatible(provider) = &*state.llm else { return None };
    if let Some((at, list)) = state.provider_models.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
        && at.elapsed() < MODELS_TTL
    {
        return Some(list.clone());
    }
    match provider.models().await {
        Ok(list) => {
            *state.provider_models.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((std::time::Instant::now(), list.clone()));
            Some(list)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the provider's model list could not be read");
            None
        }
    }
}

/// The chat models: the provider's default, every model a personality of this tenant
/// names, and what the provider offers; the embedding model search uses now and the ones
/// the tenant's knowledge is indexed with.
#[utoipa::path(get, path = "/api/v1/ai/models", tag = "personalities",
    responses((status = 200, body = inline(Envelope<Vec<ModelInfo>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn models(State(state): State<AppState>, auth: Auth) -> Result<Json<Envelope<Vec<ModelInfo>>>, ApiError> {
    auth.require(personalities::READ)?;
    let tenant = auth.0.tenant_id;
    let provider = state.llm.name().to_owned();
    let default_model = state.llm.default_model().to_owned();
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let named = if matches!(*state.llm, LlmProvider::OpenAiCompatible(_)) {
        store::personality_models(&mut tx, tenant).await?
    } else {
        Vec::new()
    };
    let indexed: Vec<(String, i64, Option<i32>)> = sqlx::query_as(
        "select embedding_model, count(*), max(vector_dims(embedding)) from knowledge_base
         where tenant_id = $1 and embedding is not null group by 1 order by 2 desc",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    // No database connection is held while the provider is asked.
    let offered = offered_models(&state).await;
    let is_offered = |id: &str| offered.as_ref().map(|list| list.iter().any(|m| m == id));
    let chat = |id: String, default: bool| ModelInfo {
        offered: is_offered(&id),
        id,
        kind: "chat",
        provider: provider.clone(),
        default,
        dimensions: None,
        indexed_entries: None,
    };
    let mut out = vec![chat(default_model.clone(), true)];
    for id in named.into_iter().chain(offered.clone().unwrap_or_default()) {
        if !out.iter().any(|m| m.id == id) {
            out.push(chat(id, false));
        }
    }
    let lookup = fibonacco_platform::config::env_lookup();
    let (embedding, embedding_provider, dims) = match lookup("EMBEDDING_BASE_URL").filter(|v| !v.is_empty()) {
        Some(_) => (
            lookup("EMBEDDING_MODEL").filter(|v| !v.is_empty()).unwrap_or_else(|| "text-embedding-3-small".into()),
            "openai-compatible".to_owned(),
            // The size the embedder makes; a configuration it refuses shows as 0 (the
            // embedding jobs say why).
            fibonacco_search::embed::configured_dimensions(&lookup).unwrap_or(0),
        ),
        None => (
            fibonacco_search::embed::local::MODEL_NAME.to_owned(),
            "local".to_owned(),
            fibonacco_search::embed::local::DIMENSIONS,
        ),
    };
    let count_of = |id: &str| indexed.iter().find(|(m, ..)| m == id).map(|(_, n, _)| *n).unwrap_or(0);
    out.push(ModelInfo {
        indexed_entries: Some(count_of(&embedding)),
        id: embedding.clone(),
        kind: "embedding",
        provider: embedding_provider,
        default: true,
        dimensions: Some(dims),
        offered: None,
    });
    // Entries still indexed with another embedder (until `search reindex`).
    for (id, n, dims) in indexed.into_iter().filter(|(m, ..)| *m != embedding) {
        out.push(ModelInfo {
            id,
            kind: "embedding",
            provider: "indexed".into(),
            default: false,
            dimensions: dims.and_then(|d| usize::try_from(d).ok()),
            offered: None,
            indexed_entries: Some(n),
        });
    }
    Ok(Json(Envelope::data(out)))
}
