//! Customer exports as jobs, for sets too large to wait on a download: `POST
//! /customers/exports` queues `ExportCustomers`; a worker writes the file (the same rows
//! and encoders as the streamed export, a page at a time) into `customer_export_chunks`,
//! 4 MiB each, so neither the worker nor the download holds the file; `GET
//! /customers/exports/{id}` shows progress and `…/download` streams the chunks in order.
//! A retried job starts the file again. Files are deleted two days after the request.

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db, queue::jobs::ExportCustomers};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    READ,
    export::{Encoder, PAGE},
    input::CustomerListQuery,
    store::{self, Customer},
};
use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, resource_id},
    state::AppState,
};

const RESOURCE: &str = "customer export";
/// Bytes per stored chunk.
const CHUNK: usize = 4 << 20;

/// The export's format and the customer list's filters.
#[derive(Debug, Default, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportJobRequest {
    /// `csv` (default) or `parquet`.
    pub format: Option<String>,
    pub search: Option<String>,
    pub email: Option<String>,
    /// `true` or `false`.
    pub has_email: Option<String>,
    /// RFC 3339.
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    /// As the list's `sort`.
    pub sort: Option<String>,
    /// A saved segment's id.
    pub segment_id: Option<String>,
}

impl ExportJobRequest {
    fn query(&self) -> CustomerListQuery {
        CustomerListQuery {
            search: self.search.clone(),
            email: self.email.clone(),
            has_email: self.has_email.clone(),
            created_after: self.created_after.clone(),
            created_before: self.created_before.clone(),
            sort: self.sort.clone(),
            segment_id: self.segment_id.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct CustomerExport {
    pub id: Uuid,
    /// `csv` or `parquet`.
    pub format: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// Customers written so far.
    pub rows: i64,
    pub bytes: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Where to download the file once `done` (deleted two days after the request).
    #[sqlx(skip)]
    pub download: Option<String>,
}

const COLUMNS: &str = "id, format, status, rows, bytes, error, created_at, finished_at";

fn with_link(mut e: CustomerExport) -> CustomerExport {
    if e.status == "done" {
        e.download = Some(format!("/api/v1/customers/exports/{}/download", e.id));
    }
    e
}

/// Queue an export of the customers the filters select (as the list takes them), as CSV
/// or Parquet, written by a worker.
#[utoipa::path(post, path = "/api/v1/customers/exports", tag = "customers", request_body = ExportJobRequest,
    responses((status = 202, body = inline(Envelope<CustomerExport>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<ExportJobRequest>,
) -> Result<(StatusCode, Json<Envelope<CustomerExport>>), ApiError> {
    auth.require(READ)?;
    let mut errors = FieldErrors::default();
    let format = match body.format.as_deref().unwrap_or("csv") {
        f @ ("csv" | "parquet") => f.to_owned(),
        f => {
            errors.add("format", format!("`{f}` is not offered; use csv or parquet"));
            String::new()
        }
    };
    let filter = body.query().parse(&mut errors);
    errors.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    super::with_segment(&mut tx, tenant, filter).await?;
    let filters = ExportJobRequest { format: None, ..body };
    let export: CustomerExport = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into customer_exports (tenant_id, format, filters) values ($1, $2, $3) returning {COLUMNS}"
    )))
    .bind(tenant)
    .bind(&format)
    .bind(sqlx::types::Json(&filters))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let job = ExportCustomers { tenant_id: tenant.as_uuid(), export_id: export.id };
    // The row is the truth; a job Redis cannot take now is queued again by the sweep.
    if let Err(e) = state.queue.enqueue(&job).await {
        tracing::warn!(error = %e, "could not queue a customer export; the scheduler will");
    }
    Ok((StatusCode::ACCEPTED, Json(Envelope::with_message(export, "Export queued."))))
}

async fn find(pool: &PgPool, tenant: TenantId, id: Uuid) -> Result<CustomerExport, ApiError> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let found: Option<CustomerExport> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from customer_exports where tenant_id = $1 and id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    found.map(with_link).ok_or(ApiError::NotFound(RESOURCE))
}

#[utoipa::path(get, path = "/api/v1/customers/exports/{id}", tag = "customers",
    params(("id" = Uuid, Path, description = "Export id")),
    responses((status = 200, body = inline(Envelope<CustomerExport>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<CustomerExport>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    Ok(Json(Envelope::data(find(&state.pool, auth.0.tenant_id, id).await?)))
}

/// The export's file, streamed chunk by chunk (409 until it is done).
#[utoipa::path(get, path = "/api/v1/customers/exports/{id}/download", tag = "customers",
    params(("id" = Uuid, Path, description = "Export id")),
    responses((status = 200, description = "The file", content(
            (String = "text/csv"), (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Not written yet", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn download(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> Result<Response, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let export = find(&state.pool, tenant, id).await?;
    if export.status != "done" {
        return Err(ApiError::Conflict {
            message: format!("The export is {}; download it once done.", export.status),
            field: None,
        });
    }
    let pool = state.pool.clone();
    let chunks = futures_util::stream::unfold(Some(0i32), move |next| {
        let pool = pool.clone();
        async move {
            let seq = next?;
            let read = async {
                let mut tx = db::begin_tenant(&pool, tenant).await?;
                let bytes: Option<Vec<u8>> = sqlx::query_scalar(
                    "select bytes from customer_export_chunks where tenant_id = $1 and export_id = $2 and seq = $3",
                )
                .bind(tenant)
                .bind(id)
                .bind(seq)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(bytes)
            }
            .await;
            match read {
                Ok(Some(bytes)) => Some((Ok(Bytes::from(bytes)), Some(seq + 1))),
                Ok(None) => None,
                Err(e) => Some((Err(ApiError::from(e)), None)),
            }
        }
    });
    let (kind, extension) = if export.format == "parquet" {
        ("application/vnd.apache.parquet", "parquet")
    } else {
        ("text/csv; charset=utf-8", "csv")
    };
    let name = format!("attachment; filename=\"customers-{}.{extension}\"", export.created_at.format("%Y%m%d-%H%M%S"));
    Ok(([(header::CONTENT_TYPE, kind.to_owned()), (header::CONTENT_DISPOSITION, name)], Body::from_stream(chunks))
        .into_response())
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Refused(String),
}

/// Writes the export's file (the job). Done or failed exports are left as they are; a
/// retried run starts the file again.
#[tracing::instrument(name = "customers.export_job", skip(pool), fields(tenant_id = %tenant), err)]
pub async fn run(pool: &PgPool, tenant: TenantId, id: Uuid) -> Result<(), ExportError> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let claimed: Option<(String, sqlx::types::Json<ExportJobRequest>)> = sqlx::query_as(
        "update customer_exports set status = 'running', rows = 0, bytes = 0
         where tenant_id = $1 and id = $2 and status in ('queued', 'running') returning format, filters",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((format, filters)) = claimed else { return Ok(()) };
    sqlx::query("delete from customer_export_chunks where tenant_id = $1 and export_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let mut errors = FieldErrors::default();
    let filter = filters.0.query().parse(&mut errors);
    let filter = match (errors.is_empty(), super::with_segment(&mut tx, tenant, filter).await) {
        (true, Ok(filter)) => filter,
        _ => {
            tx.rollback().await?;
            return Err(ExportError::Refused("its filters no longer hold (a segment deleted?)".into()));
        }
    };
    tx.commit().await?;
    let refused = |e: ApiError| ExportError::Refused(e.to_string());
    let mut encoder = Encoder::of(&format).map_err(refused)?;
    let (mut buffer, mut seq, mut rows, mut bytes) = (Vec::new(), 0i32, 0i64, 0i64);
    let mut after: Option<Customer> = None;
    loop {
        let mut tx = db::begin_tenant(pool, tenant).await?;
        let page = store::page_after(&mut tx, tenant, &filter, after.as_ref(), PAGE).await?;
        tx.commit().await?;
        buffer.extend(encoder.page(&page).map_err(refused)?);
        rows += page.len() as i64;
        let last = (page.len() as i64) < PAGE;
        if last {
            buffer.extend(std::mem::replace(&mut encoder, Encoder::Csv { header: false }).end().map_err(refused)?);
        }
        if buffer.len() >= CHUNK || last {
            let mut tx = db::begin_tenant(pool, tenant).await?;
            if !buffer.is_empty() {
                sqlx::query(
                    "insert into customer_export_chunks (export_id, tenant_id, seq, bytes) values ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(tenant)
                .bind(seq)
                .bind(&buffer)
                .execute(&mut *tx)
                .await?;
                seq += 1;
                bytes += buffer.len() as i64;
                buffer.clear();
            }
            sqlx::query(
                "update customer_exports set rows = $3, bytes = $4,
                    status = case when $5 then 'done' else status end, finished_at = case when $5 then now() end
                 where tenant_id = $1 and id = $2",
            )
            .bind(tenant)
            .bind(id)
            .bind(rows)
            .bind(bytes)
            .bind(last)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        if last {
            return Ok(());
        }
        after = page.into_iter().last();
    }
}

/// Marks the export failed with `reason` (the job ran out of tries, or it cannot run).
pub async fn fail(pool: &PgPool, tenant: TenantId, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    sqlx::query(
        "update customer_exports set status = 'failed', error = $3, finished_at = now()
         where tenant_id = $1 and id = $2 and status <> 'done'",
    )
    .bind(tenant)
    .bind(id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query("delete from customer_export_chunks where tenant_id = $1 and export_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
