//! Erasure reaches the lake. The API removes a customer from Postgres and logs it in
//! `erasures`; the lake's files still hold every version of their rows. The capture, the
//! lake's only writer, rewrites those files between flushes: every change row whose
//! `customer_id` is the erased customer's (in any table), the customer's own rows
//! (`crm_customers.id`), and rows named by the erasure's `lake_keys` (their conversations'
//! messages) are dropped, in the manifest's files and in the pipelines' derived files.
//!
//! It waits until it has taken the WAL up to the erasure's commit, so the erasure's own
//! deletes (and the orders' detaching updates) are in the lake first: afterwards no version
//! of any erased row is left, and the current state and `_changes` history agree with
//! Postgres (orders keep their latest, detached version). The manifest swaps the files in
//! one write and the old files are deleted after it, as compaction does; a crash between
//! the two leaves orphans (removed at the next start) and a repeat finds nothing to drop.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::{
    array::{Array, BooleanArray, RecordBatch},
    compute::{cast, filter_record_batch, kernels::boolean::not},
    datatypes::DataType,
};
use serde_json::Value;
use sqlx::PgPool;

use crate::{
    error::{IngestError, LakeError},
    lake::{DERIVED, FileEntry, Lake, LakeWriter, Manifest},
};

/// Erasures whose lake step is due, merged into one set of filters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Due {
    pub ids: Vec<uuid::Uuid>,
    pub customers: BTreeSet<String>,
    /// table → column → values whose rows go.
    pub keys: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Due {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The (column, values) pairs whose rows go from `table`.
    fn filters(&self, table: &str) -> Vec<(&str, &BTreeSet<String>)> {
        let mut filters = vec![("customer_id", &self.customers)];
        if table == "crm_customers" {
            filters.push(("id", &self.customers));
        }
        if let Some(columns) = self.keys.get(table) {
            filters.extend(columns.iter().map(|(c, v)| (c.as_str(), v)));
        }
        filters
    }
}

/// The erasures whose lake step is due once the capture has taken the WAL up to
/// `taken_lsn`. An erasure seen for the first time gets the current WAL position as the
/// point to wait for (its commit is before it). `None` without an `erasures` table (a
/// database the migrations never ran on).
#[tracing::instrument(skip(pool), err)]
pub async fn due(pool: &PgPool, taken_lsn: u64) -> Result<Option<Due>, IngestError> {
    let mut tx = fibonacco_platform::db::begin_system(pool).await?;
    let stamped = sqlx::query(
        "update erasures set lake_after_lsn = pg_current_wal_lsn() where lake_done_at is null and lake_after_lsn is null",
    )
    .execute(&mut *tx)
    .await;
    match stamped {
        // 42P01: no such table (the transaction is rolled back as it drops).
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => return Ok(None),
        other => other?,
    };
    let rows: Vec<(uuid::Uuid, uuid::Uuid, Value)> = sqlx::query_as(
        "select id, customer_id, lake_keys from erasures
         where lake_done_at is null and (lake_after_lsn - '0/0'::pg_lsn) <= $1::numeric order by requested_at",
    )
    .bind(i64::try_from(taken_lsn).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut due = Due::default();
    for (id, customer, keys) in rows {
        due.ids.push(id);
        due.customers.insert(customer.to_string());
        let Value::Object(tables) = keys else { continue };
        for (table, columns) in tables {
            let Value::Object(columns) = columns else { continue };
            for (column, values) in columns {
                let values = values.as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from);
                due.keys.entry(table.clone()).or_default().entry(column).or_default().extend(values);
            }
        }
    }
    Ok(Some(due))
}

