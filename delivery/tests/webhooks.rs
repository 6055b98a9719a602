//! Outgoing webhooks, the sending side: deliveries signed so a receiver verifies them with
//! its own HMAC, retried after a 500 with the same `webhook-id`, a slow receiver holding
//! one worker while another endpoint's deliveries go out, inward targets refused at send
//! time (a name resolving to loopback, a redirect), an endpoint disabled after its whole
//! retry schedule failed and resumed by PATCH, and a huge answer read only 1 KiB deep.
//! Events are written here as the outbox writes them; the outbox itself is tested from
//! the lake in the pipelines crate.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fibonacco_api::testing::{TestApp, WebhookReceiver, call, with_private_webhook_targets};
use fibonacco_delivery::{JobContext, scheduler::Scheduler};
use fibonacco_platform::db;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{RunningWorker, job_context};

const RETRY_AFTER: Duration = Duration::from_secs(30);

/// A context whose deliveries may reach loopback, retry after 1 s then 1 s, and give up on
/// a receiver after 2 s.
fn webhook_context(app: &TestApp, allow_private: bool) -> JobContext {
    job_context(
        app,
        &[
            ("WEBHOOK_ALLOW_PRIVATE_TARGETS", allow_private.to_string()),
            ("WEBHOOK_RETRY_SCHEDULE", "1s,1s".into()),
            ("WEBHOOK_TIMEOUT_SECS", "2".into()),
        ],
        RETRY_AFTER,
    )
}

