//! Surveys: structure, answer checks, responses, activity, isolation.

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;
use serde_json::json;

#[tokio::test]
async fn surveys_take_checked_responses_only_while_active() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (status, s) =
        app.send("POST", "/api/v1/survey", Some(t), Some(json!({"title": "Customer satisfaction"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let id = s["data"]["id"].as_str().unwrap().to_owned();
    let (_, section) =
        app.send("POST", &format!("/api/v1/survey/{id}/sections"), Some(t), Some(json!({"title": "Service"}))).await;
    let (status, rating) = app
        .send("POST", &format!("/api/v1/survey/{id}/questions"), Some(t),
            Some(json!({"question_text": "How was it?", "question_type": "rating", "is_required": true, "section_id": section["data"]["id"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rating}");
    let (_, channel) = app
        .send("POST", &format!("/api/v1/survey/{id}/questions"), Some(t),
            Some(json!({"question_text": "How did you find us?", "question_type": "single_choice", "options": ["search", "friend", {"value": "ad", "label": "An ad"}]})))
        .await;
    let (status, json) = app
        .send(
            "POST",
            &format!("/api/v1/survey/{id}/questions"),
            Some(t),
            Some(json!({"question_text": "Pick", "question_type": "single_choice", "options": ["only"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    let (_, detail) = app.get(&format!("/api/v1/survey/{id}"), t).await;
    assert_eq!(
        (detail["data"]["sections"].as_array().unwrap().len(), detail["data"]["questions"].as_array().unwrap().len()),
        (1, 2)
    );

    let rid = rating["data"]["id"].as_str().unwrap();
    let cid = channel["data"]["id"].as_str().unwrap();
    let (status, _) =
        app.send("POST", &format!("/api/v1/survey/{id}/responses"), Some(t), Some(json!({"answers": {rid: 5}}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "a draft survey takes no responses");
    let (status, _) =
        app.send("PUT", &format!("/api/v1/survey/{id}"), Some(t), Some(json!({"status": "active"}))).await;
    assert_eq!(status, StatusCode::OK);

    for (answers, field) in [
        (json!({}), format!("answers.{rid}")),
        (json!({rid: 9}), format!("answers.{rid}")),
        (json!({rid: 4, cid: "tv"}), format!("answers.{cid}")),
        (json!({rid: 4, "bogus": 1}), "answers.bogus".to_string()),
    ] {
        let (status, json) = app
            .send("POST", &format!("/api/v1/survey/{id}/responses"), Some(t), Some(json!({"answers": answers})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answers}: {json}");
        assert!(json["error"]["details"][&field].is_array(), "{field}: {json}");
    }
    let customer = app.customer(t, json!({"name": "Respondent"})).await;
    let (status, saved) = app
        .send(
            "POST",
            &format!("/api/v1/survey/{id}/responses"),
            Some(t),
            Some(json!({"customer_id": customer["id"], "answers": {rid: 4, cid: "ad"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let (_, listed) = app.get(&format!("/api/v1/survey/{id}/responses"), t).await;
    assert_eq!(listed["meta"]["pagination"]["total"], 1);
    let (_, after) = app.get(&format!("/api/v1/survey/{id}"), t).await;
    assert_eq!(after["data"]["response_count"], 1);
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let activities: i64 =
        sqlx::query_scalar("select count(*) from customer_activities where activity_type = 'survey_response'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(activities, 1);

    for (method, path, body) in [
        ("GET", format!("/api/v1/survey/{id}"), None),
        ("PUT", format!("/api/v1/survey/{id}"), Some(json!({"title": "hijack"}))),
        ("POST", format!("/api/v1/survey/{id}/responses"), Some(json!({"answers": {rid: 1}}))),
        ("GET", format!("/api/v1/survey/{id}/responses"), None),
        (
            "POST",
            format!("/api/v1/survey/{id}/questions"),
            Some(json!({"question_text": "x", "question_type": "text"})),
        ),
        ("DELETE", format!("/api/v1/survey/{id}"), None),
    ] {
        let (status, _) = app.send(method, &path, Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
}
