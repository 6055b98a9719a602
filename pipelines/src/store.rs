//! Writing results into the analytics tables and recording runs. Every write is one
//! transaction with row-level security bypassed (a run covers every tenant); rows for
//! customers or campaigns deleted since the lake saw them are dropped, not errors.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};

use crate::{
    PipelineError,
    copy::{ColumnType, CopyBatch, Encoder},
};

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
    // A batch write joins a million staged rows with the table: with the default 4 MB the
    // hash join spills to disk in batches.
    sqlx::query("set local work_mem = '256MB'").execute(&mut *tx).await?;
    Ok(tx)
}

/// The columns of `table` (a name on the search path, temporary tables included) and
/// the types the binary `COPY` writes them as.
async fn column_types(conn: &mut PgConnection, table: &str) -> Result<Vec<(String, ColumnType)>, PipelineError> {
    let rows: Vec<(String, i64, i32)> = sqlx::query_as(
        "select attname::text, atttypid::int8, atttypmod from pg_attribute
         where attrelid = $1::text::regclass and attnum > 0 and not attisdropped",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(name, oid, typmod)| {
            let ty = u32::try_from(oid).ok().and_then(|oid| ColumnType::of_oid(oid, typmod)).ok_or_else(|| {
                PipelineError::Input(format!("{table}.{name} has a type the pipelines do not write (oid {oid})"))
            })?;
            Ok((name, ty))
        })
        .collect()
}

/// Binary `COPY` of `batches` into a table without row-level security (a staging table:
/// Postgres refuses `COPY FROM` into a table with RLS enabled, bypass or not). Every
/// batch is matched to the table's columns and cast to their types before the `COPY`
/// starts; a value that still does not fit (a malformed uuid) aborts the `COPY`.
#[tracing::instrument(skip(conn, batches), fields(rows = batches.iter().map(CopyBatch::rows).sum::<usize>()), err)]
pub async fn copy(conn: &mut PgConnection, table: &str, batches: &[CopyBatch]) -> Result<(), PipelineError> {
    let Some(first) = batches.iter().find(|b| b.rows() > 0) else { return Ok(()) };
    let names = first.names();
    let types = column_types(conn, table).await?;
    let encoders: Vec<Encoder> = batches
        .iter()
        .filter(|b| b.rows() > 0)
        .map(|b| {
            if b.names() != names {
                return Err(PipelineError::Input(format!("batches for {table} have different columns")));
            }
            b.encoder(&types)
        })
        .collect::<Result<_, _>>()?;
    let mut sink =
        conn.copy_in_raw(&format!("copy {table} ({}) from stdin with (format binary)", names.join(", "))).await?;
    const ROWS_PER_SEND: usize = 50_000;
    let mut chunk = Encoder::header();
    for encoder in &encoders {
        for start in (0..encoder.rows()).step_by(ROWS_PER_SEND) {
            let end = (start + ROWS_PER_SEND).min(encoder.rows());
            if let Err(e) = encoder.encode(start..end, &mut chunk) {
                // Nothing of a failed write may land: abort the COPY, then report why.
                sink.abort(e.to_string()).await.ok();
                return Err(e);
            }
            sink.send(std::mem::take(&mut chunk)).await?;
        }
    }
    chunk.extend_from_slice(&Encoder::trailer());
    sink.send(chunk).await?;
    sink.finish().await?;
    Ok(())
}

/// A temporary copy of `table`'s shape holding `batches`; returns its name.
async fn stage(tx: &mut PgConnection, table: &str, batches: &[CopyBatch]) -> Result<String, PipelineError> {
    let stage = format!("stage_{table}");
    sqlx::query(AssertSqlSafe(format!("create temp table {stage} (like {table} including defaults) on commit drop")))
        .execute(&mut *tx)
        .await?;
    copy(tx, &stage, batches).await?;
    Ok(stage)
}

