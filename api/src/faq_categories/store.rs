//! FAQ category SQL and the tree helpers.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct FaqCategory {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub parent_id: Option<Uuid>,
    pub display_order: i32,
    #[schema(value_type = Object)]
    pub metadata: Json<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A category with its sub-categories, for `?tree=true`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryNode {
    #[serde(flatten)]
    pub category: FaqCategory,
    #[schema(no_recursion)]
    pub children: Vec<CategoryNode>,
}

impl CategoryNode {
    /// Builds the forest from rows already in display order; order is kept at each level.
    pub fn forest(rows: Vec<FaqCategory>) -> Vec<CategoryNode> {
        fn build(parent: Option<Uuid>, rows: &[FaqCategory]) -> Vec<CategoryNode> {
            rows.iter()
                .filter(|r| r.parent_id == parent)
                .map(|r| CategoryNode { category: r.clone(), children: build(Some(r.id), rows) })
                .collect()
        }
        build(None, &rows)
    }
}

pub struct NewCategory {
    pub name: String,
    pub slug: String,
    pub parent_id: Option<Uuid>,
    pub display_order: i32,
    pub metadata: Map<String, Value>,
}

#[derive(Default)]
pub struct CategoryChanges {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub parent_id: Option<Option<Uuid>>,
    pub display_order: Option<i32>,
    pub metadata: Option<Map<String, Value>>,
}

const COLUMNS: &str = "id, name, slug, parent_id, display_order, metadata, created_at, updated_at";

#[tracing::instrument(name = "faq_categories.list", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn list(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<FaqCategory>, sqlx::Error> {
    sqlx::query_as(
        "select id, name, slug, parent_id, display_order, metadata, created_at, updated_at
         from faq_categories where tenant_id = $1 order by display_order, lower(name), id",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await
}

#[tracing::instrument(name = "faq_categories.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<FaqCategory>, sqlx::Error> {
    sqlx::query_as(
        "select id, name, slug, parent_id, display_order, metadata, created_at, updated_at
         from faq_categories where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn exists(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from faq_categories where tenant_id = $1 and id = $2)")
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Serialises tree changes of one tenant for the rest of the transaction.
pub async fn lock_tree(conn: &mut PgConnection, tenant: TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('faq_categories:' || $1::text, 0))")
        .bind(tenant)
        .execute(conn)
        .await?;
    Ok(())
}

/// True when `new_parent` is `id` itself or one of its descendants.
pub async fn would_cycle(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    new_parent: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "with recursive ancestors(id, parent_id, depth) as (
            select id, parent_id, 0 from faq_categories where tenant_id = $1 and id = $3
            union all
            select c.id, c.parent_id, a.depth + 1 from faq_categories c
              join ancestors a on c.id = a.parent_id
             where c.tenant_id = $1 and a.depth < 1000
         )
         select exists (select 1 from ancestors where id = $2)",
    )
    .bind(tenant)
    .bind(id)
    .bind(new_parent)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(name = "faq_categories.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, c: &NewCategory) -> Result<FaqCategory, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into faq_categories (tenant_id, name, slug, parent_id, display_order, metadata)
         values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(&c.name)
    .bind(&c.slug)
    .bind(c.parent_id)
    .bind(c.display_order)
    .bind(Json(&c.metadata))
    .fetch_one(conn)
    .await
}

#[tracing::instrument(name = "faq_categories.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    c: &CategoryChanges,
) -> Result<Option<FaqCategory>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update faq_categories set
            name = coalesce($3, name), slug = coalesce($4, slug),
            parent_id = case when $5 then $6 else parent_id end,
            display_order = coalesce($7, display_order), metadata = coalesce($8, metadata)
         where tenant_id = $1 and id = $2 returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(id)
    .bind(c.name.as_deref())
    .bind(c.slug.as_deref())
    .bind(c.parent_id.is_some())
    .bind(c.parent_id.flatten())
    .bind(c.display_order)
    .bind(c.metadata.as_ref().map(Json))
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(name = "faq_categories.delete", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn delete(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("delete from faq_categories where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
