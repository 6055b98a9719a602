//! Customer SQL. Every function takes a connection inside a tenant-scoped transaction
//! and filters by `tenant_id` itself as well: row-level security is the second line.

use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db, domain::Slug};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder, types::Json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{CustomerChanges, CustomerFilter, NewCustomer, SortKey};
use crate::{ApiError, envelope::PageRequest};

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Customer {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    #[schema(value_type = Object)]
    pub business_context: Json<Map<String, Value>>,
    #[schema(value_type = Object)]
    pub metadata: Json<Map<String, Value>>,
    /// IANA time zone (quiet hours are in local time); null: the contact policy's.
    pub timezone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, slug, email, phone, business_context, metadata, timezone, created_at, updated_at";

/// Maps unique violations to 409s that name the field; anything else stays a server error.
pub fn conflict(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some("crm_customers_tenant_slug_key") => {
            ApiError::Conflict { message: "A customer with this slug already exists.".into(), field: Some("slug") }
        }
        Some("crm_customers_tenant_email_key") => {
            ApiError::Conflict { message: "A customer with this e-mail already exists.".into(), field: Some("email") }
        }
        _ => err.into(),
    }
}

/// `%` and `_` in user text are literals, not wildcards.
fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

fn push_filters(qb: &mut QueryBuilder<Postgres>, tenant: TenantId, filter: &CustomerFilter) {
    qb.push(" where tenant_id = ").push_bind(tenant);
    if let Some(search) = &filter.search {
        let pattern = like_pattern(search);
        qb.push(" and (name ilike ").push_bind(pattern.clone());
        qb.push(" or email ilike ").push_bind(pattern.clone());
        qb.push(" or slug ilike ").push_bind(pattern).push(")");
    }
    if let Some(email) = &filter.email {
        qb.push(" and lower(email) = ").push_bind(email.as_str());
    }
    match filter.has_email {
        Some(true) => {
            qb.push(" and email is not null");
        }
        Some(false) => {
            qb.push(" and email is null");
        }
        None => {}
    }
    if let Some(after) = filter.created_after {
        qb.push(" and created_at >= ").push_bind(after);
    }
    if let Some(before) = filter.created_before {
        qb.push(" and created_at <= ").push_bind(before);
    }
    if let Some(rule) = &filter.segment {
        qb.push(" and ");
        rule.push_sql(qb);
    }
}

/// The list's order, which the export's keyset follows: id breaks ties so pages never
/// overlap or skip rows.
fn push_order(qb: &mut QueryBuilder<Postgres>, filter: &CustomerFilter) {
    let column = match filter.sort {
        SortKey::CreatedAt => "created_at",
        SortKey::Name => "lower(name)",
        SortKey::UpdatedAt => "updated_at",
    };
    let direction = if filter.descending { "desc" } else { "asc" };
    qb.push(format!(" order by {column} {direction}, id {direction}"));
}

#[tracing::instrument(name = "customers.list", skip_all, fields(tenant_id = %tenant, page = page.page), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &CustomerFilter,
    page: PageRequest,
) -> Result<(Vec<Customer>, i64), sqlx::Error> {
    let mut count = QueryBuilder::<Postgres>::new("select count(*) from crm_customers c");
    push_filters(&mut count, tenant, filter);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;

    let mut rows = QueryBuilder::<Postgres>::new(format!("select {COLUMNS} from crm_customers c"));
    push_filters(&mut rows, tenant, filter);
    push_order(&mut rows, filter);
    rows.push(" limit ").push_bind(page.limit()).push(" offset ").push_bind(page.offset());
    let customers = rows.build_query_as::<Customer>().fetch_all(&mut *conn).await?;
    Ok((customers, total))
}

