//! The platform around the routes: OpenAPI, Swagger UI, health, metrics, request ids,
//! envelopes for unknown routes, serving over TCP, and the CLI.

use std::process::Command;

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use fibonacco_api::Application;
use fibonacco_api::testing::{TestApp, code, test_config};
use tower::ServiceExt;

/// Every route of the seed that is built so far (the rest are open issues), plus the
/// extra routes this implementation adds. The spec must describe each one.
const BUILT_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/conversations"),
    ("post", "/api/v1/conversations"),
    ("get", "/api/v1/conversations/{id}"),
    ("put", "/api/v1/conversations/{id}"),
    ("post", "/api/v1/conversations/{id}/end"),
    ("post", "/api/v1/conversations/{id}/messages"),
    ("get", "/api/v1/conversations/{id}/messages"),
    ("get", "/api/v1/knowledge"),
    ("post", "/api/v1/knowledge"),
    ("get", "/api/v1/knowledge/{id}"),
    ("put", "/api/v1/knowledge/{id}"),
    ("delete", "/api/v1/knowledge/{id}"),
    ("post", "/api/v1/knowledge/{id}/generate-embedding"),
    ("post", "/api/v1/knowledge/{id}/vote"),
    ("get", "/api/v1/faq-categories"),
    ("post", "/api/v1/faq-categories"),
    ("get", "/api/v1/campaigns"),
    ("get", "/api/v1/campaigns/{slug}"),
    ("post", "/api/v1/campaigns/generate"),
    ("get", "/api/v1/campaigns/templates"),
    ("post", "/api/v1/campaigns/suggestions"),
    ("post", "/api/v1/learning/contact/sales"),
    ("get", "/api/v1/learning/campaigns/{id}/guide"),
    ("get", "/api/v1/outbound/campaigns"),
    ("post", "/api/v1/outbound/campaigns"),
    ("get", "/api/v1/outbound/campaigns/{id}"),
    ("put", "/api/v1/outbound/campaigns/{id}"),
    ("delete", "/api/v1/outbound/campaigns/{id}"),
    ("get", "/api/v1/outbound/campaigns/{id}/recipients"),
    ("post", "/api/v1/outbound/campaigns/{id}/start"),
    ("post", "/api/v1/outbound/campaigns/{id}/pause"),
    ("post", "/api/v1/outbound/campaigns/{id}/resume"),
    ("post", "/api/v1/outbound/campaigns/{id}/cancel"),
    ("get", "/api/v1/ai/models"),
    ("post", "/api/v1/ai/chat"),
    ("post", "/api/v1/ai/context"),
    ("post", "/api/v1/personalities/{id}/generate-response"),
    ("get", "/api/v1/search"),
    ("post", "/api/v1/search"),
    ("get", "/t/open/{token}"),
    ("get", "/t/click/{token}"),
    ("get", "/t/unsubscribe/{token}"),
    ("post", "/t/unsubscribe/{token}"),
    ("get", "/api/v1/outbound/campaigns/{id}/analytics"),
    ("get", "/api/v1/outbound/email/campaigns"),
    ("post", "/api/v1/outbound/email/campaigns"),
    ("get", "/api/v1/outbound/email/templates"),
    ("post", "/api/v1/outbound/email/templates"),
    ("get", "/api/v1/outbound/phone/campaigns"),
    ("post", "/api/v1/outbound/phone/campaigns"),
    ("get", "/api/v1/outbound/phone/scripts"),
    ("post", "/api/v1/outbound/phone/scripts"),
    ("post", "/api/v1/outbound/phone/campaigns/{id}/call-status"),
    ("get", "/api/v1/outbound/sms/campaigns"),
    ("post", "/api/v1/outbound/sms/campaigns"),
    ("get", "/api/v1/outbound/sms/templates"),
    ("post", "/api/v1/outbound/sms/templates"),
    ("post", "/api/v1/outbound/sms/campaigns/{id}/sms-status"),
    ("get", "/api/v1/content"),
    ("post", "/api/v1/content/generate"),
    ("post", "/api/v1/content/generate-from-campaign"),
    ("get", "/api/v1/content/templates"),
    ("post", "/api/v1/content/templates"),
    ("get", "/api/v1/content/{id}"),
    ("put", "/api/v1/content/{id}"),
    ("post", "/api/v1/content/{id}/status"),
    ("get", "/api/v1/ads"),
    ("post", "/api/v1/ads/generate-from-campaign"),
    ("post", "/api/v1/ads/generate-from-content"),
    ("get", "/api/v1/ads/templates"),
    ("post", "/api/v1/ads/templates"),
    ("get", "/api/v1/ads/{id}"),
    ("put", "/api/v1/ads/{id}"),
    ("get", "/api/v1/publishing/dashboard"),
    ("get", "/api/v1/publishing/calendar"),
    ("get", "/api/v1/publishing/analytics"),
    ("post", "/api/v1/publishing/content/{id}/publish"),
    ("get", "/api/v1/personalities"),
    ("post", "/api/v1/personalities"),
    ("get", "/api/v1/personalities/assignments"),
    ("post", "/api/v1/personalities/assign"),
    ("get", "/api/v1/personalities/{id}"),
    ("put", "/api/v1/personalities/{id}"),
    ("delete", "/api/v1/personalities/{id}"),
    ("get", "/api/v1/personalities/customers/{customer_id}/personality"),
    ("get", "/api/v1/articles"),
    ("get", "/api/v1/services"),
    ("get", "/api/v1/orders"),
    ("get", "/api/v1/tts"),
    ("get", "/api/v1/survey"),
    ("post", "/api/v1/survey"),
    ("post", "/api/v1/survey/{id}/responses"),
    ("get", "/api/v1/presentations"),
    ("get", "/api/v1/training"),
    ("get", "/api/v1/presentations"),
    ("get", "/api/v1/training"),
    ("post", "/api/stripe/webhook"),
];

