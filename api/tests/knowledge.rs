//! Knowledge entries, votes, embedding requests and FAQ categories, end to end.

use axum::http::StatusCode;
use fibonacco_api::testing::{TestApp, code};
use fibonacco_platform::db;
use serde_json::{Value, json};

async fn entry(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, json) = app.send("POST", "/api/v1/knowledge", Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json["data"].clone()
}

#[tokio::test]
async fn entries_round_trip_and_edits_make_embeddings_stale() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let e = entry(
        &app,
        t,
        json!({"title": "Refund policy", "content": "Refunds are possible within 30 days.", "category": "billing",
               "tags": ["refunds", "billing", "refunds"], "industry_codes": ["4541"], "is_public": true,
               "source": "import", "source_url": "https://example.com/refunds"}),
    )
    .await;
    assert_eq!(e["embedding_status"], "pending");
    assert_eq!(e["tags"], json!(["refunds", "billing"]), "duplicates dropped, order kept");
    assert_eq!(e["has_embedding"], false);
    let id = e["id"].as_str().unwrap();

    // Pretend the worker embedded it, then edit the content: the embedding is stale.
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let vector = format!("[{}]", vec!["0.1"; 384].join(","));
    sqlx::query("update knowledge_base set embedding = $1::vector, embedding_model = 'm', embedding_status = 'completed' where id = $2::uuid")
        .bind(vector)
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (_, before) = app.get(&format!("/api/v1/knowledge/{id}"), t).await;
    assert_eq!(
        (before["data"]["embedding_status"].as_str(), before["data"]["has_embedding"].as_bool()),
        (Some("completed"), Some(true))
    );

    let (status, tagged) =
        app.send("PUT", &format!("/api/v1/knowledge/{id}"), Some(t), Some(json!({"tags": ["money"]}))).await;
    assert_eq!(status, StatusCode::OK, "{tagged}");
    assert_eq!(tagged["data"]["embedding_status"], "completed", "tags do not change the text");

    let (status, edited) = app
        .send(
            "PUT",
            &format!("/api/v1/knowledge/{id}"),
            Some(t),
            Some(json!({"content": "Refunds within 60 days.", "validation_status": "validated", "category": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    let d = &edited["data"];
    assert_eq!((d["embedding_status"].as_str(), d["has_embedding"].as_bool()), (Some("pending"), Some(false)));
    assert_eq!(d["validation_status"], "validated");
    assert!(d["validated_at"].is_string());
    assert_eq!(d["category"], Value::Null);
    assert_eq!(d["title"], "Refund policy");

    let (status, _) = app.send("DELETE", &format!("/api/v1/knowledge/{id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get(&format!("/api/v1/knowledge/{id}"), t).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_searches_full_text_and_filters() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    entry(
        &app,
        t,
        json!({"title": "Opening hours", "content": "We open at nine.", "category": "general", "tags": ["hours"]}),
    )
    .await;
    entry(&app, t, json!({"title": "Refunds", "content": "Refunds are paid back to the card.", "category": "billing", "is_public": true})).await;
    entry(&app, t, json!({"title": "Invoices", "content": "Invoices are due in 14 days; refunds appear as credit notes.", "category": "billing"})).await;

    let (_, found) = app.get("/api/v1/knowledge?search=refunds", t).await;
    let titles: Vec<&str> = found["data"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap()).collect();
    assert_eq!(titles, vec!["Refunds", "Invoices"], "title matches rank first");
    let (_, billing) = app.get("/api/v1/knowledge?category=billing&per_page=1", t).await;
    assert_eq!(billing["meta"]["pagination"]["total"], 2);
    let (_, tagged) = app.get("/api/v1/knowledge?tag=hours", t).await;
    assert_eq!(tagged["data"][0]["title"], "Opening hours");
    let (_, public) = app.get("/api/v1/knowledge?is_public=true", t).await;
    assert_eq!(public["meta"]["pagination"]["total"], 1);
    let (_, pending) = app.get("/api/v1/knowledge?embedding_status=pending", t).await;
    assert_eq!(pending["meta"]["pagination"]["total"], 3);
    for bad in ["is_public=maybe", "source=rumour", "embedding_status=done", "faq_category_id=x"] {
        let (status, _) = app.get(&format!("/api/v1/knowledge?{bad}"), t).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn votes_count_once_per_voter_and_can_change() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let e = entry(&app, t, json!({"title": "Q", "content": "A"})).await;
    let path = format!("/api/v1/knowledge/{}/vote", e["id"].as_str().unwrap());
    let counts =
        |v: &Value| (v["data"]["helpful_count"].as_i64().unwrap(), v["data"]["not_helpful_count"].as_i64().unwrap());
    let (status, v) = app.send("POST", &path, Some(t), Some(json!({"helpful": true}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(counts(&v), (1, 0));
    let (_, v) = app.send("POST", &path, Some(t), Some(json!({"helpful": true}))).await;
    assert_eq!(counts(&v), (1, 0), "a repeated vote counts once");
    let (_, v) = app.send("POST", &path, Some(t), Some(json!({"helpful": false}))).await;
    assert_eq!(counts(&v), (0, 1), "a changed vote moves");
    let (_, v) = app.send("POST", &path, Some(t), Some(json!({"helpful": true, "voter": "session-42"}))).await;
    assert_eq!(counts(&v), (1, 1), "another voter adds");
    let (status, _) = app.send("POST", &path, Some(t), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Concurrent votes by distinct visitors are all counted.
    let mut handles = Vec::new();
    for i in 0..20 {
        let router = app.router.clone();
        let path = path.clone();
        let token = t.clone();
        handles.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::post(path)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(json!({"helpful": true, "voter": format!("v{i}")}).to_string()))
                .unwrap();
            router.oneshot(req).await.unwrap().status()
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
    let (_, after) = app.get(&format!("/api/v1/knowledge/{}", e["id"].as_str().unwrap()), t).await;
    assert_eq!(
        (after["data"]["helpful_count"].as_i64(), after["data"]["not_helpful_count"].as_i64()),
        (Some(21), Some(1))
    );
}

#[tokio::test]
async fn generate_embedding_marks_pending_and_queues_a_job() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let e = entry(&app, t, json!({"title": "Q", "content": "A"})).await;
    let id = e["id"].as_str().unwrap();
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query("update knowledge_base set embedding_status = 'failed' where id = $1::uuid")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let (status, json) = app.send("POST", &format!("/api/v1/knowledge/{id}/generate-embedding"), Some(t), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let job_id = json["data"]["job_id"].as_str().unwrap().to_owned();
    let (_, got) = app.get(&format!("/api/v1/knowledge/{id}"), t).await;
    assert_eq!(got["data"]["embedding_status"], "pending");

    let mut redis = app.state.redis.clone();
    let queued: Vec<String> = redis::cmd("LRANGE")
        .arg(app.state.queue.list_key("embeddings"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let ours = queued.iter().find(|p| p.contains(&job_id)).expect("the job is on the embeddings queue");
    let payload: Value = serde_json::from_str(ours).unwrap();
    assert_eq!(payload["job"], "GenerateEmbedding");
    assert_eq!(payload["data"]["knowledge_id"], id);
    assert_eq!(payload["data"]["tenant_id"], app.tenant_a.to_string());
    let _: i64 = redis::cmd("LREM")
        .arg(app.state.queue.list_key("embeddings"))
        .arg(0)
        .arg(ours)
        .query_async(&mut redis)
        .await
        .unwrap();

    let (status, _) = app
        .send("POST", &format!("/api/v1/knowledge/{}/generate-embedding", uuid::Uuid::now_v7()), Some(t), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_knowledge_input_is_422() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let foreign =
        app.send("POST", "/api/v1/faq-categories", Some(&app.token_b), Some(json!({"name": "B cat"}))).await.1;
    for (body, field) in [
        (json!({"content": "x"}), "title"),
        (json!({"title": "x"}), "content"),
        (json!({"title": " ", "content": "x"}), "title"),
        (json!({"title": "x", "content": "y", "source": "rumour"}), "source"),
        (json!({"title": "x", "content": "y", "source_url": "ftp://x"}), "source_url"),
        (json!({"title": "x", "content": "y", "validation_status": "approved"}), "validation_status"),
        (json!({"title": "x", "content": "y", "tags": [""]}), "tags"),
        (json!({"title": "x", "content": "y", "faq_category_id": foreign["data"]["id"]}), "faq_category_id"),
        (json!({"title": "x", "content": "y", "is_public": "yes"}), "is_public"),
    ] {
        let (status, json) = app.send("POST", "/api/v1/knowledge", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["details"][field].is_array(), "{body}: {json}");
    }
    let e = entry(&app, t, json!({"title": "x", "content": "y"})).await;
    for body in [json!({"title": null}), json!({"is_public": null}), json!({"content": ""})] {
        let (status, _) = app
            .send("PUT", &format!("/api/v1/knowledge/{}", e["id"].as_str().unwrap()), Some(t), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
}

#[tokio::test]
async fn tenant_b_cannot_reach_tenant_a_knowledge() {
    let app = TestApp::spawn().await;
    let e = entry(&app, &app.token_a, json!({"title": "A secret", "content": "only A"})).await;
    let id = e["id"].as_str().unwrap();
    for (method, path, body) in [
        ("GET", format!("/api/v1/knowledge/{id}"), None),
        ("PUT", format!("/api/v1/knowledge/{id}"), Some(json!({"title": "hijack"}))),
        ("DELETE", format!("/api/v1/knowledge/{id}"), None),
        ("POST", format!("/api/v1/knowledge/{id}/vote"), Some(json!({"helpful": false}))),
        ("POST", format!("/api/v1/knowledge/{id}/generate-embedding"), None),
    ] {
        let (status, json) = app.send(method, &path, Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {json}");
        assert_eq!(code(&json), "NOT_FOUND");
    }
    let (_, list) = app.get("/api/v1/knowledge?search=secret", &app.token_b).await;
    assert_eq!(list["meta"]["pagination"]["total"], 0);
    let (_, still) = app.get(&format!("/api/v1/knowledge/{id}"), &app.token_a).await;
    assert_eq!(
        (still["data"]["title"].as_str(), still["data"]["not_helpful_count"].as_i64()),
        (Some("A secret"), Some(0))
    );
}

#[tokio::test]
async fn faq_categories_form_a_tree_without_cycles() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let app = &app;
    let create = |body: Value| async move {
        let (status, json) = app.send("POST", "/api/v1/faq-categories", Some(t), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json["data"].clone()
    };
    let root = create(json!({"name": "Billing", "display_order": 1})).await;
    let child = create(json!({"name": "Refunds", "parent_id": root["id"]})).await;
    let grandchild = create(json!({"name": "Card refunds", "parent_id": child["id"]})).await;
    let other_root = create(json!({"name": "Accounts", "display_order": 0})).await;
    let dup = create(json!({"name": "Billing"})).await;
    assert_eq!(dup["slug"], "billing-2", "a derived slug gets a suffix");
    let (status, json) =
        app.send("POST", "/api/v1/faq-categories", Some(t), Some(json!({"name": "X", "slug": "billing"}))).await;
    assert_eq!((status, code(&json)), (StatusCode::CONFLICT, "CONFLICT"));

    let (_, tree) = app.get("/api/v1/faq-categories?tree=true", t).await;
    let roots: Vec<&str> = tree["data"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(roots, vec!["Accounts", "Billing", "Billing"]);
    // display_order first (Accounts 0, the duplicate Billing 0), then name; the original Billing has 1.
    assert_eq!(tree["data"][2]["children"][0]["name"], "Refunds");
    assert_eq!(tree["data"][2]["children"][0]["children"][0]["name"], "Card refunds");
    let (_, flat) = app.get("/api/v1/faq-categories", t).await;
    assert_eq!(flat["data"].as_array().unwrap().len(), 5);

    // Cycles are refused: under itself, under its child, under its grandchild.
    let root_path = format!("/api/v1/faq-categories/{}", root["id"].as_str().unwrap());
    for parent in [&root["id"], &child["id"], &grandchild["id"]] {
        let (status, json) = app.send("PUT", &root_path, Some(t), Some(json!({"parent_id": parent}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
        assert!(json["error"]["details"]["parent_id"].is_array());
    }
    // A legal move works, and making it a root again too.
    let (status, moved) = app.send("PUT", &root_path, Some(t), Some(json!({"parent_id": other_root["id"]}))).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let (status, moved) = app.send("PUT", &root_path, Some(t), Some(json!({"parent_id": null}))).await;
    assert_eq!((status, &moved["data"]["parent_id"]), (StatusCode::OK, &Value::Null));

    // Another tenant's category is not a valid parent, nor visible.
    let b = app.send("POST", "/api/v1/faq-categories", Some(&app.token_b), Some(json!({"name": "B"}))).await.1;
    let (status, _) = app.send("PUT", &root_path, Some(t), Some(json!({"parent_id": b["data"]["id"]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .send("POST", "/api/v1/faq-categories", Some(t), Some(json!({"name": "Y", "parent_id": b["data"]["id"]})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for (method, body) in [("GET", None), ("PUT", Some(json!({"name": "hijack"}))), ("DELETE", None)] {
        let (status, _) = app.send(method, &root_path, Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }

    // Deleting a parent leaves its children as roots.
    let (status, _) =
        app.send("DELETE", &format!("/api/v1/faq-categories/{}", child["id"].as_str().unwrap()), Some(t), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, orphan) = app.get(&format!("/api/v1/faq-categories/{}", grandchild["id"].as_str().unwrap()), t).await;
    assert_eq!(orphan["data"]["parent_id"], Value::Null);
}