/// Up to `limit` customers the filter selects, in the list's order, after `after` (the
/// last row of the previous page; `None` from the start): keyset paging for exports, which
/// never skips or repeats a row however far it goes.
#[tracing::instrument(name = "customers.page_after", skip_all, fields(tenant_id = %tenant), err)]
pub async fn page_after(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &CustomerFilter,
    after: Option<&Customer>,
    limit: i64,
) -> Result<Vec<Customer>, sqlx::Error> {
    let mut rows = QueryBuilder::<Postgres>::new(format!("select {COLUMNS} from crm_customers c"));
    push_filters(&mut rows, tenant, filter);
    let after_op = if filter.descending { "<" } else { ">" };
    if let Some(last) = after {
        // Postgres computes `lower` on both sides: the same function as the order by.
        match filter.sort {
            SortKey::CreatedAt => rows.push(format!(" and (created_at, id) {after_op} (")).push_bind(last.created_at),
            SortKey::UpdatedAt => rows.push(format!(" and (updated_at, id) {after_op} (")).push_bind(last.updated_at),
            SortKey::Name => {
                rows.push(format!(" and (lower(name), id) {after_op} (lower(")).push_bind(last.name.clone()).push(")")
            }
        };
        rows.push(", ").push_bind(last.id).push(")");
    }
    push_order(&mut rows, filter);
    rows.push(" limit ").push_bind(limit);
    rows.build_query_as::<Customer>().fetch_all(&mut *conn).await
}

static BY_ID: db::ScopedStatement = db::ScopedStatement {
    name: "fib_customer_by_id",
    param_types: "uuid, uuid",
    sql: "select id, name, slug, email, phone, business_context, metadata, timezone, created_at, updated_at
          from crm_customers where tenant_id = $1 and id = $2",
};

static BY_SLUG: db::ScopedStatement = db::ScopedStatement {
    name: "fib_customer_by_slug",
    param_types: "uuid, text",
    sql: "select id, name, slug, email, phone, business_context, metadata, timezone, created_at, updated_at
          from crm_customers where tenant_id = $1 and slug = $2",
};

/// One round trip, inside the caller's transaction or on its own (see `db::fetch_scoped`).
#[tracing::instrument(name = "customers.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Customer>, sqlx::Error> {
    let rows = db::fetch_scoped(conn, tenant, &BY_ID, &[&tenant, &id]).await?;
    rows.first().map(Customer::from_row).transpose()
}

/// A customer's activity on the web (an article read, a presentation viewed, a survey
/// answered, a sales lead), about `subject_type` `subject_id`: what the analytics count.
#[tracing::instrument(name = "customers.record_web_activity", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn record_web_activity(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
    activity_type: &str,
    subject_type: &str,
    subject_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id)
         values ($1, $2, $3, 'web', $4, $5)",
    )
    .bind(tenant)
    .bind(customer)
    .bind(activity_type)
    .bind(subject_type)
    .bind(subject_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `id` names a customer of this tenant (for references in other resources' bodies).
#[tracing::instrument(name = "customers.exists", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from crm_customers where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

#[tracing::instrument(name = "customers.get_by_slug", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get_by_slug(
    conn: &mut PgConnection,
    tenant: TenantId,
    slug: &Slug,
) -> Result<Option<Customer>, sqlx::Error> {
    let rows = db::fetch_scoped(conn, tenant, &BY_SLUG, &[&tenant, slug]).await?;
    rows.first().map(Customer::from_row).transpose()
}

/// Inserts the customer. A derived slug that is taken gets a short suffix
/// (`acme`, then `acme-2`, …); a slug the client chose is never changed (409 instead).
#[tracing::instrument(name = "customers.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, new: &NewCustomer) -> Result<Customer, sqlx::Error> {
    let slug = if new.slug_derived {
        crate::slugs::free_slug(conn, "crm_customers", tenant, new.slug.as_str()).await?
    } else {
        new.slug.to_string()
    };
    sqlx::query_as::<_, Customer>(
        "insert into crm_customers (tenant_id, name, slug, email, phone, business_context, metadata, timezone)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         returning id, name, slug, email, phone, business_context, metadata, timezone, created_at, updated_at",
    )
    .bind(tenant)
    .bind(&new.name)
    .bind(slug)
    .bind(new.email.as_ref().map(|e| e.as_str()))
    .bind(new.phone.as_ref().map(|p| p.as_str()))
    .bind(Json(&new.business_context))
    .bind(Json(&new.metadata))
    .bind(new.timezone.as_ref().map(|t| t.as_str()))
    .fetch_one(conn)
    .await
}

