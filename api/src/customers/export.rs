//! `GET /api/v1/customers/export`: every customer the list's filters select, in the list's
//! order, as CSV or Parquet (`export_parquet`), streamed. The rows are read a page at a time by keyset (each page its
//! own short transaction), so memory stays one page however many customers there are, and
//! a slow download never holds a database connection. Pages are separate snapshots: a
//! customer created or changed while the export runs may or may not be in it; none is
//! listed twice (the keyset moves strictly forward).

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use fibonacco_platform::{TenantId, db};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    READ,
    export_parquet::Writer,
    input::{CustomerFilter, CustomerListQuery},
    store::{self, Customer},
};
use crate::{ApiError, error::FieldErrors, extract::Auth, extract::QueryParams, state::AppState};

/// Customers per page read from Postgres.
pub(super) const PAGE: i64 = 1000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (the default) or `parquet`.
    pub format: Option<String>,
}

pub const FORMATS: &[&str] = &["csv", "parquet"];

/// Export the customers the filters select (the list's filters and sort), as CSV
/// (`id,name,slug,email,phone,tags,business_context,metadata,created_at,updated_at`; cells
/// a spreadsheet would run as a formula are prefixed with `'`) or as Parquet (the same
/// columns typed: timestamps, `tags` a list of strings). Streamed.
#[utoipa::path(get, path = "/api/v1/customers/export", tag = "customers",
    params(ExportQuery, CustomerListQuery),
    responses(
        (status = 200, description = "The customers as CSV or Parquet", content(
            (String = "text/csv"), (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 401, body = crate::error::ErrorEnvelope), (status = 403, body = crate::error::ErrorEnvelope),
        (status = 422, body = crate::error::ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(format): QueryParams<ExportQuery>,
    QueryParams(query): QueryParams<CustomerListQuery>,
) -> Result<Response, ApiError> {
    auth.require(READ)?;
    let mut errors = FieldErrors::default();
    let parquet = match format.format.as_deref().unwrap_or("") {
        "" | "csv" => false,
        "parquet" => true,
        f => {
            errors.add("format", format!("`{f}` is not offered; use csv or parquet"));
            false
        }
    };
    let filter = query.parse(&mut errors);
    errors.into_result()?;
    let tenant = auth.0.tenant_id;
    let filter = {
        let mut tx = db::begin_tenant(&state.pool, tenant).await?;
        let filter = super::with_segment(&mut tx, tenant, filter).await?;
        tx.commit().await?;
        filter
    };
    tracing::info!(tenant_id = %tenant, parquet, "customer export started");
    let (encoder, extension, content_type) = if parquet {
        let writer = Writer::new().map_err(|e| ApiError::Internal(e.into()))?;
        (Encoder::Parquet(Box::new(writer)), "parquet", "application/vnd.apache.parquet")
    } else {
        (Encoder::Csv { header: true }, "csv", "text/csv; charset=utf-8")
    };
    let body = Body::from_stream(pages(state.pool.clone(), tenant, filter, encoder));
    let name = format!("attachment; filename=\"customers-{}.{extension}\"", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, name)], body).into_response())
}

/// How pages become bytes.
pub(super) enum Encoder {
    /// `header`: the header line is still to be written.
    Csv {
        header: bool,
    },
    Parquet(Box<Writer>),
}

impl Encoder {
    /// The encoder of `format` (`csv` or `parquet`).
    pub(super) fn of(format: &str) -> Result<Self, ApiError> {
        Ok(match format {
            "parquet" => Encoder::Parquet(Box::new(Writer::new().map_err(|e| ApiError::Internal(e.into()))?)),
            _ => Encoder::Csv { header: true },
        })
    }

    pub(super) fn page(&mut self, rows: &[Customer]) -> Result<Vec<u8>, ApiError> {
        match self {
            Encoder::Csv { header } => {
                let first = std::mem::replace(header, false).then(|| HEADER.iter().map(|h| h.to_string()).collect());
                csv_records(first.into_iter().chain(rows.iter().map(|c| row(c).collect())))
                    .map_err(|e| ApiError::Internal(e.into()))
            }
            Encoder::Parquet(w) => w.push(rows).map_err(|e| ApiError::Internal(e.into())),
        }
    }

