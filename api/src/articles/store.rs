//! Article SQL.

use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{ArticleChanges, ArticleFilter, NewArticle};
use crate::{ApiError, envelope::PageRequest};

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Article {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub excerpt: Option<String>,
    pub body: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    /// draft, published or archived.
    pub status: String,
    pub author_name: Option<String>,
    pub featured_image_url: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub view_count: i64,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, slug, title, excerpt, body, category, tags, status, author_name, featured_image_url, published_at,
    view_count, metadata, created_at, updated_at";

/// The article with this id or this slug.
#[tracing::instrument(name = "articles.find", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Option<Uuid>,
    slug: Option<&str>,
) -> Result<Option<Article>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from articles where tenant_id = $1 and (id = $2 or slug = $3)"
    )))
    .bind(tenant)
    .bind(id)
    .bind(slug)
    .fetch_optional(conn)
    .await
}

/// One page of matching articles (with `search` best matches first, else the most recently
/// published first) and the total.
#[tracing::instrument(name = "articles.list", skip_all, fields(tenant_id = %tenant), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    f: &ArticleFilter,
    page: PageRequest,
) -> Result<(Vec<Article>, i64), sqlx::Error> {
    let matching = "tenant_id = $1 and ($2::text is null or status = $2) and ($3::text is null or category = $3)
        and ($4::text is null or tags @> array[$4]) and ($5::text is null or search_vector @@ websearch_to_tsquery('english', $5))";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from articles where {matching}")))
        .bind(tenant)
        .bind(&f.status)
        .bind(&f.category)
        .bind(&f.tag)
        .bind(&f.search)
        .fetch_one(&mut *conn)
        .await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from articles where {matching}
         order by case when $5::text is null then 0 else ts_rank_cd(search_vector, websearch_to_tsquery('english', $5)) end desc,
                  published_at desc nulls last, created_at desc, id
         limit $6 offset $7"
    )))
    .bind(tenant)
    .bind(&f.status)
    .bind(&f.category)
    .bind(&f.tag)
    .bind(&f.search)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(conn)
    .await?;
    Ok((rows, total))
}

fn conflict(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some("articles_tenant_slug_key") => {
            ApiError::Conflict { message: "An article with this slug already exists.".into(), field: Some("slug") }
        }
        _ => err.into(),
    }
}

/// Inserts under `slug` (already made free when derived); a taken slug is a 409.
#[tracing::instrument(name = "articles.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    author: Option<Uuid>,
    slug: &str,
    a: NewArticle,
) -> Result<Uuid, ApiError> {
    sqlx::query_scalar(
        "insert into articles (tenant_id, slug, title, excerpt, body, category, tags, status, author_id, author_name,
            featured_image_url, published_at, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, case when $8 = 'published' then now() end, $12) returning id",
    )
    .bind(tenant)
    .bind(slug)
    .bind(a.title)
    .bind(a.excerpt)
    .bind(a.body)
    .bind(a.category)
    .bind(a.tags)
    .bind(a.status)
    .bind(author)
    .bind(a.author_name)
    .bind(a.featured_image_url)
    .bind(SqlJson(a.metadata))
    .fetch_one(conn)
    .await
    .map_err(conflict)
}

/// Applies `changes`; publishing sets `published_at` the first time. False when there is
/// no such article.
#[tracing::instrument(name = "articles.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    c: ArticleChanges,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "update articles set title = coalesce($3, title), excerpt = case when $4 then $5 else excerpt end,
            body = coalesce($6, body), category = case when $7 then $8 else category end, tags = coalesce($9, tags),
            published_at = case when $10 = 'published' then coalesce(published_at, now()) else published_at end,
            status = coalesce($10, status)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(c.title)
    .bind(c.excerpt.is_some())
    .bind(c.excerpt.flatten())
    .bind(c.body)
    .bind(c.category.is_some())
    .bind(c.category.flatten())
    .bind(c.tags)
    .bind(c.status)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Counts a read of a published article, and the reader's `article_read` activity when
/// known; `None` when there is no such published article.
#[tracing::instrument(name = "articles.record_view", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn record_view(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    customer: Option<Uuid>,
) -> Result<Option<i64>, sqlx::Error> {
    let count: Option<i64> = sqlx::query_scalar(
        "update articles set view_count = view_count + 1 where tenant_id = $1 and id = $2 and status = 'published'
         returning view_count",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if count.is_some()
        && let Some(customer) = customer
    {
        crate::customers::store::record_web_activity(conn, tenant, customer, "article_read", "article", id).await?;
    }
    Ok(count)
}