#[tracing::instrument(name = "customers.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    changes: &CustomerChanges,
) -> Result<Option<Customer>, sqlx::Error> {
    // `coalesce($n, column)` keeps columns the client left out; the flags tell a cleared
    // e-mail or phone (set to null) apart from one left out.
    sqlx::query_as::<_, Customer>(
        "update crm_customers set
            name = coalesce($3, name),
            slug = coalesce($4, slug),
            email = case when $5 then $6 else email end,
            phone = case when $7 then $8 else phone end,
            business_context = coalesce($9, business_context),
            metadata = coalesce($10, metadata),
            timezone = case when $11 then $12 else timezone end
         where tenant_id = $1 and id = $2
         returning id, name, slug, email, phone, business_context, metadata, timezone, created_at, updated_at",
    )
    .bind(tenant)
    .bind(id)
    .bind(changes.name.as_deref())
    .bind(changes.slug.as_ref().map(|s| s.as_str()))
    .bind(changes.email.is_some())
    .bind(changes.email.as_ref().and_then(|e| e.as_ref().map(|e| e.as_str())))
    .bind(changes.phone.is_some())
    .bind(changes.phone.as_ref().and_then(|p| p.as_ref().map(|p| p.as_str())))
    .bind(changes.business_context.as_ref().map(Json))
    .bind(changes.metadata.as_ref().map(Json))
    .bind(changes.timezone.is_some())
    .bind(changes.timezone.as_ref().and_then(|t| t.as_ref().map(|t| t.as_str())))
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(name = "customers.delete", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn delete(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("delete from crm_customers where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

#[tracing::instrument(name = "customers.set_business_context", skip_all, fields(tenant_id = %tenant), err)]
pub async fn set_business_context(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    context: &Map<String, Value>,
) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as::<_, Customer>(
        "update crm_customers set business_context = $3 where tenant_id = $1 and id = $2
         returning id, name, slug, email, phone, business_context, metadata, timezone, created_at, updated_at",
    )
    .bind(tenant)
    .bind(id)
    .bind(Json(context))
    .fetch_optional(conn)
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AiContext {
    pub customer: Customer,
    #[schema(value_type = Object)]
    pub business_context: Json<Map<String, Value>>,
    pub recent_conversations: Vec<ConversationContext>,
    /// Engagement and predictive scores from the last pipeline run (null until then).
    pub scores: super::scores::CustomerScores,
    /// Where each part came from, so an assistant can cite it.
    pub sources: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ConversationContext {
    pub id: Uuid,
    pub channel: String,
    pub status: String,
    pub outcome: Option<String>,
    pub summary: Option<String>,
    pub created_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub messages: Vec<MessageContext>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct MessageContext {
    #[serde(skip)]
    pub conversation_id: Uuid,
    pub role: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

/// Conversations and messages included in the AI context.
pub const AI_CONTEXT_CONVERSATIONS: i64 = 5;
pub const AI_CONTEXT_MESSAGES_PER_CONVERSATION: i64 = 10;

#[tracing::instrument(name = "customers.ai_context", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn ai_context(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<AiContext>, sqlx::Error> {
    let Some(customer) = get(conn, tenant, id).await? else {
        return Ok(None);
    };
    let mut conversations: Vec<ConversationContext> = sqlx::query_as(
        "select id, channel, status, outcome, summary, created_at from crm_conversations
         where tenant_id = $1 and customer_id = $2 order by created_at desc, id desc limit $3",
    )
    .bind(tenant)
    .bind(id)
    .bind(AI_CONTEXT_CONVERSATIONS)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = conversations.iter().map(|c| c.id).collect();
    // The latest N messages of each conversation, returned oldest first for reading.
    let messages: Vec<MessageContext> = sqlx::query_as(
        "select conversation_id, role, content, created_at from (
            select m.*, row_number() over (partition by conversation_id order by created_at desc, id desc) as rn
            from crm_conversation_messages m
            where m.tenant_id = $1 and m.conversation_id = any($2)
         ) recent where rn <= $3 order by conversation_id, created_at, id",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(AI_CONTEXT_MESSAGES_PER_CONVERSATION)
    .fetch_all(&mut *conn)
    .await?;
    for message in messages {
        if let Some(c) = conversations.iter_mut().find(|c| c.id == message.conversation_id) {
            c.messages.push(message);
        }
    }
    let scores = super::scores::load(conn, tenant, id).await?;
    let mut sources = vec![format!("crm_customers:{}", customer.id)];
    sources.extend(conversations.iter().map(|c| format!("crm_conversations:{}", c.id)));
    if scores.engagement.is_some() {
        sources.push(format!("customer_engagement_scores:{id}"));
    }
    if scores.predictive.is_some() {
        sources.push(format!("customer_predictive_scores:{id}"));
    }
    Ok(Some(AiContext {
        business_context: customer.business_context.clone(),
        customer,
        recent_conversations: conversations,
        scores,
        sources,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
