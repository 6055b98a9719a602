//! Qdrant as the vector store, over gRPC (`qdrant-client`).
//!
//! One collection per embedding model (`{prefix}_{model}`), so vectors of two models never
//! meet; the tenant is a keyword payload field indexed with `is_tenant` (Qdrant keeps each
//! tenant's points together) and every query filters by it. A point is one chunk of one
//! knowledge entry; its payload carries the fields the search filters use.

use std::collections::HashMap;

use fibonacco_platform::TenantId;
use qdrant_client::{
    Payload, Qdrant, QdrantError,
    qdrant::{
        Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance,
        FieldType, Filter, HnswConfigDiffBuilder, KeywordIndexParamsBuilder, OptimizersConfigDiffBuilder, PointId,
        PointStruct, QueryPointsBuilder, SearchParamsBuilder, UpsertPointsBuilder, Value, VectorParamsBuilder,
        point_id::PointIdOptions,
    },
};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tracing::Instrument;
use uuid::Uuid;

use super::{Neighbour, Point, Source, StoreError, StoreFuture, VectorStore};
use crate::knowledge::Filters;

/// Where the Qdrant cluster is: `QDRANT_URL` (gRPC, e.g. `http://localhost:6334`),
/// `QDRANT_API_KEY`, `QDRANT_COLLECTION_PREFIX` (default `knowledge`), and how its
/// collections are indexed.
#[derive(Clone)]
pub struct QdrantSettings {
    pub url: String,
    pub api_key: Option<String>,
    pub collection_prefix: String,
    pub index: IndexSettings,
}

/// The HNSW settings of the collections this store creates and of its searches; what is
/// unset is left to the server's defaults (m 16, ef_construct 100, full scan below 10 MB,
/// index past 10 MB of vectors, search ef = ef_construct). Read from `QDRANT_HNSW_M`,
/// `QDRANT_HNSW_EF_CONSTRUCT`, `QDRANT_HNSW_EF` (search), `QDRANT_FULL_SCAN_THRESHOLD_KB`
/// and `QDRANT_INDEXING_THRESHOLD_KB`. They apply when a collection is created
/// (`fibonacco search reindex` recreates it), except the search ef, which applies at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexSettings {
    pub m: Option<u64>,
    pub ef_construct: Option<u64>,
    pub search_ef: Option<u64>,
    pub full_scan_threshold_kb: Option<u64>,
    pub indexing_threshold_kb: Option<u64>,
}

impl IndexSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        // m = 0 is allowed: Qdrant then builds no global graph, only per-payload ones.
        let read = |key: &str, min: u64, max: u64| -> Result<Option<u64>, String> {
            let Some(raw) = get(key).filter(|v| !v.trim().is_empty()) else { return Ok(None) };
            match raw.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!("{key} must be a whole number from {min} to {max}")),
            }
        };
        Ok(Self {
            m: read("QDRANT_HNSW_M", 0, 128)?,
            ef_construct: read("QDRANT_HNSW_EF_CONSTRUCT", 4, 4096)?,
            search_ef: read("QDRANT_HNSW_EF", 1, 4096)?,
            full_scan_threshold_kb: read("QDRANT_FULL_SCAN_THRESHOLD_KB", 0, 1 << 30)?,
            indexing_threshold_kb: read("QDRANT_INDEXING_THRESHOLD_KB", 0, 1 << 30)?,
        })
    }
}

/// The API key never reaches a log line or a panic message.
impl std::fmt::Debug for QdrantSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantSettings")
            .field("url", &fibonacco_platform::config::redact_url(&self.url))
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("collection_prefix", &self.collection_prefix)
            .field("index", &self.index)
            .finish()
    }
}

impl QdrantSettings {
    /// `Ok(None)` without `QDRANT_URL`; an index setting out of range is an error.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(url) = get("QDRANT_URL").filter(|u| !u.trim().is_empty()) else { return Ok(None) };
        Ok(Some(Self {
            url,
            api_key: get("QDRANT_API_KEY").filter(|k| !k.is_empty()),
            collection_prefix: get("QDRANT_COLLECTION_PREFIX")
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| "knowledge".into()),
            index: IndexSettings::from_lookup(&get)?,
        }))
    }
}

pub struct QdrantStore {
    client: Qdrant,
    prefix: String,
    dimensions: u64,
    index: IndexSettings,
    /// Collections known to exist (created or found by this store; a search that finds
    /// one gone removes it).
    ready: Mutex<Vec<String>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { store: "qdrant", reason: e.to_string() }
}

