//! Presentations and presenters.

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;
use serde_json::json;

#[tokio::test]
async fn presentations_with_presenters_views_and_isolation() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (status, presenter) = app
        .send(
            "POST",
            "/api/v1/presentations/presenters",
            Some(t),
            Some(json!({"name": "Ava", "voice_id": "rachel", "voice_settings": {"stability": 0.5}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{presenter}");
    let (status, p) = app
        .send("POST", "/api/v1/presentations", Some(t),
            Some(json!({"title": "Our services", "presenter_id": presenter["data"]["id"], "slides": [{"title": "Welcome", "content": "Hi"}, {"title": "Pricing"}]})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!((p["data"]["slug"].as_str(), p["data"]["status"].as_str()), (Some("our-services"), Some("draft")));
    let id = p["data"]["id"].as_str().unwrap();

    let (status, json) = app
        .send(
            "POST",
            "/api/v1/presentations",
            Some(t),
            Some(json!({"title": "Bad", "slides": [{"content": "no title"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json["error"]["details"]["slides[0]"].is_array(), "{json}");
    let b_presenter =
        app.send("POST", "/api/v1/presentations/presenters", Some(&app.token_b), Some(json!({"name": "B"}))).await.1;
    let (status, _) = app
        .send(
            "PUT",
            &format!("/api/v1/presentations/{id}"),
            Some(t),
            Some(json!({"presenter_id": b_presenter["data"]["id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "another tenant's presenter");

    let (status, _) = app.send("POST", &format!("/api/v1/presentations/{id}/view"), Some(t), Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "drafts are not viewed");
    let (status, _) =
        app.send("PUT", &format!("/api/v1/presentations/{id}"), Some(t), Some(json!({"status": "published"}))).await;
    assert_eq!(status, StatusCode::OK);
    let viewer = app.customer(t, json!({"name": "Viewer"})).await;
    let (status, viewed) = app
        .send("POST", &format!("/api/v1/presentations/{id}/view"), Some(t), Some(json!({"customer_id": viewer["id"]})))
        .await;
    assert_eq!((status, viewed["data"]["view_count"].as_i64()), (StatusCode::OK, Some(1)));

    let (_, list) = app.get("/api/v1/presentations", t).await;
    assert_eq!(list["meta"]["pagination"]["total"], 1);
    let (_, presenters) = app.get("/api/v1/presentations/presenters", t).await;
    assert_eq!(presenters["meta"]["pagination"]["total"], 1);
    for (method, body) in [("GET", None), ("PUT", Some(json!({"title": "hijack"}))), ("DELETE", None)] {
        let (status, _) = app.send(method, &format!("/api/v1/presentations/{id}"), Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    let (status, _) = app.send("DELETE", &format!("/api/v1/presentations/{id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn training_modules_track_each_customers_progress() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (_, entry) =
        app.send("POST", "/api/v1/knowledge", Some(t), Some(json!({"title": "Refunds", "content": "30 days"}))).await;
    let (status, module) = app
        .send(
            "POST",
            "/api/v1/training",
            Some(t),
            Some(json!({"title": "Support basics", "status": "published",
            "lessons": [{"title": "Greeting"}, {"title": "Refunds", "knowledge_id": entry["data"]["id"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{module}");
    let id = module["data"]["id"].as_str().unwrap();
    let b_entry =
        app.send("POST", "/api/v1/knowledge", Some(&app.token_b), Some(json!({"title": "B", "content": "b"}))).await.1;
    let (status, json) = app
        .send(
            "POST",
            "/api/v1/training",
            Some(t),
            Some(json!({"title": "Bad", "lessons": [{"title": "x", "knowledge_id": b_entry["data"]["id"]}, {}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert!(json["error"]["details"]["lessons[1].title"].is_array(), "{json}");

    let learner = app.customer(t, json!({"name": "Learner"})).await;
    let path = format!("/api/v1/training/{id}/progress");
    let (status, p) = app.send("POST", &path, Some(t), Some(json!({"customer_id": learner["id"], "lesson": 1}))).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!((p["data"]["completed_lessons"].clone(), p["data"]["completed_at"].is_null()), (json!([1]), true));
    let (_, p) = app.send("POST", &path, Some(t), Some(json!({"customer_id": learner["id"], "lesson": 1}))).await;
    assert_eq!(p["data"]["completed_lessons"], json!([1]), "the same lesson twice counts once");
    let (_, p) = app.send("POST", &path, Some(t), Some(json!({"customer_id": learner["id"], "lesson": 0}))).await;
    assert_eq!(p["data"]["completed_lessons"], json!([0, 1]));
    assert!(p["data"]["completed_at"].is_string(), "all lessons done completes the module");
    let (status, got) =
        app.get(&format!("/api/v1/training/{id}/progress/{}", learner["id"].as_str().unwrap()), t).await;
    assert_eq!((status, got["data"]["lesson_count"].as_i64()), (StatusCode::OK, Some(2)));

    let (status, _) = app.send("POST", &path, Some(t), Some(json!({"customer_id": learner["id"], "lesson": 2}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no lesson 2");
    let (status, _) =
        app.send("POST", &path, Some(&app.token_b), Some(json!({"customer_id": learner["id"], "lesson": 0}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&format!("/api/v1/training/{id}"), &app.token_b).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/api/v1/training", t).await;
    assert_eq!(list["meta"]["pagination"]["total"], 1);
}
