//! The lake in DataFusion: per table, `<table>_changes` (every change, as written) and
//! `<table>` (the current state: the latest version of each key, deletes and truncated
//! rows removed, unchanged TOASTed values filled from the version that carried them).

use std::sync::Arc;

use datafusion::{
    catalog::TableProvider,
    datasource::{
        file_format::{FileFormat, parquet::ParquetFormat},
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    error::DataFusionError,
    prelude::{SessionConfig, SessionContext},
};
use object_store::ObjectStoreExt;

use crate::{
    error::IngestError,
    lake::{Lake, Manifest},
    schema::{COMMIT_TS, LSN, OP, SEQ, UNCHANGED, XID},
};

/// Registers every table of the manifest in `ctx`; returns the table names.
#[tracing::instrument(skip_all, fields(tables = manifest.tables.len()))]
pub async fn register(ctx: &SessionContext, lake: &Lake, manifest: &Manifest) -> Result<Vec<String>, IngestError> {
    register_only(ctx, lake, manifest, None).await
}

/// [`register`] for the tables named in `only` (all of them with `None`): each table read
/// costs a footer read per file, so a reader of a few tables registers just those.
#[tracing::instrument(skip_all, fields(tables = only.map_or(manifest.tables.len(), <[&str]>::len)))]
pub async fn register_only(
    ctx: &SessionContext,
    lake: &Lake,
    manifest: &Manifest,
    only: Option<&[&str]>,
) -> Result<Vec<String>, IngestError> {
    if lake.base_url().scheme() != "file" {
        ctx.register_object_store(lake.base_url(), lake.store());
    }
    let mut names = Vec::new();
    for (table, meta) in &manifest.tables {
        if only.is_some_and(|only| !only.contains(&table.as_str())) {
            continue;
        }
        let urls = manifest
            .files_of(table)
            .map(|f| ListingTableUrl::parse(lake.url_of(&f.path)))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            continue;
        }
        // The session's choice of string types (`ParquetFormat::default()` would ignore it).
        let views = ctx.copied_config().options().execution.parquet.schema_force_view_types;
        let format = Arc::new(ParquetFormat::default().with_force_view_types(views));
        // The schema is the merge of every file's footer (DataFusion's own inference reads
        // only the first path): a column added later reads as NULL in older files.
        let store = ctx.runtime_env().object_store(&urls[0])?;
        let mut objects = Vec::with_capacity(urls.len());
        for url in &urls {
            objects.push(store.head(url.prefix()).await.map_err(DataFusionError::from)?);
        }
        let schema = format.infer_schema(&ctx.state(), &store, &objects).await?;
        let options = ListingOptions::new(format).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
        let changes = ListingTable::try_new(config)?;
        let columns: Vec<String> = changes
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| ![LSN, SEQ, OP, COMMIT_TS, XID, UNCHANGED].contains(&n.as_str()))
            .collect();
        let changes_name = format!("{table}_changes");
        ctx.register_table(changes_name.as_str(), Arc::new(changes))?;
        // A table whose files hold only snapshot rows and inserts has each key once after
        // its last cut (a re-snapshot after a gap; a TRUNCATE writes a `t` row, so such a
        // table never gets here): its current state is every row after the cut, no
        // latest-version pass (the large append-only tables — activities, messages — are
        // read at scan speed).
        let appends_only = manifest.files_of(table).all(|f| f.inserts_only);
        let sql = if appends_only {
            let list = columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
            format!(
                "CREATE VIEW {} AS SELECT {list} FROM {} {}",
                ident(table),
                ident(&changes_name),
                after_cut(meta.truncated_at)
            )
        } else {
            current_state_sql(table, &changes_name, &columns, &meta.keys, meta.truncated_at, &meta.unchanged_columns)
        };
        ctx.sql(&sql).await?;
        names.push(table.clone());
    }
    Ok(names)
}

/// A session over the lake at `location` as the manifest lists it now. DataFusion's
/// options come from the environment (`DATAFUSION_EXECUTION_TARGET_PARTITIONS`, … : the
/// option's key upper-cased, dots as underscores), so a data team tunes the engine
/// without a build; a value that does not parse is an error, not a silent default.
pub async fn session(lake: &Lake) -> Result<(SessionContext, Manifest), IngestError> {
    open(SessionContext::new_with_config(session_config()?), lake).await
}

/// DataFusion's options from the environment (see [`session`]), with at least
/// [`MIN_TARGET_PARTITIONS`] partitions unless the environment sets them.
pub fn session_config() -> Result<SessionConfig, IngestError> {
    let config = SessionConfig::from_env().map_err(|e| IngestError::Config(format!("DATAFUSION_* settings: {e}")))?;
    Ok(with_partition_floor(config, std::env::var_os("DATAFUSION_EXECUTION_TARGET_PARTITIONS").is_some()))
}

