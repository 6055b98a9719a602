//! Unique-per-tenant slugs for any table with `(tenant_id, slug)`.

use fibonacco_platform::TenantId;
use sqlx::{AssertSqlSafe, PgConnection};

/// `base` if free in the tenant, else the first free `base-2`, `base-3`, …
/// `table` is always a literal from our code, never input.
pub async fn free_slug(
    conn: &mut PgConnection,
    table: &'static str,
    tenant: TenantId,
    base: &str,
) -> Result<String, sqlx::Error> {
    let sql = format!("select slug from {table} where tenant_id = $1 and (slug = $2 or slug like $2 || '-%')");
    let taken: Vec<String> =
        sqlx::query_scalar(AssertSqlSafe(sql)).bind(tenant).bind(base).fetch_all(&mut *conn).await?;
    if !taken.iter().any(|s| s == base) {
        return Ok(base.to_owned());
    }
    let next = (2..).find(|n| !taken.iter().any(|s| *s == format!("{base}-{n}"))).unwrap_or(2);
    Ok(format!("{base}-{next}"))
}
