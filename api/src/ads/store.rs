//! Ad and ad-template SQL.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{AdChanges, AdFilter, NewAd, NewAdTemplate};
use crate::envelope::PageRequest;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Ad {
    pub id: Uuid,
    pub name: String,
    pub platform: String,
    pub ad_type: String,
    /// draft, review, approved, scheduled, active, paused or archived.
    pub status: String,
    /// Headline, primary text, call to action, media…
    #[schema(value_type = Object)]
    pub content: SqlJson<Map<String, Value>>,
    #[schema(value_type = Object)]
    pub targeting: SqlJson<Map<String, Value>>,
    /// Budget in minor units of `currency`.
    pub budget: Option<i64>,
    pub currency: String,
    pub scheduled_start_at: Option<DateTime<Utc>>,
    pub scheduled_end_at: Option<DateTime<Utc>>,
    pub template_id: Option<Uuid>,
    pub source_campaign_id: Option<Uuid>,
    pub source_content_id: Option<Uuid>,
    pub prompt: Option<String>,
    pub model: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, platform, ad_type, status, content, targeting, budget, trim(currency) as currency,
    scheduled_start_at, scheduled_end_at, template_id, source_campaign_id, source_content_id, prompt, model, metadata,
    created_at, updated_at";

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AdTemplate {
    pub id: Uuid,
    pub name: String,
    pub platform: String,
    pub ad_type: String,
    #[schema(value_type = Object)]
    pub structure: SqlJson<Map<String, Value>>,
    pub prompt_template: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub const TEMPLATE_COLUMNS: &str = "id, name, platform, ad_type, structure, prompt_template, created_at";

#[tracing::instrument(name = "ads.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Ad>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from ads where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// One page of the tenant's ads matching `filter`, newest first, and the total.
#[tracing::instrument(name = "ads.list", skip_all, fields(tenant_id = %tenant), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &AdFilter,
    page: PageRequest,
) -> Result<(Vec<Ad>, i64), sqlx::Error> {
    let matching = "tenant_id = $1 and ($2::text is null or platform = $2) and ($3::text is null or status = $3)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from ads where {matching}")))
        .bind(tenant)
        .bind(&filter.platform)
        .bind(&filter.status)
        .fetch_one(&mut *conn)
        .await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from ads where {matching} order by created_at desc, id desc limit $4 offset $5"
    )))
    .bind(tenant)
    .bind(&filter.platform)
    .bind(&filter.status)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

#[tracing::instrument(name = "ads.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, ad: &NewAd) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into ads (tenant_id, name, platform, ad_type, content, targeting, budget, currency, scheduled_start_at,
            scheduled_end_at, template_id, source_campaign_id, source_content_id, prompt, model, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) returning id",
    )
    .bind(tenant)
    .bind(&ad.name)
    .bind(&ad.platform)
    .bind(&ad.ad_type)
    .bind(SqlJson(&ad.content))
    .bind(SqlJson(&ad.targeting))
    .bind(ad.budget)
    .bind(&ad.currency)
    .bind(ad.scheduled_start_at)
    .bind(ad.scheduled_end_at)
    .bind(ad.template_id)
    .bind(ad.source_campaign_id)
    .bind(ad.source_content_id)
    .bind(&ad.prompt)
    .bind(&ad.model)
    .bind(SqlJson(&ad.metadata))
    .fetch_one(conn)
    .await
}

/// Applies `changes`; the schedule is written whole (`start`, `end`) as the handler
/// resolved it against the stored ad.
#[tracing::instrument(name = "ads.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    changes: AdChanges,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update ads set name = coalesce($3, name), status = coalesce($4, status), content = coalesce($5, content),
            targeting = coalesce($6, targeting), budget = case when $7 then $8 else budget end,
            scheduled_start_at = $9, scheduled_end_at = $10, metadata = coalesce($11, metadata)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(changes.name)
    .bind(changes.status)
    .bind(changes.content.map(SqlJson))
    .bind(changes.targeting.map(SqlJson))
    .bind(changes.budget.is_some())
    .bind(changes.budget.flatten())
    .bind(start)
    .bind(end)
    .bind(changes.metadata.map(SqlJson))
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "ads.template_exists", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn template_exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from ad_templates where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

#[tracing::instrument(name = "ads.insert_template", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert_template(
    conn: &mut PgConnection,
    tenant: TenantId,
    t: NewAdTemplate,
) -> Result<AdTemplate, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into ad_templates (tenant_id, name, platform, ad_type, structure, prompt_template)
         values ($1, $2, $3, $4, $5, $6) returning {TEMPLATE_COLUMNS}"
    )))
    .bind(tenant)
    .bind(t.name)
    .bind(t.platform)
    .bind(t.ad_type)
    .bind(SqlJson(t.structure))
    .bind(t.prompt_template)
    .fetch_one(conn)
    .await
}

/// The name and brief of a campaign to promote, if the tenant has it.
#[tracing::instrument(name = "ads.campaign_brief", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn campaign_brief(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row: Option<(String, String)> =
        sqlx::query_as("select name, type from outbound_campaigns where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(name, kind)| {
        let brief = format!("Promote the {kind} campaign \"{name}\".");
        (name, brief)
    }))
}

/// The title and the first 2,000 characters of a piece of content, if the tenant has it.
#[tracing::instrument(name = "ads.content_brief", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn content_brief(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("select title, left(body, 2000) from generated_content where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}