/// Deletes the rows of `stage` whose `key` is no longer an id of `parent` (the lake can
/// trail Postgres by a moment). A separate statement rather than a semi-join in the
/// `MERGE`'s source, so the `MERGE` reads the stage in the order the batch wrote it:
/// a semi-join may hash the stage and emit it in the parent's order, and the updates
/// then reach the heap's pages out of order (see `send_times` in `batch`).
/// Returns the rows the stage keeps of the `staged` it held.
async fn drop_orphans(
    tx: &mut PgConnection,
    stage: &str,
    parent: Parent<'_>,
    staged: u64,
) -> Result<u64, PipelineError> {
    let dropped = sqlx::query(AssertSqlSafe(format!(
        "delete from {stage} s where not exists (select 1 from {table} p where p.id = s.{key})",
        table = parent.table,
        key = parent.key
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(staged.saturating_sub(dropped))
}

/// The table whose ids a result's rows hang from (`key` in the result, a foreign key
/// with `on delete cascade` to `table`'s `id`).
#[derive(Debug, Clone, Copy)]
struct Parent<'a> {
    table: &'a str,
    key: &'a str,
}

fn staged(batches: &[CopyBatch]) -> u64 {
    batches.iter().map(CopyBatch::rows).sum::<usize>() as u64
}

/// Loads `batches` into `table` through a staging table, keeping only rows whose `key`
/// still exists as an id of `parent` (the lake can trail Postgres by a moment; see
/// [`merge_keeping_parents`] and, for [`Replace::Keys`], [`drop_orphans`]).
///
/// [`Replace::All`] is one `MERGE`: rows present are updated in place, new keys inserted,
/// keys the run no longer produced deleted. An update keeps the key, so Postgres does not
/// re-check the foreign keys, and on the score tables (fillfactor 50, no index on a
/// value) it is heap-only: at 1 M rows this is ~4× faster than delete + insert, which
/// re-checked two foreign keys and re-inserted into every index per row. The table is
/// locked against other writers (readers go on) so a watch round's upsert cannot race
/// the merge's inserts into a duplicate key. `batches` should come in key order: the
/// updates then reach the heap page after page.
#[tracing::instrument(skip(tx, batches), err)]
pub async fn replace_scores(
    tx: &mut PgConnection,
    table: &str,
    key: &str,
    parent: &str,
    batches: &[CopyBatch],
    mode: Replace,
) -> Result<u64, PipelineError> {
    if mode == Replace::All {
        sqlx::query(AssertSqlSafe(format!("lock table {table} in share row exclusive mode"))).execute(&mut *tx).await?;
    }
    let Some(first) = batches.first() else {
        if mode == Replace::All {
            sqlx::query(AssertSqlSafe(format!("delete from {table}"))).execute(&mut *tx).await?;
        }
        return Ok(0);
    };
    let names = first.names();
    let columns = names.join(", ");
    let stage = stage(tx, table, batches).await?;
    let parent = Parent { table: parent, key };
    let written = match mode {
        Replace::All => {
            let merge = Merge { table, stage: &stage, names: &names, keys: &[key], stamp: Some("computed_at") };
            merge_keeping_parents(tx, merge, parent, staged(batches)).await?
        }
        Replace::Keys => {
            let kept = drop_orphans(tx, &stage, parent, staged(batches)).await?;
            let updates: Vec<String> =
                names.iter().filter(|c| **c != key).map(|c| format!("{c} = excluded.{c}")).collect();
            let s_columns: Vec<String> = names.iter().map(|c| format!("s.{c}")).collect();
            sqlx::query(AssertSqlSafe(format!(
                "insert into {table} ({columns}, computed_at)
                 select {s_columns}, now() from {stage} s
                 on conflict ({key}) do update set {updates}, computed_at = now()",
                s_columns = s_columns.join(", "),
                updates = updates.join(", ")
            )))
            .execute(&mut *tx)
            .await?;
            kept
        }
    };
    sqlx::query(AssertSqlSafe(format!("drop table {stage}"))).execute(&mut *tx).await?;
    Ok(written)
}

/// Which figures of the dashboard's per-tenant score KPIs a refresh recomputes.
#[derive(Debug, Clone, Copy)]
pub enum Summaries<'a> {
    /// Every tenant's customers and engagement figures: a batch run's engagement write.
    Engagement,
    /// Every tenant's customers and purchase-probability figures: its predictive write.
    Predictive,
    /// These tenants' customers and engagement figures: what the watch recomputes.
    EngagementOf(&'a [String]),
}

impl Summaries<'_> {
    fn name(&self) -> &'static str {
        match self {
            Summaries::Engagement => "engagement",
            Summaries::Predictive => "predictive",
            Summaries::EngagementOf(_) => "engagement of touched tenants",
        }
    }
}

