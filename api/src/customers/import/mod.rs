//! Customer import from CSV (`POST /api/v1/customers/import`, `fibonacco import
//! customers`): the upload is checked at once (readable CSV, a header whose columns map to
//! known fields, at least one row), stored with its mapping, and run as an
//! `ImportCustomers` job that upserts customers by e-mail or phone (`book`) in chunks
//! (`run`). `GET /imports/{id}` shows progress and counts; `GET /imports/{id}/errors` is
//! the report of rows that were not imported, as CSV.

pub mod book;
pub mod mapping;
pub mod rows;
pub mod run;

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{
    TenantId, db,
    queue::{Handler, JobError, Reserved, jobs::ImportCustomers, worker::data},
};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{READ, WRITE};
use crate::{
    ApiError,
    envelope::Envelope,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, resource_id},
    state::AppState,
};
use mapping::Mapping;

const RESOURCE: &str = "import";
/// The largest file an upload may carry (the route's body limit is a little above, for
/// the JSON around it).
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;
const MAX_ROWS: usize = 1_000_000;
/// Each column may become a metadata key of every customer: a bound on what one file adds.
const MAX_COLUMNS: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The CSV file's text (UTF-8, comma- or semicolon-separated), header row first.
    #[schema(example = "Name,Email,Phone,Tags\nAda Lovelace,ada@example.com,+442079460000,vip")]
    pub csv: Option<String>,
    /// The file's name, shown back on the import.
    pub file_name: Option<String>,
    /// CSV header → field, overriding what the header names suggest: `name`,
    /// `first_name`, `last_name`, `email`, `phone`, `tags`, `ignore`, `custom.<key>`
    /// (metadata) or `context.<key>` (business context).
    #[schema(value_type = Option<Object>, example = json!({"E-Mail": "email", "Firma": "context.company"}))]
    pub mapping: Option<BTreeMap<String, String>>,
    /// Check and count without writing a customer.
    pub dry_run: Option<bool>,
}

/// A checked upload.
struct Upload {
    source: Vec<u8>,
    file_name: Option<String>,
    mapping: Mapping,
    delimiter: u8,
    rows: usize,
    dry_run: bool,
}

