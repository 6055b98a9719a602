//! What the delivery tests share: a job context over the test app, a worker to start
//! and stop (or kill), moto's record of the mail it accepted, SES and Twilio stand-ins
//! that fail in the ways a provider does.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    http::{Request, StatusCode},
    response::IntoResponse,
    routing::{any, post},
};
use fibonacco_api::testing::{APP_URL, TestApp};
use fibonacco_delivery::{
    JobContext,
    providers::{DeliverySettings, Providers},
};
use fibonacco_platform::{
    db,
    queue::{Worker, WorkerOptions, WorkerStats},
    testing::stack_setting,
};
use serde_json::{Value, json};
use uuid::Uuid;

pub fn ses_endpoint() -> String {
    stack_setting("SES_ENDPOINT")
}

/// A job context whose Twilio is the stub at `base` (account `AC123`, the test token).
pub fn twilio_context(app: &TestApp, base: String) -> JobContext {
    job_context(
        app,
        &[
            ("TWILIO_ACCOUNT_SID", "AC123".into()),
            ("TWILIO_AUTH_TOKEN", fibonacco_api::testing::TWILIO_TOKEN.into()),
            ("TWILIO_FROM", "+15550000000".into()),
            ("TWILIO_BASE_URL", base),
        ],
        Duration::from_secs(30),
    )
}

/// A job context for this app: SES credentials from the stack, the rest from `over`.
pub fn job_context(app: &TestApp, over: &[(&str, String)], retry_after: Duration) -> JobContext {
    let over: HashMap<String, String> = over.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let storage = std::env::temp_dir().join(format!("fib-audio-{}", Uuid::now_v7()));
    let lookup = move |k: &str| -> Option<String> {
        if let Some(v) = over.get(k) {
            return Some(v.clone());
        }
        match k {
            "SES_ENDPOINT" => Some(ses_endpoint()),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("testing".into()),
            "AWS_REGION" => Some("us-east-1".into()),
            "STORAGE_URL" => Some(storage.display().to_string()),
            "QUEUE_BACKOFF_BASE_MS" => Some("100".into()),
            "SES_RATE_PER_SEC" | "TWILIO_RATE_PER_SEC" => Some("0".into()),
            _ => None,
        }
    };
    let settings =
        DeliverySettings::from_lookup(APP_URL, app.state.config.app_key.clone(), retry_after, &lookup).unwrap();
    JobContext {
        pool: app.db.pool.clone(),
        queue: app.state.queue.clone(),
        providers: Providers::from_lookup(&lookup).unwrap(),
        settings: Arc::new(settings),
        embedder: None,
        store: app.state.search.store.clone(),
        templates: Default::default(),
    }
}

/// The same context with the local embedding model loaded.
pub fn with_local_embedder(mut ctx: JobContext) -> JobContext {
    let model = fibonacco_search::embed::local::MiniLm::load(&fibonacco_search::embed::local::MiniLm::default_dir())
        .expect("model present: run scripts/models.sh (make test does)");
    ctx.embedder = Some(Ok(Arc::new(model)));
    ctx
}

/// A running worker; `stop` lets its jobs finish, dropping the handle kills it.
pub struct RunningWorker {
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<Arc<WorkerStats>>,
}

impl RunningWorker {
    pub fn start(ctx: JobContext, queues: &[&str], retry_after: Duration) -> Self {
        let mut options = WorkerOptions::new(queues.iter().map(|q| q.to_string()).collect(), retry_after);
        options.concurrency = 4;
        options.idle_poll = Duration::from_millis(20);
        options.backoff_base = ctx.settings.backoff_base;
        let worker = Worker::new(ctx.queue.clone(), ctx.pool.clone(), Arc::new(ctx), options);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run(async move {
            let _ = rx.await;
        }));
        Self { stop: Some(tx), handle }
    }

    pub async fn stop(mut self) -> (u64, u64, u64) {
        let _ = self.stop.take().unwrap().send(());
        self.handle.await.unwrap().snapshot()
    }

    /// Like SIGKILL: jobs in flight are abandoned, reservations stay behind.
    pub fn kill(self) {
        self.handle.abort();
    }
}

