//! The customers slice end to end: success and every failure path of the eight routes.

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use fibonacco_api::testing::{TestApp, code};
use fibonacco_platform::db;
use serde_json::{Value, json};

#[tokio::test]
async fn create_read_update_delete_round_trip() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (status, created) = app
        .send(
            "POST",
            "/api/v1/customers",
            Some(t),
            Some(json!({"name": "  Joe's Café ", "email": "Joe@Cafe.EXAMPLE", "phone": "+1 (555) 010-2000",
                        "business_context": {"industry": "food"}, "metadata": {"source": "walk-in"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["message"], "Customer created.");
    let c = &created["data"];
    assert_eq!(c["name"], "Joe's Café");
    assert_eq!(c["slug"], "joe-s-cafe");
    assert_eq!(c["email"], "Joe@cafe.example");
    assert_eq!(c["phone"], "+15550102000");
    assert_eq!(c["business_context"], json!({"industry": "food"}));
    let id = c["id"].as_str().unwrap().to_owned();

    let (status, got) = app.get(&format!("/api/v1/customers/{id}"), t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["data"], *c);
    let (status, by_slug) = app.get("/api/v1/customers/slug/joe-s-cafe", t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_slug["data"]["id"], id.as_str());

    // Partial update: name changes, e-mail is cleared, phone and context stay.
    let (status, updated) = app
        .send("PUT", &format!("/api/v1/customers/{id}"), Some(t), Some(json!({"name": "Joe's", "email": null})))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let u = &updated["data"];
    assert_eq!(u["name"], "Joe's");
    assert_eq!(u["email"], Value::Null);
    assert_eq!(u["phone"], "+15550102000");
    assert_eq!(u["slug"], "joe-s-cafe");
    assert!(u["updated_at"].as_str().unwrap() >= c["updated_at"].as_str().unwrap());

    let (status, ctx) = app
        .send(
            "PUT",
            &format!("/api/v1/customers/{id}/business-context"),
            Some(t),
            Some(json!({"business_context": {"industry": "coffee", "seats": 20}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ctx}");
    assert_eq!(ctx["data"]["business_context"], json!({"industry": "coffee", "seats": 20}));

    let (status, deleted) = app.send("DELETE", &format!("/api/v1/customers/{id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["data"], Value::Null);
    let (status, gone) = app.get(&format!("/api/v1/customers/{id}"), t).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&gone), "NOT_FOUND");
    let (status, _) = app.send("DELETE", &format!("/api/v1/customers/{id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_paginates_filters_and_sorts() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    for i in 1..=23 {
        let email = if i % 2 == 0 { json!(format!("c{i}@shop.example")) } else { Value::Null };
        app.customer(t, json!({"name": format!("Customer {i:02}"), "email": email})).await;
    }
    app.customer(t, json!({"name": "Zed 100% Natural_Foods"})).await;

    let (status, page1) = app.get("/api/v1/customers?per_page=10", t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page1["data"].as_array().unwrap().len(), 10);
    assert_eq!(
        page1["meta"]["pagination"],
        json!({"current_page": 1, "per_page": 10, "total": 24, "last_page": 3, "from": 1, "to": 10})
    );
    // Newest first by default.
    assert_eq!(page1["data"][0]["name"], "Zed 100% Natural_Foods");

    let (_, page3) = app.get("/api/v1/customers?per_page=10&page=3", t).await;
    assert_eq!(page3["data"].as_array().unwrap().len(), 4);
    let (_, beyond) = app.get("/api/v1/customers?per_page=10&page=9", t).await;
    assert_eq!(beyond["data"].as_array().unwrap().len(), 0);

    // Pages never overlap: walk all of them and count distinct ids.
    let mut seen = std::collections::HashSet::new();
    for p in 1..=3 {
        let (_, page) = app.get(&format!("/api/v1/customers?per_page=10&page={p}&sort=name"), t).await;
        for c in page["data"].as_array().unwrap() {
            assert!(seen.insert(c["id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(seen.len(), 24);

    // per_page above the cap (50 in tests) is clamped, not refused.
    let (_, capped) = app.get("/api/v1/customers?per_page=1000", t).await;
    assert_eq!(capped["meta"]["pagination"]["per_page"], 50);

    let (_, sorted) = app.get("/api/v1/customers?sort=name&per_page=2", t).await;
    assert_eq!(sorted["data"][0]["name"], "Customer 01");
    let (_, search) = app.get("/api/v1/customers?search=customer%201", t).await;
    assert_eq!(search["meta"]["pagination"]["total"], 10, "Customer 10..19");
    // `%` and `_` are literal in searches.
    let (_, literal) = app.get("/api/v1/customers?search=100%25%20natural_", t).await;
    assert_eq!(literal["meta"]["pagination"]["total"], 1);
    let (_, with_email) = app.get("/api/v1/customers?has_email=true", t).await;
    assert_eq!(with_email["meta"]["pagination"]["total"], 11);
    let (_, exact) = app.get("/api/v1/customers?email=C4@SHOP.example", t).await;
    assert_eq!(exact["data"][0]["name"], "Customer 04");
}

#[tokio::test]
async fn invalid_input_gets_422_with_per_field_details_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let cases = [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(256)}), "name"),
        (json!({"name": "Ok", "email": "not-an-email"}), "email"),
        (json!({"name": "Ok", "phone": "12345"}), "phone"),
        (json!({"name": "Ok", "slug": "Bad Slug"}), "slug"),
        (json!({"name": "Ok", "business_context": "text"}), "business_context"),
        (json!({"name": 42}), "name"),
        (json!({"name": "Ok", "favourite_colour": "red"}), "favourite_colour"),
        (json!({"name": "!!!"}), "slug"),
    ];
    for (body, field) in cases {
        let (status, json) = app.send("POST", "/api/v1/customers", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert_eq!(code(&json), "VALIDATION_FAILED");
        assert!(json["error"]["details"][field].is_array(), "{body}: details should name {field}: {json}");
    }
    let (status, json) =
        app.send("POST", "/api/v1/customers", Some(t), Some(json!({"email": "bad", "phone": "1"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["name", "email", "phone"] {
        assert!(json["error"]["details"][field].is_array(), "all problems at once: {json}");
    }

    let c = app.customer(t, json!({"name": "Valid"})).await;
    let id = c["id"].as_str().unwrap();
    for body in [json!({"name": null}), json!({"email": "nope"}), json!({"slug": "UPPER"}), json!({"metadata": [1]})] {
        let (status, json) = app.send("PUT", &format!("/api/v1/customers/{id}"), Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
    }
    let (status, _) = app
        .send(
            "PUT",
            &format!("/api/v1/customers/{id}/business-context"),
            Some(t),
            Some(json!({"business_context": [1]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) =
        app.send("PUT", &format!("/api/v1/customers/{id}/business-context"), Some(t), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    for query in ["page=0", "page=abc", "per_page=0", "sort=colour", "created_after=yesterday", "has_email=perhaps"] {
        let (status, json) = app.get(&format!("/api/v1/customers?{query}"), t).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {json}");
    }

    // Nothing but the one valid customer was stored, unchanged.
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("select name, email from crm_customers").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(rows, vec![("Valid".to_string(), None)]);
}

#[tokio::test]
async fn malformed_bodies_get_400_415_or_413_never_500() {
    let app = TestApp::spawn().await;
    let t = format!("Bearer {}", app.token_a);
    let send = |content_type: Option<&str>, body: Vec<u8>| {
        let mut req =
            Request::builder().method("POST").uri("/api/v1/customers").header(header::AUTHORIZATION, t.clone());
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(Body::from(body)).unwrap()
    };
    let (status, json) = app.raw(send(Some("application/json"), b"{\"name\": ".to_vec())).await;
    assert_eq!((status, code(&json)), (StatusCode::BAD_REQUEST, "MALFORMED_JSON"));
    let (status, json) = app.raw(send(None, b"{\"name\":\"x\"}".to_vec())).await;
    assert_eq!((status, code(&json)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE"));
    let (status, json) = app.raw(send(Some("text/plain"), b"{\"name\":\"x\"}".to_vec())).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{json}");
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (status, json) = app.raw(send(Some("application/json"), huge.into_bytes())).await;
    assert_eq!((status, code(&json)), (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"));
    let (status, _) =
        app.raw(send(Some("application/json; charset=utf-8"), b"{\"name\":\"Charset Ok\"}".to_vec())).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn duplicates_in_a_tenant_get_409() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    app.customer(t, json!({"name": "Acme", "slug": "acme", "email": "ops@acme.example"})).await;

    let (status, json) =
        app.send("POST", "/api/v1/customers", Some(t), Some(json!({"name": "Other", "slug": "acme"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert_eq!((code(&json), &json["error"]["details"]["field"]), ("CONFLICT", &json!("slug")));
    let (status, json) = app
        .send("POST", "/api/v1/customers", Some(t), Some(json!({"name": "Other", "email": "OPS@acme.example"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "e-mail is unique case-insensitively: {json}");
    assert_eq!(json["error"]["details"]["field"], "email");

    // A derived slug that is taken gets a suffix instead of a conflict.
    let second = app.customer(t, json!({"name": "Acme"})).await;
    assert_eq!(second["slug"], "acme-2");
    let third = app.customer(t, json!({"name": "ACME!"})).await;
    assert_eq!(third["slug"], "acme-3");

    // Updating into a taken slug or e-mail is a 409 too, and changes nothing.
    let id = second["id"].as_str().unwrap();
    let (status, _) = app.send("PUT", &format!("/api/v1/customers/{id}"), Some(t), Some(json!({"slug": "acme"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) =
        app.send("PUT", &format!("/api/v1/customers/{id}"), Some(t), Some(json!({"email": "ops@ACME.example"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, unchanged) = app.get(&format!("/api/v1/customers/{id}"), t).await;
    assert_eq!(unchanged["data"]["slug"], "acme-2");
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/v1/customers/{unknown}"),
        "/api/v1/customers/not-a-uuid".to_string(),
        "/api/v1/customers/slug/nobody".to_string(),
        format!("/api/v1/customers/{unknown}/ai-context"),
    ] {
        let (status, json) = app.get(&path, t).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(code(&json), "NOT_FOUND");
    }
    let (status, _) =
        app.send("PUT", &format!("/api/v1/customers/{unknown}"), Some(t), Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .send(
            "PUT",
            &format!("/api/v1/customers/{unknown}/business-context"),
            Some(t),
            Some(json!({"business_context": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.send("DELETE", "/api/v1/customers/123", Some(t), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ai_context_gathers_customer_context_and_recent_conversations() {
    let app = TestApp::spawn().await;
    let c = app.customer(&app.token_a, json!({"name": "Context Co", "business_context": {"goal": "grow"}})).await;
    let id: uuid::Uuid = c["id"].as_str().unwrap().parse().unwrap();
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    for n in 0..7 {
        let conv: uuid::Uuid = sqlx::query_scalar(
            "insert into crm_conversations (tenant_id, customer_id, channel, summary, created_at)
             values ($1, $2, 'chat', $3, now() - make_interval(hours => $4)) returning id",
        )
        .bind(app.tenant_a)
        .bind(id)
        .bind(format!("conversation {n}"))
        .bind(n)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        for m in 0..12 {
            sqlx::query(
                "insert into crm_conversation_messages (tenant_id, conversation_id, role, content, created_at)
                 values ($1, $2, 'customer', $3, now() + make_interval(secs => $4))",
            )
            .bind(app.tenant_a)
            .bind(conv)
            .bind(format!("message {m}"))
            .bind(m as f64)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();

    let (status, json) = app.get(&format!("/api/v1/customers/{id}/ai-context"), &app.token_a).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let ctx = &json["data"];
    assert_eq!(ctx["customer"]["name"], "Context Co");
    assert_eq!(ctx["business_context"], json!({"goal": "grow"}));
    let convs = ctx["recent_conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 5, "the five most recent");
    assert_eq!(convs[0]["summary"], "conversation 0");
    let messages = convs[0]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 10, "the last ten messages");
    assert_eq!(messages[0]["content"], "message 2", "oldest of the last ten first");
    assert_eq!(messages[9]["content"], "message 11");
    assert_eq!(ctx["sources"].as_array().unwrap().len(), 6);
}

/// Right of access: the customer's record and every row about them, across tables, and
/// nothing about anyone else; another tenant cannot ask.
#[tokio::test]
async fn a_customers_personal_data_is_exported_whole_and_only_theirs() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let ada = app.customer(t, json!({"name": "Ada", "email": "Ada@Example.com", "phone": "+14155550100"})).await;
    let bob = app.customer(t, json!({"name": "Bob", "email": "bob@example.com"})).await;
    let ada_id = ada["id"].as_str().unwrap();
    for (who, text) in [(&ada, "my secret question"), (&bob, "bob's question")] {
        let (s, c) = app
            .send("POST", "/api/v1/conversations", Some(t), Some(json!({"customer_id": who["id"], "channel": "chat"})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        let path = format!("/api/v1/conversations/{}/messages", c["data"]["id"].as_str().unwrap());
        let (s, m) = app.send("POST", &path, Some(t), Some(json!({"role": "user", "content": text}))).await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
    }
    let (s, sup) = app
        .send(
            "POST",
            "/api/v1/outbound/suppressions",
            Some(t),
            Some(json!({"channel": "email", "target": "ada@example.com"})),
        )
        .await;
    assert!(s.is_success(), "{sup}");

    let (s, body) = app.send("POST", &format!("/api/v1/customers/{ada_id}/export-personal-data"), Some(t), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert_eq!(data["customer"]["name"], "Ada");
    let tables = data["tables"].as_object().unwrap();
    assert_eq!(tables["crm_conversations"].as_array().unwrap().len(), 1);
    let messages = tables["crm_conversation_messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["content"], "my secret question");
    assert_eq!(tables["outbound_suppressions"][0]["target"], "ada@example.com");
    assert!(!body.to_string().contains("bob"), "nothing about Bob: {body}");
    assert_eq!(data["truncated"], json!([]));

    let (s, _) =
        app.send("POST", &format!("/api/v1/customers/{ada_id}/export-personal-data"), Some(&app.token_b), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's customer");
    let read_only = app.token_with(app.tenant_a, &["customers:read"], None).await;
    let (s, _) =
        app.send("POST", &format!("/api/v1/customers/{ada_id}/export-personal-data"), Some(&read_only), None).await;
    assert_eq!(s, StatusCode::OK);
    let no_access = app.token_with(app.tenant_a, &["orders:read"], None).await;
    let (s, _) =
        app.send("POST", &format!("/api/v1/customers/{ada_id}/export-personal-data"), Some(&no_access), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// Right to erasure, as the API sees it (the lake's part is tested with the capture in
/// `pipelines/tests`): another tenant or a read-only token cannot erase; the erasure
/// answers 202 with what went; without a capture the lake step waits; asking again returns
/// the same erasure; the log holds no personal data.
#[tokio::test]
async fn an_erasure_removes_only_the_customer_and_only_for_its_tenant() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let ada = app.customer(t, json!({"name": "Ada Erased", "email": "ada.erased@example.com"})).await;
    let bob = app.customer(t, json!({"name": "Bob Kept", "email": "bob.kept@example.com"})).await;
    let ada_id = ada["id"].as_str().unwrap();
    let (s, c) = app
        .send("POST", "/api/v1/conversations", Some(t), Some(json!({"customer_id": ada_id, "channel": "chat"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let path = format!("/api/v1/conversations/{}/messages", c["data"]["id"].as_str().unwrap());
    let (s, _) = app.send("POST", &path, Some(t), Some(json!({"role": "user", "content": "call me at home"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let erase = format!("/api/v1/customers/{ada_id}/erase");

    let (s, _) = app.send("POST", &erase, Some(&app.token_b), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's customer");
    let read_only = app.token_with(app.tenant_a, &["customers:read"], None).await;
    assert_eq!(app.send("POST", &erase, Some(&read_only), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&format!("/api/v1/customers/{ada_id}"), t).await.0, StatusCode::OK, "still there");

    let (s, body) = app.send("POST", &erase, Some(t), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let data = &body["data"];
    assert_eq!(data["removed"]["crm_customers"], 1);
    assert_eq!(data["removed"]["crm_conversations"], 1);
    assert_eq!(data["removed"]["crm_conversation_messages"], 1);
    assert_eq!((data["queues"].as_str(), data["lake"].as_str()), (Some("done"), Some("pending")), "{body}");
    assert_eq!(app.get(&format!("/api/v1/customers/{ada_id}"), t).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/api/v1/customers/{}", bob["id"].as_str().unwrap()), t).await.0, StatusCode::OK);
    let erasure = data["id"].as_str().unwrap();
    let (s, again) = app.send("POST", &erase, Some(t), None).await;
    assert_eq!((s, again["data"]["id"].as_str()), (StatusCode::ACCEPTED, Some(erasure)));
    let (s, shown) = app.get(&format!("/api/v1/erasures/{erasure}"), t).await;
    assert_eq!(s, StatusCode::OK, "{shown}");
    assert_eq!(app.get(&format!("/api/v1/erasures/{erasure}"), &app.token_b).await.0, StatusCode::NOT_FOUND);
    let mut tx = fibonacco_platform::db::begin_system(&app.db.pool).await.unwrap();
    let log: String = sqlx::query_scalar("select e::text from erasures e").fetch_one(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    for personal in ["Ada", "ada.erased", "call me"] {
        assert!(!log.contains(personal), "the erasure log holds {personal}: {log}");
    }
}
