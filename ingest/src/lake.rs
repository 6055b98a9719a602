//! The lake: Parquet files per table and date, and the manifest that says which files
//! exist and which LSN range they cover.
//!
//! Invariant: a file is read by nobody until the manifest lists it, and the manifest is
//! replaced in one atomic write (object stores' put; a rename on local disk) after the
//! files it adds are durable. So a crash at any point leaves the last manifest's lake
//! intact; files written after it are orphans, deleted on the next start.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    path::PathBuf,
    sync::Arc,
};

use bytes::Bytes;
use datafusion::{
    arrow::array::RecordBatch,
    parquet::{
        arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
        basic::Compression,
        file::properties::WriterProperties,
    },
};
use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, local::LocalFileSystem, path::Path};
use serde::{Deserialize, Serialize};

use crate::error::{IngestError, LakeError};

pub const MANIFEST: &str = "_manifest.json";
/// The supervised capture's state (`fibonacco ingest status` reads it from another
/// process); not part of the lake's data.
pub const CAPTURE_STATE: &str = "_capture.json";
const FORMAT: u32 = 1;

/// One Parquet file of the lake.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub table: String,
    /// Relative to the lake root: `<table>/date=<YYYY-MM-DD>/<n>-<lsn>.parquet`.
    pub path: String,
    /// Commit date (UTC) of the file's rows: the partition.
    pub date: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_lsn: u64,
    pub max_lsn: u64,
    /// Files merged into this one by compaction (1 for a file as written).
    #[serde(default = "one")]
    pub merged: u32,
    /// Every row is a snapshot row or an insert (`_op` r or i): no key can appear twice
    /// in such files, so a table made only of them needs no latest-version pass. False
    /// when unknown (manifests written before this field).
    #[serde(default)]
    pub inserts_only: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableMeta {
    /// Replica identity (primary key) columns: the current-state view's key.
    pub keys: Vec<String>,
    /// The last TRUNCATE as (lsn, seq): rows before it are gone from the current state.
    pub truncated_at: Option<(u64, u32)>,
    /// Columns some update left unchanged (TOAST) in some file.
    pub unchanged_columns: BTreeSet<String>,
    /// Changes written (snapshot rows included).
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    pub slot: String,
    pub publication: String,
    /// The slot's consistent point: the snapshot's rows are as of this LSN.
    pub consistent_lsn: u64,
    /// Every transaction that committed before this LSN is in the lake (and nothing
    /// after it): the position a restart streams from and the slot was acknowledged to.
    pub durable_lsn: u64,
    /// Commit time (µs since the epoch) of the last transaction in the lake.
    pub last_commit_ts: Option<i64>,
    /// Counter for file names.
    pub next_file: u64,
    pub tables: BTreeMap<String, TableMeta>,
    pub files: Vec<FileEntry>,
    /// Stretches of WAL the lake never saw: the slot was invalidated or dropped while the
    /// capture was stopped, and the tables were copied again (`INGEST_AUTO_RESNAPSHOT`).
    /// The `<table>_changes` history jumps over each; the current state is right again
    /// from its `resumed_lsn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// Set (and written) before a new slot is created for a re-snapshot, cleared by the
    /// manifest that lists the copy: a run that dies in between finds it and copies again,
    /// rather than streaming from a slot that skipped the gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resnapshot_pending: Option<String>,
}

/// Changes after `after_lsn` and before `resumed_lsn` are not in the lake's history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Gap {
    /// The lake's durable position when the slot was found unusable.
    pub after_lsn: u64,
    /// The new snapshot's consistent point: every table was copied as of this LSN.
    pub resumed_lsn: u64,
    /// When the capture found the slot unusable (RFC 3339, UTC).
    pub detected_at: String,
    /// What happened to the slot, as Postgres reported it.
    pub reason: String,
}

impl Manifest {
    pub fn new(slot: &str, publication: &str, consistent_lsn: u64) -> Self {
        Self {
            format: FORMAT,
            slot: slot.to_string(),
            publication: publication.to_string(),
            consistent_lsn,
            durable_lsn: consistent_lsn,
            last_commit_ts: None,
            next_file: 0,
            tables: BTreeMap::new(),
            files: Vec::new(),
            gaps: Vec::new(),
            resnapshot_pending: None,
        }
    }