impl ImportRequest {
    fn parse(self) -> Result<Upload, ApiError> {
        let mut errors = FieldErrors::default();
        let csv = self.csv.unwrap_or_default();
        if csv.trim().is_empty() {
            errors.add("csv", "is required: the file's text, header row first");
        } else if csv.len() > MAX_FILE_BYTES {
            errors.add("csv", format!("must be at most {} MiB", MAX_FILE_BYTES / (1024 * 1024)));
        }
        let file_name = self.file_name.map(|n| n.trim().to_owned());
        if file_name
            .as_ref()
            .is_some_and(|n| n.is_empty() || n.chars().count() > 255 || n.chars().any(char::is_control))
        {
            errors.add("file_name", "must be one line of 1 to 255 characters");
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let delimiter = mapping::delimiter(&csv);
        let source = csv.into_bytes();
        let (headers, rows) = match run::header_and_rows(&source, delimiter) {
            Ok(read) => read,
            Err(_) => return Err(ApiError::Validation(FieldErrors::single("csv", "cannot be read as CSV"))),
        };
        if headers.iter().any(|h| h.chars().any(char::is_control)) {
            // A NUL would reach Postgres in the stored mapping; any control character in a
            // name is a broken file.
            errors.add("csv", "has a control character in its header row");
        } else if headers.iter().all(|h| h.is_empty()) {
            errors.add("csv", "has no header row");
        } else if headers.len() > MAX_COLUMNS {
            errors.add("csv", format!("has {} columns; at most {MAX_COLUMNS}", headers.len()));
        } else if rows == 0 {
            errors.add("csv", "has no rows under its header");
        } else if rows > MAX_ROWS {
            errors.add("csv", format!("has {rows} rows; at most {MAX_ROWS} per file"));
        }
        let mapping = Mapping::resolve(&headers, &self.mapping.unwrap_or_default(), &mut errors);
        errors.into_result()?;
        Ok(Upload { source, file_name, mapping, delimiter, rows, dry_run: self.dry_run.unwrap_or(false) })
    }
}

/// An import and how far it has come.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Import {
    pub id: Uuid,
    /// `queued`, `running`, `completed` or `failed`.
    pub status: String,
    pub dry_run: bool,
    pub file_name: Option<String>,
    /// CSV header → field, as used.
    #[schema(value_type = Object)]
    pub mapping: Value,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub counts: run::Counts,
    /// Why the import stopped, when it failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "select id, status, dry_run, file_name, mapping, total_rows, processed_rows, created_count,
    updated_count, unchanged_count, duplicate_rows, error_rows, error, created_at, started_at, finished_at
    from customer_imports";

/// Import customers from a CSV file: checked now, run as a job (see `GET /imports/{id}`).
/// Rows are matched to customers by e-mail, else phone, so importing a file again creates
/// nobody twice.
#[utoipa::path(post, path = "/api/v1/customers/import", tag = "customers",
    request_body = ImportRequest,
    responses(
        (status = 202, description = "Accepted and queued", body = inline(Envelope<Import>)),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 503, description = "The job queue is unavailable; nothing was imported", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<ImportRequest>,
) -> Result<(StatusCode, Json<Envelope<Import>>), ApiError> {
    auth.require(WRITE)?;
    let tenant = auth.0.tenant_id;
    let import = accept(&state.pool, tenant, Some(auth.0.token_id), body).await?;
    let job = ImportCustomers { tenant_id: tenant.as_uuid(), import_id: import.id };
    if let Err(e) = state.queue.enqueue(&job).await {
        tracing::warn!(error = %e, import_id = %import.id, "import not queued");
        run::fail(&state.pool, tenant, import.id, "could not be queued: the job queue was unavailable; upload again")
            .await?;
        return Err(ApiError::Unavailable("the job queue"));
    }
    tracing::info!(import_id = %import.id, rows = import.counts.total_rows, dry_run = import.dry_run, "customer import queued");
    Ok((StatusCode::ACCEPTED, Json(Envelope::with_message(import, "Import queued."))))
}

/// Checks an upload and stores it as a queued import (the API queues its job; the CLI
/// runs it in its own process).
pub async fn accept(
    pool: &PgPool,
    tenant: TenantId,
    token: Option<i64>,
    request: ImportRequest,
) -> Result<Import, ApiError> {
    let upload = request.parse()?;
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let import = insert(&mut tx, tenant, token, &upload).await?;
    tx.commit().await?;
    Ok(import)
}

/// Stores a checked upload as a queued import.
#[tracing::instrument(name = "customers.import.insert", skip(conn, upload), fields(tenant_id = %tenant), err)]
async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    token: Option<i64>,
    upload: &Upload,
) -> Result<Import, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with i as (
           insert into customer_imports (tenant_id, requested_by, file_name, dry_run, mapping, delimiter, source, total_rows)
           values ($1, $2, $3, $4, $5, $6, $7, $8) returning *
         )
         {} ",
        SELECT.replace("from customer_imports", "from i")
    )))
    .bind(tenant)
    .bind(token)
    .bind(&upload.file_name)
    .bind(upload.dry_run)
    .bind(upload.mapping.to_json())
    .bind(char::from(upload.delimiter).to_string())
    .bind(&upload.source)
    .bind(i32::try_from(upload.rows).unwrap_or(i32::MAX))
    .fetch_one(conn)
    .await
}

