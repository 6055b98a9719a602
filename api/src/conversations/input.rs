//! Conversation and message bodies, and their checks.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, patch::Patch, validate};

pub const CHANNELS: &[&str] = &["chat", "email", "sms", "phone", "web", "ai"];
pub const STATUSES: &[&str] = &["active", "ended", "archived"];
pub const ROLES: &[&str] = &["user", "assistant", "system", "agent", "customer"];
const MESSAGE_MAX_CHARS: usize = 20_000;
const TEXT_MAX_CHARS: usize = 5_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationRequest {
    /// The customer this conversation is with (optional for anonymous visitors).
    pub customer_id: Option<Uuid>,
    /// One of chat, email, sms, phone, web, ai (default chat).
    pub channel: Option<String>,
    pub summary: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct NewConversation {
    pub customer_id: Option<Uuid>,
    pub channel: String,
    pub summary: Option<String>,
    pub metadata: Map<String, Value>,
}

impl CreateConversationRequest {
    pub fn parse(self) -> Result<NewConversation, ApiError> {
        let mut errors = FieldErrors::default();
        let channel = match self.channel {
            None => "chat".to_owned(),
            Some(c) => validate::one_of(&c, CHANNELS, "channel", &mut errors),
        };
        let summary = self.summary.map(|s| validate::text(&s, TEXT_MAX_CHARS, "summary", &mut errors));
        let metadata = validate::object(self.metadata, "metadata", &mut errors);
        errors.into_result()?;
        Ok(NewConversation { customer_id: self.customer_id, channel, summary, metadata })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversationRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub channel: Patch<String>,
    /// active or archived; use `POST /conversations/{id}/end` to end one.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub summary: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub outcome: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub followup_scheduled_at: Patch<DateTime<Utc>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct ConversationChanges {
    pub channel: Option<String>,
    pub status: Option<String>,
    pub summary: Option<Option<String>>,
    pub outcome: Option<Option<String>>,
    pub followup_scheduled_at: Option<Option<DateTime<Utc>>>,
    pub metadata: Option<Map<String, Value>>,
}

impl UpdateConversationRequest {
    pub fn parse(self) -> Result<ConversationChanges, ApiError> {
        let mut errors = FieldErrors::default();
        let mut c = ConversationChanges::default();
        match self.channel {
            Patch::Missing => {}
            Patch::Null => errors.add("channel", "cannot be null"),
            Patch::Value(v) => c.channel = Some(validate::one_of(&v, CHANNELS, "channel", &mut errors)),
        }
        match self.status {
            Patch::Missing => {}
            Patch::Null => errors.add("status", "cannot be null"),
            Patch::Value(v) if v == "ended" => {
                errors.add("status", "use POST /conversations/{id}/end to end a conversation")
            }
            Patch::Value(v) => c.status = Some(validate::one_of(&v, STATUSES, "status", &mut errors)),
        }
        c.summary = validate::optional_text(self.summary, TEXT_MAX_CHARS, "summary", &mut errors);
        c.outcome = validate::optional_text(self.outcome, TEXT_MAX_CHARS, "outcome", &mut errors);
        match self.followup_scheduled_at {
            Patch::Missing => {}
            Patch::Null => c.followup_scheduled_at = Some(None),
            Patch::Value(t) => c.followup_scheduled_at = Some(Some(t)),
        }
        match self.metadata {
            Patch::Missing => {}
            Patch::Null => c.metadata = Some(Map::new()),
            Patch::Value(v) => c.metadata = Some(validate::object(Some(v), "metadata", &mut errors)),
        }
        errors.into_result()?;
        Ok(c)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndConversationRequest {
    /// How it ended, e.g. `resolved`, `sale`, `follow_up`.
    pub outcome: Option<String>,
    pub summary: Option<String>,
    /// When to follow up; must be in the future.
    pub followup_scheduled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Ending {
    pub outcome: Option<String>,
    pub summary: Option<String>,
    pub followup_scheduled_at: Option<DateTime<Utc>>,
}

impl EndConversationRequest {
    pub fn parse(self, now: DateTime<Utc>) -> Result<Ending, ApiError> {
        let mut errors = FieldErrors::default();
        let outcome = self.outcome.map(|s| validate::text(&s, 200, "outcome", &mut errors));
        let summary = self.summary.map(|s| validate::text(&s, TEXT_MAX_CHARS, "summary", &mut errors));
        if self.followup_scheduled_at.is_some_and(|t| t <= now) {
            errors.add("followup_scheduled_at", "must be in the future");
        }
        errors.into_result()?;
        Ok(Ending { outcome, summary, followup_scheduled_at: self.followup_scheduled_at })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMessageRequest {
    /// user, assistant, system, agent or customer.
    pub role: Option<String>,
    pub content: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub role: String,
    pub content: String,
    pub metadata: Map<String, Value>,
}

impl AddMessageRequest {
    pub fn parse(self) -> Result<NewMessage, ApiError> {
        let mut errors = FieldErrors::default();
        let role = match self.role {
            None => {
                errors.add("role", "is required");
                String::new()
            }
            Some(r) => validate::one_of(&r, ROLES, "role", &mut errors),
        };
        let content = match self.content {
            None => {
                errors.add("content", "is required");
                String::new()
            }
            Some(c) => {
                if c.trim().is_empty() {
                    errors.add("content", "must not be empty");
                }
                validate::text(&c, MESSAGE_MAX_CHARS, "content", &mut errors)
            }
        };
        let metadata = validate::object(self.metadata, "metadata", &mut errors);
        errors.into_result()?;
        Ok(NewMessage { role, content, metadata })
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationListQuery {
    pub customer_id: Option<String>,
    /// active, ended or archived.
    pub status: Option<String>,
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub customer_id: Option<Uuid>,
    pub status: Option<String>,
    pub channel: Option<String>,
}

impl ConversationListQuery {
    pub fn parse(self, errors: &mut FieldErrors) -> ConversationFilter {
        let customer_id = self.customer_id.filter(|s| !s.is_empty()).and_then(|s| match Uuid::parse_str(&s) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.add("customer_id", "must be a UUID");
                None
            }
        });
        let status = self.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", errors));
        let channel = self.channel.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, CHANNELS, "channel", errors));
        ConversationFilter { customer_id, status, channel }
    }
}
