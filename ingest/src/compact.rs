//! Compaction: many small files of one table and date become one, so readers open few
//! files and the manifest stays short. The merged file lists the same rows in the same
//! (`_lsn`, `_seq`) order; the manifest swaps the entries in one write, then the old
//! files are deleted (a crash between the two leaves orphans, removed on the next start).

use std::collections::HashMap;

use crate::{
    error::IngestError,
    lake::{FileEntry, Lake, LakeWriter, Manifest},
};

/// A file below this size is "small".
const SMALL_FILE_BYTES: u64 = 8 << 20;
/// At most this much (compressed) data merged into one file: the merged file is built in
/// memory before its atomic put, so this bounds compaction's memory.
const MAX_MERGED_BYTES: u64 = 32 << 20;

/// Merges runs of at least `min_files` small files per (table, date, tier); returns how
/// many files were merged away. Tiers are size-tiered: files written as they are form
/// tier 0, a merge of `min_files` of them tier 1, and so on, so a row is rewritten about
/// log_min_files(files) times rather than at every compaction.
#[tracing::instrument(skip_all, fields(files = manifest.files.len()))]
pub async fn compact(lake: &Lake, manifest: &mut Manifest, min_files: usize) -> Result<usize, IngestError> {
    let mut groups: HashMap<(String, String, u32), Vec<usize>> = HashMap::new();
    for (i, file) in manifest.files.iter().enumerate() {
        if file.bytes < SMALL_FILE_BYTES {
            let tier = tier(file.merged, min_files);
            groups.entry((file.table.clone(), file.date.clone(), tier)).or_default().push(i);
        }
    }
    let mut replaced: Vec<(Vec<usize>, FileEntry)> = Vec::new();
    for ((table, date, _), indices) in groups {
        if indices.len() < min_files {
            continue;
        }
        let mut run: Vec<usize> = Vec::new();
        let mut size = 0;
        for i in indices {
            size += manifest.files[i].bytes;
            run.push(i);
            if size >= MAX_MERGED_BYTES {
                break;
            }
        }
        if let Some(entry) = merge(lake, manifest, &table, &date, &run).await? {
            replaced.push((run, entry));
        }
    }
    if replaced.is_empty() {
        return Ok(0);
    }
    let mut old_paths = Vec::new();
    let mut merged_away = 0;
    // The merged entry takes the place of the run's first file; the rest are removed.
    let mut remove = vec![false; manifest.files.len()];
    for (run, entry) in replaced {
        merged_away += run.len() - 1;
        for &i in &run {
            old_paths.push(manifest.files[i].path.clone());
            remove[i] = true;
        }
        remove[run[0]] = false;
        manifest.files[run[0]] = entry;
    }
    let mut i = 0;
    manifest.files.retain(|_| {
        let keep = !remove[i];
        i += 1;
        keep
    });
    lake.write_manifest(manifest).await?;
    for path in old_paths {
        lake.delete(&path).await?;
    }
    metrics::counter!("ingest_files_compacted_total").increment(merged_away as u64);
    tracing::info!(merged_away, "compacted small files");
    Ok(merged_away)
}

/// `floor(log_base(merged))` with `base = min_files` (≥ 2).
fn tier(merged: u32, min_files: usize) -> u32 {
    let base = min_files.max(2) as u64;
    let (mut tier, mut size) = (0, base);
    while u64::from(merged) >= size {
        tier += 1;
        size = size.saturating_mul(base);
    }
    tier
}

/// Reads the run's files one at a time into one new file; `None` when their schemas
/// differ (a schema change inside the run: those files stay as they are).
async fn merge(
    lake: &Lake,
    manifest: &mut Manifest,
    table: &str,
    date: &str,
    run: &[usize],
) -> Result<Option<FileEntry>, IngestError> {
    let mut writer: Option<LakeWriter> = None;
    let mut rows = 0u64;
    for &i in run {
        for batch in lake.read_parquet(&manifest.files[i].path).await? {
            let writer = match &mut writer {
                Some(w) => w,
                None => writer.insert(LakeWriter::new(batch.schema())?),
            };
            if batch.schema() != writer.schema() {
                return Ok(None);
            }
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
    }
    let Some(writer) = writer else { return Ok(None) };
    let min_lsn = run.iter().map(|&i| manifest.files[i].min_lsn).min().unwrap_or(0);
    let max_lsn = run.iter().map(|&i| manifest.files[i].max_lsn).max().unwrap_or(0);
    let merged_count = run.iter().map(|&i| manifest.files[i].merged).sum();
    let path = manifest.allocate_path(table, date, min_lsn);
    let bytes = lake.put_parquet(&path, writer).await?;
    Ok(Some(FileEntry {
        table: table.to_string(),
        path,
        date: date.to_string(),
        rows,
        bytes,
        min_lsn,
        max_lsn,
        merged: merged_count,
        inserts_only: run.iter().all(|&i| manifest.files[i].inserts_only),
    }))
}

#[cfg(test)]
mod tests {
    use super::tier;

    #[test]
    fn tiers_grow_by_the_merge_width() {
        assert_eq!([1, 15, 16, 17, 255, 256].map(|m| tier(m, 16)), [0, 0, 1, 1, 1, 2]);
        assert_eq!([1, 2, 3, 4].map(|m| tier(m, 2)), [0, 1, 1, 2]);
    }
}
