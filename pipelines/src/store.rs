//! Writing results into the analytics tables and recording runs. Every write is one
//! transaction with row-level security bypassed (a run covers every tenant); rows for
//! customers or campaigns deleted since the lake saw them are dropped, not errors.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};

use crate::{PipelineError, output::TextBatch};

/// How a result replaces what the table held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Every row of the table (a batch run computed all of them).
    All,
    /// Only the rows with these keys (the watch run); upserts on the primary key.
    Keys,
}

pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, PipelineError> {
    let mut tx = pool.begin().await?;
    sqlx::query("set local app.bypass_rls = 'on'").execute(&mut *tx).await?;
    Ok(tx)
}

/// `COPY` into a table without row-level security (a staging table: Postgres refuses
/// `COPY FROM` into a table with RLS enabled, bypass or not).
#[tracing::instrument(skip(conn, batch), fields(rows = batch.rows()), err)]
pub async fn copy(conn: &mut PgConnection, table: &str, batch: &TextBatch) -> Result<(), PipelineError> {
    if batch.rows() == 0 {
        return Ok(());
    }
    let mut sink = conn.copy_in_raw(&format!("copy {table} ({}) from stdin", batch.names().join(", "))).await?;
    sink.send(batch.copy_text().into_bytes()).await?;
    sink.finish().await?;
    Ok(())
}

/// A temporary copy of `table`'s shape holding `batches`; returns its name.
async fn stage(tx: &mut PgConnection, table: &str, batches: &[TextBatch]) -> Result<String, PipelineError> {
    let stage = format!("stage_{table}");
    sqlx::query(AssertSqlSafe(format!("create temp table {stage} (like {table} including defaults) on commit drop")))
        .execute(&mut *tx)
        .await?;
    for batch in batches {
        copy(tx, &stage, batch).await?;
    }
    Ok(stage)
}

/// Loads `batches` into `table` through a staging table, keeping only rows whose `key`
/// still exists as an id of `parent` (the lake can trail Postgres by a moment).
#[tracing::instrument(skip(tx, batches), err)]
pub async fn replace_scores(
    tx: &mut PgConnection,
    table: &str,
    key: &str,
    parent: &str,
    batches: &[TextBatch],
    mode: Replace,
) -> Result<u64, PipelineError> {
    if mode == Replace::All {
        sqlx::query(AssertSqlSafe(format!("delete from {table}"))).execute(&mut *tx).await?;
    }
    let Some(first) = batches.first() else { return Ok(0) };
    let columns = first.names().join(", ");
    let stage = stage(tx, table, batches).await?;
    let updates: Vec<String> =
        first.names().iter().filter(|c| **c != key).map(|c| format!("{c} = excluded.{c}")).collect();
    let s_columns: Vec<String> = first.names().iter().map(|c| format!("s.{c}")).collect();
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "insert into {table} ({columns}, computed_at)
         select {s_columns}, now() from {stage} s join {parent} p on p.id = s.{key}
         on conflict ({key}) do update set {updates}, computed_at = now()",
        s_columns = s_columns.join(", "),
        updates = updates.join(", ")
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(AssertSqlSafe(format!("drop table {stage}"))).execute(&mut *tx).await?;
    Ok(inserted)
}

/// Replaces every row of a read-model table (through a staging table, see [`copy`]).
#[tracing::instrument(skip(tx, batches), err)]
pub async fn replace_all(tx: &mut PgConnection, table: &str, batches: &[TextBatch]) -> Result<u64, PipelineError> {
    sqlx::query(AssertSqlSafe(format!("delete from {table}"))).execute(&mut *tx).await?;
    let Some(first) = batches.first() else { return Ok(0) };
    let columns = first.names().join(", ");
    let stage = stage(tx, table, batches).await?;
    let rows = sqlx::query(AssertSqlSafe(format!("insert into {table} ({columns}) select {columns} from {stage}")))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(AssertSqlSafe(format!("drop table {stage}"))).execute(&mut *tx).await?;
    Ok(rows)
}

/// One row of `pipeline_runs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub pipeline: &'static str,
    pub mode: &'static str,
    pub as_of: DateTime<Utc>,
    pub input_lsn: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub rows_written: i64,
    pub details: serde_json::Value,
}

#[tracing::instrument(skip(conn, run), fields(pipeline = run.pipeline, mode = run.mode), err)]
pub async fn record_run(conn: &mut PgConnection, run: &RunRecord) -> Result<(), PipelineError> {
    sqlx::query(
        "insert into pipeline_runs (pipeline, mode, as_of, input_lsn, started_at, duration_ms, rows_written, details)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(run.pipeline)
    .bind(run.mode)
    .bind(run.as_of)
    .bind(&run.input_lsn)
    .bind(run.started_at)
    .bind(run.duration_ms)
    .bind(run.rows_written)
    .bind(&run.details)
    .execute(conn)
    .await?;
    Ok(())
}
