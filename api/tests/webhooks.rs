//! `/api/v1/webhooks`: endpoints subscribed, listed, changed and deleted per tenant, the
//! event types, abilities, and the per-tenant limit. Deliveries are tested in the delivery
//! crate, the outbox from the lake in the pipelines crate.

use axum::http::StatusCode;
use fibonacco_api::{
    testing::{TestApp, call, with_private_webhook_targets},
    webhooks::MAX_ENDPOINTS,
};
use serde_json::json;

#[tokio::test]
async fn endpoints_are_a_tenants_own_and_their_secret_is_shown_once() {
    let app = TestApp::spawn().await;
    let (status, types) = app.get("/api/v1/webhooks/event-types", &app.token_a).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = types["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"customer.created") && names.contains(&"order.paid"), "{names:?}");

    let (status, created) = app
        .send(
            "POST",
            "/api/v1/webhooks/endpoints",
            Some(&app.token_a),
            Some(json!({"url": "https://hooks.example.com/in#frag", "description": "CRM sync",
                        "event_types": ["customer.created", "customer.created", "order.paid"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let e = &created["data"];
    let id = e["id"].as_str().unwrap();
    assert!(e["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(e["url"], "https://hooks.example.com/in", "the fragment never reaches a server");
    assert_eq!(e["event_types"], json!(["customer.created", "order.paid"]), "each type once");
    assert_eq!(e["enabled"], true);

    let (_, shown) = app.get(&format!("/api/v1/webhooks/endpoints/{id}"), &app.token_a).await;
    assert!(shown["data"].get("secret").is_none(), "{shown}");
    let (_, list) = app.get("/api/v1/webhooks/endpoints", &app.token_a).await;
    assert_eq!(list["meta"]["pagination"]["total"], 1);
    assert!(list["data"][0].get("secret").is_none());

    // Tenant B sees, changes and deletes nothing of A's.
    let (_, list_b) = app.get("/api/v1/webhooks/endpoints", &app.token_b).await;
    assert_eq!(list_b["data"], json!([]));
    for (method, body) in [("GET", None), ("PATCH", Some(json!({"enabled": false}))), ("DELETE", None)] {
        let (status, _) = app.send(method, &format!("/api/v1/webhooks/endpoints/{id}"), Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }

    // A patch changes what it names; null where a value is needed is refused.
    let (status, patched) = app
        .send(
            "PATCH",
            &format!("/api/v1/webhooks/endpoints/{id}"),
            Some(&app.token_a),
            Some(json!({"event_types": ["order.refunded"], "description": null, "enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["data"]["event_types"], json!(["order.refunded"]));
    assert_eq!(patched["data"]["description"], serde_json::Value::Null);
    assert_eq!(patched["data"]["enabled"], false);
    assert_eq!(patched["data"]["disabled_reason"], "turned off");
    let (status, body) = app
        .send("PATCH", &format!("/api/v1/webhooks/endpoints/{id}"), Some(&app.token_a), Some(json!({"url": null})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .send(
            "PATCH",
            &format!("/api/v1/webhooks/endpoints/{id}"),
            Some(&app.token_a),
            Some(json!({"event_types": []})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Abilities: reading needs webhooks:read, changing webhooks:write.
    let reader = app.token_with(app.tenant_a, &["webhooks:read"], None).await;
    assert_eq!(app.get("/api/v1/webhooks/endpoints", &reader).await.0, StatusCode::OK);
    let (status, _) = app.send("DELETE", &format!("/api/v1/webhooks/endpoints/{id}"), Some(&reader), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = app.token_with(app.tenant_a, &["customers:read"], None).await;
    assert_eq!(app.get("/api/v1/webhooks/endpoints", &other).await.0, StatusCode::FORBIDDEN);

    let (status, _) = app.send("DELETE", &format!("/api/v1/webhooks/endpoints/{id}"), Some(&app.token_a), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get(&format!("/api/v1/webhooks/endpoints/{id}"), &app.token_a).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/webhooks/endpoints/not-a-uuid", &app.token_a).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tenant_has_at_most_twenty_endpoints() {
    let app = TestApp::spawn().await;
    let router = with_private_webhook_targets(&app);
    let create = |n: i64| {
        let router = router.clone();
        let token = app.token_a.clone();
        async move {
            call(
                &router,
                &token,
                "POST",
                "/api/v1/webhooks/endpoints",
                Some(json!({"url": format!("http://127.0.0.1:9/{n}"), "event_types": ["customer.created"]})),
            )
            .await
            .0
        }
    };
    // Created concurrently: the limit still holds.
    let statuses = futures_util::future::join_all((0..MAX_ENDPOINTS + 3).map(create)).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count() as i64, MAX_ENDPOINTS);
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT), "{statuses:?}");
}

#[tokio::test]
async fn an_erasure_tells_subscribed_endpoints_the_customer_is_gone_and_nothing_more() {
    let app = TestApp::spawn().await;
    let router = with_private_webhook_targets(&app);
    let (status, body) = call(
        &router,
        &app.token_a,
        "POST",
        "/api/v1/webhooks/endpoints",
        Some(json!({"url": "http://127.0.0.1:9/in", "event_types": ["customer.deleted"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let endpoint = body["data"]["id"].as_str().unwrap().to_owned();
    let customer = app.customer(&app.token_a, json!({"name": "Erin Erased", "email": "erin@example.com"})).await;
    let id = customer["id"].as_str().unwrap();
    // An event about her that the outbox stored earlier.
    let payloads = async || -> Vec<serde_json::Value> {
        let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let p = sqlx::query_scalar("select payload from webhook_events order by created_at")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        p
    };
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query(
        "insert into webhook_events (id, tenant_id, type, customer_id, payload, occurred_at)
         values ('msg_before', $1, 'customer.created', $2::uuid, '{\"data\": {\"email\": \"erin@example.com\"}}', now())",
    )
    .bind(app.tenant_a)
    .bind(id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(payloads().await.len(), 1);

    let (status, body) = app.send("POST", &format!("/api/v1/customers/{id}/erase"), Some(&app.token_a), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, log) = app.get(&format!("/api/v1/webhooks/endpoints/{endpoint}/deliveries"), &app.token_a).await;
    assert_eq!(log["data"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log["data"][0]["event_type"], "customer.deleted");
    let left = payloads().await;
    assert_eq!(left.len(), 1, "the earlier event about her is gone: {left:?}");
    assert_eq!(left[0]["data"], json!({"id": id}));
    assert!(!left[0].to_string().contains("erin"), "{left:?}");
}
