//! The initial copy: every published table read under the snapshot the replication slot
//! exported when it was created, so the copy holds exactly the transactions that
//! committed before the slot's consistent point and the stream holds exactly the rest.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::{AssertSqlSafe, Connection, PgConnection, postgres::PgConnectOptions};
use tokio::sync::Semaphore;

use crate::{
    batch::{RowMeta, TableBatch, Value},
    error::IngestError,
    lake::{FileEntry, Lake, file_path},
    pgtype::{SESSION_SETTINGS, copy_field},
    schema::{Op, TableSchema, TypeCatalog, from_catalog},
};

/// What the snapshot of one table produced.
pub struct TableCopy {
    pub schema: TableSchema,
    pub files: Vec<FileEntry>,
    pub rows: u64,
}

pub struct SnapshotPlan<'a> {
    pub options: &'a PgConnectOptions,
    pub snapshot_name: &'a str,
    pub consistent_lsn: u64,
    pub tables: &'a [String],
    pub parallelism: usize,
    pub batch_rows: usize,
    pub progress: bool,
}

/// Copies every table (up to `parallelism` at once); returns them in `tables` order.
#[tracing::instrument(skip_all, fields(tables = plan.tables.len(), lsn = plan.consistent_lsn))]
pub async fn copy_tables(
    plan: SnapshotPlan<'_>,
    lake: &Lake,
    types: &TypeCatalog,
    next_file: &AtomicU64,
) -> Result<Vec<TableCopy>, IngestError> {
    let estimate = estimate_rows(plan.options, plan.tables).await.unwrap_or(0);
    let bar = if plan.progress { ProgressBar::new(estimate) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("snapshot {bar:40} {human_pos}/{human_len} rows ({per_sec}, eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let limit = Arc::new(Semaphore::new(plan.parallelism.max(1)));
    let snapshot_ts = chrono::Utc::now().timestamp_micros();
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    // Tables copy concurrently, each on its own connection in the same snapshot.
    let mut tasks = Vec::new();
    for table in plan.tables {
        let limit = limit.clone();
        let bar = bar.clone();
        let options = plan.options.clone();
        let snapshot_name = plan.snapshot_name.to_string();
        let table = table.clone();
        let date = date.clone();
        let batch_rows = plan.batch_rows;
        let lsn = plan.consistent_lsn;
        tasks.push(async move {
            let _permit = limit.acquire().await.map_err(|e| IngestError::Protocol(e.to_string()))?;
            let target = Target { lake, date: &date, lsn, snapshot_ts, batch_rows, next_file };
            copy_one(&options, &snapshot_name, &table, &target, types, &bar).await
        });
    }
    let results = futures_util::future::join_all(tasks).await;
    bar.finish_and_clear();
    let mut copies = Vec::new();
    for result in results {
        copies.push(result?);
    }
    Ok(copies)
}

/// Where and how a table's copy is written.
struct Target<'a> {
    lake: &'a Lake,
    date: &'a str,
    lsn: u64,
    snapshot_ts: i64,
    batch_rows: usize,
    next_file: &'a AtomicU64,
}

impl Target<'_> {
    /// Writes one chunk of the copy as a file of the lake (listed by the manifest later).
    async fn write(&self, table: &str, batch: TableBatch) -> Result<FileEntry, IngestError> {
        let rows = batch.rows() as u64;
        let record = batch.finish()?;
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = file_path(table, self.date, n, self.lsn);
        let bytes = self.lake.write_parquet(&path, &[record]).await?;
        Ok(FileEntry {
            table: table.to_string(),
            path,
            date: self.date.to_string(),
            rows,
            bytes,
            min_lsn: self.lsn,
            max_lsn: self.lsn,
            merged: 1,
            inserts_only: true,
        })
    }
}

