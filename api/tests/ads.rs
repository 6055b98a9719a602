//! Ads: CRUD with the seed's statuses, templates, generated drafts, isolation.

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn ads_crud_statuses_and_windows() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (status, ad) = app
        .send(
            "POST",
            "/api/v1/ads",
            Some(t),
            Some(json!({"name": "Spring", "platform": "facebook", "budget": 50_000, "content": {"headline": "Hi"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ad}");
    assert_eq!((ad["data"]["status"].as_str(), ad["data"]["ad_type"].as_str()), (Some("draft"), Some("text")));
    let id = ad["data"]["id"].as_str().unwrap();

    for status_value in ["review", "approved", "active", "paused", "archived"] {
        let (status, json) =
            app.send("PUT", &format!("/api/v1/ads/{id}"), Some(t), Some(json!({"status": status_value}))).await;
        assert_eq!((status, json["data"]["status"].as_str()), (StatusCode::OK, Some(status_value)));
    }
    let start = chrono::Utc::now() + chrono::Duration::days(1);
    let (status, json) = app
        .send("PUT", &format!("/api/v1/ads/{id}"), Some(t), Some(json!({"status": "scheduled", "scheduled_start_at": start.to_rfc3339(), "scheduled_end_at": (start - chrono::Duration::hours(1)).to_rfc3339()})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "end before start: {json}");
    let (status, _) =
        app.send("PUT", &format!("/api/v1/ads/{id}"), Some(t), Some(json!({"status": "scheduled"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "scheduled needs a start");
    let (status, json) = app
        .send(
            "PUT",
            &format!("/api/v1/ads/{id}"),
            Some(t),
            Some(json!({"status": "scheduled", "scheduled_start_at": start.to_rfc3339()})),
        )
        .await;
    assert_eq!((status, json["data"]["status"].as_str()), (StatusCode::OK, Some("scheduled")), "{json}");

    for (body, field) in [
        (json!({"name": "x"}), "platform"),
        (json!({"name": "x", "platform": "myspace"}), "platform"),
        (json!({"name": "x", "platform": "google", "budget": -5}), "budget"),
        (json!({"name": "x", "platform": "google", "ad_type": "hologram"}), "ad_type"),
    ] {
        let (status, json) = app.send("POST", "/api/v1/ads", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(json["error"]["details"][field].is_array(), "{body}: {json}");
    }
    let (status, _) = app.send("PUT", &format!("/api/v1/ads/{id}"), Some(t), Some(json!({"status": "live"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, list) = app.get("/api/v1/ads?platform=facebook&status=scheduled", t).await;
    assert_eq!(list["meta"]["pagination"]["total"], 1);

    for (method, body) in [("GET", None), ("PUT", Some(json!({"name": "hijack"}))), ("DELETE", None::<Value>)] {
        let (status, _) = app.send(method, &format!("/api/v1/ads/{id}"), Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    let (status, _) = app.send("DELETE", &format!("/api/v1/ads/{id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn ad_templates_and_generated_drafts() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (status, tpl) = app
        .send(
            "POST",
            "/api/v1/ads/templates",
            Some(t),
            Some(json!({"name": "Search", "platform": "google", "ad_type": "search", "structure": {"headlines": 3}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tpl}");
    let (_, templates) = app.get("/api/v1/ads/templates", t).await;
    assert_eq!(templates["meta"]["pagination"]["total"], 1);

    let (_, campaign) = app
        .send("POST", "/api/v1/outbound/campaigns", Some(t), Some(json!({"name": "Spring sale", "type": "email"})))
        .await;
    let (status, ad) = app
        .send(
            "POST",
            "/api/v1/ads/generate-from-campaign",
            Some(t),
            Some(json!({"source_id": campaign["data"]["id"], "platform": "instagram", "budget": 1000})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ad}");
    let d = &ad["data"];
    assert_eq!(
        (d["status"].as_str(), d["model"].as_str(), d["platform"].as_str()),
        (Some("draft"), Some("local-template-v1"), Some("instagram"))
    );
    assert_eq!(d["source_campaign_id"], campaign["data"]["id"]);
    assert!(!d["content"]["headline"].as_str().unwrap().is_empty());

    let (_, content) = app
        .send("POST", "/api/v1/content", Some(t), Some(json!({"title": "Roof care", "body": "Check gutters."})))
        .await;
    let (status, ad) = app
        .send(
            "POST",
            "/api/v1/ads/generate-from-content",
            Some(t),
            Some(json!({"source_id": content["data"]["id"], "platform": "linkedin"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ad}");
    assert_eq!(ad["data"]["source_content_id"], content["data"]["id"]);
    assert!(ad["data"]["prompt"].as_str().unwrap().contains("Roof care"));

    let (status, _) = app
        .send(
            "POST",
            "/api/v1/ads/generate-from-content",
            Some(&app.token_b),
            Some(json!({"source_id": content["data"]["id"], "platform": "linkedin"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "another tenant's content");
    let (status, _) =
        app.send("POST", "/api/v1/ads/generate-from-campaign", Some(t), Some(json!({"platform": "google"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// An ad drafted from a campaign carries the platform and the campaign to the provider
/// (checked with a provider that answers with its prompt).
#[tokio::test]
async fn an_ad_brief_reaches_the_provider() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (llm, seen) = fibonacco_api::testing::echo_llm().await;
    let router = app.with_llm(llm);
    let (_, campaign) = app
        .send("POST", "/api/v1/outbound/campaigns", Some(t), Some(json!({"name": "Spring sale", "type": "email"})))
        .await;
    let (status, ad) = fibonacco_api::testing::call(
        &router,
        t,
        "POST",
        "/api/v1/ads/generate-from-campaign",
        Some(json!({"source_id": campaign["data"]["id"], "platform": "linkedin", "budget": 1000})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ad}");
    let sent = seen.lock().unwrap()[0].to_string();
    assert!(sent.contains("for linkedin") && sent.contains("Spring sale"), "{sent}");
    let text = ad["data"]["content"]["primary_text"].as_str().unwrap_or_default();
    assert!(text.contains("Spring sale"), "the draft keeps the provider's answer: {ad}");
    assert_eq!(ad["data"]["model"], "echo-1");
}
