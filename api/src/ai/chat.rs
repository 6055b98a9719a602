//! `POST /api/v1/ai/chat`: the assistant answers with the customer's personality, their
//! business context, the conversation so far and the knowledge entries that match the
//! question (cited by number). JSON by default; `"stream": true` answers with
//! server-sent events (`meta`, then `delta`s, then `done`, or `error`).

use std::convert::Infallible;

use axum::{
    Json,
    extract::State,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use fibonacco_platform::{
    TenantId, db,
    llm::{ChatMessage, ChatRequest, ChatStream, LlmProvider},
};
use fibonacco_search::knowledge::Hit;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::Personality;
use crate::{
    ApiError,
    conversations::{input::NewConversation, input::NewMessage, store as conversations},
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody},
    state::AppState,
};

const MAX_MESSAGE_CHARS: usize = 8000;
/// Knowledge entries given to the model per question.
pub(crate) const SOURCES: i64 = 3;
const DEFAULT_PROMPT: &str = "You are a helpful assistant for a small business. Answer briefly and use the knowledge given; say when you do not know.";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    pub message: Option<String>,
    pub customer_id: Option<Uuid>,
    /// Defaults to the customer's assigned personality, else a plain assistant.
    pub personality_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    /// Answer with server-sent events instead of one JSON document.
    #[serde(default)]
    pub stream: bool,
}

/// A knowledge entry given to the model, as `[n]` in its prompt.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ChatSource)]
pub struct Source {
    pub n: usize,
    pub id: Uuid,
    pub title: String,
    /// Another tenant's public entry (only with `AI_PUBLIC_KNOWLEDGE`): given to the model
    /// as quoted reference text, not as instructions.
    pub shared: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatAnswer {
    pub response: String,
    pub model: String,
    pub provider: &'static str,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub personality_id: Option<Uuid>,
    pub sources: Vec<Source>,
}

/// The `data` of one server-sent event of a streamed answer: `meta` carries the
/// conversation, personality, sources, model and provider; each `delta` a `content`
/// piece; `done` the stored `message_id` and `model`; `error` a `message`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatEvent {
    pub conversation_id: Option<Uuid>,
    pub personality_id: Option<Uuid>,
    pub sources: Option<Vec<Source>>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub content: Option<String>,
    pub message_id: Option<Uuid>,
    pub message: Option<String>,
}

struct Prepared {
    request: ChatRequest,
    personality: Option<Uuid>,
    /// Framing for an answer without a language model.
    greeting: Option<String>,
    sign_off: Option<String>,
    sources: Vec<Source>,
    /// What the sources say, in the same order (for an answer without a language model).
    hits: Vec<Hit>,
    message: String,
}

/// The personality asked for, else the customer's assigned one.
async fn personality(
    conn: &mut PgConnection,
    tenant: TenantId,
    explicit: Option<Uuid>,
    customer: Option<Uuid>,
) -> Result<Option<Personality>, sqlx::Error> {
    match (explicit, customer) {
        (Some(id), _) => super::store::personality(conn, tenant, id).await,
        (None, Some(customer)) => super::store::assigned_personality(conn, tenant, customer).await,
        (None, None) => Ok(None),
    }
}