/// Subscribes `url` for tenant A through the API; (endpoint id, secret).
async fn endpoint(app: &TestApp, url: &str) -> (Uuid, String) {
    let router = with_private_webhook_targets(app);
    let (status, body) = call(
        &router,
        &app.token_a,
        "POST",
        "/api/v1/webhooks/endpoints",
        Some(json!({"url": url, "event_types": ["customer.created", "order.paid"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["data"]["id"].as_str().unwrap().parse().unwrap(), body["data"]["secret"].as_str().unwrap().to_owned())
}

/// An event for tenant A with a delivery to each of `endpoints`, as the outbox writes them.
async fn event(app: &TestApp, n: u32, endpoints: &[Uuid]) -> String {
    let tenant = app.tenant_a;
    let id = format!("msg_test_{}_{n}", Uuid::now_v7().simple());
    let payload = json!({"type": "customer.created", "timestamp": "2026-12-01T10:00:00.000000Z",
        "data": {"id": Uuid::now_v7(), "name": format!("Ada «{n}» \"quoted\"\r\n"), "email": "ada@example.com"}});
    let mut tx = db::begin_tenant(&app.db.pool, tenant).await.unwrap();
    sqlx::query(
        "insert into webhook_events (id, tenant_id, type, payload, occurred_at) values ($1, $2, 'customer.created', $3, now())",
    )
    .bind(&id)
    .bind(tenant)
    .bind(&payload)
    .execute(&mut *tx)
    .await
    .unwrap();
    for e in endpoints {
        sqlx::query("insert into webhook_deliveries (tenant_id, endpoint_id, event_id) values ($1, $2, $3)")
            .bind(tenant)
            .bind(e)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    id
}

/// Runs the scheduler's `webhooks:deliver` once.
async fn tick(app: &TestApp) -> String {
    let s = Scheduler::new(app.db.pool.clone(), app.state.queue.clone());
    fibonacco_delivery::scheduler::tasks::run(&s, "webhooks:deliver").await.unwrap()
}

#[derive(Debug, sqlx::FromRow)]
struct DeliveryRow {
    status: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
}

async fn deliveries(app: &TestApp, endpoint: Uuid) -> Vec<DeliveryRow> {
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let rows = sqlx::query_as(
        "select status, attempts, last_status_code, last_error from webhook_deliveries
         where endpoint_id = $1 order by created_at",
    )
    .bind(endpoint)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_after_a_500_and_logged() {
    let app = TestApp::spawn().await;
    app.state.queue.clear("webhooks").await.unwrap();
    let receiver = WebhookReceiver::start().await;
    let (ok, secret) = endpoint(&app, &format!("{}/ok", receiver.base)).await;
    let (flaky, flaky_secret) = endpoint(&app, &format!("{}/fail-once/a", receiver.base)).await;
    let first = event(&app, 1, &[ok, flaky]).await;
    let second = event(&app, 2, &[ok]).await;
    let worker = RunningWorker::start(webhook_context(&app, true), &["webhooks"], RETRY_AFTER);
    assert_eq!(tick(&app).await, "2 webhook endpoints queued");
    wait_for("both events reach /ok", async || receiver.got("/ok").len() == 2).await;
    let got = receiver.got("/ok");
    assert_eq!(
        got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [first.as_str(), second.as_str()],
        "oldest first"
    );
    for r in &got {
        assert!(r.verify(&secret), "a receiver verifies {}", r.id);
        assert!(!r.verify(&flaky_secret), "another endpoint's secret does not verify it");
        assert_eq!(r.json()["type"], "customer.created");
        assert_eq!(r.json()["data"]["email"], "ada@example.com");
    }
    assert!(got[0].json()["data"]["name"].as_str().unwrap().contains("«1» \"quoted\"\r\n"), "the body is the payload");

    // The flaky endpoint answered 500: retried after the schedule's first wait, same id.
    wait_for("the flaky endpoint is retried", async || {
        if receiver.got("/fail-once/a").len() < 2 {
            tick(&app).await;
            return false;
        }
        true
    })
    .await;
    let flaky_got = receiver.got("/fail-once/a");
    assert_eq!(flaky_got.len(), 2);
    assert!(flaky_got.iter().all(|r| r.id == first && r.verify(&flaky_secret)));
    assert!(flaky_got[1].timestamp.parse::<i64>().unwrap() >= flaky_got[0].timestamp.parse::<i64>().unwrap());
    wait_for("the retry is recorded", async || deliveries(&app, flaky).await[0].status == "delivered").await;
    let d = &deliveries(&app, flaky).await[0];
    assert_eq!((d.attempts, d.last_status_code, d.last_error.as_deref()), (2, Some(200), None));
    worker.stop().await;

    // The delivery log shows both attempts' outcome, newest delivery first.
    let (status, log) = app.get(&format!("/api/v1/webhooks/endpoints/{flaky}/deliveries"), &app.token_a).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    assert_eq!(log["data"][0]["event_id"], first.as_str());
    assert_eq!(log["data"][0]["status"], "delivered");
    assert_eq!(log["data"][0]["attempts"], 2);
    let (_, endpoint_now) = app.get(&format!("/api/v1/webhooks/endpoints/{flaky}"), &app.token_a).await;
    assert_eq!(endpoint_now["data"]["failing_since"], Value::Null, "a success clears the failure streak");
    // Another tenant sees neither the endpoint nor its log, nor rotates its secret.
    let (status, _) = app.get(&format!("/api/v1/webhooks/endpoints/{flaky}/deliveries"), &app.token_b).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let path = format!("/api/v1/webhooks/endpoints/{ok}/rotate-secret");
    assert_eq!(app.send("POST", &path, Some(&app.token_b), None).await.0, StatusCode::NOT_FOUND);

    // A rotated secret: for a day deliveries verify with the new secret and the old one.
    let (status, rotated) = app.send("POST", &path, Some(&app.token_a), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["data"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let third = event(&app, 3, &[ok]).await;
    let worker = RunningWorker::start(webhook_context(&app, true), &["webhooks"], RETRY_AFTER);
    tick(&app).await;
    wait_for("the event after the rotation", async || receiver.got("/ok").len() == 3).await;
    worker.stop().await;
    let after = &receiver.got("/ok")[2];
    assert_eq!(after.id, third);
    assert!(after.verify(&new_secret) && after.verify(&secret), "both secrets verify: {}", after.signature);
    assert!(!after.verify(&flaky_secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_holds_one_worker_while_other_endpoints_get_theirs() {
    let app = TestApp::spawn().await;
    app.state.queue.clear("webhooks").await.unwrap();
    let receiver = WebhookReceiver::start().await;
    let (slow, _) = endpoint(&app, &format!("{}/slow", receiver.base)).await;
    let (fast, _) = endpoint(&app, &format!("{}/ok", receiver.base)).await;
    for n in 0..5 {
        event(&app, n, &[slow]).await;
    }
    let worker = RunningWorker::start(webhook_context(&app, true), &["webhooks"], RETRY_AFTER);
    tick(&app).await;
    // The slow endpoint's job is in flight; now the fast endpoint gets an event.
    event(&app, 9, &[fast]).await;
    wait_for("the fast endpoint's delivery", async || {
        // Ticks add nothing while an earlier job still waits to be taken.
        tick(&app).await;
        deliveries(&app, fast).await[0].status == "delivered"
    })
    .await;
    let slow_now = deliveries(&app, slow).await;
    assert!(
        slow_now.iter().all(|d| d.status == "pending"),
        "delivered to the fast endpoint while the slow one's first answer was still awaited: {slow_now:?}"
    );
    // The slow one times out once and its job stops there: one attempt, not five.
    wait_for("the slow attempt times out", async || deliveries(&app, slow).await[0].attempts == 1).await;
    let slow_now = deliveries(&app, slow).await;
    assert_eq!(slow_now[0].last_error.as_deref(), Some("no answer within 2 s"));
    assert!(slow_now[1..].iter().all(|d| d.attempts == 0), "{slow_now:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inward_targets_are_refused_when_saved_and_when_sent() {
    let app = TestApp::spawn().await;
    app.state.queue.clear("webhooks").await.unwrap();
    // The API (private targets not allowed, the default) refuses them with the field.
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://10.0.0.8/",
        "http://2130706433/",
        "ftp://example.com/",
        "https://user:secret@example.com/",
        "https://example.com/\r\nX-Injected: 1",
    ] {
        let (status, body) = app
            .send(
                "POST",
                "/api/v1/webhooks/endpoints",
                Some(&app.token_a),
                Some(json!({"url": url, "event_types": ["customer.created"]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert!(body["error"]["details"]["url"].is_array(), "{url}: {body}");
    }
    let (status, body) = app
        .send(
            "POST",
            "/api/v1/webhooks/endpoints",
            Some(&app.token_a),
            Some(json!({"url": "https://hooks.example.com/in", "event_types": ["customer.created", "nope.nope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["details"]["event_types"].is_array(), "{body}");

    // A target saved while the rule allowed it (or written by SQL) is checked again at
    // send time and gets nothing. (A public-looking name that resolves inward is dropped
    // by the HTTP client's resolver: `target::tests`.)
    let receiver = WebhookReceiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let (by_name, _) = endpoint(&app, &format!("http://localhost:{port}/ok")).await;
    let (redirecting, _) = endpoint(&app, &format!("{}/redirect", receiver.base)).await;
    event(&app, 1, &[by_name]).await;
    let worker = RunningWorker::start(webhook_context(&app, false), &["webhooks"], RETRY_AFTER);
    tick(&app).await;
    wait_for("the attempt is recorded", async || deliveries(&app, by_name).await[0].attempts == 1).await;
    worker.stop().await;
    let d = &deliveries(&app, by_name).await[0];
    assert_eq!(d.status, "pending");
    let error = d.last_error.as_deref().unwrap();
    assert!(error.contains("must not point at a loopback"), "{error}");
    assert!(receiver.got("/ok").is_empty(), "nothing reached the receiver");

    // A redirect is an answer, not an instruction: /ok is never asked.
    event(&app, 2, &[redirecting]).await;
    let worker = RunningWorker::start(webhook_context(&app, true), &["webhooks"], RETRY_AFTER);
    tick(&app).await;
    wait_for("the redirect is recorded", async || deliveries(&app, redirecting).await[0].attempts == 1).await;
    worker.stop().await;
    let d = &deliveries(&app, redirecting).await[0];
    assert_eq!((d.last_status_code, d.last_error.as_deref()), (Some(302), Some("HTTP 302")));
    assert_eq!(receiver.got("/redirect").len(), 1);
    assert!(receiver.got("/ok").is_empty(), "the redirect was not followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_through_its_whole_schedule_is_disabled_and_resumes_when_enabled() {
    let app = TestApp::spawn().await;
    app.state.queue.clear("webhooks").await.unwrap();
    let receiver = WebhookReceiver::start().await;
    let (failing, _) = endpoint(&app, &format!("{}/always-500", receiver.base)).await;
    let id = event(&app, 1, &[failing]).await;
    let worker = RunningWorker::start(webhook_context(&app, true), &["webhooks"], RETRY_AFTER);
    // Three attempts (the first and two retries, 1 s apart), then out of retries.
    wait_for("the schedule is spent", async || {
        if deliveries(&app, failing).await[0].status != "failed" {
            tick(&app).await;
            return false;
        }
        true
    })
    .await;
    worker.stop().await;
    assert_eq!(receiver.got("/always-500").len(), 3);
    assert!(receiver.got("/always-500").iter().all(|r| r.id == id));
    let (_, shown) = app.get(&format!("/api/v1/webhooks/endpoints/{failing}"), &app.token_a).await;
    assert_eq!(shown["data"]["enabled"], false, "{shown}");
    let reason = shown["data"]["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("3 failed attempts") && reason.contains("HTTP 500"), "{reason}");
    assert!(shown["data"].get("secret").is_none(), "the secret is shown only at creation");
    // The 64 KiB answer was read 1 KiB deep.
    let (_, log) = app.get(&format!("/api/v1/webhooks/endpoints/{failing}/deliveries"), &app.token_a).await;
    assert_eq!(log["data"][0]["last_response"].as_str().unwrap().len(), 1024);
    assert_eq!(log["data"][0]["status"], "failed");

    // Disabled: new events get no delivery to it (written as the outbox does: enabled only).
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let enabled: bool = sqlx::query_scalar("select enabled from webhook_endpoints where id = $1")
        .bind(failing)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(!enabled);

    // Turned on again, a delivery still pending goes out at once.
    let pending = event(&app, 2, &[failing]).await;
    let (status, body) = app
        .send(
            "PATCH",
            &format!("/api/v1/webhooks/endpoints/{failing}"),
            Some(&app.token_a),
            Some(json!({"enabled": true, "url": format!("{}/ok", receiver.base)})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "loopback is refused by the default API: {body}");
    let router = with_private_webhook_targets(&app);
    let (status, body) = call(
        &router,
        &app.token_a,
        "PATCH",
        &format!("/api/v1/webhooks/endpoints/{failing}"),
        Some(json!({"enabled": true, "url": format!("{}/ok", receiver.base)})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["data"]["enabled"].clone(), body["data"]["disabled_reason"].clone()), (json!(true), Value::Null));
    let worker = RunningWorker::start(webhook_context(&app, true), &["webhooks"], RETRY_AFTER);
    tick(&app).await;
    wait_for("the pending delivery goes out", async || receiver.got("/ok").len() == 1).await;
    assert_eq!(receiver.got("/ok")[0].id, pending);

    // The failed delivery sent again by hand (same id, a fresh schedule), and a test event.
    let failed_delivery = log["data"][0]["id"].as_str().unwrap().to_owned();
    let retry = format!("/api/v1/webhooks/endpoints/{failing}/deliveries/{failed_delivery}/retry");
    assert_eq!(app.send("POST", &retry, Some(&app.token_b), None).await.0, StatusCode::NOT_FOUND);
    let (status, body) = app.send("POST", &retry, Some(&app.token_a), None).await;
    assert_eq!((status, body["data"]["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{body}");
    let (status, body) =
        app.send("POST", &format!("/api/v1/webhooks/endpoints/{failing}/test"), Some(&app.token_a), None).await;
    assert_eq!((status, body["data"]["event_type"].as_str()), (StatusCode::ACCEPTED, Some("webhook.test")), "{body}");
    wait_for("the retry and the test arrive", async || receiver.got("/ok").len() == 3).await;
    worker.stop().await;
    let got = receiver.got("/ok");
    assert_eq!(got[1].id, id, "the retried delivery keeps its webhook-id");
    assert_eq!(got[2].json()["type"], "webhook.test");
    assert_eq!(deliveries(&app, failing).await[0].status, "delivered");
}
