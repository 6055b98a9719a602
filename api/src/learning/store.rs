//! Learning-campaign and sales-lead SQL.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::NewSalesLead;
use crate::envelope::PageRequest;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct LearningCampaign {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub description: Option<String>,
    pub campaign_type: String,
    pub status: String,
    pub is_template: bool,
    #[schema(value_type = Object)]
    pub content: SqlJson<Value>,
    #[schema(value_type = Object)]
    pub landing_page: SqlJson<Value>,
    #[schema(value_type = Object)]
    pub guide: SqlJson<Value>,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, slug, title, description, campaign_type, status, is_template, content, landing_page, guide, model,
    created_at, updated_at";

/// A generated campaign, ready to insert.
pub struct NewLearningCampaign<'a> {
    pub slug: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub kind: &'a str,
    pub is_template: bool,
    pub content: Value,
    pub guide: Value,
    pub prompt: &'a str,
    pub model: &'a str,
}

/// One page of the tenant's campaigns, newest first (only templates when asked), and the total.
#[tracing::instrument(name = "learning.list", skip(conn, page), fields(tenant_id = %tenant), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    status: Option<&str>,
    templates_only: bool,
    page: PageRequest,
) -> Result<(Vec<LearningCampaign>, i64), sqlx::Error> {
    let matching = "tenant_id = $1 and ($2::text is null or status = $2) and (not $3 or is_template)";
    let total: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from learning_campaigns where {matching}")))
            .bind(tenant)
            .bind(status)
            .bind(templates_only)
            .fetch_one(&mut *conn)
            .await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from learning_campaigns where {matching} order by created_at desc, id desc limit $4 offset $5"
    )))
    .bind(tenant)
    .bind(status)
    .bind(templates_only)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

#[tracing::instrument(name = "learning.by_slug", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn by_slug(
    conn: &mut PgConnection,
    tenant: TenantId,
    slug: &str,
) -> Result<Option<LearningCampaign>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from learning_campaigns where tenant_id = $1 and slug = $2"
    )))
    .bind(tenant)
    .bind(slug)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(name = "learning.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<LearningCampaign>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from learning_campaigns where tenant_id = $1 and id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(name = "learning.exists", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from learning_campaigns where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

/// A campaign's title and guide.
#[tracing::instrument(name = "learning.guide", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn guide(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<(String, Value)>, sqlx::Error> {
    let row: Option<(String, SqlJson<Value>)> =
        sqlx::query_as("select title, guide from learning_campaigns where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(title, guide)| (title, guide.0)))
}

#[tracing::instrument(name = "learning.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    c: &NewLearningCampaign<'_>,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into learning_campaigns (tenant_id, slug, title, description, campaign_type, is_template, content, landing_page,
            guide, prompt, model)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id",
    )
    .bind(tenant)
    .bind(c.slug)
    .bind(c.title)
    .bind(c.description)
    .bind(c.kind)
    .bind(c.is_template)
    .bind(SqlJson(&c.content))
    .bind(SqlJson(json!({"headline": c.title, "subheadline": c.description, "call_to_action": "Contact sales"})))
    .bind(SqlJson(&c.guide))
    .bind(c.prompt)
    .bind(c.model)
    .fetch_one(conn)
    .await
}

/// Stores a lead; one from a known customer (same e-mail) is linked to them and counted as
/// their `sales_contact` activity for the analytics.
#[tracing::instrument(name = "learning.insert_sales_lead", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert_sales_lead(
    conn: &mut PgConnection,
    tenant: TenantId,
    lead: NewSalesLead,
) -> Result<Uuid, sqlx::Error> {
    let customer: Option<Uuid> =
        sqlx::query_scalar("select id from crm_customers where tenant_id = $1 and lower(email) = lower($2)")
            .bind(tenant)
            .bind(lead.email.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into learning_sales_contacts (tenant_id, learning_campaign_id, customer_id, name, email, phone, company, message)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
    )
    .bind(tenant)
    .bind(lead.campaign_id)
    .bind(customer)
    .bind(&lead.name)
    .bind(lead.email.as_str())
    .bind(lead.phone.as_ref().map(|p| p.as_str()))
    .bind(lead.company)
    .bind(lead.message)
    .fetch_one(&mut *conn)
    .await?;
    if let Some(customer) = customer {
        crate::customers::store::record_web_activity(
            conn,
            tenant,
            customer,
            "sales_contact",
            "learning_sales_contact",
            id,
        )
        .await?;
    }
    Ok(id)
}
