//! TTS request bodies and queries, parsed into checked values.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{ApiError, error::FieldErrors, validate};

pub const STATUSES: &[&str] = &["pending", "processing", "completed", "failed"];
pub const SOURCE_TYPES: &[&str] = &["presentation", "article", "content", "phone_script", "other"];

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TtsListQuery {
    pub status: Option<String>,
}

impl TtsListQuery {
    /// The status filter, checked.
    pub fn status(self, e: &mut FieldErrors) -> Option<String> {
        self.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", e))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTtsRequest {
    /// 1 to 10000 characters.
    pub text: Option<String>,
    /// The ElevenLabs voice id.
    pub voice_id: Option<String>,
    pub model: Option<String>,
    /// presentation, article, content, phone_script or other.
    pub source_type: Option<String>,
    pub source_id: Option<Uuid>,
}

/// A checked request for audio.
pub struct NewTts {
    pub text: String,
    pub voice_id: String,
    pub model: Option<String>,
    pub source_type: Option<String>,
    pub source_id: Option<Uuid>,
}

impl CreateTtsRequest {
    pub fn parse(self) -> Result<NewTts, ApiError> {
        let mut e = FieldErrors::default();
        let text = validate::required_text(self.text, 10_000, "text", &mut e);
        let voice_id = validate::required_text(self.voice_id, 100, "voice_id", &mut e);
        let model = self.model.map(|m| validate::text(&m, 100, "model", &mut e));
        let source_type = self.source_type.map(|s| validate::one_of(&s, SOURCE_TYPES, "source_type", &mut e));
        if self.source_id.is_some() && source_type.is_none() {
            e.add("source_type", "is required with source_id");
        }
        e.into_result()?;
        Ok(NewTts { text, voice_id, model, source_type, source_id: self.source_id })
    }
}