/// The fewest partitions a plan is split into by default. DataFusion's default is one per
/// core; on two cores, four made engagement + ROI over the 1 M lake 4–6 % faster
/// (1.57–1.62 s against 1.67–1.68 s, runs taking turns; docs/benchmarks.md) at the same
/// peak memory of the recompute: with two, a core sat idle whenever one partition's
/// files finished before the other's.
pub const MIN_TARGET_PARTITIONS: usize = 4;

fn with_partition_floor(config: SessionConfig, set_by_environment: bool) -> SessionConfig {
    if set_by_environment {
        return config;
    }
    let partitions = config.target_partitions().max(MIN_TARGET_PARTITIONS);
    config.with_target_partitions(partitions)
}

/// The lake as the manifest lists it now, registered in `ctx` (a local session or one
/// whose plans run elsewhere, such as a Ballista cluster's).
pub async fn open(ctx: SessionContext, lake: &Lake) -> Result<(SessionContext, Manifest), IngestError> {
    let manifest = lake.read_manifest().await?.ok_or_else(|| {
        IngestError::Config(format!("no lake at {} yet: run `fibonacco ingest` first", lake.display()))
    })?;
    register(&ctx, lake, &manifest).await?;
    Ok((ctx, manifest))
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The rows after a table's last cut (`truncated_at`), as a WHERE clause; empty without one.
fn after_cut(truncated_at: Option<(u64, u32)>) -> String {
    match truncated_at {
        Some((lsn, seq)) => format!("WHERE {LSN} > {lsn} OR ({LSN} = {lsn} AND {SEQ} > {seq})"),
        None => String::new(),
    }
}

/// `CREATE VIEW <table>` over `<changes>`.
pub fn current_state_sql(
    table: &str,
    changes: &str,
    columns: &[String],
    keys: &[String],
    truncated_at: Option<(u64, u32)>,
    unchanged: &std::collections::BTreeSet<String>,
) -> String {
    let keys_list = keys.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ");
    let after_truncate = after_cut(truncated_at);
    let order = format!("ORDER BY {LSN} DESC, {SEQ} DESC");
    let mut ctes = vec![
        format!("live AS (SELECT * FROM {} {after_truncate})", ident(changes)),
        format!("latest AS (SELECT *, row_number() OVER (PARTITION BY {keys_list} {order}) AS _rn FROM live)"),
    ];
    let mut joins = String::new();
    let fill: Vec<&String> = columns.iter().filter(|c| unchanged.contains(*c)).collect();
    for (n, column) in fill.iter().enumerate() {
        // The newest version that carried the value: inserts and snapshot rows always do,
        // an update unless it names the column in `_unchanged`.
        let marker = format!("',{},'", column.replace('\'', "''"));
        ctes.push(format!(
            "fill{n} AS (SELECT {keys_list}, {col} FROM (SELECT {keys_list}, {col}, row_number() OVER (PARTITION BY {keys_list} {order}) AS _rn \
             FROM live WHERE {OP} IN ('r', 'i', 'u') AND ({UNCHANGED} IS NULL OR strpos({UNCHANGED}, {marker}) = 0)) WHERE _rn = 1)",
            col = ident(column)
        ));
        let on =
            keys.iter().map(|k| format!("latest.{k} = fill{n}.{k}", k = ident(k))).collect::<Vec<_>>().join(" AND ");
        joins.push_str(&format!(" LEFT JOIN fill{n} ON {on}"));
    }
    let select = columns
        .iter()
        .map(|c| match fill.iter().position(|f| *f == c) {
            Some(n) => format!("fill{n}.{col} AS {col}", col = ident(c)),
            None => format!("latest.{}", ident(c)),
        })
        .chain([format!("latest.{LSN}"), format!("latest.{COMMIT_TS}")])
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE VIEW {} AS WITH {} SELECT {select} FROM latest{joins} WHERE latest._rn = 1 AND latest.{OP} NOT IN ('d', 't')",
        ident(table),
        ctes.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_machine_gets_four_partitions_unless_the_environment_says_otherwise() {
        let on = |cores: usize, set: bool| {
            with_partition_floor(SessionConfig::new().with_target_partitions(cores), set).target_partitions()
        };
        assert_eq!(on(2, false), MIN_TARGET_PARTITIONS);
        assert_eq!(on(16, false), 16, "one per core above the floor");
        assert_eq!(on(2, true), 2, "DATAFUSION_EXECUTION_TARGET_PARTITIONS wins");
    }
}
