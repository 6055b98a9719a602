//! Running an import: the file is read in chunks of rows; each chunk is matched against
//! the tenant's customers and written in one transaction (new customers in one insert,
//! changed ones in one update, the chunk's row errors, and the import's progress), so a
//! re-run after a crash resumes after the last committed chunk and a row is never applied
//! twice. Imports of one tenant take turns chunk by chunk (an advisory lock), so two
//! uploads of the same people cannot both create them.

use fibonacco_platform::{TenantId, db, domain::Slug};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{
    book::{Book, Taken},
    mapping::Mapping,
    rows::{self, Key, Record, RowError},
};

/// Rows per transaction.
const CHUNK: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("the import's file is no longer held")]
    NoSource,
    #[error("the file's header no longer matches the mapping")]
    Mapping,
    #[error("the file cannot be read as CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// Where an import stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Counts {
    pub total_rows: i32,
    pub processed_rows: i32,
    /// Customers created (a dry run: that would be created).
    pub created_count: i32,
    /// Customers changed by a row (a dry run: that would be).
    pub updated_count: i32,
    /// Rows that matched a customer and changed nothing.
    pub unchanged_count: i32,
    /// Rows whose e-mail or phone came earlier in the file (merged, not created twice).
    pub duplicate_rows: i32,
    /// Rows not imported; `GET /imports/{id}/errors` says why.
    pub error_rows: i32,
}

#[derive(sqlx::FromRow)]
struct Job {
    dry_run: bool,
    mapping: Json<Value>,
    delimiter: String,
    source: Option<Vec<u8>>,
    #[sqlx(flatten)]
    counts: Counts,
}

/// Reads a file's header and counts its rows (what an upload is checked with).
pub fn header_and_rows(source: &[u8], delimiter: u8) -> Result<(Vec<String>, usize), csv::Error> {
    let mut reader = reader(source, delimiter);
    let headers = headers(&mut reader)?;
    let mut n = 0;
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record)? {
        n += 1;
    }
    Ok((headers, n))
}

/// The header row's names, trimmed (the reader has dropped a byte-order mark).
fn headers(reader: &mut csv::Reader<&[u8]>) -> Result<Vec<String>, csv::Error> {
    Ok(reader.headers()?.iter().map(|h| h.trim().to_owned()).collect())
}

fn reader(source: &[u8], delimiter: u8) -> csv::Reader<&[u8]> {
    let source = source.strip_prefix("\u{feff}".as_bytes()).unwrap_or(source);
    csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(source)
}

