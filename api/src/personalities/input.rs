//! Personality request bodies, parsed into checked values.

use fibonacco_platform::config::AiSettings;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

/// Checked as sent (f64): a tiny negative such as -5e-324 would round to -0.0 as an f32
/// and pass as 0.
fn check_temperature(t: f64, e: &mut FieldErrors) -> f32 {
    if !(0.0..=2.0).contains(&t) || t.is_nan() {
        e.add("temperature", "must be between 0 and 2");
    }
    t as f32
}

/// The platform pays for every answer: a personality names a model on `AI_MODELS` and
/// asks for at most `AI_MAX_TOKENS`.
fn check_max_tokens(n: i32, ai: &AiSettings, e: &mut FieldErrors) {
    if !(1..=i64::from(ai.max_tokens)).contains(&i64::from(n)) {
        e.add("max_tokens", format!("must be between 1 and {}", ai.max_tokens));
    }
}

fn check_model(model: String, ai: &AiSettings, e: &mut FieldErrors) -> String {
    if !model.is_empty() && !ai.allows_model(&model) {
        e.add("model", format!("must be one of: {}", ai.models.join(", ")));
    }
    model
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalityRequest {
    /// Unique in the tenant (case-insensitive).
    pub name: Option<String>,
    pub description: Option<String>,
    /// The instructions every conversation with this personality starts from.
    pub system_prompt: Option<String>,
    /// A model on the deployment's `AI_MODELS` list (`GET /ai/models`; default: the
    /// list's first).
    pub model: Option<String>,
    /// 0 to 2 (default 0.7).
    pub temperature: Option<f64>,
    /// 1 to the deployment's `AI_MAX_TOKENS` (4096 unless configured); default 1024.
    pub max_tokens: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A checked personality.
pub struct NewPersonality {
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: String,
    pub model: String,
    pub temperature: f32,
    pub max_tokens: i32,
    pub config: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl PersonalityRequest {
    pub fn parse(self, ai: &AiSettings) -> Result<NewPersonality, ApiError> {
        let mut e = FieldErrors::default();
        let name = validate::required_text(self.name, 200, "name", &mut e);
        let description = self.description.map(|d| validate::text(&d, 2000, "description", &mut e));
        let system_prompt = validate::required_text(self.system_prompt, 20_000, "system_prompt", &mut e);
        let model = match self.model {
            Some(m) => validate::required_text(Some(m), 200, "model", &mut e),
            None => ai.models.first().cloned().unwrap_or_default(),
        };
        let model = check_model(model, ai, &mut e);
        let temperature = check_temperature(self.temperature.unwrap_or(0.7), &mut e);
        let max_tokens = self.max_tokens.unwrap_or(1024.min(ai.max_tokens as i32));
        check_max_tokens(max_tokens, ai, &mut e);
        let config = validate::object(self.config, "config", &mut e);
        let metadata = validate::object(self.metadata, "metadata", &mut e);
        e.into_result()?;
        Ok(NewPersonality { name, description, system_prompt, model, temperature, max_tokens, config, metadata })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePersonalityRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub model: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub temperature: Patch<f64>,
    #[serde(default)]
    #[schema(value_type = Option<i32>)]
    pub max_tokens: Patch<i32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

/// Checked changes: `None` leaves a field, `description: Some(None)` clears it.
pub struct PersonalityChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<i32>,
    pub config: Option<Map<String, Value>>,
    pub metadata: Option<Map<String, Value>>,
}

impl UpdatePersonalityRequest {
    pub fn parse(self, ai: &AiSettings) -> Result<PersonalityChanges, ApiError> {
        let mut e = FieldErrors::default();
        let required = |p: Patch<String>, max: usize, field: &str, e: &mut FieldErrors| {
            p.non_null(field, e).map(|v| validate::required_text(Some(v), max, field, e))
        };
        let name = required(self.name, 200, "name", &mut e);
        let system_prompt = required(self.system_prompt, 20_000, "system_prompt", &mut e);
        let model = required(self.model, 200, "model", &mut e).map(|m| check_model(m, ai, &mut e));
        let description = validate::optional_text(self.description, 2000, "description", &mut e);
        let temperature = self.temperature.non_null("temperature", &mut e).map(|t| check_temperature(t, &mut e));
        let max_tokens = self.max_tokens.non_null("max_tokens", &mut e);
        if let Some(n) = max_tokens {
            check_max_tokens(n, ai, &mut e);
        }
        let object = |p: Patch<Value>, field: &str, e: &mut FieldErrors| match p {
            Patch::Missing => None,
            Patch::Null => Some(Map::new()),
            Patch::Value(v) => Some(validate::object(Some(v), field, e)),
        };
        let config = object(self.config, "config", &mut e);
        let metadata = object(self.metadata, "metadata", &mut e);
        e.into_result()?;
        Ok(PersonalityChanges { name, description, system_prompt, model, temperature, max_tokens, config, metadata })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub personality_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
}

impl AssignRequest {
    /// The personality and the customer, both required.
    pub fn parse(self) -> Result<(Uuid, Uuid), ApiError> {
        let mut e = FieldErrors::default();
        if self.personality_id.is_none() {
            e.add("personality_id", "is required");
        }
        if self.customer_id.is_none() {
            e.add("customer_id", "is required");
        }
        e.into_result()?;
        match (self.personality_id, self.customer_id) {
            (Some(p), Some(c)) => Ok((p, c)),
            _ => Err(ApiError::Validation(FieldErrors::single("body", "personality_id and customer_id are required"))),
        }
    }
}
