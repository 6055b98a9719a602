//! Conversation and message SQL, inside a tenant-scoped transaction.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, Postgres, QueryBuilder, types::Json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{ConversationChanges, ConversationFilter, Ending, NewConversation, NewMessage};
use crate::envelope::PageRequest;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Conversation {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub channel: String,
    pub status: String,
    pub outcome: Option<String>,
    pub summary: Option<String>,
    pub followup_scheduled_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub message_count: i64,
    #[schema(value_type = Object)]
    pub metadata: Json<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub role: String,
    pub content: String,
    #[schema(value_type = Object)]
    pub metadata: Json<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
}

/// Columns of a conversation, with its message count from a correlated subquery.
const SELECT: &str = "select c.id, c.customer_id, c.channel, c.status, c.outcome, c.summary, c.followup_scheduled_at,
        c.ended_at, (select count(*) from crm_conversation_messages m where m.conversation_id = c.id) as message_count,
        c.metadata, c.created_at, c.updated_at
     from crm_conversations c";

#[tracing::instrument(name = "conversations.list", skip_all, fields(tenant_id = %tenant), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &ConversationFilter,
    page: PageRequest,
) -> Result<(Vec<Conversation>, i64), sqlx::Error> {
    let push_filters = |qb: &mut QueryBuilder<Postgres>| {
        qb.push(" where c.tenant_id = ").push_bind(tenant);
        if let Some(customer) = filter.customer_id {
            qb.push(" and c.customer_id = ").push_bind(customer);
        }
        if let Some(status) = &filter.status {
            qb.push(" and c.status = ").push_bind(status.clone());
        }
        if let Some(channel) = &filter.channel {
            qb.push(" and c.channel = ").push_bind(channel.clone());
        }
    };
    let mut count = QueryBuilder::<Postgres>::new("select count(*) from crm_conversations c");
    push_filters(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut rows = QueryBuilder::<Postgres>::new(SELECT);
    push_filters(&mut rows);
    rows.push(" order by c.created_at desc, c.id desc limit ").push_bind(page.limit());
    rows.push(" offset ").push_bind(page.offset());
    let items = rows.build_query_as::<Conversation>().fetch_all(&mut *conn).await?;
    Ok((items, total))
}

#[tracing::instrument(name = "conversations.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Conversation>, sqlx::Error> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(" where c.tenant_id = ").push_bind(tenant).push(" and c.id = ").push_bind(id);
    qb.build_query_as().fetch_optional(conn).await
}

/// Locks the conversation row for the rest of the transaction and returns its status.
pub async fn lock_status(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("select status from crm_conversations where tenant_id = $1 and id = $2 for update")
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(name = "conversations.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, new: &NewConversation) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into crm_conversations (tenant_id, customer_id, channel, summary, metadata)
         values ($1, $2, $3, $4, $5) returning id",
    )
    .bind(tenant)
    .bind(new.customer_id)
    .bind(&new.channel)
    .bind(&new.summary)
    .bind(Json(&new.metadata))
    .fetch_one(conn)
    .await
}

#[tracing::instrument(name = "conversations.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    c: &ConversationChanges,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "update crm_conversations set
            channel = coalesce($3, channel),
            status = coalesce($4, status),
            summary = case when $5 then $6 else summary end,
            outcome = case when $7 then $8 else outcome end,
            followup_scheduled_at = case when $9 then $10 else followup_scheduled_at end,
            metadata = coalesce($11, metadata)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(c.channel.as_deref())
    .bind(c.status.as_deref())
    .bind(c.summary.is_some())
    .bind(c.summary.clone().flatten())
    .bind(c.outcome.is_some())
    .bind(c.outcome.clone().flatten())
    .bind(c.followup_scheduled_at.is_some())
    .bind(c.followup_scheduled_at.flatten())
    .bind(c.metadata.as_ref().map(Json))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

#[tracing::instrument(name = "conversations.delete", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn delete(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("delete from crm_conversations where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Ends an active conversation. The caller has locked the row and checked its status.
#[tracing::instrument(name = "conversations.end", skip_all, fields(tenant_id = %tenant), err)]
pub async fn end(conn: &mut PgConnection, tenant: TenantId, id: Uuid, ending: &Ending) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update crm_conversations set status = 'ended', ended_at = now(),
            outcome = coalesce($3, outcome), summary = coalesce($4, summary),
            followup_scheduled_at = coalesce($5, followup_scheduled_at)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(&ending.outcome)
    .bind(&ending.summary)
    .bind(ending.followup_scheduled_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends a message. `clock_timestamp()` (not the transaction's `now()`) keeps messages
/// added in one transaction in the order they were added.
#[tracing::instrument(name = "conversations.add_message", skip_all, fields(tenant_id = %tenant), err)]
pub async fn add_message(
    conn: &mut PgConnection,
    tenant: TenantId,
    conversation: Uuid,
    m: &NewMessage,
) -> Result<Message, sqlx::Error> {
    let message: Message = sqlx::query_as(
        "insert into crm_conversation_messages (tenant_id, conversation_id, role, content, metadata, created_at)
         values ($1, $2, $3, $4, $5, clock_timestamp())
         returning id, conversation_id, role, content, metadata, created_at",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(&m.role)
    .bind(&m.content)
    .bind(Json(&m.metadata))
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("update crm_conversations set updated_at = now() where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(conversation)
        .execute(conn)
        .await?;
    Ok(message)
}

#[tracing::instrument(name = "conversations.messages", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn messages(
    conn: &mut PgConnection,
    tenant: TenantId,
    conversation: Uuid,
    page: PageRequest,
) -> Result<(Vec<Message>, i64), sqlx::Error> {
    let total: i64 = sqlx::query_scalar(
        "select count(*) from crm_conversation_messages where tenant_id = $1 and conversation_id = $2",
    )
    .bind(tenant)
    .bind(conversation)
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as(
        "select id, conversation_id, role, content, metadata, created_at from crm_conversation_messages
         where tenant_id = $1 and conversation_id = $2 order by created_at, id limit $3 offset $4",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

pub async fn exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from crm_conversations where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}
