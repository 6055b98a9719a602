//! The service catalog, orders, payments and subscriptions (`/api/v1/services`,
//! `/api/v1/orders`, `/api/v1/subscriptions`). Payments, refunds and subscriptions are
//! made through Stripe; their state changes arrive through the Stripe webhook
//! (`crate::stripe`).

pub mod orders;
pub mod payments;
pub mod services;
pub mod subscriptions;

use axum::{
    Router,
    routing::{get, post},
};

use crate::state::AppState;

pub const READ: &str = "commerce:read";
pub const WRITE: &str = "commerce:write";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/services", get(services::list).post(services::create))
        .route("/services/categories", get(services::list_categories).post(services::create_category))
        .route("/services/{id}", get(services::show).put(services::update).delete(services::destroy))
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::show))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/orders/{id}/pay", post(payments::pay))
        .route("/orders/{id}/refund", post(payments::refund))
        .route("/subscriptions", get(subscriptions::list).post(subscriptions::create))
        .route("/subscriptions/{id}", get(subscriptions::show))
        .route("/subscriptions/{id}/cancel", post(subscriptions::cancel))
}

/// A page of the tenant's rows of `table` (orders, subscriptions), newest first, filtered
/// by `status` (one of `statuses`) and `customer_id` when given. `table` and `columns` are
/// literals from our code.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn page_filtered<T>(
    state: &crate::state::AppState,
    auth: &crate::extract::Auth,
    page: crate::envelope::PageQuery,
    status: Option<String>,
    customer_id: Option<String>,
    statuses: &[&str],
    table: &'static str,
    columns: &'static str,
) -> Result<axum::Json<crate::envelope::Envelope<Vec<T>>>, crate::ApiError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin + serde::Serialize,
{
    use crate::envelope::{Envelope, Pagination};
    let mut e = crate::error::FieldErrors::default();
    let page = page.resolve(state.config.max_per_page, &mut e);
    let status = status.filter(|s| !s.is_empty()).map(|s| crate::validate::one_of(&s, statuses, "status", &mut e));
    let customer = customer_id
        .filter(|s| !s.is_empty())
        .and_then(|s| uuid::Uuid::parse_str(&s).map_err(|_| e.add("customer_id", "must be a UUID")).ok());
    e.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = fibonacco_platform::db::begin_tenant(&state.pool, tenant).await?;
    let filter = "tenant_id = $1 and ($2::text is null or status = $2) and ($3::uuid is null or customer_id = $3)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table} where {filter}")))
        .bind(tenant)
        .bind(&status)
        .bind(customer)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<T> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {columns} from {table} where {filter} order by created_at desc, id desc limit $4 offset $5"
    )))
    .bind(tenant)
    .bind(&status)
    .bind(customer)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pagination = Pagination::new(page, total, rows.len());
    Ok(axum::Json(Envelope::page(rows, pagination)))
}

/// ISO 4217 shape: three ASCII letters, upper-cased.
pub fn currency(raw: &str, e: &mut crate::error::FieldErrors) -> String {
    let c = raw.trim().to_ascii_uppercase();
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        e.add("currency", "must be a three-letter ISO 4217 code");
    }
    c
}