/// An import of this tenant, with its progress and counts.
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "customers",
    params(("id" = Uuid, Path, description = "Import id")),
    responses((status = 200, body = inline(Envelope<Import>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Import>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let import = find(&state.pool, auth.0.tenant_id, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    Ok(Json(Envelope::data(import)))
}

pub async fn find(pool: &PgPool, tenant: TenantId, id: Uuid) -> Result<Option<Import>, sqlx::Error> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let found = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(found)
}

/// The rows that were not imported and why, as CSV (`row,field,message`; row 1 is the
/// header). It never repeats a cell's value.
#[utoipa::path(get, path = "/api/v1/imports/{id}/errors", tag = "customers",
    params(("id" = Uuid, Path, description = "Import id")),
    responses((status = 200, description = "The error report", content_type = "text/csv", body = String),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn errors(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> Result<Response, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let report = error_report(&state.pool, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    let disposition = format!("attachment; filename=\"import-{id}-errors.csv\"");
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        report,
    )
        .into_response())
}

/// The report's text, or `None` when the tenant has no such import.
#[tracing::instrument(name = "customers.import.errors", skip(pool), fields(tenant_id = %tenant), err)]
pub async fn error_report(pool: &PgPool, tenant: TenantId, id: Uuid) -> Result<Option<String>, ApiError> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from customer_imports where tenant_id = $1 and id = $2)")
            .bind(tenant)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        return Ok(None);
    }
    let rows: Vec<(i32, String, String)> = sqlx::query_as(
        "select row_number, field, message from customer_import_errors
         where tenant_id = $1 and import_id = $2 order by row_number, field",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let write = || -> Result<Vec<u8>, csv::Error> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(["row", "field", "message"])?;
        for (row, field, message) in &rows {
            out.write_record([row.to_string().as_str(), field, message])?;
        }
        out.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    };
    let bytes = write().map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The worker's side: `ImportCustomers` jobs, in front of another handler that runs every
/// other job (the binary puts it before delivery's `JobContext`).
pub struct WithImports<H> {
    pub pool: PgPool,
    pub inner: H,
}

impl<H: Handler> Handler for WithImports<H> {
    fn handle<'a>(&'a self, job: &'a Reserved) -> BoxFuture<'a, Result<(), JobError>> {
        if job.payload.job == fibonacco_platform::queue::EXPORT_CUSTOMERS.name {
            return Box::pin(async move {
                let r: fibonacco_platform::queue::jobs::ExportCustomers = data(job)?;
                let tenant = TenantId::from_uuid(r.tenant_id);
                match super::export_job::run(&self.pool, tenant, r.export_id).await {
                    Ok(()) => Ok(()),
                    Err(e @ super::export_job::ExportError::Database(_)) if job.attempts < job.payload.max_tries => {
                        Err(JobError::retry_because(e))
                    }
                    Err(e) => {
                        let reason = match &e {
                            super::export_job::ExportError::Database(_) => "the database failed repeatedly".to_owned(),
                            other => other.to_string(),
                        };
                        super::export_job::fail(&self.pool, tenant, r.export_id, &reason)
                            .await
                            .map_err(JobError::retry_because)?;
                        Err(JobError::fail_because(e))
                    }
                }
            });
        }
        if job.payload.job != fibonacco_platform::queue::IMPORT_CUSTOMERS.name {
            return self.inner.handle(job);
        }
        Box::pin(async move {
            let r: ImportCustomers = data(job)?;
            let tenant = TenantId::from_uuid(r.tenant_id);
            match run::run(&self.pool, tenant, r.import_id, &|_| {}).await {
                Ok(_) => Ok(()),
                Err(e @ (run::ImportError::Database(_) | run::ImportError::Csv(_)))
                    if job.attempts < job.payload.max_tries =>
                {
                    Err(JobError::retry_because(e))
                }
                Err(e) => {
                    // Said on the import, without the database's words (it may quote data).
                    let reason = match &e {
                        run::ImportError::Database(_) => "the database failed repeatedly; upload again".to_owned(),
                        other => other.to_string(),
                    };
                    run::fail(&self.pool, tenant, r.import_id, &reason).await.map_err(JobError::retry_because)?;
                    Err(JobError::fail_because(e))
                }
            }
        })
    }
}
