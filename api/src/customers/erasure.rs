//! Right to erasure (`POST /api/v1/customers/{id}/erase`): the customer is removed from
//! every place the platform keeps them, in three steps because three systems hold them.
//!
//! 1. **Postgres, in one tenant transaction**: every row about them in every table with
//!    `tenant_id` and `customer_id` (found in the catalog, as the export finds them; most go
//!    by `on delete cascade`), their conversations' messages, survey answers, sales
//!    contacts, suppression entries for their address or number and failed jobs about
//!    their sends. Orders stay for the tenant's books but lose the link and their
//!    metadata (`customer_id` null): revenue figures keep their totals. An `erasures` row
//!    records ids, counts, time and the token that asked: nothing else.
//! 2. **Redis**: queued, delayed and running jobs about their campaign recipients and
//!    sales contacts are removed after the commit (never while the transaction is open).
//!    If Redis fails, the answer says `queues: pending` and asking again finishes it.
//! 3. **The lake**: the capture rewrites every Parquet file holding their rows (and the
//!    pipelines' derived files) once it has taken the erasure's own deletes from the WAL;
//!    `GET /api/v1/erasures/{id}` shows when (`fibonacco_ingest::erase`).
//!
//! The vector stores index only tenant-written knowledge and articles, never customer
//! rows, so nothing of the customer is there to remove.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{
    TenantId, db,
    queue::{Edit, JobPayload, QUEUES, jobs::SendToRecipients},
};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{RESOURCE, WRITE};
use crate::{
    ApiError,
    envelope::Envelope,
    error::ErrorEnvelope,
    extract::{Auth, resource_id},
    state::AppState,
};

/// One erasure as the log keeps it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Erasure {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub requested_at: DateTime<Utc>,
    /// Rows removed per table (for `orders`: detached from the customer, kept for the books).
    #[schema(value_type = Object)]
    pub removed: Value,
    /// `done` once queued jobs about the customer are gone from Redis, else `pending`.
    pub queues: String,
    /// Queued jobs that named the customer: removed, or rewritten without them (a send
    /// job for several recipients keeps the others).
    pub jobs_removed: Option<i32>,
    /// `done` once the lake's files no longer hold the customer's rows, else `pending`
    /// (the capture rewrites them after it has taken the erasure from the WAL).
    pub lake: String,
    pub lake_done_at: Option<DateTime<Utc>>,
    pub lake_files_rewritten: Option<i32>,
}

const SELECT: &str = "select id, customer_id, requested_at, removed,
        case when queues_done_at is null then 'pending' else 'done' end as queues, jobs_removed,
        case when lake_done_at is null then 'pending' else 'done' end as lake, lake_done_at, lake_files_rewritten
    from erasures";

/// Erase a customer: every row about them, their queued jobs and their rows in the lake.
/// Irreversible. Asking again for an erased customer returns the erasure (and finishes its
/// queue step if Redis had failed).
#[utoipa::path(post, path = "/api/v1/customers/{id}/erase", tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 202, description = "Erased from the database; the lake follows", body = inline(Envelope<Erasure>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn erase(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Envelope<Erasure>>), ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let erased = match remove(&mut tx, tenant, id, auth.0.token_id).await? {
        Some(erasure_id) => erasure_id,
        None => sqlx::query_scalar("select id from erasures where tenant_id = $1 and customer_id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(ApiError::NotFound(RESOURCE))?,
    };
    tx.commit().await?;
    clear_queues(&state, tenant, erased).await?;
    let erasure = find(&state, tenant, erased).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tracing::info!(erasure_id = %erasure.id, customer_id = %id, removed = %erasure.removed, queues = %erasure.queues, "customer erased");
    Ok((StatusCode::ACCEPTED, Json(Envelope::data(erasure))))
}