/// Recomputes the dashboard's per-tenant score KPIs (`customer_score_summaries`) from one
/// score table: each refresh sets only its own table's columns (and the customer count),
/// so the engagement and predictive writes of a run each read one table, not both. A
/// batch run calls it in the transaction that wrote the scores; the watch right after its
/// own write. It holds a lock until the caller's transaction ends: keep that short.
#[tracing::instrument(skip(tx, figures), fields(figures = figures.name()), err)]
pub async fn refresh_score_summaries(tx: &mut PgConnection, figures: Summaries<'_>) -> Result<u64, PipelineError> {
    // Refreshes take turns until their transactions end, and each one's statement starts
    // after the lock is granted, so it reads what the refresh before it committed. Without
    // it, a refresh whose statement began before another's commit could overwrite the
    // same columns with the older figures (a watch round's beside a batch run's).
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('customer_score_summaries', 0))")
        .execute(&mut *tx)
        .await?;
    let tenants = match figures {
        Summaries::Engagement => {
            // One pass over each table, grouped by tenant.
            let rows = sqlx::query(
                "with c as (select tenant_id, count(*) as n from crm_customers group by 1),
                      e as (select tenant_id, count(*) as n, avg(score)::float8 as average,
                                   count(*) filter (where score >= 70) as high
                            from customer_engagement_scores group by 1)
                 insert into customer_score_summaries as s
                     (tenant_id, customers, scored_customers, average_engagement, highly_engaged, likely_buyers,
                      computed_at)
                 select t.id, coalesce(c.n, 0), coalesce(e.n, 0), e.average, coalesce(e.high, 0), 0, now()
                 from tenants t left join c on c.tenant_id = t.id left join e on e.tenant_id = t.id
                 on conflict (tenant_id) do update set
                     customers = excluded.customers, scored_customers = excluded.scored_customers,
                     average_engagement = excluded.average_engagement, highly_engaged = excluded.highly_engaged,
                     computed_at = excluded.computed_at",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            return Ok(rows);
        }
        Summaries::Predictive => {
            let rows = sqlx::query(
                "with c as (select tenant_id, count(*) as n from crm_customers group by 1),
                      p as (select tenant_id, count(*) filter (where probability >= 0.5) as likely,
                                   sum(probability) as expected
                            from customer_predictive_scores group by 1)
                 insert into customer_score_summaries as s
                     (tenant_id, customers, scored_customers, highly_engaged, likely_buyers, expected_buyers,
                      computed_at)
                 select t.id, coalesce(c.n, 0), 0, 0, coalesce(p.likely, 0), p.expected, now()
                 from tenants t left join c on c.tenant_id = t.id left join p on p.tenant_id = t.id
                 on conflict (tenant_id) do update set
                     customers = excluded.customers, likely_buyers = excluded.likely_buyers,
                     expected_buyers = excluded.expected_buyers, computed_at = excluded.computed_at",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            return Ok(rows);
        }
        Summaries::EngagementOf(tenants) => tenants
            .iter()
            .map(|t| t.parse())
            .collect::<Result<Vec<uuid::Uuid>, _>>()
            .map_err(|e| PipelineError::Input(format!("tenant id: {e}")))?,
    };
    // The watch: the touched tenants, through the tenant indexes, and only what the watch
    // recomputes (customers and engagement; purchase probabilities change with batch runs).
    let rows = sqlx::query(
        "insert into customer_score_summaries as s
             (tenant_id, customers, scored_customers, average_engagement, highly_engaged, likely_buyers, computed_at)
         select t.id, (select count(*) from crm_customers where tenant_id = t.id), e.n, e.average, e.high, 0, now()
         from tenants t
         cross join lateral (select count(*) as n, avg(score)::float8 as average,
                                    count(*) filter (where score >= 70) as high
                             from customer_engagement_scores where tenant_id = t.id) e
         where t.id = any($1)
         on conflict (tenant_id) do update set
             customers = excluded.customers, scored_customers = excluded.scored_customers,
             average_engagement = excluded.average_engagement, highly_engaged = excluded.highly_engaged,
             computed_at = excluded.computed_at",
    )
    .bind(tenants)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(rows)
}

/// Replaces every row of a read-model table (through a staging table, see [`copy`]).
#[tracing::instrument(skip(tx, batches), err)]
pub async fn replace_all(tx: &mut PgConnection, table: &str, batches: &[CopyBatch]) -> Result<u64, PipelineError> {
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

/// Replaces every row of `table` (keyed by `keys`, which include `customer_id`) with
/// `batches`, keeping only rows whose customer still exists (the lake can trail Postgres
/// by a moment). One `MERGE`, as [`replace_scores`] does: a key present again is updated
/// in place (no foreign key re-checked; heap-only on a table with room on its pages), new
/// keys inserted, keys the run no longer produced deleted. Delete + insert re-checked two
/// foreign keys per row: 67.8 s for 2.65 M send slots at 1 M customers. `batches` should
/// come in key order, as for [`replace_scores`].
#[tracing::instrument(skip(tx, batches), err)]
pub async fn replace_customer_rows(
    tx: &mut PgConnection,
    table: &str,
    keys: &[&str],
    batches: &[CopyBatch],
) -> Result<u64, PipelineError> {
    sqlx::query(AssertSqlSafe(format!("lock table {table} in share row exclusive mode"))).execute(&mut *tx).await?;
    let Some(first) = batches.first() else {
        sqlx::query(AssertSqlSafe(format!("delete from {table}"))).execute(&mut *tx).await?;
        return Ok(0);
    };
    let names = first.names();
    let stage = stage(tx, table, batches).await?;
    let parent = Parent { table: "crm_customers", key: "customer_id" };
    let merge = Merge { table, stage: &stage, names: &names, keys, stamp: None };
    let written = merge_keeping_parents(tx, merge, parent, staged(batches)).await?;
    sqlx::query(AssertSqlSafe(format!("drop table {stage}"))).execute(&mut *tx).await?;
    Ok(written)
}

/// Postgres' `work_mem` for a batch write's `MERGE` (its hash table may use
/// `hash_mem_multiplier` times this): one hash of 2.65 M send-slot keys took 177 MB.
/// Larger tables spill to temp files again, which is slower but still bounded.
const MERGE_WORK_MEM: &str = "256MB";

/// [`merge_replacing`] for a result whose rows hang from `parent`; returns the rows
/// written (of the `staged` the stage holds).
///
/// A row of a parent deleted since the lake saw it (the lake can trail Postgres by a
/// moment) has no row to update, since the delete cascaded to it, so the `MERGE` would
/// insert it and the foreign key refuses the statement. That is rare, so the `MERGE` runs
/// first as it is, inside a savepoint; only if a foreign key refuses it does it go back,
/// delete the orphans from the stage and merge again. Deleting them up front cost an
/// anti-join of the whole stage with the parent on every write: 1.1–1.2 s of
/// Postgres' time per million rows alone, 1.7–2.5 s beside the run's other work
/// (docs/benchmarks.md).
async fn merge_keeping_parents(
    tx: &mut PgConnection,
    merge: Merge<'_>,
    parent: Parent<'_>,
    staged: u64,
) -> Result<u64, PipelineError> {
    sqlx::query("savepoint merge_results").execute(&mut *tx).await?;
    match merge_replacing(tx, merge).await {
        Ok(()) => {
            sqlx::query("release savepoint merge_results").execute(&mut *tx).await?;
            Ok(staged)
        }
        Err(PipelineError::Database(e)) if fibonacco_platform::db::foreign_key_violation(&e).is_some() => {
            tracing::info!(
                table = merge.table,
                parent = parent.table,
                "rows of deleted parents: dropping them and merging again"
            );
            sqlx::query("rollback to savepoint merge_results").execute(&mut *tx).await?;
            let kept = drop_orphans(tx, merge.stage, parent, staged).await?;
            merge_replacing(tx, merge).await?;
            Ok(kept)
        }
        Err(e) => Err(e),
    }
}

/// A `MERGE` of the staging table `stage` (columns `names`) into `table`, matched on
/// `keys`; `stamp`, if any, is a column set to now() on every row written.
#[derive(Debug, Clone, Copy)]
struct Merge<'a> {
    table: &'a str,
    stage: &'a str,
    names: &'a [&'a str],
    keys: &'a [&'a str],
    stamp: Option<&'a str>,
}

