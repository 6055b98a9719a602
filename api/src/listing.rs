//! What every family does the same way with one tenant's rows of one table: list them
//! (counted and paged) and delete one by id, each in one tenant transaction.

use axum::Json;
use fibonacco_platform::db;
use serde::Serialize;

use crate::{
    ApiError,
    envelope::{Envelope, PageQuery, Pagination},
    error::FieldErrors,
    extract::Auth,
    state::AppState,
};

/// What to list. All three strings are literals from our code, never input.
pub struct Listing {
    /// Table, with an alias if `columns` needs one (`"ai_personalities p"`).
    pub from: &'static str,
    pub columns: &'static str,
    /// Must end in a unique column so pages neither overlap nor skip.
    pub order_by: &'static str,
}

/// Checks the page parameters, then returns the caller's tenant's rows with pagination.
pub async fn page_of<T>(
    state: &AppState,
    auth: &Auth,
    page: PageQuery,
    listing: &Listing,
) -> Result<Json<Envelope<Vec<T>>>, ApiError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin + Serialize,
{
    let mut errors = FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut errors);
    errors.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let total: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {} where tenant_id = $1", listing.from)))
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
    let rows: Vec<T> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {} from {} where tenant_id = $1 order by {} limit $2 offset $3",
        listing.columns, listing.from, listing.order_by
    )))
    .bind(tenant)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(Json(Envelope::page(rows, pagination)))
}

/// Deletes the tenant's row `id` from `table` (a literal from our code). False when there
/// was none, which callers answer with 404.
pub async fn delete_one(state: &AppState, auth: &Auth, table: &'static str, id: uuid::Uuid) -> Result<bool, ApiError> {
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let deleted = sqlx::query(sqlx::AssertSqlSafe(format!("delete from {table} where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    tx.commit().await?;
    Ok(deleted)
}