impl QdrantStore {
    pub fn connect(settings: &QdrantSettings, dimensions: usize) -> Result<Self, StoreError> {
        let client = Qdrant::from_url(&settings.url)
            .api_key(settings.api_key.clone())
            .timeout(std::time::Duration::from_secs(10))
            .skip_compatibility_check()
            .build()
            .map_err(backend)?;
        Ok(Self {
            client,
            prefix: settings.collection_prefix.clone(),
            dimensions: dimensions as u64,
            index: settings.index,
            ready: Mutex::new(Vec::new()),
        })
    }

    /// `knowledge_all-minilm-l6-v2`: the prefix and the model, in the characters Qdrant
    /// accepts in a collection name.
    pub fn collection(&self, model: &str) -> String {
        let model: String = model
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '_' })
            .collect();
        format!("{}_{model}", self.prefix)
    }

    /// Creates the model's collection and its payload indexes if missing.
    #[tracing::instrument(name = "search.qdrant.ensure_collection", skip(self))]
    async fn ensure_collection(&self, name: &str) -> Result<(), StoreError> {
        let mut ready = self.ready.lock().await;
        if ready.iter().any(|c| c == name) {
            return Ok(());
        }
        if !self.client.collection_exists(name).await.map_err(backend)? {
            let mut create = CreateCollectionBuilder::new(name)
                .vectors_config(VectorParamsBuilder::new(self.dimensions, Distance::Cosine));
            let i = self.index;
            if i.m.is_some() || i.ef_construct.is_some() || i.full_scan_threshold_kb.is_some() {
                let mut hnsw = HnswConfigDiffBuilder::default();
                if let Some(m) = i.m {
                    hnsw = hnsw.m(m);
                }
                if let Some(ef) = i.ef_construct {
                    hnsw = hnsw.ef_construct(ef);
                }
                if let Some(kb) = i.full_scan_threshold_kb {
                    hnsw = hnsw.full_scan_threshold(kb);
                }
                create = create.hnsw_config(hnsw);
            }
            if let Some(kb) = i.indexing_threshold_kb {
                create = create.optimizers_config(OptimizersConfigDiffBuilder::default().indexing_threshold(kb));
            }
            self.client.create_collection(create).await.map_err(backend)?;
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(name, "tenant_id", FieldType::Keyword)
                        .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                        .wait(true),
                )
                .await
                .map_err(backend)?;
            for field in
                ["entry", "category", "subcategory", "tags", "industry_codes", "allowed_agents", "validation_status"]
            {
                self.client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword).wait(true),
                    )
                    .await
                    .map_err(backend)?;
            }
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(name, "is_public", FieldType::Bool).wait(true),
                )
                .await
                .map_err(backend)?;
        }
        ready.push(name.to_owned());
        Ok(())
    }

    /// Deletes the points matching `filter` from every collection of this store.
    async fn delete_everywhere(&self, filter: Filter) -> Result<(), StoreError> {
        for c in self.collections().await? {
            self.client
                .delete_points(DeletePointsBuilder::new(c).points(filter.clone()).wait(true))
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    /// Every collection under this store's prefix (an entry may have been embedded by an
    /// earlier model).
    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}_", self.prefix);
        let listed = self.client.list_collections().await.map_err(backend)?;
        Ok(listed.collections.into_iter().map(|c| c.name).filter(|n| n.starts_with(&prefix)).collect())
    }
}