    pub fn files_of<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a FileEntry> + 'a {
        self.files.iter().filter(move |f| f.table == table)
    }

    /// A fresh, unique file path for `table`'s rows of `date`.
    pub fn allocate_path(&mut self, table: &str, date: &str, min_lsn: u64) -> String {
        let n = self.next_file;
        self.next_file += 1;
        file_path(table, date, n, min_lsn)
    }
}

/// A Parquet file being encoded in memory (snappy, row groups of 128k rows), stored by
/// [`Lake::put_parquet`] in one atomic write.
pub struct LakeWriter {
    inner: ArrowWriter<Vec<u8>>,
    schema: datafusion::arrow::datatypes::SchemaRef,
}

impl LakeWriter {
    pub fn new(schema: datafusion::arrow::datatypes::SchemaRef) -> Result<Self, LakeError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(128 * 1024))
            .build();
        Ok(Self { inner: ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?, schema })
    }

    pub fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        Ok(self.inner.write(batch)?)
    }
}

/// `<table>/date=<YYYY-MM-DD>/<n>-<min lsn>.parquet`: `n` comes from the manifest's
/// counter, so a name is never reused for a listed file.
pub fn file_path(table: &str, date: &str, n: u64, min_lsn: u64) -> String {
    format!("{table}/date={date}/{n:012}-{min_lsn:016X}.parquet")
}

/// Where the lake lives: a local directory (default) or an object store URL
/// (`s3://bucket/prefix`, credentials from the usual `AWS_*` variables).
/// The pipelines' results live under this prefix of the lake (issue #6); the capture's
/// manifest does not list them and its clean-ups leave them alone.
pub const DERIVED: &str = "_derived/";

pub struct Lake {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The URL DataFusion reads files under (`file:///…/` or `s3://bucket/prefix/`).
    base_url: url::Url,
    local_root: Option<PathBuf>,
    display: String,
}

impl Lake {
    pub fn open(location: &str) -> Result<Self, IngestError> {
        Self::open_with(location, std::env::vars().filter(|(k, _)| k.starts_with("AWS_")))
    }

    /// [`Lake::open`] with the object store's settings (`AWS_ENDPOINT`, … ; the keys of
    /// `object_store`'s builders, any case) given rather than read from the environment.
    pub fn open_with(
        location: &str,
        settings: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, IngestError> {
        if location.contains("://") && !location.starts_with("file://") {
            let url =
                url::Url::parse(location).map_err(|e| IngestError::Config(format!("INGEST_LAKE {location}: {e}")))?;
            let options: Vec<(String, String)> =
                settings.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
            let (store, prefix) = object_store::parse_url_opts(&url, options)
                .map_err(|e| IngestError::Config(format!("INGEST_LAKE {location}: {e}")))?;
            let mut base_url = url.clone();
            if !base_url.path().ends_with('/') {
                base_url.set_path(&format!("{}/", base_url.path()));
            }
            return Ok(Self {
                store: Arc::from(store),
                prefix,
                base_url,
                local_root: None,
                display: location.to_string(),
            });
        }
        let dir = PathBuf::from(location.trim_start_matches("file://"));
        std::fs::create_dir_all(&dir).map_err(|e| IngestError::Lake(LakeError::Io(e)))?;
        let root = dir.canonicalize().map_err(|e| IngestError::Lake(LakeError::Io(e)))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| IngestError::Lake(LakeError::Store(e)))?;
        let base_url = url::Url::from_directory_path(&root)
            .map_err(|_| IngestError::Config(format!("INGEST_LAKE {location} is not an absolute directory")))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            base_url,
            display: root.display().to_string(),
            local_root: Some(root),
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn base_url(&self) -> &url::Url {
        &self.base_url
    }

    /// The URL of a lake-relative path, for DataFusion.
    pub fn url_of(&self, relative: &str) -> String {
        format!("{}{}", self.base_url, relative)
    }

    fn path(&self, relative: &str) -> Path {
        if self.prefix.as_ref().is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{}", self.prefix, relative))
        }
    }

