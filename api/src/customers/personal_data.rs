//! Right of access: everything the platform holds about one customer, as JSON
//! (`POST /api/v1/customers/{id}/export-personal-data`). The tables are found in the
//! catalog (every table with `tenant_id` and `customer_id`), so a table added later is in
//! the export without a change here; rows reached through another row (a conversation's
//! messages, an order's refunds) and the suppression list (keyed by address) are added by
//! name. Read in one tenant transaction, so the export is one consistent snapshot.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{READ, RESOURCE};
use crate::{
    ApiError,
    envelope::Envelope,
    error::ErrorEnvelope,
    extract::{Auth, resource_id},
    state::AppState,
};

/// Rows per table at most; a table with more is named in `truncated`. Rows come in a
/// fixed order (by their JSON), so two exports of unchanged data are equal.
const MAX_ROWS: i64 = 50_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct PersonalData {
    pub customer_id: Uuid,
    pub generated_at: DateTime<Utc>,
    /// The customer's own record.
    #[schema(value_type = Object)]
    pub customer: Value,
    /// Every row about the customer, by table (each row as stored, every column).
    #[schema(value_type = Object)]
    pub tables: BTreeMap<String, Value>,
    /// Tables that held more than 50,000 rows about the customer: only 50,000 of them are here.
    pub truncated: Vec<String>,
}

/// Everything held about a customer (right of access): their record and every row about
/// them in every table, the messages of their conversations, their orders' refunds and
/// suppression entries for their address or number.
#[utoipa::path(post, path = "/api/v1/customers/{id}/export-personal-data", tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, body = inline(Envelope<PersonalData>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<PersonalData>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let data = collect(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    tracing::info!(customer_id = %id, tables = data.tables.len(), "personal data exported");
    Ok(Json(Envelope::data(data)))
}

/// The export, or `None` when the tenant has no such customer.
#[tracing::instrument(name = "customers.personal_data", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn collect(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<PersonalData>, sqlx::Error> {
    let customer: Option<(Value, Option<String>, Option<String>)> = sqlx::query_as(
        "select to_jsonb(c), c.email, c.phone from crm_customers c where c.tenant_id = $1 and c.id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((customer, email, phone)) = customer else { return Ok(None) };
    let owned = super::erasure::owned_tables(conn).await?;
    let mut queries: Vec<(String, String)> = owned
        .into_iter()
        .map(|(t, _)| {
            let sql = format!("select to_jsonb(x) from {t} x where x.tenant_id = $1 and x.customer_id = $2");
            (t, sql)
        })
        .collect();
    queries.push((
        "crm_conversation_messages".into(),
        "select to_jsonb(m) from crm_conversation_messages m join crm_conversations c on c.id = m.conversation_id
         where c.tenant_id = $1 and c.customer_id = $2"
            .into(),
    ));
    queries.push((
        "order_refunds".into(),
        "select to_jsonb(r) from order_refunds r join orders o on o.id = r.order_id
         where o.tenant_id = $1 and o.customer_id = $2"
            .into(),
    ));
    // Votes keyed by the customer's id (see the erasure, which removes the same rows).
    queries.push((
        "knowledge_votes".into(),
        "select to_jsonb(v) from knowledge_votes v where v.tenant_id = $1 and v.voter_key = $2::text".into(),
    ));
    let mut tables = BTreeMap::new();
    let mut truncated = Vec::new();
    for (table, sql) in queries {
        let rows: Vec<Value> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{sql} order by 1 limit {}", MAX_ROWS + 1)))
                .bind(tenant)
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
        if rows.len() as i64 > MAX_ROWS {
            truncated.push(table.clone());
        }
        if !rows.is_empty() {
            tables.insert(table, Value::Array(rows.into_iter().take(MAX_ROWS as usize).collect()));
        }
    }
    let targets: Vec<String> = [
        email.and_then(|e| fibonacco_delivery::suppressions::normalise("email", &e).ok()),
        phone.and_then(|p| fibonacco_delivery::suppressions::normalise("phone", &p).ok()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let suppressions: Vec<Value> = sqlx::query_scalar(
        "select to_jsonb(s) from outbound_suppressions s where s.tenant_id = $1 and s.target = any($2)",
    )
    .bind(tenant)
    .bind(&targets)
    .fetch_all(&mut *conn)
    .await?;
    if !suppressions.is_empty() {
        tables.insert("outbound_suppressions".into(), Value::Array(suppressions));
    }
    Ok(Some(PersonalData { customer_id: id, generated_at: Utc::now(), customer, tables, truncated }))
}
