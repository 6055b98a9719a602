//! AI personalities and assignments.

use axum::http::StatusCode;
use fibonacco_api::testing::{TestApp, code};
use serde_json::{Value, json};

#[tokio::test]
async fn personalities_crud_and_one_assignment_per_customer() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (status, friendly) = app
        .send("POST", "/api/v1/personalities", Some(t), Some(json!({"name": "Friendly", "system_prompt": "Be warm."})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{friendly}");
    assert_eq!(
        (friendly["data"]["model"].as_str(), friendly["data"]["max_tokens"].as_i64()),
        (Some("gpt-4o-mini"), Some(1024))
    );
    let (_, formal) = app
        .send(
            "POST",
            "/api/v1/personalities",
            Some(t),
            Some(json!({"name": "Formal", "system_prompt": "Be precise.", "temperature": 0.2})),
        )
        .await;
    let (status, json) = app
        .send("POST", "/api/v1/personalities", Some(t), Some(json!({"name": "FRIENDLY", "system_prompt": "x"})))
        .await;
    assert_eq!((status, code(&json)), (StatusCode::CONFLICT, "CONFLICT"));

    let customer = app.customer(t, json!({"name": "Client"})).await;
    let cid = customer["id"].as_str().unwrap();
    let (status, _) = app.get(&format!("/api/v1/personalities/customers/{cid}/personality"), t).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "none assigned yet");
    for p in [&friendly, &formal] {
        let (status, a) = app
            .send(
                "POST",
                "/api/v1/personalities/assign",
                Some(t),
                Some(json!({"personality_id": p["data"]["id"], "customer_id": cid})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{a}");
    }
    let (_, current) = app.get(&format!("/api/v1/personalities/customers/{cid}/personality"), t).await;
    assert_eq!(current["data"]["name"], "Formal", "re-assigning replaces");
    let (_, list) = app.get("/api/v1/personalities/assignments", t).await;
    assert_eq!(list["meta"]["pagination"]["total"], 1);
    assert_eq!(list["data"][0]["customer_name"], "Client");

    let fid = friendly["data"]["id"].as_str().unwrap();
    let (status, upd) = app
        .send(
            "PUT",
            &format!("/api/v1/personalities/{fid}"),
            Some(t),
            Some(json!({"max_tokens": 2048, "description": "warm"})),
        )
        .await;
    assert_eq!((status, upd["data"]["max_tokens"].as_i64()), (StatusCode::OK, Some(2048)));
    let formal_id = formal["data"]["id"].as_str().unwrap();
    let (status, _) = app.send("DELETE", &format!("/api/v1/personalities/{formal_id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get(&format!("/api/v1/personalities/customers/{cid}/personality"), t).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the assignment went with the personality");
}

#[tokio::test]
async fn personality_validation_and_tenant_isolation() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    for (body, field) in [
        (json!({"system_prompt": "x"}), "name"),
        (json!({"name": "x"}), "system_prompt"),
        (json!({"name": "x", "system_prompt": "y", "temperature": 2.5}), "temperature"),
        (json!({"name": "x", "system_prompt": "y", "max_tokens": 0}), "max_tokens"),
    ] {
        let (status, json) = app.send("POST", "/api/v1/personalities", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["details"][field].is_array());
    }
    let (_, p) =
        app.send("POST", "/api/v1/personalities", Some(t), Some(json!({"name": "A", "system_prompt": "a"}))).await;
    let pid = p["data"]["id"].as_str().unwrap();
    let b_customer = app.customer(&app.token_b, json!({"name": "B customer"})).await;
    let (status, json) = app
        .send(
            "POST",
            "/api/v1/personalities/assign",
            Some(t),
            Some(json!({"personality_id": pid, "customer_id": b_customer["id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    let (status, _) = app
        .send(
            "POST",
            "/api/v1/personalities/assign",
            Some(&app.token_b),
            Some(json!({"personality_id": pid, "customer_id": b_customer["id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "B cannot use A's personality");
    for (method, body) in [("GET", None), ("PUT", Some(json!({"name": "hijack"}))), ("DELETE", None::<Value>)] {
        let (status, _) = app.send(method, &format!("/api/v1/personalities/{pid}"), Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    let (_, list) = app.get("/api/v1/personalities", &app.token_b).await;
    assert_eq!(list["meta"]["pagination"]["total"], 0);
}
