//! The OpenAI-compatible embedder against a stub: the index takes the model's own vector
//! size, and switching embedders re-embeds through `reindex`.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, extract::State, routing::post};
use fibonacco_api::testing::TestApp;
use fibonacco_search::{Embedder, embed, index, store::pgvector::PgVector};
use serde_json::{Value, json};

use crate::support;

/// Answers `/v1/embeddings` like OpenAI: vectors of the size asked for (`dimensions`),
/// else the model's own (1536 for `text-embedding-3-small`). Each vector is a hashed bag of
/// the text's words, so texts sharing words are near; records each request.
async fn stub() -> (String, Arc<Mutex<Vec<Value>>>) {
    type Seen = Arc<Mutex<Vec<Value>>>;
    async fn embeddings(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
        seen.lock().unwrap().push(body.clone());
        let size = body["dimensions"].as_u64().unwrap_or(1536) as usize;
        let inputs = body["input"].as_array().cloned().unwrap_or_default();
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let mut v = vec![0.0f32; size];
                for word in text.as_str().unwrap_or("").to_lowercase().split(|c: char| !c.is_alphanumeric()) {
                    if word.len() > 2 {
                        let h = word.bytes().fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
                        v[h % size] += 1.0;
                    }
                }
                v[i % size] += 0.01; // never the zero vector
                json!({"index": i, "embedding": v})
            })
            .collect();
        Json(json!({"data": data, "model": body["model"]}))
    }
    let seen: Seen = Default::default();
    let app = Router::new().route("/v1/embeddings", post(embeddings)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

fn lookup(base: &str, model: &'static str, dims: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
    let base = base.to_owned();
    move |k: &str| match k {
        "EMBEDDING_BASE_URL" => Some(base.clone()),
        "EMBEDDING_MODEL" => Some(model.into()),
        "EMBEDDING_DIMENSIONS" => dims.map(str::to_owned),
        _ => None,
    }
}

#[tokio::test]
async fn the_remote_embedder_takes_the_models_own_size_or_the_one_asked_for() {
    fibonacco_platform::install_tls_provider();
    let (base, seen) = stub().await;
    let entries = [("Opening hours".to_owned(), "We open at nine.".to_owned())];

    let native = embed::from_lookup(lookup(&base, "text-embedding-3-small", None)).expect("a known model");
    assert_eq!(native.dimensions(), 1536);
    let vectors = index::embed_entries(native.as_ref(), &entries).await.expect("indexable vectors");
    assert_eq!(vectors[0][0].len(), 1536);
    assert!(seen.lock().unwrap()[0].get("dimensions").is_none(), "the model's own size is not asked for");

    let shortened = embed::from_lookup(lookup(&base, "text-embedding-3-small", Some("384"))).unwrap();
    assert_eq!(shortened.dimensions(), 384);
    index::embed_entries(shortened.as_ref(), &entries).await.unwrap();
    assert_eq!(seen.lock().unwrap()[1]["dimensions"], 384, "a shorter size is asked for");

    let unknown = embed::from_lookup(lookup(&base, "nomic-embed-text", None)).err().expect("an unknown size");
    assert!(unknown.to_string().contains("EMBEDDING_DIMENSIONS"), "{unknown}");
    let too_big = embed::from_lookup(lookup(&base, "text-embedding-3-large", Some("5000"))).err().expect("unindexable");
    assert!(too_big.to_string().contains("4000"), "{too_big}");
    assert_eq!(embed::configured_dimensions(lookup(&base, "text-embedding-3-large", None)).unwrap(), 3072);
}

/// The ids a semantic search for the parking entry finds, asked with `embedder`.
async fn search(app: &TestApp, embedder: Arc<dyn Embedder>) -> Vec<String> {
    let router = app.with(|s| s.search = s.search.clone().with_embedder(embedder));
    let (s, r) = fibonacco_api::testing::call(
        &router,
        &app.token_a,
        "GET",
        "/api/v1/search?mode=semantic&q=free%20parking%20for%20customers",
        None,
    )
    .await;
    assert_eq!(s, axum::http::StatusCode::OK, "{r}");
    support::ids(&r)
}

#[tokio::test]
async fn switching_embedders_reindexes_into_an_index_of_the_new_size() {
    fibonacco_platform::install_tls_provider();
    let (base, _) = stub().await;
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let hours = support::entry(
        &app,
        t,
        json!({"title": "Opening hours", "content": "The shop opens at nine every weekday morning."}),
    )
    .await;
    let parking = support::entry(
        &app,
        t,
        json!({"title": "Parking", "content": "Free parking behind the building for customers."}),
    )
    .await;
    let store = PgVector::new(app.db.pool.clone());
    let index_exists = |name: &'static str| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("select exists (select 1 from pg_class where relname = $1)")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    // A 1536-dimensional model: its index is built by the first write, and search finds
    // the entry through it.
    let large: Arc<dyn Embedder> = embed::from_lookup(lookup(&base, "text-embedding-3-small", None)).unwrap();
    assert!(!index_exists("knowledge_base_embedding_1536_idx").await);
    let stats = index::reindex(&app.db.pool, large.as_ref(), &store, 16, |_, _| {}).await.expect("reindexed");
    assert_eq!(stats.embedded, 2);
    assert!(index_exists("knowledge_base_embedding_1536_idx").await);
    assert!(index_exists("knowledge_chunks_embedding_1536_idx").await);
    assert_eq!(search(&app, large.clone()).await.first(), Some(&parking));
    // The query the store makes, spelled with the same helpers, plans on that index.
    let dims = fibonacco_search::vectors::Dims::new(1536).unwrap();
    let mut tx = app.db.pool.begin().await.unwrap();
    sqlx::query("set local enable_seqscan = off").execute(&mut *tx).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "explain select id from knowledge_base where {} and embedding_model = 'text-embedding-3-small'
         order by {} <=> $1{} limit 5",
        dims.predicate("embedding"),
        dims.expr("embedding"),
        dims.cast()
    )))
    .bind(fibonacco_search::embed::pgvector_literal(&vec![0.5; 1536]))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(plan.join("\n").contains("knowledge_base_embedding_1536_idx"), "{}", plan.join("\n"));
    tx.rollback().await.unwrap();

    // Back to the local MiniLM (384): reindex, and search with it finds the same entry;
    // the 1536 model's vectors are gone, so asking with it finds nothing stale.
    let minilm: Arc<dyn Embedder> =
        Arc::new(embed::local::MiniLm::load(&embed::local::MiniLm::default_dir()).expect("run scripts/models.sh"));
    index::reindex(&app.db.pool, minilm.as_ref(), &store, 16, |_, _| {}).await.expect("reindexed");
    assert_eq!(search(&app, minilm).await.first(), Some(&parking));
    assert!(search(&app, large).await.is_empty());
    let mut tx = fibonacco_platform::db::begin_system(&app.db.pool).await.unwrap();
    let sizes: Vec<(String, i32)> = sqlx::query_as(
        "select distinct embedding_model, vector_dims(embedding) from knowledge_base where embedding is not null",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sizes, vec![("all-MiniLM-L6-v2".to_owned(), 384)], "{hours} re-embedded too");
}
