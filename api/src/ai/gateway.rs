//! Every LLM call of the API goes through here, so no route can spend more than the
//! platform allows: the model must be on the `AI_MODELS` list (else the provider's
//! default answers), the answer is capped at `AI_MAX_TOKENS`, and the tenant's daily
//! token budget (`AI_TENANT_DAILY_TOKENS`) is reserved before the call (prompt estimate
//! plus the answer's limit) and corrected to the estimate of what was used after it.
//!
//! Callers hold no database connection while they call here (ARCHITECTURE.md, "No
//! provider call holds a connection"); the test `fairness::no_generation_route_holds…`
//! checks every generation route.

use fibonacco_platform::{
    TenantId,
    llm::{ChatRequest, ChatResponse, ChatStream},
    quota::{self, Budget},
};

use crate::{ApiError, ai::context::estimate_tokens, state::AppState};

/// Today's reservation for one call; [`Reservation::settle`] returns what was not used.
pub struct Reservation {
    state: AppState,
    key: String,
    reserved: u64,
    prompt: u64,
}

impl Reservation {
    /// Gives back the reserved tokens the answer did not use. A failure only means the
    /// tenant is charged the reservation (logged; the budget is a ceiling, not a bill).
    pub async fn settle(self, answer: &str) {
        let used = self.prompt + u64::from(estimate_tokens(answer));
        let back = self.reserved.saturating_sub(used);
        if let Err(e) = quota::give_back(&self.state.redis, &self.key, back).await {
            tracing::warn!(error = %e, "unused LLM tokens not given back to the daily budget");
        }
    }
}

fn budget_key(state: &AppState, tenant: TenantId) -> String {
    format!("{}:llm-tokens:{tenant}", state.config.queue_prefix)
}

/// Without a provider key, generation is canned text: refused unless the operator asked
/// for demo templates (`AI_LOCAL_TEMPLATES`), whose answers carry the model
/// `local-template-v1` so they say what they are.
fn configured(state: &AppState) -> Result<(), ApiError> {
    if matches!(*state.llm, fibonacco_platform::llm::LlmProvider::Local) && !state.config.ai.local_templates {
        return Err(ApiError::AiNotConfigured);
    }
    Ok(())
}

/// Bounds the request by the platform's settings.
fn bounded(state: &AppState, mut request: ChatRequest) -> ChatRequest {
    let ai = &state.config.ai;
    if request.model.as_deref().is_some_and(|m| !ai.allows_model(m)) {
        tracing::warn!("a stored personality names a model outside AI_MODELS; the default model answers");
        request.model = None;
    }
    request.max_tokens = request.max_tokens.clamp(1, ai.max_tokens);
    request
}

/// Reserves the request's tokens; 429 when the tenant's day is spent.
async fn reserve(state: &AppState, tenant: TenantId, request: &ChatRequest) -> Result<Option<Reservation>, ApiError> {
    let budget = state.config.ai.tenant_daily_tokens;
    if budget == 0 {
        return Ok(None);
    }
    let prompt: u64 = request.messages.iter().map(|m| u64::from(estimate_tokens(&m.content))).sum();
    let reserved = prompt + u64::from(request.max_tokens);
    let key = budget_key(state, tenant);
    match quota::take(&state.redis, &key, reserved, budget).await {
        Ok(Budget::Taken { .. }) => Ok(Some(Reservation { state: state.clone(), key, reserved, prompt })),
        Ok(Budget::Exhausted { resets_in, .. }) => Err(ApiError::LlmBudgetExhausted { resets_in }),
        // Redis down: generation goes on unmetered rather than failing every tenant; the
        // rate limits (also Redis) are open too, and /health reports Redis down.
        Err(e) => {
            tracing::error!(error = %e, "LLM budget unavailable; the call is not metered");
            Ok(None)
        }
    }
}

/// One completion, within the platform's bounds and the tenant's budget.
pub async fn complete(state: &AppState, tenant: TenantId, request: ChatRequest) -> Result<ChatResponse, ApiError> {
    configured(state)?;
    let request = bounded(state, request);
    let reservation = reserve(state, tenant, &request).await?;
    let result = state.llm.complete(&request).await;
    if let Some(r) = reservation {
        r.settle(result.as_ref().map(|a| a.content.as_str()).unwrap_or("")).await;
    }
    Ok(result?)
}

/// A streamed completion; the caller settles the reservation when the stream ends.
pub async fn stream(
    state: &AppState,
    tenant: TenantId,
    request: ChatRequest,
) -> Result<(ChatStream, Option<Reservation>), ApiError> {
    configured(state)?;
    let request = bounded(state, request);
    let reservation = reserve(state, tenant, &request).await?;
    match state.llm.stream(&request).await {
        Ok(s) => Ok((s, reservation)),
        Err(e) => {
            if let Some(r) = reservation {
                r.settle("").await;
            }
            Err(e.into())
        }
    }
}