async fn prepare(state: &AppState, tenant: TenantId, body: &ChatBody) -> Result<Prepared, ApiError> {
    let mut e = FieldErrors::default();
    let message = body.message.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if message.is_empty() {
        e.add("message", "is required");
    } else if message.chars().count() > MAX_MESSAGE_CHARS {
        e.add("message", format!("must be at most {MAX_MESSAGE_CHARS} characters"));
    }
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let chosen = personality(&mut tx, tenant, body.personality_id, body.customer_id).await?;
    if body.personality_id.is_some() && chosen.is_none() {
        e.add("personality_id", "no such personality");
    }
    let customer = match body.customer_id {
        Some(c) => {
            let context = super::customer_context(&mut tx, tenant, c).await?;
            if context.is_none() {
                e.add("customer_id", "no such customer");
            }
            context
        }
        None => None,
    };
    let mut history = Vec::new();
    if let Some(conversation) = body.conversation_id {
        if conversations::exists(&mut tx, tenant, conversation).await? {
            history = super::conversation_history(&mut tx, tenant, conversation).await?;
        } else {
            e.add("conversation_id", "no such conversation");
        }
    }
    tx.commit().await?;
    e.into_result()?;

    let found =
        state.search.for_assistant(tenant, &message, SOURCES, "message", state.config.ai.public_knowledge).await?;
    let sources: Vec<Source> = found
        .hits
        .iter()
        .enumerate()
        .map(|(i, h)| Source { n: i + 1, id: h.id, title: h.title.clone(), shared: h.shared })
        .collect();

    let mut messages =
        vec![ChatMessage::system(chosen.as_ref().map(|p| p.system_prompt.as_str()).unwrap_or(DEFAULT_PROMPT))];
    if let Some(context) = customer {
        messages.push(ChatMessage::system(context));
    }
    // The tenant's own knowledge is its instructions; other tenants' public entries are
    // someone else's words, so they come as quoted reference text in a user turn.
    let numbered: Vec<(usize, &Hit)> = found.hits.iter().enumerate().map(|(i, h)| (i + 1, h)).collect();
    let (own, shared): (Vec<_>, Vec<_>) = numbered.into_iter().partition(|(_, h)| !h.shared);
    if !own.is_empty() {
        let mut text = String::from("Relevant knowledge; cite it as [n]:\n");
        for (n, h) in &own {
            text.push_str(&format!("[{n}] {}: {}\n", h.title, super::context::excerpt(h)));
        }
        messages.push(ChatMessage::system(text));
    }
    messages.extend(history);
    if !shared.is_empty() {
        messages.push(ChatMessage::user(super::context::shared_reference(&shared)));
    }
    messages.push(ChatMessage::user(message.clone()));
    let remote = matches!(*state.llm, LlmProvider::OpenAiCompatible(_));
    let request = ChatRequest {
        messages,
        model: chosen.as_ref().filter(|_| remote).map(|p| p.model.clone()),
        temperature: chosen.as_ref().map(|p| p.temperature).unwrap_or(0.3),
        max_tokens: chosen.as_ref().and_then(|p| u32::try_from(p.max_tokens).ok()).unwrap_or(1024),
    };
    let (greeting, sign_off) = chosen.as_ref().map(|p| (p.greeting.clone(), p.sign_off.clone())).unwrap_or_default();
    Ok(Prepared { request, personality: chosen.map(|p| p.id), greeting, sign_off, sources, hits: found.hits, message })
}

/// Stores the question (and opens the conversation when new); returns the conversation.
async fn store_question(
    state: &AppState,
    tenant: TenantId,
    body: &ChatBody,
    prepared: &Prepared,
) -> Result<Uuid, sqlx::Error> {
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let conversation = match body.conversation_id {
        Some(c) => c,
        None => {
            let mut metadata = Map::new();
            if let Some(p) = prepared.personality {
                metadata.insert("personality_id".into(), json!(p));
            }
            let new = NewConversation {
                customer_id: body.customer_id,
                channel: "ai".into(),
                summary: Some("AI chat".into()),
                metadata,
            };
            conversations::insert(&mut tx, tenant, &new).await?
        }
    };
    let user = NewMessage { role: "user".into(), content: prepared.message.clone(), metadata: Map::new() };
    conversations::add_message(&mut tx, tenant, conversation, &user).await?;
    tx.commit().await?;
    Ok(conversation)
}

async fn store_answer(
    state: &AppState,
    tenant: TenantId,
    conversation: Uuid,
    text: String,
    model: &str,
    provider: &str,
    sources: &[Source],
) -> Result<Uuid, sqlx::Error> {
    let mut metadata = Map::new();
    metadata.insert("model".into(), json!(model));
    metadata.insert("provider".into(), json!(provider));
    metadata.insert("sources".into(), json!(sources.iter().map(|s| s.id).collect::<Vec<_>>()));
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let reply = NewMessage { role: "assistant".into(), content: text, metadata };
    let stored = conversations::add_message(&mut tx, tenant, conversation, &reply).await?;
    tx.commit().await?;
    Ok(stored.id)
}

