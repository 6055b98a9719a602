//! Content generation: offline with the local provider, and through an OpenAI-compatible
//! HTTP stub (request shape, auth header, error mapping).

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, Request, StatusCode},
    routing::post,
};
use fibonacco_api::testing::{TestApp, code};
use fibonacco_platform::{db, llm::LlmProvider};
use serde_json::{Value, json};
use tower::ServiceExt;

/// What the stub received: the Authorization header and the JSON body.
type Seen = Vec<(Option<String>, Value)>;

#[derive(Clone, Default)]
struct Stub {
    seen: Arc<Mutex<Seen>>,
    reply: Arc<Mutex<(u16, Value)>>,
}

async fn completions(
    State(stub): State<Stub>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    stub.seen.lock().unwrap().push((auth, body));
    let (status, reply) = stub.reply.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), Json(reply))
}

async fn start_stub(status: u16, reply: Value) -> (Stub, String) {
    let stub = Stub { seen: Default::default(), reply: Arc::new(Mutex::new((status, reply))) };
    let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (stub, format!("http://{addr}/v1"))
}

fn openai(base: &str) -> LlmProvider {
    let base = base.to_owned();
    LlmProvider::from_lookup(move |k| match k {
        "OPENAI_API_KEY" => Some("sk-test-key".into()),
        "OPENAI_BASE_URL" => Some(base.clone()),
        "LLM_TIMEOUT_SECS" => Some("5".into()),
        _ => None,
    })
}

async fn call(router: &Router, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    fibonacco_api::testing::call(router, token, "POST", path, Some(body)).await
}

