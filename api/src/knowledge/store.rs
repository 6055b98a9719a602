//! Knowledge SQL. Reads and writes are limited to the caller's tenant (public entries of
//! other tenants are the search service's concern).

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{PgConnection, Postgres, QueryBuilder, types::Json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::{KnowledgeChanges, KnowledgeFilter, NewKnowledge};
use crate::envelope::PageRequest;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct KnowledgeEntry {
    pub id: Uuid,
    pub title: String,
    pub content: String,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub faq_category_id: Option<Uuid>,
    pub industry_codes: Vec<String>,
    /// pending, processing, completed or failed.
    pub embedding_status: String,
    pub embedding_model: Option<String>,
    pub embedded_at: Option<DateTime<Utc>>,
    pub has_embedding: bool,
    pub is_public: bool,
    pub allowed_agents: Vec<String>,
    pub source: String,
    pub source_url: Option<String>,
    pub validation_status: String,
    pub validated_at: Option<DateTime<Utc>>,
    pub validated_by: Option<Uuid>,
    pub usage_count: i64,
    pub helpful_count: i32,
    pub not_helpful_count: i32,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: Json<Map<String, Value>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "select id, title, content, category, subcategory, faq_category_id, industry_codes,
        embedding_status, embedding_model, embedded_at, embedding is not null as has_embedding, is_public,
        allowed_agents, source, source_url, validation_status, validated_at, validated_by,
        usage_count + coalesce((select u.uses from knowledge_usage u where u.entry_id = knowledge_base.id), 0)
          as usage_count,
        helpful_count, not_helpful_count, tags, metadata, created_by, created_at, updated_at
     from knowledge_base";

fn push_filters(qb: &mut QueryBuilder<Postgres>, tenant: TenantId, f: &KnowledgeFilter) {
    qb.push(" where tenant_id = ").push_bind(tenant);
    if let Some(s) = &f.search {
        qb.push(" and search_vector @@ websearch_to_tsquery('english', ").push_bind(s.clone()).push(")");
    }
    if let Some(v) = &f.category {
        qb.push(" and category = ").push_bind(v.clone());
    }
    if let Some(v) = &f.subcategory {
        qb.push(" and subcategory = ").push_bind(v.clone());
    }
    if let Some(v) = f.faq_category_id {
        qb.push(" and faq_category_id = ").push_bind(v);
    }
    if let Some(v) = &f.tag {
        qb.push(" and tags @> array[").push_bind(v.clone()).push("]::text[]");
    }
    if let Some(v) = &f.industry_code {
        qb.push(" and industry_codes @> array[").push_bind(v.clone()).push("]::text[]");
    }
    if let Some(v) = f.is_public {
        qb.push(" and is_public = ").push_bind(v);
    }
    if let Some(v) = &f.source {
        qb.push(" and source = ").push_bind(v.clone());
    }
    if let Some(v) = &f.validation_status {
        qb.push(" and validation_status = ").push_bind(v.clone());
    }
    if let Some(v) = &f.embedding_status {
        qb.push(" and embedding_status = ").push_bind(v.clone());
    }
}

/// With `search`, best matches first; otherwise newest first.
#[tracing::instrument(name = "knowledge.list", skip_all, fields(tenant_id = %tenant), err)]
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &KnowledgeFilter,
    page: PageRequest,
) -> Result<(Vec<KnowledgeEntry>, i64), sqlx::Error> {
    let mut count = QueryBuilder::<Postgres>::new("select count(*) from knowledge_base");
    push_filters(&mut count, tenant, filter);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut rows = QueryBuilder::<Postgres>::new(SELECT);
    push_filters(&mut rows, tenant, filter);
    match &filter.search {
        Some(s) => {
            rows.push(" order by ts_rank_cd(search_vector, websearch_to_tsquery('english', ")
                .push_bind(s.clone())
                .push(")) desc, id");
        }
        None => {
            rows.push(" order by created_at desc, id desc");
        }
    }
    rows.push(" limit ").push_bind(page.limit()).push(" offset ").push_bind(page.offset());
    let items = rows.build_query_as().fetch_all(&mut *conn).await?;
    Ok((items, total))
}

#[tracing::instrument(name = "knowledge.get", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn get(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<KnowledgeEntry>, sqlx::Error> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(" where tenant_id = ").push_bind(tenant).push(" and id = ").push_bind(id);
    qb.build_query_as().fetch_optional(conn).await
}

#[tracing::instrument(name = "knowledge.insert", skip_all, fields(tenant_id = %tenant), err)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    k: &NewKnowledge,
    author: Option<Uuid>,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into knowledge_base (tenant_id, title, content, category, subcategory, faq_category_id, industry_codes,
            is_public, allowed_agents, source, source_url, validation_status, validated_at, validated_by, tags,
            metadata, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                 case when $12 = 'validated' then now() end, case when $12 = 'validated' then $15 end, $13, $14, $15)
         returning id",
    )
    .bind(tenant)
    .bind(&k.title)
    .bind(&k.content)
    .bind(&k.category)
    .bind(&k.subcategory)
    .bind(k.faq_category_id)
    .bind(&k.industry_codes)
    .bind(k.is_public)
    .bind(&k.allowed_agents)
    .bind(&k.source)
    .bind(&k.source_url)
    .bind(&k.validation_status)
    .bind(&k.tags)
    .bind(Json(&k.metadata))
    .bind(author)
    .fetch_one(conn)
    .await
}

