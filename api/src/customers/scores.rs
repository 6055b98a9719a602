//! A customer's engagement and predictive scores, as the analytics pipelines last computed
//! them (absent until a pipeline run has scored the customer). Read by both AI context
//! routes so the assistant knows who it talks to.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use sqlx::{PgConnection, types::Json};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct EngagementScore {
    /// 0-100.
    pub score: f64,
    /// Per-channel parts of the score.
    #[schema(value_type = Object)]
    pub components: Json<serde_json::Value>,
    /// The moment the inputs describe.
    pub as_of: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PredictiveScore {
    /// Probability of a paid order in the next 90 days.
    pub probability: f64,
    /// The features that moved this customer's score most.
    #[schema(value_type = Vec<crate::analytics::store::FeatureContribution>)]
    pub top_features: Json<serde_json::Value>,
    pub model_version: String,
    pub as_of: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CustomerScores {
    pub engagement: Option<EngagementScore>,
    pub predictive: Option<PredictiveScore>,
}

impl CustomerScores {
    /// The scores as lines for an assistant's prompt; empty when none are computed yet.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(e) = &self.engagement {
            text.push_str(&format!("Engagement score: {:.0}/100 (as of {})", e.score, e.as_of.date_naive()));
            if let Some(parts) = e.components.0.as_object().filter(|m| !m.is_empty()) {
                let parts: Vec<String> = parts.iter().map(|(k, v)| format!("{k} {v}")).collect();
                text.push_str(&format!("; by channel: {}", parts.join(", ")));
            }
            text.push('\n');
        }
        if let Some(p) = &self.predictive {
            text.push_str(&format!(
                "Likelihood of a purchase in the next 90 days: {:.0}% (model {}, as of {})",
                p.probability * 100.0,
                p.model_version,
                p.as_of.date_naive()
            ));
            if let Some(features) = p.top_features.0.as_array().filter(|f| !f.is_empty()) {
                let names: Vec<String> = features
                    .iter()
                    .take(3)
                    .map(|f| f.get("feature").and_then(|n| n.as_str()).map_or_else(|| f.to_string(), str::to_owned))
                    .collect();
                text.push_str(&format!("; driven by {}", names.join(", ")));
            }
            text.push('\n');
        }
        text
    }
}

#[tracing::instrument(name = "customers.scores", skip(conn), fields(tenant_id = %tenant))]
pub async fn load(conn: &mut PgConnection, tenant: TenantId, customer: Uuid) -> Result<CustomerScores, sqlx::Error> {
    let engagement = sqlx::query_as(
        "select score::float8 as score, components, as_of from customer_engagement_scores
         where tenant_id = $1 and customer_id = $2",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_optional(&mut *conn)
    .await?;
    let predictive = sqlx::query_as(
        "select probability, top_features, model_version, as_of from customer_predictive_scores
         where tenant_id = $1 and customer_id = $2",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(CustomerScores { engagement, predictive })
}
