//! Presentations and presenters.

mod common;

use axum::http::StatusCode;
use common::TestApp;
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