/// An erasure of this tenant, with how far it has reached.
#[utoipa::path(get, path = "/api/v1/erasures/{id}", tag = "customers",
    params(("id" = Uuid, Path, description = "Erasure id")),
    responses((status = 200, body = inline(Envelope<Erasure>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Erasure>>, ApiError> {
    auth.require(super::READ)?;
    let id = resource_id(&id, "erasure")?;
    let erasure = find(&state, auth.0.tenant_id, id).await?.ok_or(ApiError::NotFound("erasure"))?;
    Ok(Json(Envelope::data(erasure)))
}

async fn find(state: &AppState, tenant: TenantId, id: Uuid) -> Result<Option<Erasure>, sqlx::Error> {
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let found = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(found)
}

/// Step 1: removes the customer inside `conn`'s tenant transaction and logs it; `None`
/// when the tenant has no such customer (perhaps erased already).
#[tracing::instrument(name = "customers.erase", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn remove(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    token_id: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    // Locked: a concurrent write about the customer waits, then finds them gone.
    let customer: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("select email, phone from crm_customers where tenant_id = $1 and id = $2 for update")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((email, phone)) = customer else { return Ok(None) };
    let recipients = ids_of(conn, "outbound_campaign_recipients", tenant, id).await?;
    let sales_contacts = ids_of(conn, "learning_sales_contacts", tenant, id).await?;
    let conversations = ids_of(conn, "crm_conversations", tenant, id).await?;

    let mut removed: BTreeMap<String, i64> = BTreeMap::new();
    let mut count = |table: &str, n: u64| {
        if n > 0 {
            removed.insert(table.to_owned(), n as i64);
        }
    };
    // The lake drops every version of these rows, their deletes (which carry only the
    // key) included, so its history does not keep even the rows' ids. Orders stay
    // (detached): only their versions that name the customer go, by `customer_id`.
    let mut lake_keys: BTreeMap<String, BTreeMap<&str, Vec<String>>> = BTreeMap::new();
    let owned = owned_tables(conn).await?;
    for (table, has_id) in &owned {
        let (n, ids): (i64, Vec<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select count(*), {} from {table} where tenant_id = $1 and customer_id = $2",
            if *has_id && table != "orders" { "coalesce(array_agg(id::text), '{}')" } else { "'{}'::text[]" }
        )))
        .bind(tenant)
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        count(table, n as u64);
        if !ids.is_empty() {
            lake_keys.entry(table.clone()).or_default().insert("id", ids);
        }
    }
    // A knowledge vote carries no customer column, but its voter may be the customer's id
    // (what a widget that knows the customer passes as `voter`).
    let votes: Vec<String> =
        sqlx::query_scalar("select id::text from knowledge_votes where tenant_id = $1 and voter_key = $2")
            .bind(tenant)
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    count("knowledge_votes", votes.len() as u64);
    if !votes.is_empty() {
        lake_keys.entry("knowledge_votes".into()).or_default().insert("id", votes);
    }
    let messages: Vec<String> =
        sqlx::query_scalar("select id::text from crm_conversation_messages where conversation_id = any($1)")
            .bind(&conversations)
            .fetch_all(&mut *conn)
            .await?;
    count("crm_conversation_messages", messages.len() as u64);
    let linked = lake_keys.entry("crm_conversation_messages".into()).or_default();
    linked.insert("id", messages);
    linked.insert("conversation_id", conversations.iter().map(Uuid::to_string).collect());
    // Kept for the books without the person: no link, no free-form metadata.
    sqlx::query("update orders set customer_id = null, metadata = '{}', updated_at = now() where tenant_id = $1 and customer_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    // Every other table's rows explicitly, not through `on delete cascade`: a table added
    // with `set null` (survey answers, sales contacts) or no foreign key at all would
    // otherwise keep them.
    for (table, _) in owned.iter().filter(|(t, _)| t != "orders") {
        sqlx::query(sqlx::AssertSqlSafe(format!("delete from {table} where tenant_id = $1 and customer_id = $2")))
            .bind(tenant)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("delete from knowledge_votes where tenant_id = $1 and voter_key = $2")
        .bind(tenant)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    let targets: Vec<String> = [
        email.and_then(|e| fibonacco_delivery::suppressions::normalise("email", &e).ok()),
        phone.and_then(|p| fibonacco_delivery::suppressions::normalise("phone", &p).ok()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let suppressions = sqlx::query("delete from outbound_suppressions where tenant_id = $1 and target = any($2)")
        .bind(tenant)
        .bind(&targets)
        .execute(&mut *conn)
        .await?;
    count("outbound_suppressions", suppressions.rows_affected());
    let failed = sqlx::query(
        "delete from failed_jobs where payload->'data'->>'tenant_id' = $1::text
           and (payload->'data'->>'recipient_id' = any($2::text[]) or payload->'data'->>'sales_contact_id' = any($3::text[]))",
    )
    .bind(tenant.as_uuid())
    .bind(recipients.iter().map(Uuid::to_string).collect::<Vec<_>>())
    .bind(sales_contacts.iter().map(Uuid::to_string).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    count("failed_jobs", failed.rows_affected());
    // The rest by cascade.
    sqlx::query("delete from crm_customers where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    count("crm_customers", 1);

    let erasure: Uuid = sqlx::query_scalar(
        "insert into erasures (tenant_id, customer_id, requested_by, removed, lake_keys, recipient_ids, sales_contact_ids)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(tenant)
    .bind(id)
    .bind(token_id)
    .bind(serde_json::to_value(&removed).unwrap_or_default())
    .bind(serde_json::to_value(&lake_keys).unwrap_or_default())
    .bind(&recipients)
    .bind(&sales_contacts)
    .fetch_one(&mut *conn)
    .await?;
    announce_deletion(conn, tenant, id, erasure).await?;
    Ok(Some(erasure))
}

/// Tells the tenant's webhook endpoints subscribed to `customer.deleted` that the
/// customer is gone (the id alone), so receivers delete their copy. Written here rather
/// than left to the outbox: the lake's rewrite removes the delete the outbox would have
/// read, and the outbox stores nothing about an erased customer. Not linked by
/// `customer_id`, so a later erasure step does not remove it; the id is what the
/// `erasures` log keeps anyway.
async fn announce_deletion(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    erasure: Uuid,
) -> Result<(), sqlx::Error> {
    let event = format!("msg_erasure_{}", erasure.simple());
    let subscribed: Vec<Uuid> = sqlx::query_scalar(
        "select id from webhook_endpoints where tenant_id = $1 and enabled and 'customer.deleted' = any(event_types)",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    if subscribed.is_empty() {
        return Ok(());
    }
    let payload =
        fibonacco_platform::webhooks::envelope("customer.deleted", chrono::Utc::now(), serde_json::json!({"id": id}));
    sqlx::query(
        "insert into webhook_events (id, tenant_id, type, payload, occurred_at)
         values ($1, $2, 'customer.deleted', $3, now())",
    )
    .bind(&event)
    .bind(tenant)
    .bind(&payload)
    .execute(&mut *conn)
    .await?;
    sqlx::query("insert into webhook_deliveries (tenant_id, endpoint_id, event_id) select $1, unnest($2::uuid[]), $3")
        .bind(tenant)
        .bind(&subscribed)
        .bind(&event)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The ids of `table`'s rows about the customer (`table` is one of ours, never input).
async fn ids_of(
    conn: &mut PgConnection,
    table: &'static str,
    tenant: TenantId,
    id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select id from {table} where tenant_id = $1 and customer_id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
}

/// Tables with `tenant_id` and `customer_id` (the catalog's, checked to be plain
/// identifiers before they are spelled into SQL), and whether each has an `id` column:
/// what the export reads and the erasure removes, so a table added later is in both.
pub(super) async fn owned_tables(conn: &mut PgConnection) -> Result<Vec<(String, bool)>, sqlx::Error> {
    let tables: Vec<(String, bool)> = sqlx::query_as(
        "select c.table_name::text, bool_or(c.column_name = 'id') from information_schema.columns c
         join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
         where c.table_schema = 'public' and t.table_type = 'BASE TABLE' and c.column_name in ('tenant_id', 'customer_id', 'id')
         group by c.table_name having count(*) filter (where c.column_name <> 'id') = 2 order by 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(tables
        .into_iter()
        .filter(|(t, _)| t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        .collect())
}

/// Step 2: the jobs about the erased customer's recipients and sales contacts leave Redis.
/// A Redis failure leaves the step pending (the answer says so; asking again retries).
async fn clear_queues(state: &AppState, tenant: TenantId, erasure: Uuid) -> Result<(), ApiError> {
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let pending: Option<(Vec<Uuid>, Vec<Uuid>)> = sqlx::query_as(
        "select recipient_ids, sales_contact_ids from erasures where tenant_id = $1 and id = $2 and queues_done_at is null",
    )
    .bind(tenant)
    .bind(erasure)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some((recipients, contacts)) = pending else { return Ok(()) };
    let edit = |p: &JobPayload| {
        let field = |name: &str| p.data.get(name).and_then(Value::as_str).and_then(|v| Uuid::parse_str(v).ok());
        if field("sales_contact_id").is_some_and(|c| contacts.contains(&c)) {
            return Edit::Remove;
        }
        // A send job names up to a batch of recipients: only the erased ones leave it.
        let Ok(send) = serde_json::from_value::<SendToRecipients>(p.data.clone()) else { return Edit::Keep };
        if !send.recipients().iter().any(|r| recipients.contains(r)) {
            return Edit::Keep;
        }
        match send.without(&recipients).map(|rest| serde_json::to_value(&rest)) {
            None => Edit::Remove,
            Some(Ok(data)) => Edit::Replace(JobPayload { data, ..p.clone() }),
            Some(Err(_)) => Edit::Remove,
        }
    };
    let mut changed = 0u64;
    for queue in QUEUES {
        match state.queue.edit_matching(queue, edit).await {
            Ok(n) => changed += n.removed + n.rewritten,
            Err(e) => {
                tracing::warn!(error = %e, erasure_id = %erasure, "queued jobs not cleared yet; asking again retries");
                return Ok(());
            }
        }
    }
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    sqlx::query(
        "update erasures set queues_done_at = now(), jobs_removed = $3, recipient_ids = '{}', sales_contact_ids = '{}'
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(erasure)
    .bind(i32::try_from(changed).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
