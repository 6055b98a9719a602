//! Conversations and messages end to end.

use axum::http::StatusCode;
use fibonacco_api::testing::{TestApp, code};
use serde_json::{Value, json};

async fn conversation(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, json) = app.send("POST", "/api/v1/conversations", Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json["data"].clone()
}

#[tokio::test]
async fn conversation_lifecycle_with_messages_in_order() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let customer = app.customer(t, json!({"name": "Talker"})).await;
    let c = conversation(&app, t, json!({"customer_id": customer["id"], "channel": "sms"})).await;
    assert_eq!(
        (c["status"].as_str(), c["channel"].as_str(), c["message_count"].as_i64()),
        (Some("active"), Some("sms"), Some(0))
    );
    let id = c["id"].as_str().unwrap();

    for (role, content) in [("customer", "Hello"), ("assistant", "Hi! How can I help?"), ("customer", "Pricing?")] {
        let (status, m) = app
            .send(
                "POST",
                &format!("/api/v1/conversations/{id}/messages"),
                Some(t),
                Some(json!({"role": role, "content": content})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
    }
    let (status, msgs) = app.get(&format!("/api/v1/conversations/{id}/messages"), t).await;
    assert_eq!(status, StatusCode::OK);
    let contents: Vec<&str> = msgs["data"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, vec!["Hello", "Hi! How can I help?", "Pricing?"]);
    assert_eq!(msgs["meta"]["pagination"]["total"], 3);
    let (_, page2) = app.get(&format!("/api/v1/conversations/{id}/messages?per_page=2&page=2"), t).await;
    assert_eq!(page2["data"][0]["content"], "Pricing?");

    let (status, updated) = app
        .send(
            "PUT",
            &format!("/api/v1/conversations/{id}"),
            Some(t),
            Some(json!({"summary": "Asked about pricing", "metadata": {"lang": "en"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["data"]["summary"], "Asked about pricing");
    assert_eq!(updated["data"]["message_count"], 3);

    let followup = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let (status, ended) = app
        .send(
            "POST",
            &format!("/api/v1/conversations/{id}/end"),
            Some(t),
            Some(json!({"outcome": "follow_up", "followup_scheduled_at": followup})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["data"]["status"], "ended");
    assert_eq!(ended["data"]["outcome"], "follow_up");
    assert!(ended["data"]["ended_at"].is_string());
    assert_eq!(ended["data"]["summary"], "Asked about pricing", "end keeps what it was not given");

    // An ended conversation takes no messages and cannot end twice.
    let (status, json) = app
        .send(
            "POST",
            &format!("/api/v1/conversations/{id}/messages"),
            Some(t),
            Some(json!({"role": "customer", "content": "Hello?"})),
        )
        .await;
    assert_eq!((status, code(&json)), (StatusCode::CONFLICT, "CONFLICT"));
    let (status, _) = app.send("POST", &format!("/api/v1/conversations/{id}/end"), Some(t), Some(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, msgs) = app.get(&format!("/api/v1/conversations/{id}/messages"), t).await;
    assert_eq!(msgs["meta"]["pagination"]["total"], 3, "the refused message was not stored");

    let (_, listed) = app
        .get(&format!("/api/v1/conversations?status=ended&customer_id={}", customer["id"].as_str().unwrap()), t)
        .await;
    assert_eq!(listed["meta"]["pagination"]["total"], 1);
    let (_, none) = app.get("/api/v1/conversations?status=active", t).await;
    assert_eq!(none["meta"]["pagination"]["total"], 0);

    let (status, _) = app.send("DELETE", &format!("/api/v1/conversations/{id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get(&format!("/api/v1/conversations/{id}/messages"), t).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_conversation_input_is_422_and_unknown_ids_404() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let other_tenant_customer = app.customer(&app.token_b, json!({"name": "B's"})).await;
    for (body, field) in [
        (json!({"channel": "pigeon"}), "channel"),
        (json!({"customer_id": "nope"}), "customer_id"),
        (json!({"customer_id": other_tenant_customer["id"]}), "customer_id"),
        (json!({"metadata": "x"}), "metadata"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (status, json) = app.send("POST", "/api/v1/conversations", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["details"][field].is_array(), "{body}: {json}");
    }
    let c = conversation(&app, t, json!({})).await;
    let id = c["id"].as_str().unwrap();
    for (path, body, field) in [
        (format!("/api/v1/conversations/{id}/messages"), json!({"role": "robot", "content": "x"}), "role"),
        (format!("/api/v1/conversations/{id}/messages"), json!({"role": "user", "content": "   "}), "content"),
        (format!("/api/v1/conversations/{id}/messages"), json!({"role": "user"}), "content"),
        (
            format!("/api/v1/conversations/{id}/end"),
            json!({"followup_scheduled_at": "2020-01-01T00:00:00Z"}),
            "followup_scheduled_at",
        ),
    ] {
        let (status, json) = app.send("POST", &path, Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["details"][field].is_array(), "{body}: {json}");
    }
    let (status, _) =
        app.send("PUT", &format!("/api/v1/conversations/{id}"), Some(t), Some(json!({"status": "ended"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "ending goes through /end");
    let (status, _) = app.get("/api/v1/conversations?status=weird", t).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let unknown = uuid::Uuid::now_v7();
    for (method, path, body) in [
        ("GET", format!("/api/v1/conversations/{unknown}"), None),
        ("PUT", format!("/api/v1/conversations/{unknown}"), Some(json!({"summary": "x"}))),
        ("DELETE", format!("/api/v1/conversations/{unknown}"), None),
        ("POST", format!("/api/v1/conversations/{unknown}/end"), Some(json!({}))),
        ("POST", format!("/api/v1/conversations/{unknown}/messages"), Some(json!({"role": "user", "content": "x"}))),
        ("GET", format!("/api/v1/conversations/{unknown}/messages"), None),
        ("GET", "/api/v1/conversations/not-a-uuid".to_string(), None),
    ] {
        let (status, _) = app.send(method, &path, Some(t), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
}

#[tokio::test]
async fn tenant_b_cannot_reach_tenant_a_conversations() {
    let app = TestApp::spawn().await;
    let c = conversation(&app, &app.token_a, json!({"summary": "secret"})).await;
    let id = c["id"].as_str().unwrap();
    app.send(
        "POST",
        &format!("/api/v1/conversations/{id}/messages"),
        Some(&app.token_a),
        Some(json!({"role": "user", "content": "A only"})),
    )
    .await;
    for (method, path, body) in [
        ("GET", format!("/api/v1/conversations/{id}"), None),
        ("PUT", format!("/api/v1/conversations/{id}"), Some(json!({"summary": "hijack"}))),
        ("DELETE", format!("/api/v1/conversations/{id}"), None),
        ("POST", format!("/api/v1/conversations/{id}/end"), Some(json!({}))),
        ("POST", format!("/api/v1/conversations/{id}/messages"), Some(json!({"role": "user", "content": "sneak"}))),
        ("GET", format!("/api/v1/conversations/{id}/messages"), None),
    ] {
        let (status, json) = app.send(method, &path, Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {json}");
    }
    let (_, list) = app.get("/api/v1/conversations", &app.token_b).await;
    assert_eq!(list["meta"]["pagination"]["total"], 0);
    let (_, still) = app.get(&format!("/api/v1/conversations/{id}"), &app.token_a).await;
    assert_eq!(
        (still["data"]["summary"].as_str(), still["data"]["status"].as_str(), still["data"]["message_count"].as_i64()),
        (Some("secret"), Some("active"), Some(1))
    );

    let customers_only = app.token_with(app.tenant_a, &["customers:*"], None).await;
    let (status, _) = app.get("/api/v1/conversations", &customers_only).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