    /// What follows the last page (Parquet's last row group and footer).
    pub(super) fn end(self) -> Result<Vec<u8>, ApiError> {
        match self {
            Encoder::Csv { .. } => Ok(Vec::new()),
            Encoder::Parquet(w) => w.finish().map_err(|e| ApiError::Internal(e.into())),
        }
    }
}

/// The export as a stream of chunks, one per page (a Parquet page that completes no row
/// group is an empty chunk).
fn pages(
    pool: sqlx::PgPool,
    tenant: TenantId,
    filter: CustomerFilter,
    encoder: Encoder,
) -> impl futures_util::Stream<Item = Result<Bytes, ApiError>> {
    enum At {
        Start(Encoder),
        After(Box<Customer>, Encoder),
        Done,
    }
    futures_util::stream::unfold(At::Start(encoder), move |at| {
        let (pool, filter) = (pool.clone(), filter.clone());
        async move {
            let (mut encoder, after) = match at {
                At::Done => return None,
                At::Start(encoder) => (encoder, None),
                At::After(last, encoder) => (encoder, Some(last)),
            };
            let page = async {
                let mut tx = db::begin_tenant(&pool, tenant).await?;
                let rows = store::page_after(&mut tx, tenant, &filter, after.as_deref(), PAGE).await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(rows)
            }
            .await;
            let rows = match page {
                Ok(rows) => rows,
                Err(e) => {
                    // The status line is gone already: the download ends short, and says so here.
                    tracing::error!(error = %e, tenant_id = %tenant, "customer export stopped");
                    return Some((Err(ApiError::from(e)), At::Done));
                }
            };
            let mut out = match encoder.page(&rows) {
                Ok(out) => out,
                Err(e) => return Some((Err(e), At::Done)),
            };
            let next = if (rows.len() as i64) < PAGE {
                match encoder.end() {
                    Ok(rest) => out.extend(rest),
                    Err(e) => return Some((Err(e), At::Done)),
                }
                At::Done
            } else {
                At::After(Box::new(rows.into_iter().last().expect("a full page has a last row")), encoder)
            };
            Some((Ok(Bytes::from(out)), next))
        }
    })
}

const HEADER: &[&str] =
    &["id", "name", "slug", "email", "phone", "tags", "business_context", "metadata", "created_at", "updated_at"];

fn row(c: &Customer) -> impl Iterator<Item = String> {
    let tags = match c.metadata.get("tags") {
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|t| t.as_str()).collect::<Vec<_>>().join(";"),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    [
        c.id.to_string(),
        c.name.clone(),
        c.slug.clone(),
        c.email.clone().unwrap_or_default(),
        c.phone.clone().unwrap_or_default(),
        tags,
        serde_json::Value::Object(c.business_context.0.clone()).to_string(),
        serde_json::Value::Object(c.metadata.0.clone()).to_string(),
        c.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        c.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ]
    .into_iter()
    .map(|cell| defuse(&cell))
}

/// A cell a spreadsheet would evaluate (`=`, `@`, a tab or CR first; `+` or `-` first with
/// more than a number after it) gets a leading `'`, which spreadsheets show as text. A
/// phone number (`+15550100`) or a negative number stays as it is.
pub fn defuse(cell: &str) -> String {
    let dangerous = match cell.chars().next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => !cell[1..].chars().all(|c| c.is_ascii_digit() || " .()-".contains(c)),
        _ => false,
    };
    if dangerous { format!("'{cell}") } else { cell.to_owned() }
}

/// CSV records (RFC 4180 quoting by the csv crate, as the import's report) with CRLF ends.
fn csv_records(records: impl Iterator<Item = Vec<String>>) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    for record in records {
        out.write_record(&record)?;
    }
    out.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_numbers_are_not() {
        assert_eq!(defuse("=HYPERLINK(\"http://x\")"), "'=HYPERLINK(\"http://x\")");
        assert_eq!(defuse("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse("+1 (555) 010-2000"), "+1 (555) 010-2000");
        assert_eq!(defuse("-12.5"), "-12.5");
        assert_eq!(defuse("-2+3+cmd|' /C calc'!A0"), "'-2+3+cmd|' /C calc'!A0");
        assert_eq!(defuse("Ada"), "Ada");
    }

    #[test]
    fn cells_are_quoted_when_they_must_be() {
        let line =
            csv_records(std::iter::once(["a", "b,c", "say \"hi\"", "two\nlines"].map(String::from).to_vec())).unwrap();
        assert_eq!(String::from_utf8(line).unwrap(), "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n");
    }
}