#[tracing::instrument(skip(options, snapshot_name, target, types, bar))]
async fn copy_one(
    options: &PgConnectOptions,
    snapshot_name: &str,
    table: &str,
    target: &Target<'_>,
    types: &TypeCatalog,
    bar: &ProgressBar,
) -> Result<TableCopy, IngestError> {
    let mut conn = PgConnection::connect_with(options).await?;
    sqlx::raw_sql("begin isolation level repeatable read, read only").execute(&mut conn).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("set transaction snapshot '{}'", snapshot_name.replace('\'', "''"))))
        .execute(&mut conn)
        .await?;
    // The platform's row-level security shows a session one tenant's rows unless it says
    // it is the system (the stream, decoded from WAL, is not filtered either).
    let settings = SESSION_SETTINGS.iter().chain(&[("app.bypass_rls", "on")]);
    for (name, value) in settings {
        sqlx::query("select set_config($1, $2, true)").bind(name).bind(value).execute(&mut conn).await?;
    }
    let schema = Arc::new(from_catalog(&mut conn, types, table).await?);
    let columns = schema.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
    let copy = format!("copy (select {columns} from {}) to stdout", quote_ident(table));
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut seq: u32 = 0;
    let mut batch = TableBatch::new(schema.clone());
    {
        let mut stream = conn.copy_out_raw(&copy).await?;
        let mut carry: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            carry.extend_from_slice(&chunk?);
            let mut start = 0;
            while let Some(end) = carry[start..].iter().position(|&b| b == b'\n') {
                let line = &carry[start..start + end];
                start += end + 1;
                append_copy_line(&mut batch, line, target.lsn, seq, target.snapshot_ts)?;
                seq = seq.checked_add(1).ok_or_else(|| IngestError::Protocol(format!("{table}: more than 4G rows")))?;
                total += 1;
                if batch.rows() >= target.batch_rows {
                    let full = std::mem::replace(&mut batch, TableBatch::new(schema.clone()));
                    files.push(target.write(table, full).await?);
                    bar.inc(target.batch_rows as u64);
                }
            }
            carry.drain(..start);
        }
        if !carry.is_empty() {
            return Err(IngestError::Protocol(format!("{table}: COPY ended inside a row")));
        }
    }
    let left = batch.rows() as u64;
    // An empty table still gets a (row-less) file: its schema makes it queryable.
    if left > 0 || files.is_empty() {
        files.push(target.write(table, batch).await?);
        bar.inc(left);
    }
    sqlx::raw_sql("commit").execute(&mut conn).await?;
    let _ = conn.close().await;
    let schema = Arc::try_unwrap(schema).unwrap_or_else(|s| (*s).clone());
    Ok(TableCopy { schema, files, rows: total })
}

fn append_copy_line(batch: &mut TableBatch, line: &[u8], lsn: u64, seq: u32, ts: i64) -> Result<(), IngestError> {
    let fields: Vec<Option<std::borrow::Cow<'_, [u8]>>> = line.split(|&b| b == b'\t').map(copy_field).collect();
    let mut values = Vec::with_capacity(fields.len());
    for field in &fields {
        values.push(match field {
            None => Value::Null,
            Some(bytes) => Value::Text(
                std::str::from_utf8(bytes).map_err(|_| IngestError::Protocol("COPY produced invalid UTF-8".into()))?,
            ),
        });
    }
    let meta = RowMeta { op: Op::Snapshot, lsn, seq, commit_ts: ts, xid: None };
    batch.append(meta, values.into_iter())
}

/// `pg_class.reltuples` of the tables: the progress bar's length.
async fn estimate_rows(options: &PgConnectOptions, tables: &[String]) -> Result<u64, sqlx::Error> {
    let mut conn = PgConnection::connect_with(options).await?;
    let estimate: Option<f64> = sqlx::query_scalar(
        "select sum(greatest(c.reltuples, 0))::float8 from pg_class c where c.oid = any(array(select to_regclass(t) from unnest($1::text[]) t))",
    )
    .bind(tables)
    .fetch_one(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(estimate.unwrap_or(0.0) as u64)
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