/// One `MERGE` that makes `table` hold exactly the rows of the staging table `stage`
/// (columns `names`, matched on `keys`): a row present is updated in place, a new key
/// inserted, a key the stage no longer has deleted; `stamp`, if any, is a column set to now() either way. Neither the
/// keys nor tenant_id are assigned: a key never changes tenant, and assigning either would
/// make Postgres re-check its foreign key. Every row of the stage is inserted or updated
/// (a key twice fails the statement), so the caller's count of them is the rows written;
/// counting them through `RETURNING merge_action()` cost 1.3–1.9 s of the send slots'
/// `MERGE` at 2.65 M rows.
async fn merge_replacing(tx: &mut PgConnection, merge: Merge<'_>) -> Result<(), PipelineError> {
    let Merge { table, stage, names, keys, stamp } = merge;
    let on = keys.iter().map(|k| format!("t.{k} = s.{k}")).collect::<Vec<_>>().join(" and ");
    let mut updates: Vec<String> =
        names.iter().filter(|c| !keys.contains(c) && **c != "tenant_id").map(|c| format!("{c} = s.{c}")).collect();
    let mut columns: Vec<String> = names.iter().map(|c| c.to_string()).collect();
    let mut values: Vec<String> = names.iter().map(|c| format!("s.{c}")).collect();
    if let Some(stamp) = stamp {
        updates.push(format!("{stamp} = now()"));
        columns.push(stamp.to_string());
        values.push("now()".into());
    }
    // The MERGE hashes every target row's key. Under the default work_mem (4 MB) the
    // send slots' join at 1 M customers (2.65 M rows) spilled to 32 batches in temp files,
    // and the updates then swept the table's pages once per batch through a 256 MB buffer
    // pool: 21.9 s, against 9.8 s in one batch (EXPLAIN ANALYZE; docs/benchmarks.md). The
    // setting ends with the write's transaction.
    sqlx::query("select set_config('work_mem', $1, true)").bind(MERGE_WORK_MEM).execute(&mut *tx).await?;
    sqlx::query(AssertSqlSafe(format!(
        "merge into {table} t using {stage} s on {on}
         when matched then update set {updates}
         when not matched then insert ({columns}) values ({values})
         when not matched by source then delete",
        updates = updates.join(", "),
        columns = columns.join(", "),
        values = values.join(", ")
    )))
    .execute(&mut *tx)
    .await?;
    Ok(())
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
