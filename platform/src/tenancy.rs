//! Tenants: the unit of isolation. Every tenant-owned row carries `tenant_id`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{db, domain::Slug};

/// The id of a tenant. Only obtained from the database (a token lookup, a tenant row),
/// never from request input, so holding one means the tenant exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("a tenant with slug `{0}` already exists")]
    SlugTaken(String),
    #[error("tenant name must not be empty")]
    EmptyName,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[tracing::instrument(name = "tenancy.create", skip(pool))]
pub async fn create(pool: &PgPool, name: &str, slug: &Slug) -> Result<Tenant, TenantError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(TenantError::EmptyName);
    }
    let mut tx = db::begin_system(pool).await?;
    let row = sqlx::query_as::<_, Tenant>(
        "insert into tenants (name, slug) values ($1, $2) returning id, name, slug, created_at",
    )
    .bind(name)
    .bind(slug.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match db::unique_violation(&e) {
        Some("tenants_slug_key") => TenantError::SlugTaken(slug.to_string()),
        _ => TenantError::Database(e),
    })?;
    tx.commit().await?;
    Ok(row)
}

#[tracing::instrument(name = "tenancy.find_by_slug", skip(pool))]
pub async fn find_by_slug(pool: &PgPool, slug: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, Tenant>("select id, name, slug, created_at from tenants where slug = $1")
        .bind(slug)
        .fetch_optional(pool)
        .await
}

#[tracing::instrument(name = "tenancy.list", skip(pool))]
pub async fn list(pool: &PgPool) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, Tenant>("select id, name, slug, created_at from tenants order by created_at")
        .fetch_all(pool)
        .await
}
