//! Articles: write, publish, find by slug or text, count views.

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn articles_are_written_published_found_and_counted() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (status, a) = app
        .send("POST", "/api/v1/articles", Some(t), Some(json!({"title": "How to prepare your garden for winter", "body": "Mulch the beds and drain the hoses.", "tags": ["garden"], "category": "seasonal"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    let id = a["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (a["data"]["slug"].as_str(), a["data"]["status"].as_str()),
        (Some("how-to-prepare-your-garden-for-winter"), Some("draft"))
    );
    assert_eq!(a["data"]["published_at"], Value::Null);

    let (status, _) = app.send("POST", &format!("/api/v1/articles/{id}/view"), Some(t), Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "drafts are not read");
    let (status, published) =
        app.send("PUT", &format!("/api/v1/articles/{id}"), Some(t), Some(json!({"status": "published"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(published["data"]["published_at"].is_string());

    let reader = app.customer(t, json!({"name": "Reader"})).await;
    for _ in 0..2 {
        let (status, v) = app
            .send("POST", &format!("/api/v1/articles/{id}/view"), Some(t), Some(json!({"customer_id": reader["id"]})))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (_, by_slug) = app.get("/api/v1/articles/slug/how-to-prepare-your-garden-for-winter", t).await;
    assert_eq!(by_slug["data"]["view_count"], 2);
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let reads: i64 =
        sqlx::query_scalar("select count(*) from customer_activities where activity_type = 'article_read'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(reads, 2, "each read is the reader's activity");

    let (_, found) = app.get("/api/v1/articles?search=hoses&status=published", t).await;
    assert_eq!(found["meta"]["pagination"]["total"], 1);
    let (_, tagged) = app.get("/api/v1/articles?tag=garden", t).await;
    assert_eq!(tagged["meta"]["pagination"]["total"], 1);
    let (status, _) = app
        .send(
            "POST",
            "/api/v1/articles",
            Some(t),
            Some(json!({"title": "X", "slug": "how-to-prepare-your-garden-for-winter"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, json) =
        app.send("POST", "/api/v1/articles", Some(t), Some(json!({"title": "X", "status": "archived"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");

    for (method, path, body) in [
        ("GET", format!("/api/v1/articles/{id}"), None),
        ("PUT", format!("/api/v1/articles/{id}"), Some(json!({"title": "hijack"}))),
        ("DELETE", format!("/api/v1/articles/{id}"), None),
        ("POST", format!("/api/v1/articles/{id}/view"), Some(json!({}))),
        ("GET", "/api/v1/articles/slug/how-to-prepare-your-garden-for-winter".to_string(), None),
    ] {
        let (status, _) = app.send(method, &path, Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (status, _) = app.send("DELETE", &format!("/api/v1/articles/{id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn tts_requests_are_stored_pending_and_queued() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (status, r) = app
        .send("POST", "/api/v1/tts", Some(t), Some(json!({"text": "Welcome to Acme Plumbing.", "voice_id": "rachel"})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["data"]["status"], "pending");
    let id = r["data"]["id"].as_str().unwrap();
    let job = r["data"]["job_id"].as_str().unwrap();
    let mut redis = app.state.redis.clone();
    let queued: Vec<String> =
        redis::cmd("LRANGE").arg(app.state.queue.list_key("tts")).arg(0).arg(-1).query_async(&mut redis).await.unwrap();
    let ours = queued.iter().find(|p| p.contains(job)).expect("GenerateTTS queued");
    assert!(ours.contains(id));
    let _: i64 =
        redis::cmd("LREM").arg(app.state.queue.list_key("tts")).arg(0).arg(ours).query_async(&mut redis).await.unwrap();

    let (_, listed) = app.get("/api/v1/tts?status=pending", t).await;
    assert_eq!(listed["meta"]["pagination"]["total"], 1);
    for (body, field) in [
        (json!({"voice_id": "v"}), "text"),
        (json!({"text": "hi"}), "voice_id"),
        (json!({"text": "x".repeat(10_001), "voice_id": "v"}), "text"),
        (json!({"text": "hi", "voice_id": "v", "source_id": uuid::Uuid::now_v7()}), "source_type"),
    ] {
        let (status, json) = app.send("POST", "/api/v1/tts", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
        assert!(json["error"]["details"][field].is_array());
    }
    let (status, _) = app.get(&format!("/api/v1/tts/{id}"), &app.token_b).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
