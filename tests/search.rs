//! `fibonacco search reindex` and `fibonacco search serve` as processes.

use fibonacco_api::testing::TestApp;
use fibonacco_platform::db;
use fibonacco_search::embed::local::MiniLm;
use serde_json::{Value, json};

#[path = "../search/tests/support.rs"]
mod support;
use support::{embed, entry, ids};

#[tokio::test]
async fn reindex_rebuilds_every_tenants_vectors_from_postgres() {
    let app = TestApp::spawn().await;
    let a = entry(&app, &app.token_a, json!({"title": "Hours", "content": "Open nine to five."})).await;
    let b = entry(&app, &app.token_b, json!({"title": "Prices", "content": "Haircuts cost twenty dollars."})).await;
    let (_, article) = app
        .send(
            "POST",
            "/api/v1/articles",
            Some(&app.token_b),
            Some(json!({"title": "Colour guide", "body": "How we choose a tint.", "status": "published"})),
        )
        .await;
    let article = article["data"]["id"].as_str().unwrap().to_owned();
    // One entry carries a stale vector from another model; reindex replaces it.
    let mut tx = db::begin_system(&app.db.pool).await.unwrap();
    sqlx::query("update knowledge_base set embedding = array_fill(0.1, array[384])::vector, embedding_model = 'old-model', embedding_status = 'completed' where id = $1::uuid")
        .bind(&a)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let out = crate::fibonacco(&app.db.url)
        .env("EMBEDDING_MODEL_DIR", MiniLm::default_dir())
        .args(["search", "reindex", "--batch", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("2 of 2 entries embedded and 1 published articles"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut tx = db::begin_system(&app.db.pool).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("select embedding_status, embedding_model from knowledge_base where id in ($1::uuid, $2::uuid)")
            .bind(&a)
            .bind(&b)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows, vec![("completed".into(), "all-MiniLM-L6-v2".into()); 2]);
    let mut tx = db::begin_system(&app.db.pool).await.unwrap();
    let article_vectors: i64 = sqlx::query_scalar("select count(*) from article_chunks where article_id = $1::uuid")
        .bind(&article)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(article_vectors, 1, "the published article was embedded too");
    // The new vectors answer queries: tenant B's entry is found by meaning.
    let (_, r) = app.get("/api/v1/search?mode=semantic&q=how%20much%20is%20a%20haircut", &app.token_b).await;
    assert_eq!(ids(&r)[0], b);
}

#[tokio::test]
async fn fibonacco_search_serve_runs_the_service_until_sigterm() {
    let app = TestApp::spawn().await;
    let model = MiniLm::load(&MiniLm::default_dir()).expect("run scripts/models.sh");
    let mine = entry(&app, &app.token_a, json!({"title": "Parking", "content": "Free parking behind the shop."})).await;
    embed(&app, app.tenant_a, &model, &[&mine]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = crate::fibonacco(&app.db.url)
        .env("EMBEDDING_MODEL_DIR", MiniLm::default_dir())
        .env("SEARCH_PORT", port.to_string())
        .args(["search", "serve"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "the service did not come up on port {port}");
    let r: Value = http
        .get(format!("{base}/api/v1/search?q=where%20can%20I%20park"))
        .bearer_auth(&app.token_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&r), vec![mine], "{r}");
    assert_eq!(r["data"]["mode"], "hybrid");
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
}
