//! Content, the publishing workflow (every legal and illegal step) and publishing views.

use axum::http::StatusCode;
use fibonacco_api::testing::{TestApp, code};
use serde_json::{Value, json};

const STATUSES: [&str; 6] = ["draft", "review", "approved", "scheduled", "published", "archived"];

fn is_legal(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("draft", "review")
            | ("review", "approved")
            | ("approved", "scheduled" | "published")
            | ("scheduled", "published")
            | ("draft" | "review" | "approved" | "scheduled" | "published", "archived")
    )
}

fn path_to(status: &str) -> &'static [&'static str] {
    match status {
        "draft" => &[],
        "review" => &["review"],
        "approved" => &["review", "approved"],
        "scheduled" => &["review", "approved", "scheduled"],
        "published" => &["review", "approved", "published"],
        _ => &["archived"],
    }
}

fn future() -> String {
    (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339()
}

async fn new_content(app: &TestApp, title: &str) -> String {
    let (status, json) =
        app.send("POST", "/api/v1/content", Some(&app.token_a), Some(json!({"title": title, "body": "Hello"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json["data"]["id"].as_str().unwrap().to_owned()
}

async fn move_to(app: &TestApp, id: &str, to: &str) -> (StatusCode, Value) {
    let body =
        if to == "scheduled" { json!({"status": to, "scheduled_publish_at": future()}) } else { json!({"status": to}) };
    app.send("POST", &format!("/api/v1/content/{id}/status"), Some(&app.token_a), Some(body)).await
}

#[tokio::test]
async fn every_workflow_transition_is_enforced() {
    let app = TestApp::spawn().await;
    for from in STATUSES {
        for to in STATUSES {
            let id = new_content(&app, &format!("{from} to {to}")).await;
            for step in path_to(from) {
                let (status, json) = move_to(&app, &id, step).await;
                assert_eq!(status, StatusCode::OK, "reaching {from} via {step}: {json}");
            }
            let (_, before) = app.get(&format!("/api/v1/content/{id}/history"), &app.token_a).await;
            let (status, json) = move_to(&app, &id, to).await;
            let (_, after) = app.get(&format!("/api/v1/content/{id}/history"), &app.token_a).await;
            let (_, now) = app.get(&format!("/api/v1/content/{id}"), &app.token_a).await;
            if is_legal(from, to) {
                assert_eq!(status, StatusCode::OK, "{from} -> {to}: {json}");
                assert_eq!(now["data"]["status"], to);
                let last = after["data"].as_array().unwrap().last().unwrap().clone();
                assert_eq!((last["from_status"].as_str(), last["to_status"].as_str()), (Some(from), Some(to)));
            } else {
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{from} -> {to} must be refused: {json}");
                assert_eq!(code(&json), "VALIDATION_FAILED");
                assert_eq!(now["data"]["status"], from, "nothing changed");
                assert_eq!(before["data"], after["data"], "no history written");
            }
        }
    }
}

#[tokio::test]
async fn history_records_who_when_and_notes_and_publishing_views_follow() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let id = new_content(&app, "Launch post").await;
    let (status, json) = app
        .send(
            "POST",
            &format!("/api/v1/content/{id}/status"),
            Some(t),
            Some(json!({"status": "scheduled", "scheduled_publish_at": future()})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "draft cannot jump to scheduled: {json}");
    move_to(&app, &id, "review").await;
    let (status, json) = app
        .send(
            "POST",
            &format!("/api/v1/content/{id}/status"),
            Some(t),
            Some(json!({"status": "approved", "notes": "Looks good"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, json) = app
        .send(
            "POST",
            &format!("/api/v1/content/{id}/status"),
            Some(t),
            Some(json!({"status": "scheduled", "scheduled_publish_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "scheduling needs a future time: {json}");
    let (status, _) =
        app.send("POST", &format!("/api/v1/content/{id}/status"), Some(t), Some(json!({"status": "scheduled"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, scheduled) = move_to(&app, &id, "scheduled").await;
    assert_eq!(status, StatusCode::OK);
    assert!(scheduled["data"]["scheduled_publish_at"].is_string());

    // Approved or later content cannot be edited.
    let (status, _) =
        app.send("PUT", &format!("/api/v1/content/{id}"), Some(t), Some(json!({"title": "Changed"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (_, dash) = app.get("/api/v1/publishing/dashboard", t).await;
    assert_eq!(dash["data"]["counts"]["scheduled"], 1);
    assert_eq!(dash["data"]["upcoming"][0]["id"], id.as_str());
    let (_, cal) = app.get("/api/v1/publishing/calendar", t).await;
    assert_eq!(cal["data"].as_array().unwrap().len(), 1);
    let (_, past) = app.get("/api/v1/publishing/calendar?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z", t).await;
    assert_eq!(past["data"].as_array().unwrap().len(), 0);
    for bad in [
        "from=yesterday",
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        let (status, _) = app.get(&format!("/api/v1/publishing/calendar?{bad}"), t).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    let (status, published) =
        app.send("POST", &format!("/api/v1/publishing/content/{id}/publish"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK, "{published}");
    assert!(published["data"]["published_at"].is_string());
    let (status, _) = app.send("POST", &format!("/api/v1/publishing/content/{id}/publish"), Some(t), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "already published");
    let draft = new_content(&app, "Draft").await;
    let (status, _) = app.send("POST", &format!("/api/v1/publishing/content/{draft}/publish"), Some(t), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "drafts are not published");

    let (_, history) = app.get(&format!("/api/v1/content/{id}/history"), t).await;
    let steps: Vec<(Option<&str>, &str, &str)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["from_status"].as_str(), h["to_status"].as_str().unwrap(), h["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (None, "draft", "created"),
            (Some("draft"), "review", "status_change"),
            (Some("review"), "approved", "status_change"),
            (Some("approved"), "scheduled", "status_change"),
            (Some("scheduled"), "published", "publish"),
        ]
    );
    assert_eq!(history["data"][2]["notes"], "Looks good");
    assert!(history["data"][2]["performed_at"].is_string());

    let (_, stats) = app.get("/api/v1/publishing/analytics", t).await;
    assert_eq!(stats["data"]["counts"]["published"], 1);
    assert_eq!(stats["data"]["published_by_type"][0]["content_type"], "article");
    assert!(stats["data"]["mean_hours_to_publish"].is_number());
}

#[tokio::test]
async fn content_validation_templates_and_tenant_isolation() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    for (body, field) in
        [(json!({"body": "x"}), "title"), (json!({"title": "x", "content_type": "poem"}), "content_type")]
    {
        let (status, json) = app.send("POST", "/api/v1/content", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(json["error"]["details"][field].is_array());
    }
    let id = new_content(&app, "Mine").await;
    let (status, json) =
        app.send("POST", &format!("/api/v1/content/{id}/status"), Some(t), Some(json!({"status": "live"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    let (status, edited) = app
        .send(
            "PUT",
            &format!("/api/v1/content/{id}"),
            Some(t),
            Some(json!({"excerpt": "Short", "content_type": "blog_post"})),
        )
        .await;
    assert_eq!((status, edited["data"]["content_type"].as_str()), (StatusCode::OK, Some("blog_post")));
    let (_, listed) = app.get("/api/v1/content?content_type=blog_post&status=draft&search=min", t).await;
    assert_eq!(listed["meta"]["pagination"]["total"], 1);

    let (status, tpl) = app
        .send("POST", "/api/v1/content/templates", Some(t), Some(json!({"name": "Blog", "content_type": "blog_post", "prompt_template": "Write about {{ topic }} for {{audience}}"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tpl}");
    assert_eq!(tpl["data"]["variables"], json!(["topic", "audience"]));

    for (method, path, body) in [
        ("GET", format!("/api/v1/content/{id}"), None),
        ("PUT", format!("/api/v1/content/{id}"), Some(json!({"title": "hijack"}))),
        ("POST", format!("/api/v1/content/{id}/status"), Some(json!({"status": "review"}))),
        ("GET", format!("/api/v1/content/{id}/history"), None),
        ("POST", format!("/api/v1/publishing/content/{id}/publish"), None),
    ] {
        let (status, json) = app.send(method, &path, Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {json}");
    }
    let (_, b_dash) = app.get("/api/v1/publishing/dashboard", &app.token_b).await;
    assert_eq!(b_dash["data"]["counts"]["draft"], 0);
    let (_, b_tpl) = app.get("/api/v1/content/templates", &app.token_b).await;
    assert_eq!(b_tpl["meta"]["pagination"]["total"], 0);
}