#[tokio::test]
async fn offline_generation_is_deterministic_and_stored_as_a_draft() {
    let app = TestApp::spawn().await;
    let body = json!({"topic": "Winter boiler maintenance", "content_type": "blog_post", "tone": "friendly"});
    let (status, first) = app.send("POST", "/api/v1/content/generate", Some(&app.token_a), Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let d = &first["data"];
    assert_eq!(
        (d["status"].as_str(), d["model"].as_str(), d["content_type"].as_str()),
        (Some("draft"), Some("local-template-v1"), Some("blog_post"))
    );
    assert!(d["body"].as_str().unwrap().contains("3."));
    assert!(d["prompt"].as_str().unwrap().contains("Winter boiler maintenance"));
    let (_, second) = app.send("POST", "/api/v1/content/generate", Some(&app.token_a), Some(body)).await;
    assert_eq!(second["data"]["body"], d["body"], "same brief, same text");
    let (status, json) =
        app.send("POST", "/api/v1/content/generate", Some(&app.token_a), Some(json!({"length": "epic"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json["error"]["details"]["topic"].is_array() && json["error"]["details"]["length"].is_array());
}

#[tokio::test]
async fn openai_compatible_provider_gets_the_prompt_and_its_reply_is_stored() {
    let app = TestApp::spawn().await;
    let reply = json!({"model": "gpt-test-2026", "choices": [{"message": {"role": "assistant", "content": "# Fix leaks fast\n\nTurn off the water first."}}]});
    let (stub, base) = start_stub(200, reply).await;
    let router = app.with_llm(openai(&base));
    let (_, tpl) = app
        .send(
            "POST",
            "/api/v1/content/templates",
            Some(&app.token_a),
            Some(json!({"name": "Local", "prompt_template": "Tips on {{topic}} for homes in {{ city }}"})),
        )
        .await;
    let (status, json) = call(
        &router,
        &app.token_a,
        "/api/v1/content/generate",
        json!({"topic": "plumbing", "template_id": tpl["data"]["id"], "variables": {"city": "Austin"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(
        (json["data"]["title"].as_str(), json["data"]["body"].as_str()),
        (Some("Fix leaks fast"), Some("Turn off the water first."))
    );
    assert_eq!(json["data"]["model"], "gpt-test-2026");
    let seen = stub.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.as_deref(), Some("Bearer sk-test-key"));
    let sent = &seen[0].1;
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "Tips on plumbing for homes in Austin");
}

#[tokio::test]
async fn provider_failures_map_to_503_or_502_and_store_nothing() {
    let app = TestApp::spawn().await;
    for (status, expected, expected_code) in [
        (500, StatusCode::SERVICE_UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (429, StatusCode::SERVICE_UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (400, StatusCode::BAD_GATEWAY, "UPSTREAM_ERROR"),
    ] {
        let (_, base) = start_stub(status, json!({"error": {"message": "nope"}})).await;
        let router = app.with_llm(openai(&base));
        let (got, json) = call(&router, &app.token_a, "/api/v1/content/generate", json!({"topic": "x"})).await;
        assert_eq!((got, code(&json)), (expected, expected_code), "stub {status}: {json}");
    }
    // A provider that is not there at all.
    let router = app.with_llm(openai("http://127.0.0.1:1/v1"));
    let (got, _) = call(&router, &app.token_a, "/api/v1/content/generate", json!({"topic": "x"})).await;
    assert_eq!(got, StatusCode::SERVICE_UNAVAILABLE);
    let (_, list) = app.get("/api/v1/content", &app.token_a).await;
    assert_eq!(list["meta"]["pagination"]["total"], 0);
}

#[tokio::test]
async fn generate_from_a_learning_campaign() {
    let app = TestApp::spawn().await;
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let campaign: uuid::Uuid = sqlx::query_scalar(
        "insert into learning_campaigns (tenant_id, slug, title, description) values ($1, 'spring', 'Spring tune-up', 'Get your AC ready') returning id",
    )
    .bind(app.tenant_a)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (status, json) = app
        .send(
            "POST",
            "/api/v1/content/generate-from-campaign",
            Some(&app.token_a),
            Some(json!({"campaign_id": campaign})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["data"]["learning_campaign_id"], campaign.to_string());
    assert!(json["data"]["prompt"].as_str().unwrap().contains("Get your AC ready"));
    let (status, _) = app
        .send(
            "POST",
            "/api/v1/content/generate-from-campaign",
            Some(&app.token_b),
            Some(json!({"campaign_id": campaign})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "another tenant's campaign");
}

#[tokio::test]
async fn personalities_answer_with_their_prompt_and_model_and_the_exchange_is_stored() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (s, p) = app
        .send(
            "POST",
            "/api/v1/personalities",
            Some(t),
            Some(json!({"name": "Ava", "system_prompt": "You are Ava, a cheerful plumber's assistant.", "model": "gpt-4o", "temperature": 0.2, "max_tokens": 300})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pid = p["data"]["id"].as_str().unwrap().to_owned();
    let customer = app.customer(t, json!({"name": "Bob's Bakery", "business_context": {"industry": "bakery"}})).await;
    let cid = customer["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/personalities/{pid}/generate-response");

    // Offline: the local provider answers deterministically; the exchange is stored.
    let (s, r) = app.send("POST", &path, Some(t), Some(json!({"message": "My sink leaks", "customer_id": cid}))).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["data"]["provider"], "local");
    assert!(!r["data"]["response"].as_str().unwrap().is_empty());
    let conversation = r["data"]["conversation_id"].as_str().unwrap().to_owned();
    let (_, msgs) = app.get(&format!("/api/v1/conversations/{conversation}/messages"), t).await;
    let roles: Vec<&str> = msgs["data"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant"], "{msgs}");

    // Through an OpenAI-compatible provider: the personality's prompt, model, temperature
    // and limit are sent, with the customer's context and the conversation so far.
    let (stub, base) = start_stub(200, json!({"model": "gpt-4o", "choices": [{"message": {"role": "assistant", "content": "Turn off the valve first."}}]})).await;
    let router = app.with_llm(openai(&base));
    let (s, r) =
        call(&router, t, &path, json!({"message": "And then?", "conversation_id": conversation, "customer_id": cid}))
            .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["data"]["response"].as_str(), r["data"]["model"].as_str()),
        (Some("Turn off the valve first."), Some("gpt-4o"))
    );
    let seen = stub.seen.lock().unwrap().clone();
    let body = &seen[0].1;
    assert_eq!(body["model"], "gpt-4o");
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert_eq!(body["max_tokens"], 300);
    let sent: Vec<(String, String)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(sent[0], ("system".into(), "You are Ava, a cheerful plumber's assistant.".into()));
    assert!(sent[1].1.contains("Bob's Bakery") && sent[1].1.contains("bakery"), "{sent:?}");
    assert_eq!(sent[2], ("user".into(), "My sink leaks".into()), "history first");
    assert_eq!(sent.last().unwrap(), &("user".into(), "And then?".into()));
    let (_, msgs) = app.get(&format!("/api/v1/conversations/{conversation}/messages"), t).await;
    assert_eq!(msgs["data"].as_array().unwrap().len(), 4);

    // Provider errors: 503 for outages, 502 for refusals; nothing is stored.
    *stub.reply.lock().unwrap() = (500, json!({"error": "down"}));
    let (s, r) = call(&router, t, &path, json!({"message": "Hello?", "conversation_id": conversation})).await;
    assert_eq!((s, code(&r)), (StatusCode::SERVICE_UNAVAILABLE, "UPSTREAM_UNAVAILABLE"));
    *stub.reply.lock().unwrap() = (400, json!({"error": "bad model"}));
    let (s, _) = call(&router, t, &path, json!({"message": "Hello?", "conversation_id": conversation})).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    let (_, msgs) = app.get(&format!("/api/v1/conversations/{conversation}/messages"), t).await;
    assert_eq!(msgs["data"].as_array().unwrap().len(), 4, "failed calls store nothing");

    // Validation and isolation.
    for body in [
        json!({}),
        json!({"message": "  "}),
        json!({"message": "x".repeat(8001)}),
        json!({"message": "hi", "customer_id": uuid::Uuid::now_v7()}),
    ] {
        let (s, r) = app.send("POST", &path, Some(t), Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    }
    let (s, _) = app.send("POST", &path, Some(&app.token_b), Some(json!({"message": "hi"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's personality");

    // The models in use.
    let (s, m) = call(&router, t, "/api/v1/ai/models", json!({})).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m}");
    let (s, m) = app.get("/api/v1/ai/models", t).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = m["data"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"local-template-v1") && ids.contains(&"all-MiniLM-L6-v2"), "{m}");
}

/// Reads a server-sent-event body into (event, data) pairs.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((event?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}

async fn post_raw(router: &Router, token: &str, path: &str, body: Value) -> (StatusCode, String, String) {
    let req = Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn ai_chat_answers_with_knowledge_sources_in_json_and_as_a_stream() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let (_, p) = app
        .send(
            "POST",
            "/api/v1/personalities",
            Some(t),
            Some(json!({"name": "Max", "system_prompt": "You are Max.", "model": "gpt-4o"})),
        )
        .await;
    let pid = p["data"]["id"].as_str().unwrap().to_owned();
    let customer = app.customer(t, json!({"name": "Corner Cafe"})).await;
    let cid = customer["id"].as_str().unwrap().to_owned();
    let (s, _) = app
        .send("POST", "/api/v1/personalities/assign", Some(t), Some(json!({"personality_id": pid, "customer_id": cid})))
        .await;
    assert!(s.is_success());
    let (_, k) = app
        .send(
            "POST",
            "/api/v1/knowledge",
            Some(t),
            Some(json!({"title": "Opening hours", "content": "We open at nine and close at five on weekdays."})),
        )
        .await;
    let kid = k["data"]["id"].as_str().unwrap().to_owned();

    // JSON, offline: the customer's assigned personality, the matching entry as source [1].
    let (s, r) = app
        .send(
            "POST",
            "/api/v1/ai/chat",
            Some(t),
            Some(json!({"message": "What are your opening hours?", "customer_id": cid})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["data"]["personality_id"], pid.as_str());
    assert_eq!(r["data"]["sources"][0]["id"], kid.as_str(), "{r}");
    let conversation = r["data"]["conversation_id"].as_str().unwrap().to_owned();

    // Streamed, offline: meta, deltas, done; the deltas are exactly what is stored.
    let (s, ctype, body) = post_raw(
        &app.router,
        t,
        "/api/v1/ai/chat",
        json!({"message": "And on Saturday?", "conversation_id": conversation, "customer_id": cid, "stream": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let ev = events(&body);
    assert_eq!(ev.first().map(|e| e.0.as_str()), Some("meta"));
    assert_eq!(ev[0].1["conversation_id"], conversation.as_str());
    assert_eq!(ev.last().map(|e| e.0.as_str()), Some("done"), "{body}");
    let streamed: String = ev.iter().filter(|e| e.0 == "delta").map(|e| e.1["content"].as_str().unwrap()).collect();
    assert!(ev.iter().filter(|e| e.0 == "delta").count() > 3, "several pieces");
    let (_, msgs) = app.get(&format!("/api/v1/conversations/{conversation}/messages"), t).await;
    let stored = msgs["data"].as_array().unwrap();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[3]["content"].as_str().unwrap(), streamed);
    assert_eq!(stored[3]["id"], ev.last().unwrap().1["message_id"]);

    // Streamed through an OpenAI-compatible provider.
    async fn sse(Json(body): Json<Value>) -> axum::response::Response {
        use axum::response::IntoResponse;
        assert_eq!(body["stream"], true);
        assert_eq!(body["model"], "gpt-4o");
        let text = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"Closed on \"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"Saturdays.\"}}]}\n\ndata: [DONE]\n\n";
        ([("content-type", "text/event-stream")], text).into_response()
    }
    let stub = Router::new().route("/v1/chat/completions", post(sse));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, stub).await.unwrap() });
    let router = app.with_llm(openai(&format!("http://{addr}/v1")));
    let (s, _, body) =
        post_raw(&router, t, "/api/v1/ai/chat", json!({"message": "Saturday?", "customer_id": cid, "stream": true}))
            .await;
    assert_eq!(s, StatusCode::OK);
    let streamed: String =
        events(&body).iter().filter(|e| e.0 == "delta").map(|e| e.1["content"].as_str().unwrap().to_owned()).collect();
    assert_eq!(streamed, "Closed on Saturdays.");

    // A provider outage before the first piece: 503 JSON, nothing stored.
    let (_, base) = start_stub(503, json!({"error": "overloaded"})).await;
    let router = app.with_llm(openai(&base));
    let (s, _, body) = post_raw(
        &router,
        t,
        "/api/v1/ai/chat",
        json!({"message": "Hi", "conversation_id": conversation, "stream": true}),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (_, msgs) = app.get(&format!("/api/v1/conversations/{conversation}/messages"), t).await;
    assert_eq!(msgs["data"].as_array().unwrap().len(), 4);

    for bad in [
        json!({}),
        json!({"message": "hi", "personality_id": uuid::Uuid::now_v7()}),
        json!({"message": "hi", "conversation_id": uuid::Uuid::now_v7()}),
    ] {
        let (s, r) = app.send("POST", "/api/v1/ai/chat", Some(t), Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    }
    let (s, _) = app
        .send(
            "POST",
            "/api/v1/ai/chat",
            Some(&app.token_b),
            Some(json!({"message": "hi", "conversation_id": conversation})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "another tenant's conversation is unknown here");
}

#[tokio::test]
async fn ai_context_packs_labelled_parts_within_the_budget() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let customer = app
        .customer(t, json!({"name": "Hill Dental", "business_context": {"industry": "dentistry", "size": "12 staff"}}))
        .await;
    let cid = customer["id"].as_str().unwrap().to_owned();
    let (_, p) = app
        .send(
            "POST",
            "/api/v1/personalities",
            Some(t),
            Some(json!({"name": "Dee", "system_prompt": "You are Dee, a calm receptionist."})),
        )
        .await;
    app.send(
        "POST",
        "/api/v1/personalities/assign",
        Some(t),
        Some(json!({"personality_id": p["data"]["id"], "customer_id": cid})),
    )
    .await;
    let (_, k) = app
        .send("POST", "/api/v1/knowledge", Some(t), Some(json!({"title": "Emergency appointments", "content": "Emergency dental appointments are available the same day."})))
        .await;
    let kid = k["data"]["id"].as_str().unwrap().to_owned();
    let (_, conv) =
        app.send("POST", "/api/v1/conversations", Some(t), Some(json!({"customer_id": cid, "channel": "chat"}))).await;
    let conv_id = conv["data"]["id"].as_str().unwrap().to_owned();
    app.send(
        "POST",
        &format!("/api/v1/conversations/{conv_id}/messages"),
        Some(t),
        Some(json!({"role": "customer", "content": "Do you take walk-ins?"})),
    )
    .await;
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query("insert into crm_customer_faqs (tenant_id, customer_id, question, answer) values ($1, $2::uuid, 'Parking?', 'Free parking at the back.')")
        .bind(app.tenant_a)
        .bind(&cid)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("insert into crm_pending_questions (tenant_id, customer_id, question) values ($1, $2::uuid, 'Do you offer whitening?')")
        .bind(app.tenant_a)
        .bind(&cid)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let (s, r) = app
        .send(
            "POST",
            "/api/v1/ai/context",
            Some(t),
            Some(json!({"customer_id": cid, "question": "Can I get an urgent appointment today?"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let parts = r["data"]["parts"].as_array().unwrap();
    let kinds: Vec<&str> = parts.iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["personality", "business_context", "knowledge", "recent_messages", "customer_faqs", "pending_questions"]
    );
    let text = |kind: &str| parts.iter().find(|p| p["kind"] == kind).unwrap()["text"].as_str().unwrap().to_owned();
    assert!(text("personality").contains("calm receptionist"));
    assert!(text("business_context").contains("dentistry"));
    assert!(text("knowledge").contains("Emergency appointments"));
    assert!(text("recent_messages").contains("walk-ins"));
    assert!(text("customer_faqs").contains("Free parking"));
    assert!(text("pending_questions").contains("whitening"));
    let knowledge_sources = &parts.iter().find(|p| p["kind"] == "knowledge").unwrap()["sources"];
    assert_eq!(knowledge_sources[0], format!("knowledge:{kid}"));
    assert!(r["data"]["tokens_used"].as_u64().unwrap() <= 2000);

    // Once the pipelines have scored the customer, the assistant is told who it talks to.
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query(
        "insert into customer_engagement_scores (tenant_id, customer_id, score, components, as_of)
         values ($1, $2::uuid, 72.4, '{\"email\": 40.1, \"web\": 32.3}', '2026-11-20T00:00:00Z')",
    )
    .bind(app.tenant_a)
    .bind(&cid)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into customer_predictive_scores (tenant_id, customer_id, probability, top_features, model_version, as_of)
         values ($1, $2::uuid, 0.184, '[{\"feature\": \"opens_30d\", \"contribution\": 0.9}]', 'lr-3', '2026-11-20T00:00:00Z')",
    )
    .bind(app.tenant_a)
    .bind(&cid)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (_, r) = app.send("POST", "/api/v1/ai/context", Some(t), Some(json!({"customer_id": cid}))).await;
    let parts = r["data"]["parts"].as_array().unwrap();
    let scores = parts.iter().find(|p| p["kind"] == "customer_scores").expect("a scores part");
    let text = scores["text"].as_str().unwrap();
    assert!(text.contains("Engagement score: 72/100 (as of 2026-11-20)"), "{text}");
    assert!(text.contains("email 40.1"), "{text}");
    assert!(text.contains("purchase in the next 90 days: 18% (model lr-3"), "{text}");
    assert!(text.contains("driven by opens_30d"), "{text}");
    assert_eq!(scores["sources"][0], format!("customer_engagement_scores:{cid}"));
    let (_, g) = app.get(&format!("/api/v1/customers/{cid}/ai-context"), t).await;
    assert_eq!(g["data"]["scores"]["engagement"]["score"], 72.4, "{g}");
    assert_eq!(g["data"]["scores"]["predictive"]["model_version"], "lr-3", "{g}");

    // A published article answering the question is a source too, labelled as one.
    let (_, a) = app
        .send(
            "POST",
            "/api/v1/articles",
            Some(t),
            Some(json!({"title": "Urgent appointment guide", "body": "Urgent appointments: call before nine.", "status": "published"})),
        )
        .await;
    let aid = a["data"]["id"].as_str().unwrap().to_owned();
    let (_, r) = app
        .send(
            "POST",
            "/api/v1/ai/context",
            Some(t),
            Some(json!({"customer_id": cid, "question": "urgent appointment"})),
        )
        .await;
    let parts = r["data"]["parts"].as_array().unwrap();
    let knowledge = parts.iter().find(|p| p["kind"] == "knowledge").expect("a knowledge part");
    assert!(knowledge["sources"].as_array().unwrap().contains(&json!(format!("article:{aid}"))), "{knowledge}");

    // A tight budget keeps the first parts and says what it left out.
    let (_, small) =
        app.send("POST", "/api/v1/ai/context", Some(t), Some(json!({"customer_id": cid, "token_budget": 100}))).await;
    assert!(small["data"]["tokens_used"].as_u64().unwrap() <= 100, "{small}");
    assert_eq!(small["data"]["parts"][0]["kind"], "personality");

    for bad in [json!({}), json!({"customer_id": cid, "token_budget": 5}), json!({"customer_id": uuid::Uuid::now_v7()})]
    {
        let (s, r) = app.send("POST", "/api/v1/ai/context", Some(t), Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    }
    let (s, _) = app.send("POST", "/api/v1/ai/context", Some(&app.token_b), Some(json!({"customer_id": cid}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "another tenant's customer is unknown");
}

/// Without a provider key nothing pretends: generation answers 503
/// `AI_PROVIDER_NOT_CONFIGURED` (demo templates only when asked for, and marked so), and
/// the assistant quotes the tenant's matching knowledge inside the personality's framing,
/// or says it found nothing.
#[tokio::test]
async fn without_a_provider_key_generation_refuses_and_chat_quotes_the_knowledge() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let router = app.with(|s| Arc::make_mut(&mut s.config).ai.local_templates = false);
    let (_, campaign) = app
        .send("POST", "/api/v1/outbound/campaigns", Some(t), Some(json!({"name": "Spring sale", "type": "email"})))
        .await;
    for (path, body) in [
        ("/api/v1/content/generate", json!({"topic": "Gutters", "length": "short"})),
        (
            "/api/v1/ads/generate-from-campaign",
            json!({"source_id": campaign["data"]["id"], "platform": "instagram", "budget": 1000}),
        ),
    ] {
        let (s, r) = call(&router, t, path, body).await;
        assert_eq!((s, code(&r)), (StatusCode::SERVICE_UNAVAILABLE, "AI_PROVIDER_NOT_CONFIGURED"), "{path}: {r}");
    }
    // With AI_LOCAL_TEMPLATES the demo text comes back, named as such.
    let (s, r) = call(&app.router, t, "/api/v1/content/generate", json!({"topic": "Gutters", "length": "short"})).await;
    assert_eq!((s, r["data"]["model"].as_str()), (StatusCode::CREATED, Some("local-template-v1")), "{r}");

    let (_, k) = app
        .send(
            "POST",
            "/api/v1/knowledge",
            Some(t),
            Some(json!({"title": "Opening hours", "content": "We open at nine and close at five on weekdays."})),
        )
        .await;
    let (s, p) = app
        .send(
            "POST",
            "/api/v1/personalities",
            Some(t),
            Some(json!({"name": "Ava", "system_prompt": "You are Ava.", "config": {"greeting": "Hi, Ava here.", "sign_off": "Have a good day!"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pid = p["data"]["id"].as_str().unwrap();
    for path in ["/api/v1/ai/chat".to_owned(), format!("/api/v1/personalities/{pid}/generate-response")] {
        let body = if path.ends_with("/ai/chat") {
            json!({"message": "When do you open?", "personality_id": pid})
        } else {
            json!({"message": "When do you open?"})
        };
        let (s, r) = call(&router, t, &path, body).await;
        assert_eq!(s, StatusCode::OK, "{path}: {r}");
        let text = r["data"]["response"].as_str().unwrap();
        assert!(text.starts_with("Hi, Ava here."), "{path}: {text}");
        assert!(text.contains("[1] Opening hours: We open at nine"), "{path}: {text}");
        assert!(text.ends_with("Have a good day!"), "{path}: {text}");
        assert_eq!(r["data"]["model"], "knowledge-extract-v1", "{r}");
    }
    assert_eq!(k["data"]["title"], "Opening hours");
    let (s, r) = call(&router, t, "/api/v1/ai/chat", json!({"message": "Do you repair bicycles?"})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["data"]["response"].as_str().unwrap().starts_with("I could not find anything"), "{r}");
}

/// `/ai/models` says what the provider offers (its `/models` list, read once and reused)
/// and which embedder the tenant's knowledge is indexed with, dimensions included.
#[tokio::test]
async fn models_report_what_the_provider_offers_and_what_is_indexed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let stub = Router::new().route(
        "/v1/models",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Json(json!({"object": "list", "data": [{"id": "gpt-4o-mini"}, {"id": "gpt-4o"}, {"id": "o3"}]})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, stub).await.unwrap() });
    let router = app.with_llm(openai(&format!("http://{addr}/v1")));
    let (s, p) = app
        .send(
            "POST",
            "/api/v1/personalities",
            Some(t),
            Some(json!({"name": "Old", "system_prompt": "x", "model": "gpt-4o"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    // An entry indexed by the local embedder.
    let (_, k) = app
        .send("POST", "/api/v1/knowledge", Some(t), Some(json!({"title": "Hours", "content": "Open at nine."})))
        .await;
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query(
        "update knowledge_base set embedding = array_fill(0.1, array[384])::vector, embedding_model = 'all-MiniLM-L6-v2'
         where id = $1::uuid",
    )
    .bind(k["data"]["id"].as_str().unwrap())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    for _ in 0..2 {
        let req = Request::builder()
            .uri("/api/v1/ai/models")
            .header("authorization", format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let m: Value =
            serde_json::from_slice(&axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
        let find = |id: &str, kind: &str| {
            m["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == id && x["kind"] == kind)
                .cloned()
                .unwrap_or_else(|| panic!("{id}: {m}"))
        };
        assert_eq!(
            (find("gpt-4o-mini", "chat")["default"].as_bool(), find("gpt-4o-mini", "chat")["offered"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(find("o3", "chat")["offered"], true, "the provider's list: {m}");
        assert_eq!(find("gpt-4o", "chat")["offered"], true);
        let embedder = find("all-MiniLM-L6-v2", "embedding");
        assert_eq!(
            (embedder["dimensions"].as_i64(), embedder["indexed_entries"].as_i64()),
            (Some(384), Some(1)),
            "{m}"
        );
    }
    assert_eq!(reads.load(Ordering::SeqCst), 1, "the list is read once and reused");
}

/// Generation sends the brief: type, tone, length, topic and audience reach the provider
/// (checked with a provider that answers with its prompt), and the draft keeps what it said.
#[tokio::test]
async fn the_brief_reaches_the_provider_and_the_draft_keeps_its_answer() {
    let app = TestApp::spawn().await;
    let (llm, seen) = fibonacco_api::testing::echo_llm().await;
    let router = app.with_llm(llm);
    let brief = json!({"topic": "Winter boiler maintenance", "content_type": "newsletter", "tone": "calm",
                       "length": "short", "audience": "landlords"});
    let (s, r) =
        fibonacco_api::testing::call(&router, &app.token_a, "POST", "/api/v1/content/generate", Some(brief)).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let body = r["data"]["body"].as_str().unwrap();
    for part in [
        "You write newsletter content",
        "Tone: calm",
        "Length: short",
        "user: Winter boiler maintenance Audience: landlords",
    ] {
        assert!(body.contains(part), "`{part}` missing from what the provider was given: {body}");
    }
    assert_eq!(r["data"]["model"], "echo-1");
    assert_eq!(seen.lock().unwrap().len(), 1);
}
