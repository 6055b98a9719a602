//! Articles of the learning center (`/api/v1/articles`): write, publish, read by slug,
//! count views (and record them as customer activity when the reader is known).

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db, domain::Slug, queue::jobs::GenerateEmbedding};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery, Pagination},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    patch::Patch,
    state::AppState,
    validate,
};

pub const READ: &str = "articles:read";
pub const WRITE: &str = "articles:write";
const RESOURCE: &str = "article";
pub const STATUSES: &[&str] = &["draft", "published", "archived"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/articles", get(list).post(create))
        .route("/articles/slug/{slug}", get(show_by_slug))
        .route("/articles/{id}", get(show).put(update).delete(destroy))
        .route("/articles/{id}/view", post(record_view))
}

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

async fn find(
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

fn conflict(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some("articles_tenant_slug_key") => {
            ApiError::Conflict { message: "An article with this slug already exists.".into(), field: Some("slug") }
        }
        _ => err.into(),
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArticleListQuery {
    pub status: Option<String>,
    pub category: Option<String>,
    pub tag: Option<String>,
    /// Full-text search over title, excerpt and body (web-search syntax).
    pub search: Option<String>,
}

/// Articles: with `search` best matches first, else the most recently published first.
#[utoipa::path(get, path = "/api/v1/articles", tag = "articles", params(PageQuery, ArticleListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Article>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<ArticleListQuery>,
) -> Result<Json<Envelope<Vec<Article>>>, ApiError> {
    auth.require(READ)?;
    let mut e = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let status = query.status.filter(|s| !s.is_empty()).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
    let search = query.search.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if search.as_ref().is_some_and(|s| s.chars().count() > 500) {
        e.add("search", "must be at most 500 characters");
    }
    e.into_result()?;
    let category = query.category.filter(|s| !s.is_empty());
    let tag = query.tag.filter(|s| !s.is_empty());
    let tenant = auth.0.tenant_id;
    let filter = "tenant_id = $1 and ($2::text is null or status = $2) and ($3::text is null or category = $3)
        and ($4::text is null or tags @> array[$4]) and ($5::text is null or search_vector @@ websearch_to_tsquery('english', $5))";
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from articles where {filter}")))
        .bind(tenant)
        .bind(&status)
        .bind(&category)
        .bind(&tag)
        .bind(&search)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<Article> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from articles where {filter}
         order by case when $5::text is null then 0 else ts_rank_cd(search_vector, websearch_to_tsquery('english', $5)) end desc,
                  published_at desc nulls last, created_at desc, id
         limit $6 offset $7"
    )))
    .bind(tenant)
    .bind(&status)
    .bind(&category)
    .bind(&tag)
    .bind(&search)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArticleRequest {
    pub title: Option<String>,
    /// Derived from the title when omitted.
    pub slug: Option<String>,
    pub excerpt: Option<String>,
    pub body: Option<String>,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    /// draft (default) or published.
    pub status: Option<String>,
    pub author_name: Option<String>,
    pub featured_image_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/articles", tag = "articles", request_body = CreateArticleRequest,
    responses((status = 201, body = inline(Envelope<Article>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateArticleRequest>,
) -> Result<(StatusCode, Json<Envelope<Article>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let title = validate::required_text(body.title, 500, "title", &mut e);
    let (slug, derived) = match body.slug {
        Some(s) => (Slug::parse(s.trim()).map_err(|err| e.add("slug", err.0)).ok(), false),
        None => (Slug::from_text(&title), true),
    };
    if slug.is_none() && derived && !title.is_empty() {
        e.add("slug", "cannot be derived from the title; give one");
    }
    let excerpt = body.excerpt.map(|x| validate::text(&x, 2000, "excerpt", &mut e));
    let text = body.body.map(|b| validate::text(&b, 500_000, "body", &mut e)).unwrap_or_default();
    let category = body.category.map(|c| validate::text(&c, 100, "category", &mut e)).filter(|c| !c.is_empty());
    let tags = validate::labels(body.tags.unwrap_or_default(), 50, 100, "tags", &mut e);
    let status = validate::one_of(body.status.as_deref().unwrap_or("draft"), &["draft", "published"], "status", &mut e);
    let author = body.author_name.map(|a| validate::text(&a, 200, "author_name", &mut e));
    let image = body.featured_image_url.map(|u| validate::text(&u, 2048, "featured_image_url", &mut e));
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;
    let Some(slug) = slug else { return Err(ApiError::Validation(FieldErrors::single("slug", "is required"))) };
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let slug = if derived {
        crate::slugs::free_slug(&mut tx, "articles", tenant, slug.as_str()).await?
    } else {
        slug.into_inner()
    };
    let id: Uuid = sqlx::query_scalar(
        "insert into articles (tenant_id, slug, title, excerpt, body, category, tags, status, author_id, author_name,
            featured_image_url, published_at, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, case when $8 = 'published' then now() end, $12) returning id",
    )
    .bind(tenant)
    .bind(&slug)
    .bind(title)
    .bind(excerpt)
    .bind(text)
    .bind(category)
    .bind(tags)
    .bind(status)
    .bind(auth.0.user_id)
    .bind(author)
    .bind(image)
    .bind(SqlJson(metadata))
    .fetch_one(&mut *tx)
    .await
    .map_err(conflict)?;
    let article = find(&mut tx, tenant, Some(id), None).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    if article.status == "published" {
        queue_embedding(&state, tenant, id).await;
    }
    Ok((StatusCode::CREATED, Json(Envelope::with_message(article, "Article created."))))
}

#[utoipa::path(get, path = "/api/v1/articles/{id}", tag = "articles", params(("id" = Uuid, Path, description = "Article id")),
    responses((status = 200, body = inline(Envelope<Article>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Article>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let article = find(&mut tx, auth.0.tenant_id, Some(id), None).await?;
    tx.commit().await?;
    article.map(|a| Json(Envelope::data(a))).ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(get, path = "/api/v1/articles/slug/{slug}", tag = "articles", params(("slug" = String, Path, description = "Article slug")),
    responses((status = 200, body = inline(Envelope<Article>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show_by_slug(
    State(state): State<AppState>,
    auth: Auth,
    Path(slug): Path<String>,
) -> Result<Json<Envelope<Article>>, ApiError> {
    auth.require(READ)?;
    let slug = Slug::parse(&slug).map_err(|_| ApiError::NotFound(RESOURCE))?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let article = find(&mut tx, auth.0.tenant_id, None, Some(slug.as_str())).await?;
    tx.commit().await?;
    article.map(|a| Json(Envelope::data(a))).ok_or(ApiError::NotFound(RESOURCE))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArticleRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub excerpt: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub body: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub category: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Patch<Vec<String>>,
    /// draft, published (sets `published_at` the first time) or archived.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Patch<String>,
}

#[utoipa::path(put, path = "/api/v1/articles/{id}", tag = "articles", params(("id" = Uuid, Path, description = "Article id")), request_body = UpdateArticleRequest,
    responses((status = 200, body = inline(Envelope<Article>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateArticleRequest>,
) -> Result<Json<Envelope<Article>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut e = FieldErrors::default();
    let title = body.title.non_null("title", &mut e).map(|t| validate::required_text(Some(t), 500, "title", &mut e));
    let excerpt = validate::optional_text(body.excerpt, 2000, "excerpt", &mut e);
    let text = match body.body {
        Patch::Missing => None,
        Patch::Null => Some(String::new()),
        Patch::Value(b) => Some(validate::text(&b, 500_000, "body", &mut e)),
    };
    let category = validate::optional_text(body.category, 100, "category", &mut e);
    let tags = match body.tags {
        Patch::Missing => None,
        Patch::Null => Some(Vec::new()),
        Patch::Value(t) => Some(validate::labels(t, 50, 100, "tags", &mut e)),
    };
    let status = body.status.non_null("status", &mut e).map(|s| validate::one_of(&s, STATUSES, "status", &mut e));
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let r = sqlx::query(
        "update articles set title = coalesce($3, title), excerpt = case when $4 then $5 else excerpt end,
            body = coalesce($6, body), category = case when $7 then $8 else category end, tags = coalesce($9, tags),
            published_at = case when $10 = 'published' then coalesce(published_at, now()) else published_at end,
            status = coalesce($10, status)
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(title)
    .bind(excerpt.is_some())
    .bind(excerpt.flatten())
    .bind(text)
    .bind(category.is_some())
    .bind(category.flatten())
    .bind(tags)
    .bind(status)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound(RESOURCE));
    }
    let article = find(&mut tx, tenant, Some(id), None).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    // Published: (re-)embed; unpublished: the job takes its vectors out of search.
    queue_embedding(&state, tenant, id).await;
    Ok(Json(Envelope::with_message(article, "Article updated.")))
}

#[utoipa::path(delete, path = "/api/v1/articles/{id}", tag = "articles", params(("id" = Uuid, Path, description = "Article id")),
    responses((status = 200, body = inline(Envelope<Option<String>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn destroy(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    if crate::listing::delete_one(&state, &auth, "articles", id).await? {
        // Postgres vectors went with the row; an external store's copy goes now (best
        // effort: search re-reads every hit from Postgres, so a leftover is never shown).
        if let Err(e) = state.search.store.remove(&[id]).await {
            tracing::warn!(error = %e, "could not remove the article's vectors from the store");
        }
        Ok(Json(Envelope::with_message(None, "Article deleted.")))
    } else {
        Err(ApiError::NotFound(RESOURCE))
    }
}

/// Queues GenerateEmbedding for an article after its change is committed. If Redis is
/// unreachable the article is not lost: the `embeddings:*` sweep finds articles whose
/// vectors are missing or stale.
async fn queue_embedding(state: &AppState, tenant: TenantId, id: Uuid) {
    if let Err(e) = state.queue.enqueue(&GenerateEmbedding::article(tenant, id)).await {
        tracing::warn!(error = %e, "could not queue the article's embedding; the sweep will");
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewRequest {
    /// The reader, when known: the read is recorded as their `article_read` activity.
    pub customer_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ViewCount {
    pub view_count: i64,
}

/// Count a read of a published article.
#[utoipa::path(post, path = "/api/v1/articles/{id}/view", tag = "articles", params(("id" = Uuid, Path, description = "Article id")), request_body = ViewRequest,
    responses((status = 200, body = inline(Envelope<ViewCount>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, description = "No such published article", body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn record_view(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ViewRequest>,
) -> Result<Json<Envelope<ViewCount>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    if let Some(c) = body.customer_id
        && !customers::store::exists(&mut tx, tenant, c).await?
    {
        return Err(ApiError::Validation(FieldErrors::single("customer_id", "no such customer")));
    }
    let count: Option<i64> = sqlx::query_scalar(
        "update articles set view_count = view_count + 1 where tenant_id = $1 and id = $2 and status = 'published'
         returning view_count",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let view_count = count.ok_or(ApiError::NotFound(RESOURCE))?;
    if let Some(customer) = body.customer_id {
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id)
             values ($1, $2, 'article_read', 'web', 'article', $3)",
        )
        .bind(tenant)
        .bind(customer)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Json(Envelope::data(ViewCount { view_count })))
}