/// Chat with the assistant. With `"stream": true` the answer is `text/event-stream`:
/// `meta` (conversation id, sources), `delta` (`{"content"}` pieces), then `done`
/// (`{"message_id", "model"}`) or `error`. Question and answer are stored in the
/// conversation; a failed answer stores nothing.
#[utoipa::path(post, path = "/api/v1/ai/chat", tag = "ai", request_body = ChatBody,
    responses((status = 200, description = "JSON answer, or server-sent events (`meta`, `delta`, `done` or `error`) when `stream` is true",
            content((inline(Envelope<ChatAnswer>) = "application/json"), (ChatEvent = "text/event-stream"))),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 502, description = "The provider refused the request", body = ErrorEnvelope),
        (status = 503, description = "The provider is unavailable; nothing stored", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn chat(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<ChatBody>,
) -> Result<Response, ApiError> {
    auth.require(crate::personalities::WRITE)?;
    let tenant = auth.0.tenant_id;
    let prepared = prepare(&state, tenant, &body).await?;
    // No language model: the answer quotes the knowledge found, and says so.
    let offline = matches!(*state.llm, LlmProvider::Local)
        .then(|| super::extractive::answer(&prepared.hits, prepared.greeting.as_deref(), prepared.sign_off.as_deref()));
    if !body.stream {
        let answer = match offline {
            Some(text) => fibonacco_platform::llm::ChatResponse {
                content: text,
                model: super::extractive::EXTRACTIVE_MODEL.into(),
                provider: "local",
            },
            None => super::gateway::complete(&state, tenant, prepared.request.clone()).await?,
        };
        let conversation = store_question(&state, tenant, &body, &prepared).await?;
        let message_id = store_answer(
            &state,
            tenant,
            conversation,
            answer.content.clone(),
            &answer.model,
            answer.provider,
            &prepared.sources,
        )
        .await?;
        return Ok(Json(Envelope::data(ChatAnswer {
            response: answer.content,
            model: answer.model,
            provider: answer.provider,
            conversation_id: conversation,
            message_id,
            personality_id: prepared.personality,
            sources: prepared.sources,
        }))
        .into_response());
    }
    // Errors before the first piece are answered as JSON like any other.
    let (mut stream, reservation) = match offline {
        Some(text) => (ChatStream::from_text(text, super::extractive::EXTRACTIVE_MODEL.into(), "local"), None),
        None => super::gateway::stream(&state, tenant, prepared.request.clone()).await?,
    };
    let conversation = match store_question(&state, tenant, &body, &prepared).await {
        Ok(c) => c,
        Err(e) => {
            // Nothing will be answered: the reservation goes back whole but the prompt.
            if let Some(r) = reservation {
                r.settle("").await;
            }
            return Err(e.into());
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let meta = json!({"conversation_id": conversation, "personality_id": prepared.personality, "sources": prepared.sources,
                      "model": stream.model, "provider": stream.provider});
    tokio::spawn(async move {
        let _ = tx.send(Event::default().event("meta").data(meta.to_string())).await;
        let mut text = String::new();
        let finished = relay(&mut stream, &tx, &mut text).await;
        if let Some(r) = reservation {
            r.settle(&text).await;
        }
        if !finished {
            return;
        }
        let done =
            match store_answer(&state, tenant, conversation, text, &stream.model, stream.provider, &prepared.sources)
                .await
            {
                Ok(id) => {
                    Event::default().event("done").data(json!({"message_id": id, "model": stream.model}).to_string())
                }
                Err(e) => {
                    tracing::error!(error = %e, "streamed answer not stored");
                    Event::default()
                        .event("error")
                        .data(json!({"message": "the answer could not be stored"}).to_string())
                }
            };
        let _ = tx.send(done).await;
    });
    let events =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// Passes the provider's pieces on as `delta` events, collecting them in `text`. False
/// when the stream broke off (an `error` event was sent) or the client left: what it saw
/// is then not stored as an answer.
async fn relay(stream: &mut ChatStream, tx: &tokio::sync::mpsc::Sender<Event>, text: &mut String) -> bool {
    while let Some(piece) = stream.chunks.recv().await {
        match piece {
            Ok(p) => {
                text.push_str(&p);
                if tx.send(Event::default().event("delta").data(json!({"content": p}).to_string())).await.is_err() {
                    return false;
                }
            }
            Err(e) => {
                let _ =
                    tx.send(Event::default().event("error").data(json!({"message": e.to_string()}).to_string())).await;
                return false;
            }
        }
    }
    true
}