/// Messages moto accepted for addresses ending in `@domain`, keyed by address.
pub async fn sent_to(domain: &str) -> HashMap<String, Vec<String>> {
    let data: Value =
        reqwest::get(format!("{}/moto-api/data.json", ses_endpoint())).await.unwrap().json().await.unwrap();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for service in data.as_object().unwrap().values() {
        for message in service.get("RawMessage").and_then(Value::as_array).into_iter().flatten() {
            // moto lists an address once from the envelope and again from the To header.
            let mut destinations: Vec<&str> =
                message["destinations"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            destinations.sort_unstable();
            destinations.dedup();
            for d in destinations {
                if d.ends_with(&format!("@{domain}")) {
                    out.entry(d.to_owned())
                        .or_default()
                        .push(message["raw_data"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    out
}

pub async fn verify_sender(address: &str) {
    let res = reqwest::Client::new()
        .post(format!("{}/v2/email/identities", ses_endpoint()))
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=x",
        )
        .json(&json!({"EmailIdentity": address}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success() || res.status() == 400, "verify {address}: {}", res.status());
}

pub fn unique() -> String {
    Uuid::now_v7().simple().to_string()[20..].to_owned()
}

/// `n` customers with e-mail addresses at `domain` and phone numbers; returns their ids.
pub async fn customers(app: &TestApp, domain: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let c = app
            .customer(
                &app.token_a,
                json!({"name": format!("Customer {i} {domain}"), "email": format!("c{i}@{domain}"), "phone": format!("+1555{:07}", i),
                       "business_context": {"company": format!("Co {i}")}}),
            )
            .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    ids
}

pub async fn email_campaign(app: &TestApp, ids: &[String]) -> String {
    email_campaign_with(
        app,
        ids,
        "<p>Hi {{ name }} of {{ company }}</p><a href=\"https://shop.example/offer?x=1\">Offer</a>",
    )
    .await
}

/// An e-mail campaign (draft) to `ids` whose template body is `html_body`.
pub async fn email_campaign_with(app: &TestApp, ids: &[String], html_body: &str) -> String {
    let t = &app.token_a;
    let (s, tpl) = app
        .send(
            "POST",
            "/api/v1/outbound/email/templates",
            Some(t),
            Some(json!({"name": "Spring", "subject": "Hello {{ first_name }}", "html_body": html_body})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tpl}");
    let (s, c) = app
        .send(
            "POST",
            "/api/v1/outbound/email/campaigns",
            Some(t),
            Some(json!({"name": "Spring sale", "template_id": tpl["data"]["id"], "customer_ids": ids})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    c["data"]["id"].as_str().unwrap().to_owned()
}

pub async fn campaign_status(app: &TestApp, id: &str) -> String {
    let (_, c) = app.get(&format!("/api/v1/outbound/campaigns/{id}"), &app.token_a).await;
    c["data"]["status"].as_str().unwrap_or_default().to_owned()
}

pub async fn recipient_statuses(app: &TestApp, id: &str) -> Vec<(String, Option<String>, String)> {
    recipient_rows(app, id, "status, provider_message_id, id::text").await
}

/// `columns` of a campaign's recipients (tenant A), in id order.
async fn recipient_rows<T>(app: &TestApp, id: &str, columns: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {columns} from outbound_campaign_recipients where campaign_id = $1::uuid order by id"
    )))
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows
}

/// Each recipient's status and error, in id order.
pub async fn recipient_errors(app: &TestApp, id: &str) -> Vec<(String, Option<String>)> {
    recipient_rows(app, id, "status, error").await
}

/// Replays a request against `upstream` and returns its answer.
pub async fn forward(req: Request<Body>, upstream: &str) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut fwd = reqwest::Client::new().request(parts.method.clone(), format!("{upstream}{}", parts.uri));
    for (k, v) in parts.headers.iter() {
        if k != "host" {
            fwd = fwd.header(k, v);
        }
    }
    let res = fwd.body(bytes).send().await.unwrap();
    (StatusCode::from_u16(res.status().as_u16()).unwrap(), res.bytes().await.unwrap()).into_response()
}

/// Forwards to moto, answering 500 to the first `fail_first` requests.
pub async fn flaky_ses(fail_first: usize) -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let upstream = ses_endpoint();
    let counter = seen.clone();
    let app = Router::new().fallback(any(move |req: Request<Body>| {
        let (counter, upstream) = (counter.clone(), upstream.clone());
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n < fail_first {
                return (StatusCode::INTERNAL_SERVER_ERROR, "{\"message\":\"internal failure\"}").into_response();
            }
            forward(req, &upstream).await
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// One request the Twilio stub received: resource, Authorization header, form.
pub type TwilioPost = (String, String, HashMap<String, String>);

/// What Twilio has on record: (resource, to, sid, from, created).
pub type TwilioRecord = (String, String, String, String, chrono::DateTime<chrono::Utc>);

/// How the Twilio stub answers the next creates (each mode counts down).
#[derive(Clone, Default)]
pub struct TwilioFaults {
    /// Created (kept on record) but answered with a body that is not JSON.
    pub bad_body: Arc<AtomicUsize>,
    /// Not created, and answered with a body that is not JSON.
    pub lost: Arc<AtomicUsize>,
}

#[derive(Clone, Default)]
pub struct TwilioStub {
    pub posts: Arc<Mutex<Vec<TwilioPost>>>,
    pub records: Arc<Mutex<Vec<TwilioRecord>>>,
    pub faults: TwilioFaults,
}

fn take(counter: &AtomicUsize) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

/// A Twilio stand-in: creates messages and calls (recording each POST), lists them as
/// Twilio's `GET …/Messages.json?To=` and `Calls.json?To=` do, and fails as told.
pub async fn twilio_stub() -> (String, TwilioStub) {
    let stub = TwilioStub::default();
    async fn create(
        State(stub): State<TwilioStub>,
        Path((account, resource)): Path<(String, String)>,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> axum::response::Response {
        let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        stub.posts.lock().unwrap().push((format!("{account}/{resource}"), auth, form.clone()));
        if take(&stub.faults.lost) {
            return (StatusCode::CREATED, "<html>gateway says hi</html>").into_response();
        }
        let prefix = if resource.starts_with("Calls") { "CA" } else { "SM" };
        let sid = format!("{prefix}{}", Uuid::now_v7().simple());
        let to = form.get("To").cloned().unwrap_or_default();
        let from = form.get("From").cloned().unwrap_or_default();
        stub.records.lock().unwrap().push((resource.clone(), to, sid.clone(), from, chrono::Utc::now()));
        if take(&stub.faults.bad_body) {
            return (StatusCode::CREATED, "{\"sid\": ").into_response();
        }
        (StatusCode::CREATED, axum::Json(json!({"sid": sid, "status": "queued"}))).into_response()
    }
    async fn list(
        State(stub): State<TwilioStub>,
        Path((_account, resource)): Path<(String, String)>,
        axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    ) -> impl IntoResponse {
        let to = q.get("To").cloned().unwrap_or_default();
        let mut found: Vec<Value> = stub
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, t, ..)| *r == resource && *t == to)
            .map(|(_, to, sid, from, created)| {
                json!({"sid": sid, "to": to, "from": from, "status": "delivered", "date_created": created.to_rfc2822()})
            })
            .collect();
        found.reverse();
        let key = if resource.starts_with("Calls") { "calls" } else { "messages" };
        axum::Json(json!({ key: found }))
    }
    let app = Router::new()
        .route("/2010-04-01/Accounts/{account}/{resource}", post(create).get(list))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), stub)
}

/// GET through the router, returning status, content type and `Location`.
pub trait OneshotGet {
    async fn oneshot_get(self, path: &str) -> (StatusCode, String, Option<String>);
}

impl OneshotGet for Router {
    async fn oneshot_get(self, path: &str) -> (StatusCode, String, Option<String>) {
        use tower::ServiceExt;
        // As a person's mail client or browser asks (a request without a user agent is
        // taken for a machine's).
        let req = Request::get(path)
            .header(
                "user-agent",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)",
            )
            .body(Body::empty())
            .unwrap();
        let res = self.oneshot(req).await.unwrap();
        let header =
            |name| res.headers().get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok()).map(str::to_owned);
        (res.status(), header("content-type").unwrap_or_default(), header("location"))
    }
}

/// Waits until the campaign completes; on time-out the failure lists where its recipients
/// stand (status, error), which is what one needs to see.
pub async fn wait_for_completion(app: &TestApp, id: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while campaign_status(app, id).await != "completed" {
        if tokio::time::Instant::now() >= deadline {
            let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
            let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
                "select status, error, count(*) from outbound_campaign_recipients where campaign_id = $1::uuid
                 group by 1, 2 order by 1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
            let sizes = app.state.queue.sizes("emails").await.unwrap();
            panic!(
                "campaign {id} is {} after {timeout:?}; recipients: {rows:?}; emails queue: {sizes:?}",
                campaign_status(app, id).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