/// A chunk's point id: the entry id for chunk 0, a stable id derived from both otherwise.
pub fn point_id(entry: Uuid, chunk: i32) -> Uuid {
    if chunk == 0 {
        return entry;
    }
    let digest = Sha256::new().chain_update(entry.as_bytes()).chain_update(chunk.to_be_bytes()).finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn payload(p: &Point) -> Payload {
    let strings = |v: &[String]| Value::from(v.iter().map(|s| Value::from(s.clone())).collect::<Vec<_>>());
    let mut map: HashMap<String, Value> = HashMap::new();
    map.insert("tenant_id".into(), p.meta.tenant.to_string().into());
    map.insert("source".into(), p.source.as_str().into());
    map.insert("entry".into(), p.entry.to_string().into());
    map.insert("chunk".into(), i64::from(p.chunk).into());
    map.insert("model".into(), p.model.clone().into());
    map.insert("is_public".into(), p.meta.is_public.into());
    if let Some(c) = &p.meta.category {
        map.insert("category".into(), c.clone().into());
    }
    if let Some(c) = &p.meta.subcategory {
        map.insert("subcategory".into(), c.clone().into());
    }
    map.insert("tags".into(), strings(&p.meta.tags));
    map.insert("industry_codes".into(), strings(&p.meta.industry_codes));
    map.insert("allowed_agents".into(), strings(&p.meta.allowed_agents));
    map.insert("validation_status".into(), p.meta.validation_status.clone().into());
    Payload::from(map)
}

/// The search filters as a Qdrant filter; the tenant condition is always there.
pub fn filter(tenant: TenantId, f: &Filters) -> Filter {
    let own = Condition::matches("tenant_id", tenant.to_string());
    let visible: Condition =
        if f.include_public { Filter::should([own, Condition::matches("is_public", true)]).into() } else { own };
    let mut must = vec![visible];
    match (f.sources.knowledge, f.sources.articles) {
        (true, false) => must.push(Condition::matches("source", Source::Knowledge.as_str().to_owned())),
        (false, true) => must.push(Condition::matches("source", Source::Article.as_str().to_owned())),
        _ => {}
    }
    if let Some(c) = &f.category {
        must.push(Condition::matches("category", c.clone()));
    }
    if let Some(c) = &f.subcategory {
        must.push(Condition::matches("subcategory", c.clone()));
    }
    if !f.tags.is_empty() {
        must.push(Condition::matches("tags", f.tags.clone()));
    }
    if !f.industry_codes.is_empty() {
        must.push(Condition::matches("industry_codes", f.industry_codes.clone()));
    }
    if let Some(p) = f.is_public {
        must.push(Condition::matches("is_public", p));
    }
    if let Some(a) = &f.agent {
        must.push(
            Filter::should([Condition::is_empty("allowed_agents"), Condition::matches("allowed_agents", a.clone())])
                .into(),
        );
    }
    if let Some(v) = &f.validation_status {
        must.push(Condition::matches("validation_status", v.clone()));
    }
    Filter::must(must)
}

fn neighbour(id: Option<PointId>, payload: &HashMap<String, Value>, score: f32) -> Option<Neighbour> {
    let entry =
        payload.get("entry").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok()).or_else(|| {
            match id?.point_id_options? {
                PointIdOptions::Uuid(s) => Uuid::parse_str(&s).ok(),
                PointIdOptions::Num(_) => None,
            }
        })?;
    let chunk = payload.get("chunk").and_then(Value::as_integer).unwrap_or(0) as i32;
    let source = payload.get("source").and_then(Value::as_str).and_then(|s| Source::parse(s))?;
    Some(Neighbour { source, entry, chunk, score: f64::from(score) })
}