/// Runs (or resumes) import `id` to its end; `progress` hears after each chunk. An import
/// that already ended is left as it is.
#[tracing::instrument(name = "customers.import.run", skip(pool, progress), fields(tenant_id = %tenant), err)]
pub async fn run(
    pool: &PgPool,
    tenant: TenantId,
    id: Uuid,
    progress: &(dyn Fn(&Counts) + Send + Sync),
) -> Result<Counts, ImportError> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    let job: Option<Job> = sqlx::query_as(
        "update customer_imports set status = 'running', started_at = coalesce(started_at, now()),
            -- A dry run keeps no rows between runs, so a re-run starts its counts over.
            processed_rows = case when dry_run then 0 else processed_rows end,
            created_count = case when dry_run then 0 else created_count end,
            updated_count = case when dry_run then 0 else updated_count end,
            unchanged_count = case when dry_run then 0 else unchanged_count end,
            duplicate_rows = case when dry_run then 0 else duplicate_rows end,
            error_rows = case when dry_run then 0 else error_rows end
         where tenant_id = $1 and id = $2 and status in ('queued', 'running')
         returning dry_run, mapping, delimiter, source, total_rows, processed_rows, created_count,
                   updated_count, unchanged_count, duplicate_rows, error_rows",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    // Gone, or ended already.
    let Some(job) = job else { return Ok(Counts::default()) };
    tx.commit().await?;
    let source = job.source.ok_or(ImportError::NoSource)?;
    let delimiter = job.delimiter.bytes().next().unwrap_or(b',');
    let mut reader = reader(&source, delimiter);
    let headers = headers(&mut reader)?;
    let mapping = Mapping::from_json(&headers, &job.mapping.0).ok_or(ImportError::Mapping)?;

    let mut counts = job.counts;
    let done = counts.processed_rows as usize;
    let mut book = Book::default();
    let mut chunk: Vec<Result<rows::Row, Vec<RowError>>> = Vec::with_capacity(CHUNK);
    let mut record = csv::ByteRecord::new();
    let mut number = 1u32;
    loop {
        let more = reader.read_byte_record(&mut record)?;
        if more {
            number += 1;
            // Rows committed by an earlier run are read past, not applied again.
            if (number as usize - 2) < done && !job.dry_run {
                continue;
            }
            let parsed = match csv::StringRecord::from_byte_record(record.clone()) {
                Ok(cells) => rows::parse(number, &cells, &mapping),
                Err(_) => {
                    Err(vec![RowError { row: number, field: "row".into(), message: "is not valid UTF-8".into() }])
                }
            };
            chunk.push(parsed);
        }
        if chunk.len() == CHUNK || (!more && !chunk.is_empty()) {
            let mut tx = db::begin_tenant(pool, tenant).await?;
            if !apply(&mut tx, tenant, id, job.dry_run, &mut book, &chunk, &mut counts).await? {
                tracing::info!("another run of this import is ahead; this one stops");
                return Ok(counts);
            }
            tx.commit().await?;
            chunk.clear();
            progress(&counts);
        }
        if !more {
            break;
        }
    }
    let mut tx = db::begin_tenant(pool, tenant).await?;
    sqlx::query(
        "update customer_imports set status = 'completed', finished_at = now(), source = null
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(counts)
}

/// Marks an import failed (its job gave up) and lets go of its file.
#[tracing::instrument(name = "customers.import.fail", skip(pool, reason), fields(tenant_id = %tenant), err)]
pub async fn fail(pool: &PgPool, tenant: TenantId, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_tenant(pool, tenant).await?;
    sqlx::query(
        "update customer_imports set status = 'failed', finished_at = now(), source = null, error = $3
         where tenant_id = $1 and id = $2 and status in ('queued', 'running')",
    )
    .bind(tenant)
    .bind(id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One chunk: match, write (unless a dry run), record errors and progress, in `conn`'s
/// transaction. False (and nothing done) when another run of the import got further:
/// a job delivered twice never applies a chunk twice.
async fn apply(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    dry_run: bool,
    book: &mut Book,
    chunk: &[Result<rows::Row, Vec<RowError>>],
    counts: &mut Counts,
) -> Result<bool, ImportError> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('customer_import:' || $1::text, 0))")
        .bind(tenant)
        .execute(&mut *conn)
        .await?;
    let at: Option<i32> = sqlx::query_scalar(
        "select processed_rows from customer_imports where tenant_id = $1 and id = $2 and status = 'running' for update",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if at != Some(counts.processed_rows) {
        return Ok(false);
    }
    // A dry run writes nothing, so the customers it would have created stay in the book
    // for the rest of the file; a real run forgets them once written (the database has them).
    if !dry_run {
        book.forget_customers();
    }
    load_existing(conn, tenant, book, chunk).await?;
    let mut errors: Vec<RowError> = Vec::new();
    let mut taken_rows = Vec::with_capacity(chunk.len());
    for parsed in chunk {
        match parsed {
            Err(e) => errors.extend(e.iter().cloned()),
            Ok(row) => match book.take(row) {
                Ok(taken) => taken_rows.push(taken),
                Err(message) => {
                    errors.push(RowError { row: row.number, field: "name".into(), message: message.into() })
                }
            },
        }
    }
    counts.processed_rows += chunk.len() as i32;
    counts.duplicate_rows += taken_rows.iter().filter(|(_, dup)| *dup).count() as i32;
    if dry_run {
        // Counts of the whole file so far: the book holds all of it.
        counts.created_count = book.created() as i32;
        counts.updated_count = book.updated() as i32;
    } else {
        let (created, updated) = book.outcome();
        let (new, failed) = insert(conn, tenant, &created).await?;
        errors.extend(failed);
        update(conn, tenant, &updated).await?;
        counts.created_count += new as i32;
        counts.updated_count += updated.len() as i32;
    }
    counts.unchanged_count += taken_rows.iter().filter(|(t, _)| *t == Taken::Unchanged).count() as i32;
    let mut error_rows: Vec<u32> = errors.iter().map(|e| e.row).collect();
    error_rows.sort_unstable();
    error_rows.dedup();
    counts.error_rows += error_rows.len() as i32;
    save_errors(conn, tenant, id, &errors).await?;
    sqlx::query(
        "update customer_imports set processed_rows = $3, created_count = $4, updated_count = $5,
            unchanged_count = $6, duplicate_rows = $7, error_rows = $8
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(counts.processed_rows)
    .bind(counts.created_count)
    .bind(counts.updated_count)
    .bind(counts.unchanged_count)
    .bind(counts.duplicate_rows)
    .bind(counts.error_rows)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// A customer as read for matching: id, name, e-mail, phone, business context, metadata.
type Found = (Uuid, String, Option<String>, Option<String>, Option<String>, Json<Value>, Json<Value>);

/// Reads the customers the chunk's rows can match that the book does not know yet.
async fn load_existing(
    conn: &mut PgConnection,
    tenant: TenantId,
    book: &mut Book,
    chunk: &[Result<rows::Row, Vec<RowError>>],
) -> Result<(), sqlx::Error> {
    let (mut emails, mut phones) = (Vec::new(), Vec::new());
    for key in chunk.iter().flatten().flat_map(|r| r.keys()) {
        if book.knows(&key) {
            continue;
        }
        match key {
            Key::Email(e) => emails.push(e),
            Key::Phone(p) => phones.push(p),
        }
    }
    if emails.is_empty() && phones.is_empty() {
        return Ok(());
    }
    let found: Vec<Found> = sqlx::query_as(
        // Joins with the keys rather than `= any($2)`: a filter with a 2,000-element
        // array parameter compared every customer with every key (a chunk took 3.4 s at
        // 100k customers, growing with the table); a join probes the indexes or hashes.
        "with emails as (select unnest($2::text[]) as email), phones as (select unnest($3::text[]) as phone)
         select id, name, email, phone, timezone, business_context, metadata from crm_customers
         where tenant_id = $1 and id in (
           select c.id from crm_customers c join emails k on lower(c.email) = k.email
           where c.tenant_id = $1 and c.email is not null
           union
           select c.id from crm_customers c join phones k on c.phone = k.phone
           where c.tenant_id = $1 and c.phone is not null)
         order by created_at, id",
    )
    .bind(tenant)
    .bind(&emails)
    .bind(&phones)
    .fetch_all(&mut *conn)
    .await?;
    for (id, name, email, phone, timezone, context, metadata) in found {
        let object = |v: Value| match v {
            Value::Object(m) => m,
            _ => Default::default(),
        };
        book.add_existing(Record {
            id: Some(id),
            row: 0,
            name,
            email,
            phone,
            timezone,
            business_context: object(context.0),
            metadata: object(metadata.0),
        });
    }
    Ok(())
}

/// Inserts new customers in one statement, each with a free slug made from its name.
/// Returns how many went in and an error for each that could not (its e-mail or slug
/// was taken meanwhile by a write outside imports).
async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    created: &[&Record],
) -> Result<(usize, Vec<RowError>), sqlx::Error> {
    if created.is_empty() {
        return Ok((0, Vec::new()));
    }
    let bases: Vec<String> = created
        .iter()
        .map(|r| {
            let mut base = Slug::from_text(&r.name).map(|s| s.to_string()).unwrap_or_else(|| "customer".into());
            base.truncate(100);
            base.trim_end_matches('-').to_owned()
        })
        .collect();
    let taken: Vec<String> =
        sqlx::query_scalar("select slug from crm_customers where tenant_id = $1 and slug = any($2)")
            .bind(tenant)
            .bind(&bases)
            .fetch_all(&mut *conn)
            .await?;
    let mut used: std::collections::HashSet<String> = taken.into_iter().collect();
    let slugs: Vec<String> = bases
        .into_iter()
        .map(|base| {
            let slug = if used.contains(&base) {
                // A name already in use gets a random tail rather than a count: finding
                // the next free number would take a query per customer.
                format!("{base}-{}", &Uuid::new_v4().simple().to_string()[..8])
            } else {
                base
            };
            used.insert(slug.clone());
            slug
        })
        .collect();
    let names: Vec<&str> = created.iter().map(|r| r.name.as_str()).collect();
    let emails: Vec<Option<&str>> = created.iter().map(|r| r.email.as_deref()).collect();
    let phones: Vec<Option<&str>> = created.iter().map(|r| r.phone.as_deref()).collect();
    let zones: Vec<Option<&str>> = created.iter().map(|r| r.timezone.as_deref()).collect();
    let contexts: Vec<Json<&serde_json::Map<String, Value>>> =
        created.iter().map(|r| Json(&r.business_context)).collect();
    let metadata: Vec<Json<&serde_json::Map<String, Value>>> = created.iter().map(|r| Json(&r.metadata)).collect();
    let inserted: Vec<String> = sqlx::query_scalar(
        "insert into crm_customers (tenant_id, name, slug, email, phone, business_context, metadata, timezone)
         select $1, * from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::text[])
         on conflict do nothing
         returning slug",
    )
    .bind(tenant)
    .bind(&names)
    .bind(&slugs)
    .bind(&emails)
    .bind(&phones)
    .bind(&contexts)
    .bind(&metadata)
    .bind(&zones)
    .fetch_all(&mut *conn)
    .await?;
    let went: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
    let failed = slugs
        .iter()
        .zip(created)
        .filter(|(slug, _)| !went.contains(slug.as_str()))
        .map(|(_, r)| RowError {
            row: r.row,
            field: "email".into(),
            message: "was taken by another change while importing; import the file again to update that customer"
                .into(),
        })
        .collect();
    Ok((inserted.len(), failed))
}

/// Writes the changed customers in one statement.
async fn update(conn: &mut PgConnection, tenant: TenantId, changed: &[&Record]) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changed.iter().filter_map(|r| r.id).collect();
    let names: Vec<&str> = changed.iter().map(|r| r.name.as_str()).collect();
    let emails: Vec<Option<&str>> = changed.iter().map(|r| r.email.as_deref()).collect();
    let phones: Vec<Option<&str>> = changed.iter().map(|r| r.phone.as_deref()).collect();
    let zones: Vec<Option<&str>> = changed.iter().map(|r| r.timezone.as_deref()).collect();
    let contexts: Vec<Json<&serde_json::Map<String, Value>>> =
        changed.iter().map(|r| Json(&r.business_context)).collect();
    let metadata: Vec<Json<&serde_json::Map<String, Value>>> = changed.iter().map(|r| Json(&r.metadata)).collect();
    sqlx::query(
        "update crm_customers c set name = u.name, email = u.email, phone = u.phone,
            business_context = u.business_context, metadata = u.metadata, timezone = u.timezone
         from unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::text[])
              as u(id, name, email, phone, business_context, metadata, timezone)
         where c.tenant_id = $1 and c.id = u.id",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&names)
    .bind(&emails)
    .bind(&phones)
    .bind(&contexts)
    .bind(&metadata)
    .bind(&zones)
    .execute(conn)
    .await?;
    Ok(())
}

async fn save_errors(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    errors: &[RowError],
) -> Result<(), sqlx::Error> {
    if errors.is_empty() {
        return Ok(());
    }
    let rows: Vec<i32> = errors.iter().map(|e| e.row as i32).collect();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    sqlx::query(
        "insert into customer_import_errors (tenant_id, import_id, row_number, field, message)
         select $1, $2, * from unnest($3::int4[], $4::text[], $5::text[])
         on conflict do nothing",
    )
    .bind(tenant)
    .bind(id)
    .bind(&rows)
    .bind(&fields)
    .bind(&messages)
    .execute(conn)
    .await?;
    Ok(())
}