/// Applies the changes; a new title or content makes the embedding stale.
#[tracing::instrument(name = "knowledge.update", skip_all, fields(tenant_id = %tenant), err)]
pub async fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    c: &KnowledgeChanges,
    actor: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let text_changed = c.title.is_some() || c.content.is_some();
    let result = sqlx::query(
        "update knowledge_base set
            title = coalesce($3, title),
            content = coalesce($4, content),
            category = case when $5 then $6 else category end,
            subcategory = case when $7 then $8 else subcategory end,
            faq_category_id = case when $9 then $10 else faq_category_id end,
            industry_codes = coalesce($11, industry_codes),
            is_public = coalesce($12, is_public),
            allowed_agents = coalesce($13, allowed_agents),
            source = coalesce($14, source),
            source_url = case when $15 then $16 else source_url end,
            validated_at = case when $17 = 'validated' and validation_status <> 'validated' then now()
                                when $17 is not null and $17 <> 'validated' then null else validated_at end,
            validated_by = case when $17 = 'validated' and validation_status <> 'validated' then $21
                                when $17 is not null and $17 <> 'validated' then null else validated_by end,
            validation_status = coalesce($17, validation_status),
            tags = coalesce($18, tags),
            metadata = coalesce($19, metadata),
            embedding_status = case when $20 then 'pending' else embedding_status end,
            embedding = case when $20 then null else embedding end,
            embedding_model = case when $20 then null else embedding_model end,
            embedded_at = case when $20 then null else embedded_at end
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(c.title.as_deref())
    .bind(c.content.as_deref())
    .bind(c.category.is_some())
    .bind(c.category.clone().flatten())
    .bind(c.subcategory.is_some())
    .bind(c.subcategory.clone().flatten())
    .bind(c.faq_category_id.is_some())
    .bind(c.faq_category_id.flatten())
    .bind(c.industry_codes.as_ref())
    .bind(c.is_public)
    .bind(c.allowed_agents.as_ref())
    .bind(c.source.as_deref())
    .bind(c.source_url.is_some())
    .bind(c.source_url.clone().flatten())
    .bind(c.validation_status.as_deref())
    .bind(c.tags.as_ref())
    .bind(c.metadata.as_ref().map(Json))
    .bind(text_changed)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    let updated = result.rows_affected() == 1;
    if updated && text_changed {
        // The sections were cut from the old text; the next embedding writes new ones.
        sqlx::query("delete from knowledge_chunks where tenant_id = $1 and knowledge_id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(updated)
}

#[tracing::instrument(name = "knowledge.delete", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn delete(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("delete from knowledge_base where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct VoteTally {
    pub helpful_count: i32,
    pub not_helpful_count: i32,
    /// The vote now recorded for this voter.
    pub helpful: bool,
}

/// Records a voter's vote and adjusts the entry's counters in the same statement chain:
/// a first vote adds one, a changed vote moves one, a repeated vote changes nothing.
/// The entry row is locked first so concurrent votes serialise per entry.
#[tracing::instrument(name = "knowledge.vote", skip(conn, voter), fields(tenant_id = %tenant), err)]
pub async fn vote(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    voter: &str,
    helpful: bool,
) -> Result<Option<VoteTally>, sqlx::Error> {
    let locked: Option<Uuid> =
        sqlx::query_scalar("select id from knowledge_base where tenant_id = $1 and id = $2 for update")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    if locked.is_none() {
        return Ok(None);
    }
    let previous: Option<bool> =
        sqlx::query_scalar("select helpful from knowledge_votes where knowledge_id = $1 and voter_key = $2")
            .bind(id)
            .bind(voter)
            .fetch_optional(&mut *conn)
            .await?;
    let (helpful_delta, not_helpful_delta) = match (previous, helpful) {
        (None, true) => (1, 0),
        (None, false) => (0, 1),
        (Some(p), h) if p == h => (0, 0),
        (Some(_), true) => (1, -1),
        (Some(_), false) => (-1, 1),
    };
    sqlx::query(
        "insert into knowledge_votes (tenant_id, knowledge_id, voter_key, helpful) values ($1, $2, $3, $4)
         on conflict (knowledge_id, voter_key) do update set helpful = excluded.helpful, updated_at = now()",
    )
    .bind(tenant)
    .bind(id)
    .bind(voter)
    .bind(helpful)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(
        "update knowledge_base set helpful_count = helpful_count + $3, not_helpful_count = not_helpful_count + $4
         where tenant_id = $1 and id = $2 returning helpful_count, not_helpful_count, $5 as helpful",
    )
    .bind(tenant)
    .bind(id)
    .bind(helpful_delta)
    .bind(not_helpful_delta)
    .bind(helpful)
    .fetch_optional(conn)
    .await
}

/// Marks the entry's embedding as wanted. Returns false when the entry does not exist.
#[tracing::instrument(name = "knowledge.mark_embedding_pending", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn mark_embedding_pending(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("update knowledge_base set embedding_status = 'pending' where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