impl VectorStore for QdrantStore {
    fn name(&self) -> &'static str {
        "qdrant"
    }

    fn nearest<'a>(
        &'a self,
        tenant: TenantId,
        vector: &'a [f32],
        model: &'a str,
        filters: &'a Filters,
        limit: i64,
    ) -> StoreFuture<'a, Vec<Neighbour>> {
        let span = tracing::info_span!("search.qdrant.nearest", tenant_id = %tenant, limit);
        Box::pin(
            async move {
                let collection = self.collection(model);
                // A collection this store wrote to or saw is not asked about again: one
                // round trip per search, not two. If another process dropped it since
                // (a reset), the query's NotFound says so and the store forgets it.
                let known = self.ready.lock().await.iter().any(|c| c == &collection);
                if !known {
                    if !self.client.collection_exists(&collection).await.map_err(backend)? {
                        return Ok(Vec::new());
                    }
                    self.ready.lock().await.push(collection.clone());
                }
                let mut query = QueryPointsBuilder::new(collection.clone())
                    .query(vector.to_vec())
                    .filter(filter(tenant, filters))
                    .limit(limit.max(1) as u64)
                    .with_payload(true);
                if let Some(ef) = self.index.search_ef {
                    query = query.params(SearchParamsBuilder::default().hnsw_ef(ef));
                }
                let response = match self.client.query(query).await {
                    Ok(response) => response,
                    Err(QdrantError::ResponseError { status }) if status.code() == tonic::Code::NotFound => {
                        self.ready.lock().await.retain(|c| c != &collection);
                        return Ok(Vec::new());
                    }
                    Err(e) => return Err(backend(e)),
                };
                Ok(response.result.into_iter().filter_map(|p| neighbour(p.id, &p.payload, p.score)).collect())
            }
            .instrument(span),
        )
    }

    fn replace<'a>(&'a self, entry: Uuid, points: &'a [Point]) -> StoreFuture<'a, ()> {
        let span = tracing::info_span!("search.qdrant.replace", points = points.len());
        Box::pin(
            async move {
                let Some(first) = points.first() else { return self.remove(std::slice::from_ref(&entry)).await };
                let collection = self.collection(&first.model);
                self.ensure_collection(&collection).await?;
                let ids: Vec<Uuid> = points.iter().map(|p| point_id(p.entry, p.chunk)).collect();
                let structs: Vec<PointStruct> = points
                    .iter()
                    .zip(&ids)
                    .map(|(p, id)| PointStruct::new(PointId::from(id.to_string()), p.vector.clone(), payload(p)))
                    .collect();
                self.client
                    .upsert_points(UpsertPointsBuilder::new(&collection, structs).wait(true))
                    .await
                    .map_err(backend)?;
                // Chunks the entry no longer has (it got shorter, or was re-embedded by another model).
                let stale = Filter {
                    must: vec![Condition::matches("entry", entry.to_string())],
                    must_not: vec![Condition::has_id(ids.iter().map(|id| PointId::from(id.to_string())))],
                    ..Default::default()
                };
                self.delete_everywhere(stale).await
            }
            .instrument(span),
        )
    }

    fn reset<'a>(&'a self, model: &'a str) -> StoreFuture<'a, ()> {
        let span = tracing::info_span!("search.qdrant.reset", model);
        Box::pin(
            async move {
                let collection = self.collection(model);
                if self.client.collection_exists(&collection).await.map_err(backend)? {
                    self.client.delete_collection(&collection).await.map_err(backend)?;
                }
                self.ready.lock().await.retain(|c| c != &collection);
                Ok(())
            }
            .instrument(span),
        )
    }

    fn remove<'a>(&'a self, entries: &'a [Uuid]) -> StoreFuture<'a, ()> {
        let span = tracing::info_span!("search.qdrant.remove", entries = entries.len());
        Box::pin(
            async move {
                if entries.is_empty() {
                    return Ok(());
                }
                let gone = Filter::must([Condition::matches(
                    "entry",
                    entries.iter().map(Uuid::to_string).collect::<Vec<_>>(),
                )]);
                self.delete_everywhere(gone).await
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_api_key() {
        let settings = QdrantSettings {
            url: "http://qdrant:6334".into(),
            api_key: Some("qk-very-secret".into()),
            collection_prefix: "knowledge".into(),
            index: IndexSettings::default(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("qk-very-secret") && shown.contains("***"), "{shown}");
    }

    #[test]
    fn index_settings_are_read_and_bounded() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(IndexSettings::from_lookup(env(&[])).unwrap(), IndexSettings::default());
        let set = IndexSettings::from_lookup(env(&[
            ("QDRANT_HNSW_M", "0"),
            ("QDRANT_HNSW_EF_CONSTRUCT", "200"),
            ("QDRANT_HNSW_EF", " 128 "),
            ("QDRANT_INDEXING_THRESHOLD_KB", "1"),
        ]))
        .unwrap();
        assert_eq!(
            (set.m, set.ef_construct, set.search_ef, set.indexing_threshold_kb),
            (Some(0), Some(200), Some(128), Some(1))
        );
        for bad in [
            ("QDRANT_HNSW_M", "-1"),
            ("QDRANT_HNSW_EF", "0"),
            ("QDRANT_HNSW_EF_CONSTRUCT", "1e9"),
            ("QDRANT_HNSW_M", "999"),
        ] {
            let err = IndexSettings::from_lookup(move |k: &str| (k == bad.0).then(|| bad.1.to_owned())).unwrap_err();
            assert!(err.starts_with(bad.0), "{err}");
        }
        let no_url = QdrantSettings::from_lookup(env(&[("QDRANT_HNSW_M", "8")])).unwrap();
        assert!(no_url.is_none());
    }

    #[test]
    fn chunk_ids_are_stable_and_distinct() {
        let e = Uuid::from_u128(7);
        assert_eq!(point_id(e, 0), e);
        assert_eq!(point_id(e, 3), point_id(e, 3));
        assert_ne!(point_id(e, 3), point_id(e, 4));
        assert_ne!(point_id(e, 1), point_id(Uuid::from_u128(8), 1));
    }

    #[test]
    fn every_filter_keeps_the_tenant_condition() {
        let t = TenantId::from_uuid(Uuid::from_u128(1));
        let strict = Filters {
            include_public: false,
            sources: crate::knowledge::Sources { knowledge: true, articles: false },
            ..Default::default()
        };
        let f = filter(t, &strict);
        assert_eq!(f.must.len(), 2, "tenant and source");
        let open = Filters { include_public: true, agent: Some("sales".into()), ..Default::default() };
        assert_eq!(filter(t, &open).must.len(), 2);
    }
}
