//! The OpenAI-compatible embedder against a stub: it asks for vectors the knowledge index
//! can hold, and a size the index cannot hold is refused up front.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, extract::State, routing::post};
use fibonacco_search::{embed, index::KNOWLEDGE_DIMENSIONS};
use serde_json::{Value, json};

/// Answers `/v1/embeddings` with vectors of the size asked for (`dimensions`), or 1536 as
/// `text-embedding-3-small` does without it; records each request.
async fn stub() -> (String, Arc<Mutex<Vec<Value>>>) {
    type Seen = Arc<Mutex<Vec<Value>>>;
    async fn embeddings(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
        seen.lock().unwrap().push(body.clone());
        let size = body["dimensions"].as_u64().unwrap_or(1536) as usize;
        let inputs = body["input"].as_array().cloned().unwrap_or_default();
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"index": i, "embedding": (0..size).map(|k| ((k + i) % 7) as f32).collect::<Vec<_>>()}))
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

#[tokio::test]
async fn the_remote_embedder_asks_for_the_index_size_and_refuses_another() {
    fibonacco_platform::install_tls_provider();
    let (base, seen) = stub().await;
    let lookup = |dims: Option<&'static str>| {
        let base = base.clone();
        move |k: &str| match k {
            "EMBEDDING_BASE_URL" => Some(base.clone()),
            "EMBEDDING_MODEL" => Some("text-embedding-3-small".into()),
            "EMBEDDING_DIMENSIONS" => dims.map(str::to_owned),
            _ => None,
        }
    };
    let embedder = embed::from_lookup(lookup(None)).expect("the default size is the index's");
    assert_eq!(embedder.dimensions(), KNOWLEDGE_DIMENSIONS);
    let entries = [("Opening hours".to_owned(), "We open at nine.".to_owned())];
    let vectors = fibonacco_search::index::embed_entries(embedder.as_ref(), &entries).await.expect("indexable vectors");
    assert_eq!(vectors[0][0].len(), KNOWLEDGE_DIMENSIONS);
    assert_eq!(seen.lock().unwrap()[0]["dimensions"], KNOWLEDGE_DIMENSIONS, "the size is asked for");

    let refused = embed::from_lookup(lookup(Some("1536"))).err().expect("a size the index cannot hold");
    assert!(refused.to_string().contains("384"), "{refused}");
}