/// Records the lake step of `due`'s erasures as done.
#[tracing::instrument(skip_all, fields(erasures = due.ids.len(), files), err)]
pub async fn mark_done(pool: &PgPool, due: &Due, files: usize) -> Result<(), IngestError> {
    let mut tx = fibonacco_platform::db::begin_system(pool).await?;
    // The keys were only needed to find the rows: the log keeps counts, time and who asked.
    sqlx::query(
        "update erasures set lake_done_at = now(), lake_files_rewritten = $2, lake_keys = '{}' where id = any($1)",
    )
    .bind(&due.ids)
    .bind(i32::try_from(files).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Rewrites every manifest file and derived file holding rows of `due`; returns how many
/// files were rewritten or removed. The manifest is written once, before old files go.
#[tracing::instrument(skip_all, fields(customers = due.customers.len()), err)]
pub async fn apply(lake: &Lake, manifest: &mut Manifest, due: &Due) -> Result<usize, IngestError> {
    // Built beside the manifest in use, which changes only once the new one is written.
    let mut old_paths = Vec::new();
    let mut keep = Vec::with_capacity(manifest.files.len());
    let mut next = manifest.clone();
    for file in manifest.files.iter().cloned() {
        let filters = due.filters(&file.table);
        let batches = lake.read_parquet(&file.path).await?;
        let Some((kept, dropped)) = without(&batches, &filters)? else {
            keep.push(file);
            continue;
        };
        if let Some(meta) = next.tables.get_mut(&file.table) {
            meta.rows = meta.rows.saturating_sub(dropped);
        }
        old_paths.push(file.path.clone());
        let rows: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
        if rows == 0 {
            continue;
        }
        let mut writer = LakeWriter::new(kept[0].schema())?;
        for b in &kept {
            writer.write(b)?;
        }
        let path = next.allocate_path(&file.table, &file.date, file.min_lsn);
        let bytes = lake.put_parquet(&path, writer).await?;
        keep.push(FileEntry { path, rows, bytes, ..file });
    }
    let rewritten = old_paths.len();
    if rewritten > 0 {
        next.files = keep;
        lake.write_manifest(&next).await?;
        *manifest = next;
        for path in old_paths {
            lake.delete(&path).await?;
        }
    }
    let derived = apply_derived(lake, due).await?;
    metrics::counter!("ingest_erasure_files_rewritten_total").increment((rewritten + derived) as u64);
    tracing::info!(files = rewritten, derived, "erased customers' rows from the lake");
    Ok(rewritten + derived)
}

/// The pipelines' outputs under `_derived/` (scores, features, read models by date):
/// rewritten in place (one atomic put) or deleted when nothing is left.
async fn apply_derived(lake: &Lake, due: &Due) -> Result<usize, IngestError> {
    let mut rewritten = 0;
    for path in lake.list().await?.into_iter().filter(|p| p.starts_with(DERIVED) && p.ends_with(".parquet")) {
        let batches = lake.read_parquet(&path).await?;
        let Some((kept, _)) = without(&batches, &[("customer_id", &due.customers)])? else { continue };
        rewritten += 1;
        if kept.iter().all(|b| b.num_rows() == 0) {
            lake.delete(&path).await?;
        } else {
            lake.write_parquet(&path, &kept).await?;
        }
    }
    Ok(rewritten)
}

/// `batches` without the rows where any filter's column holds one of its values, and how
/// many went; `None` when none matches (the file stays as it is).
fn without(
    batches: &[RecordBatch],
    filters: &[(&str, &BTreeSet<String>)],
) -> Result<Option<(Vec<RecordBatch>, u64)>, IngestError> {
    let mut kept = Vec::with_capacity(batches.len());
    let mut dropped = 0u64;
    for batch in batches {
        let mut erase = vec![false; batch.num_rows()];
        for (column, values) in filters {
            let Ok(index) = batch.schema().index_of(column) else { continue };
            if values.is_empty() {
                continue;
            }
            let text = cast(batch.column(index), &DataType::Utf8).map_err(LakeError::Arrow)?;
            let text = text
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .ok_or_else(|| IngestError::Protocol(format!("column {column} does not read as text")))?;
            for (i, flag) in erase.iter_mut().enumerate() {
                *flag |= text.is_valid(i) && values.contains(text.value(i));
            }
        }
        let n = erase.iter().filter(|e| **e).count() as u64;
        dropped += n;
        if n == 0 {
            kept.push(batch.clone());
        } else {
            let keep = not(&BooleanArray::from(erase)).map_err(LakeError::Arrow)?;
            kept.push(filter_record_batch(batch, &keep).map_err(LakeError::Arrow)?);
        }
    }
    Ok((dropped > 0).then_some((kept, dropped)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::{
        array::{Int64Array, StringArray},
        datatypes::{Field, Schema},
    };

    use super::*;

    fn batch(customers: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("customer_id", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from_iter_values(0..customers.len() as i64);
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(StringArray::from(customers.to_vec()))]).unwrap()
    }

    #[test]
    fn only_the_rows_of_erased_keys_go_and_an_untouched_file_stays() {
        let gone: BTreeSet<String> = ["c1".to_string()].into();
        let batches = [batch(&[Some("c1"), Some("c2"), None, Some("c1")])];
        let (kept, dropped) = without(&batches, &[("customer_id", &gone)]).unwrap().unwrap();
        assert_eq!(dropped, 2);
        let ids = kept[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values(), &[1, 2]);
        assert!(without(&[batch(&[Some("c2"), None])], &[("customer_id", &gone)]).unwrap().is_none());
        // A filter on a column the table lacks, or with no values, drops nothing.
        assert!(without(&batches, &[("conversation_id", &gone)]).unwrap().is_none());
        assert!(without(&batches, &[("customer_id", &BTreeSet::new())]).unwrap().is_none());
    }

    #[test]
    fn a_customers_own_rows_and_linked_rows_are_named_by_their_table() {
        let due = Due {
            ids: vec![],
            customers: ["c1".to_string()].into(),
            keys: [(
                "crm_conversation_messages".to_string(),
                [("conversation_id".to_string(), ["v1".to_string()].into())].into(),
            )]
            .into(),
        };
        let columns = |t: &str| due.filters(t).iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>();
        assert_eq!(columns("orders"), ["customer_id"]);
        assert_eq!(columns("crm_customers"), ["customer_id", "id"]);
        assert_eq!(columns("crm_conversation_messages"), ["customer_id", "conversation_id"]);
    }
}
