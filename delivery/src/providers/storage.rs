//! Where generated audio is kept: a local directory by default, S3 when `STORAGE_URL` is
//! `s3://bucket[/prefix]` (credentials and region from the usual `AWS_*` variables).

use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, local::LocalFileSystem, path::Path};

use super::ProviderError;

pub struct AudioStore {
    store: Arc<dyn ObjectStore>,
    /// Prefix of the locations written into rows (`file:///…/` or `s3://bucket/`).
    location_base: String,
    /// Key prefix inside the store.
    key_prefix: String,
}

impl AudioStore {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let url = get("STORAGE_URL").filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "storage".into());
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                anyhow::bail!("STORAGE_URL `{url}` names no bucket");
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = get("S3_ENDPOINT").filter(|v| !v.is_empty()) {
                builder = builder.with_endpoint(endpoint).with_allow_http(true);
            }
            let store = builder.build().map_err(|e| anyhow::anyhow!("STORAGE_URL `{url}`: {e}"))?;
            return Ok(Self {
                store: Arc::new(store),
                location_base: format!("s3://{bucket}/"),
                key_prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        let dir = url.strip_prefix("file://").unwrap_or(&url);
        Self::local(std::path::Path::new(dir))
    }

    pub fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("storage directory {}: {e}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let store = LocalFileSystem::new_with_prefix(&dir)?;
        Ok(Self {
            store: Arc::new(store),
            location_base: format!("file://{}/", dir.display()),
            key_prefix: String::new(),
        })
    }

    /// Writes `bytes` under `key` and returns the location to record.
    #[tracing::instrument(name = "storage.put", skip(self, bytes), fields(bytes = bytes.len()))]
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<String, ProviderError> {
        let full = if self.key_prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.key_prefix) };
        self.store.put(&Path::from(full.as_str()), PutPayload::from(bytes)).await.map_err(|e| {
            ProviderError::Retryable {
                provider: "storage",
                reason: e.to_string(),
                source: Some(std::sync::Arc::new(e)),
            }
        })?;
        Ok(format!("{}{full}", self.location_base))
    }

    /// Reads back what `put` stored (tests, downloads).
    pub async fn get(&self, key: &str) -> Result<Bytes, ProviderError> {
        let full = if self.key_prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.key_prefix) };
        let got = self.store.get(&Path::from(full.as_str())).await.map_err(|e| ProviderError::Retryable {
            provider: "storage",
            reason: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        })?;
        got.bytes().await.map_err(|e| ProviderError::Retryable {
            provider: "storage",
            reason: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        })
    }
}
