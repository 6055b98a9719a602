//! What the search tests share (this crate's test binary and the root's tests of the
//! `fibonacco search` processes): knowledge entries made through the API, embedded the
//! way the GenerateEmbedding job does.
#![allow(dead_code)]

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;
use fibonacco_platform::{TenantId, db};
use fibonacco_search::{Embedder, embed::local::MiniLm, index};
use serde_json::Value;

pub async fn entry(app: &TestApp, token: &str, body: Value) -> String {
    let (s, k) = app.send("POST", "/api/v1/knowledge", Some(token), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    k["data"]["id"].as_str().unwrap().to_owned()
}

/// Embeds entries the way the GenerateEmbedding job does (entry vector and, for long
/// content, its sections).
pub async fn embed(app: &TestApp, tenant: TenantId, model: &MiniLm, ids: &[&str]) {
    for id in ids {
        let mut tx = db::begin_tenant(&app.db.pool, tenant).await.unwrap();
        let (title, content): (String, String) =
            sqlx::query_as("select title, content from knowledge_base where id = $1::uuid")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        let entries = [(title, content)];
        let mut vectors = index::embed_entries(model, &entries).await.unwrap();
        let [(title, content)] = entries;
        let uuid = uuid::Uuid::parse_str(id).unwrap();
        let points = index::store_entry(&mut tx, tenant, uuid, &title, &content, &vectors.remove(0), model.model())
            .await
            .unwrap()
            .expect("text unchanged");
        tx.commit().await.unwrap();
        app.state.search.store.replace(uuid, &points).await.unwrap();
    }
}

pub fn ids(body: &Value) -> Vec<String> {
    body["data"]["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect()
}
