//! What the assistant reads before it answers: personalities, the customer, the
//! conversation so far, the customer's FAQs and open questions. Every function runs in
//! the caller's tenant transaction (which is committed before any provider call).

use fibonacco_platform::TenantId;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// A personality as the assistant uses it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Personality {
    pub id: Uuid,
    pub name: String,
    pub system_prompt: String,
    pub model: String,
    pub temperature: f32,
    pub max_tokens: i32,
    /// `config.greeting` and `config.sign_off`: framing for answers given without a
    /// language model (`ai::extractive`).
    pub greeting: Option<String>,
    pub sign_off: Option<String>,
}

const PERSONALITY: &str = "select p.id, p.name, p.system_prompt, p.model, p.temperature, p.max_tokens,
    p.config->>'greeting' as greeting, p.config->>'sign_off' as sign_off from ai_personalities p";

#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn personality(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Personality>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{PERSONALITY} where p.tenant_id = $1 and p.id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The personality assigned to a customer, if any.
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn assigned_personality(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
) -> Result<Option<Personality>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PERSONALITY} join ai_personality_assignments a on a.personality_id = p.id
         where a.tenant_id = $1 and a.customer_id = $2"
    )))
    .bind(tenant)
    .bind(customer)
    .fetch_optional(conn)
    .await
}

/// Every model a personality of the tenant names, sorted.
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn personality_models(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("select distinct model from ai_personalities where tenant_id = $1 order by model")
        .bind(tenant)
        .fetch_all(conn)
        .await
}

/// A customer's name and business context.
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn customer(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<(String, Value)>, sqlx::Error> {
    sqlx::query_as("select name, business_context from crm_customers where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The last `limit` turns of a conversation (role, content), oldest first; only people
/// and the assistant speak (system notes are left out).
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn recent_turns(
    conn: &mut PgConnection,
    tenant: TenantId,
    conversation: Uuid,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "select role, content from (select role, content, created_at, id from crm_conversation_messages
           where tenant_id = $1 and conversation_id = $2 and role in ('user', 'assistant', 'customer', 'agent')
           order by created_at desc, id desc limit $3) recent order by created_at, id",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The customer's last 20 messages across conversations (conversation, role, content),
/// newest first.
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn customer_messages(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
) -> Result<Vec<(Uuid, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "select c.id, m.role, m.content from crm_conversation_messages m join crm_conversations c on c.id = m.conversation_id
         where c.tenant_id = $1 and c.customer_id = $2 order by m.created_at desc, m.id desc limit 20",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_all(conn)
    .await
}

/// The customer's 20 most helpful FAQs (id, question, answer).
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn customer_faqs(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
) -> Result<Vec<(Uuid, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "select id, question, answer from crm_customer_faqs where tenant_id = $1 and customer_id = $2
         order by helpful_count desc, created_at desc limit 20",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_all(conn)
    .await
}

/// The customer's 20 oldest unanswered questions (id, question).
#[tracing::instrument(skip(conn), fields(tenant_id = %tenant), err)]
pub async fn pending_questions(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "select id, question from crm_pending_questions where tenant_id = $1 and customer_id = $2 and status = 'pending'
         order by created_at limit 20",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_all(conn)
    .await
}