    #[tracing::instrument(skip(self))]
    pub async fn read_manifest(&self) -> Result<Option<Manifest>, LakeError> {
        match self.store.get(&self.path(MANIFEST)).await {
            Ok(got) => {
                let bytes = got.bytes().await?;
                let manifest: Manifest =
                    serde_json::from_slice(&bytes).map_err(|e| LakeError::Manifest(format!("{MANIFEST}: {e}")))?;
                if manifest.format != FORMAT {
                    return Err(LakeError::Manifest(format!("unknown manifest format {}", manifest.format)));
                }
                Ok(Some(manifest))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the manifest in one atomic write.
    #[tracing::instrument(skip_all, fields(files = manifest.files.len(), durable_lsn = manifest.durable_lsn))]
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), LakeError> {
        let bytes = serde_json::to_vec(manifest).map_err(|e| LakeError::Manifest(e.to_string()))?;
        self.put(MANIFEST, Bytes::from(bytes)).await
    }

    /// Writes `batches` as one Parquet file at `relative`; returns its size in bytes.
    #[tracing::instrument(skip(self, batches))]
    pub async fn write_parquet(&self, relative: &str, batches: &[RecordBatch]) -> Result<u64, LakeError> {
        let Some(first) = batches.first() else { return Ok(0) };
        let mut writer = LakeWriter::new(first.schema())?;
        for batch in batches {
            writer.write(batch)?;
        }
        self.put_parquet(relative, writer).await
    }

    /// Finishes `writer` and stores its file at `relative`; returns its size in bytes.
    #[tracing::instrument(skip(self, writer))]
    pub async fn put_parquet(&self, relative: &str, writer: LakeWriter) -> Result<u64, LakeError> {
        let buffer = writer.inner.into_inner()?;
        let size = buffer.len() as u64;
        self.put(relative, Bytes::from(buffer)).await?;
        Ok(size)
    }

    /// Stores any file at `relative` (the pipelines' derived results and model cards).
    pub async fn put_bytes(&self, relative: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        self.put(relative, Bytes::from(bytes)).await
    }

    async fn put(&self, relative: &str, bytes: Bytes) -> Result<(), LakeError> {
        // Local puts stage to a temporary file and rename it into place (atomic); the
        // fsyncs make that survive a power cut too, not only a killed process.
        self.store.put(&self.path(relative), PutPayload::from_bytes(bytes)).await?;
        if let Some(root) = &self.local_root {
            let file = root.join(relative);
            let sync = move || -> std::io::Result<()> {
                std::fs::File::open(&file)?.sync_all()?;
                if let Some(dir) = file.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            };
            tokio::task::spawn_blocking(sync).await.map_err(|e| LakeError::Io(std::io::Error::other(e)))??;
        }
        Ok(())
    }

    /// A small file's bytes, if it exists.
    #[tracing::instrument(skip(self))]
    pub async fn read_bytes(&self, relative: &str) -> Result<Option<Bytes>, LakeError> {
        match self.store.get(&self.path(relative)).await {
            Ok(got) => Ok(Some(got.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a lake file back (compaction, tests).
    #[tracing::instrument(skip(self))]
    pub async fn read_parquet(&self, relative: &str) -> Result<Vec<RecordBatch>, LakeError> {
        let bytes = self.store.get(&self.path(relative)).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        Ok(reader.collect::<Result<Vec<_>, _>>()?)
    }

    pub async fn delete(&self, relative: &str) -> Result<(), LakeError> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under the lake, relative paths.
    pub(crate) async fn list(&self) -> Result<Vec<String>, LakeError> {
        let prefix = if self.prefix.as_ref().is_empty() { None } else { Some(&self.prefix) };
        let metas: Vec<_> = self.store.list(prefix).try_collect().await?;
        let strip = if self.prefix.as_ref().is_empty() { String::new() } else { format!("{}/", self.prefix) };
        Ok(metas.into_iter().map(|m| m.location.as_ref().trim_start_matches(strip.as_str()).to_string()).collect())
    }

    /// Deletes files the manifest does not list: written after the last manifest by a
    /// run that crashed, so no reader has seen them.
    #[tracing::instrument(skip_all)]
    pub async fn remove_orphans(&self, manifest: &Manifest) -> Result<usize, LakeError> {
        let listed: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let mut removed = 0;
        for path in self.list().await? {
            if path != MANIFEST
                && path != CAPTURE_STATE
                && !path.starts_with(DERIVED)
                && !listed.contains(path.as_str())
            {
                self.delete(&path).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed files a crashed run wrote after its last manifest");
        }
        Ok(removed)
    }

    /// Empties the lake (for a new snapshot): the manifest first, so a crash midway
    /// leaves orphans, not a manifest naming missing files.
    #[tracing::instrument(skip_all)]
    pub async fn clear(&self) -> Result<(), LakeError> {
        self.delete(MANIFEST).await?;
        for path in self.list().await?.into_iter().filter(|p| !p.starts_with(DERIVED)) {
            self.delete(&path).await?;
        }
        Ok(())
    }
}