const SEED_CUSTOMER_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/customers"),
    ("post", "/api/v1/customers"),
    ("get", "/api/v1/customers/{id}"),
    ("get", "/api/v1/customers/slug/{slug}"),
    ("put", "/api/v1/customers/{id}"),
    ("delete", "/api/v1/customers/{id}"),
    ("put", "/api/v1/customers/{id}/business-context"),
    ("get", "/api/v1/customers/{id}/ai-context"),
];

#[tokio::test]
async fn openapi_lists_every_customer_route_and_swagger_ui_is_served() {
    let app = TestApp::spawn().await;
    let (status, spec) = app.send("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for (method, path) in SEED_CUSTOMER_ROUTES.iter().chain(BUILT_ROUTES) {
        assert!(spec["paths"][path][method].is_object(), "{method} {path} missing from the spec");
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());

    let res = app.router.clone().oneshot(Request::get("/docs/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    assert!(String::from_utf8_lossy(&html).contains("swagger"), "Swagger UI page");
}

#[tokio::test]
async fn health_metrics_request_ids_and_fallbacks() {
    let app = TestApp::spawn().await;
    let (status, health) = app.send("GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        health["checks"],
        serde_json::json!({"postgres": "ok", "redis": "ok", "replication": "ok", "background": "ok"})
    );
    // The API alone supervises nothing; `fibonacco run` shows its capture and watch here.
    assert_eq!(health["parts"], serde_json::json!({}));

    let res = app.router.clone().oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
    assert!(res.headers().get("x-request-id").is_some(), "a request id is assigned");
    let res = app
        .router
        .clone()
        .oneshot(Request::get("/health").header("x-request-id", "abc-123").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123", "a caller's request id is kept");

    let _ = app.get("/api/v1/customers", &app.token_a).await;
    let res = app.router.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/v1/customers\""), "routes are labelled by template");

    let (status, json) = app.send("GET", "/api/v1/nothing-here", None, None).await;
    assert_eq!((status, code(&json)), (StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND"));
    let (status, json) = app.send("PATCH", "/api/v1/customers", Some(&app.token_a), None).await;
    assert_eq!((status, code(&json)), (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"));
}

#[tokio::test]
async fn health_reports_a_dead_redis_as_503() {
    let app = TestApp::spawn().await;
    // A Redis of our own that we can kill: connect while it is up, then stop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("fib-redis-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed by scripts/stack.sh");
    let url = format!("redis://127.0.0.1:{port}");
    let mut conn = None;
    for _ in 0..50 {
        if let Ok(c) = fibonacco_platform::cache::connect(&url).await {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut state = app.state.clone();
    state.redis = conn.expect("temporary redis answers");
    let router = fibonacco_api::router(state);
    let res = router.clone().oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "healthy while redis runs");

    server.kill().unwrap();
    server.wait().unwrap();
    let res = router.oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(
        body["checks"],
        serde_json::json!({"postgres": "ok", "redis": "down", "replication": "ok", "background": "ok"})
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A slot nobody reads keeps WAL: above `INGEST_WAL_ALERT_MB` the health check is
/// degraded (still 200: the API serves) and names the slot, and `/metrics` carries its
/// gauge. (An invalidated slot, `lost`, is reached on a private cluster in the ingest tests.)
#[tokio::test]
async fn health_and_metrics_report_a_replication_slot_keeping_wal() {
    let app = TestApp::spawn().await;
    let slot = format!("h_{}", &app.db.name["fibtest_".len()..]);
    sqlx::query("select pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(&slot)
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("create table wal_filler as select g, repeat('x', 100) as pad from generate_series(1, 2000) g")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (status, health) = app.send("GET", "/health", None, None).await;
    assert_eq!((status, health["checks"]["replication"].as_str()), (StatusCode::OK, Some("ok")), "{health}");
    assert_eq!(health["replication_slots"][0]["name"], slot.as_str());
    assert!(health["replication_slots"][0]["retained_wal_bytes"].as_i64().is_some_and(|b| b > 0), "{health}");

    let mut config = (*app.state.config).clone();
    config.wal_alert_bytes = 1024;
    let mut state = app.state.clone();
    state.config = std::sync::Arc::new(config);
    let router = fibonacco_api::router(state);
    let res = router.clone().oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "a slot keeping WAL does not stop the API serving");
    let body: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(
        (body["status"].as_str(), body["checks"]["replication"].as_str()),
        (Some("degraded"), Some("retaining"))
    );
    assert_eq!(body["replication_slots"][0]["active"], false);

    let res = router.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert!(text.contains(&format!("replication_slot_retained_wal_bytes{{slot=\"{slot}\"}}")), "{text}");
    assert!(text.contains(&format!("replication_slot_lost{{slot=\"{slot}\"}} 0")), "{text}");
    sqlx::query("select pg_drop_replication_slot($1)").bind(&slot).execute(&app.db.pool).await.unwrap();
}

#[tokio::test]
async fn the_application_serves_over_tcp_and_shuts_down_gracefully() {
    let app = TestApp::spawn().await;
    let config = test_config(&app.db.url);
    let server = Application::build(config).await.expect("builds against the test stack");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{addr}/api/v1/customers"))
        .header("authorization", format!("Bearer {}", app.token_a))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["meta"]["pagination"]["total"], 0);
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
    assert!(client.get(format!("http://{addr}/health")).send().await.is_err(), "stopped listening");
}

#[tokio::test]
async fn metrics_are_for_the_holder_of_metrics_token_only() {
    let app = TestApp::spawn().await;
    let scrape = |router: axum::Router, auth: Option<&str>| {
        let mut req = Request::get("/metrics");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move { router.oneshot(req.body(Body::empty()).unwrap()).await.unwrap().status() }
    };
    let token = "metrics-scraper-secret-123";
    let guarded = app.with(|s| {
        std::sync::Arc::make_mut(&mut s.config).metrics_token = Some(fibonacco_platform::config::Secret::new(token))
    });
    assert_eq!(scrape(guarded.clone(), None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(guarded.clone(), Some("Bearer wrong-secret-of-some-length")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(guarded.clone(), Some(&format!("Bearer {}", app.token_a))).await,
        StatusCode::UNAUTHORIZED,
        "an API token is not a metrics token"
    );
    assert_eq!(scrape(guarded, Some(&format!("Bearer {token}"))).await, StatusCode::OK);
    // In production without a token nobody may scrape; locally it stays open.
    let production = app.with(|s| std::sync::Arc::make_mut(&mut s.config).app_env = "production".into());
    assert_eq!(scrape(production, None).await, StatusCode::FORBIDDEN);
    assert_eq!(scrape(app.router.clone(), None).await, StatusCode::OK);
}

/// A request still in flight at shutdown (here an upload that stalls half-way) is given
/// `SHUTDOWN_GRACE_SECS`, not forever: the server stops within the grace.
#[tokio::test]
async fn shutdown_waits_for_in_flight_requests_only_as_long_as_the_grace() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn().await;
    let mut config = test_config(&app.db.url);
    config.shutdown_grace = std::time::Duration::from_secs(1);
    config.request_timeout = std::time::Duration::from_secs(120);
    let server = Application::build(config).await.expect("builds against the test stack");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/customers HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":",
        app.token_a
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(15), handle).await;
    assert!(finished.is_ok(), "the server waited past its grace for a stalled request");
    drop(stalled);
}
