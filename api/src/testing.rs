//! The end-to-end tests' harness, shared by the test binaries of every crate (the
//! `testing` feature, enabled by dev-dependencies only): a fresh database per test (cloned
//! from the migrated template), a real Redis, and the full router driven in-process.

use crate::{AppState, router};
use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use fibonacco_platform::{
    Config, TenantId,
    auth::{self, Ability},
    cache,
    domain::Slug,
    tenancy,
    testing::{self, TestDatabase},
};
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub db: TestDatabase,
    pub router: Router,
    pub state: AppState,
    pub tenant_a: TenantId,
    pub token_a: String,
    pub tenant_b: TenantId,
    pub token_b: String,
}

/// The Stripe webhook secret the test app is configured with.
pub const STRIPE_SECRET: &str = "whsec_test_secret";
/// The Twilio auth token callbacks are signed with, and the public URL Twilio calls.
/// The API key the test app calls localstripe with.
pub const STRIPE_API_KEY: &str = "sk_test_local_only";

/// localstripe's address (`STRIPE_API_BASE`, written to .stack/env by scripts/stack.sh).
pub fn stripe_api_base() -> String {
    std::env::var("STRIPE_API_BASE").unwrap_or_else(|_| "http://127.0.0.1:58420".into())
}

/// Serves `router` on a loopback port (for callers that must reach the app over HTTP,
/// such as localstripe's webhooks) and returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A form POST to localstripe as the test app's account (creating a test card, paying an
/// invoice: what a payer or Stripe's clock does).
pub async fn localstripe(path: &str, form: &[(&str, &str)]) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}{path}", stripe_api_base()))
        .bearer_auth(STRIPE_API_KEY)
        .form(form)
        .send()
        .await
        .expect("localstripe is up (scripts/stack.sh up)");
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "localstripe {path}: {status} {body}");
    body
}

/// A PaymentMethod for a test card number (4242424242424242 pays, 4000000000000341 is
/// declined when charged).
pub async fn stripe_card(number: &str) -> String {
    let pm = localstripe(
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    pm["id"].as_str().expect("a PaymentMethod id").to_owned()
}

impl TestApp {
    /// Serves the app and has localstripe send its webhooks to it (signed with the test
    /// webhook secret), under `name`: a later registration under the same name replaces
    /// this one, so a name per test keeps localstripe's list short.
    pub async fn receive_stripe_webhooks(&self, name: &str) {
        let base = serve(self.router.clone()).await;
        let res = reqwest::Client::new()
            .post(format!("{}/_config/webhooks/{name}", stripe_api_base()))
            .form(&[("url", format!("{base}/api/stripe/webhook")), ("secret", STRIPE_SECRET.into())])
            .send()
            .await
            .expect("localstripe is up (scripts/stack.sh up)");
        assert!(res.status().is_success(), "registering the webhook: {}", res.status());
    }
}

pub const TWILIO_TOKEN: &str = "twilio-test-auth-token";
pub const APP_URL: &str = "https://fib.test";

pub fn test_config(database_url: &str) -> Config {
    let db = database_url.to_owned();
    let redis = testing::redis_url();
    // Each test's database has a unique name; its queues get the same isolation.
    let prefix = format!("q-{}", database_url.rsplit('/').next().unwrap_or("test"));
    Config::from_lookup(move |k| match k {
        "QUEUE_PREFIX" => Some(prefix.clone()),
        "TWILIO_AUTH_TOKEN" => Some(TWILIO_TOKEN.into()),
        "APP_URL" => Some(APP_URL.into()),
        "DATABASE_URL" => Some(db.clone()),
        "REDIS_URL" => Some(redis.clone()),
        "APP_PORT" => Some("0".into()),
        "PAGINATION_MAX_PER_PAGE" => Some("50".into()),
        "AUTH_CACHE_TTL_SECS" => Some("1".into()),
        "STRIPE_WEBHOOK_SECRET" => Some(STRIPE_SECRET.into()),
        // localstripe from scripts/stack.sh (any `sk_` key opens it).
        "STRIPE_SECRET" => Some(STRIPE_API_KEY.into()),
        "STRIPE_API_BASE" => Some(stripe_api_base()),
        // The tests' generation routes run offline on the demo templates; the refusal
        // without them has its own test.
        "AI_LOCAL_TEMPLATES" => Some("true".into()),
        _ => None,
    })
    .expect("test config is valid")
}

impl TestApp {
    pub async fn spawn() -> Self {
        fibonacco_platform::install_tls_provider();
        let db = TestDatabase::create().await;
        let config = test_config(&db.url);
        let redis = cache::connect(config.redis_url.expose()).await.expect("redis is up (scripts/stack.sh up)");
        let mut state = AppState::new(db.pool.clone(), redis, config);
        // Tests never reach a real LLM, whatever the environment says.
        state.llm = std::sync::Arc::new(fibonacco_platform::llm::LlmProvider::Local);
        let tenant_a = tenancy::create(&db.pool, "Tenant A", &Slug::parse("tenant-a").unwrap()).await.unwrap().id;
        let tenant_b = tenancy::create(&db.pool, "Tenant B", &Slug::parse("tenant-b").unwrap()).await.unwrap().id;
        let token_a = auth::issue_token(&db.pool, tenant_a, "a", &[], None).await.unwrap().plain_text;
        let token_b = auth::issue_token(&db.pool, tenant_b, "b", &[], None).await.unwrap().plain_text;
        Self { router: router(state.clone()), state, db, tenant_a, token_a, tenant_b, token_b }
    }

    /// The same app with another LLM provider (e.g. an HTTP stub of OpenAI).
    pub fn with_llm(&self, llm: fibonacco_platform::llm::LlmProvider) -> Router {
        let mut state = self.state.clone();
        state.llm = std::sync::Arc::new(llm);
        router(state)
    }

    /// The same app with its state changed (settings, provider), e.g.
    /// `app.with(|s| Arc::make_mut(&mut s.config).ai.public_knowledge = true)`.
    pub fn with(&self, change: impl FnOnce(&mut AppState)) -> Router {
        let mut state = self.state.clone();
        change(&mut state);
        router(state)
    }

    pub async fn token_with(
        &self,
        tenant: TenantId,
        abilities: &[&str],
        expires_in: Option<chrono::Duration>,
    ) -> String {
        let abilities: Vec<Ability> = abilities.iter().map(|a| Ability::parse(a).unwrap()).collect();
        auth::issue_token(&self.db.pool, tenant, "scoped", &abilities, expires_in).await.unwrap().plain_text
    }

    /// Sends a request through the whole middleware stack and returns status and JSON body
    /// (`Value::Null` for an empty or non-JSON body).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.raw(req).await
    }

    pub async fn raw(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send("GET", path, Some(token), None).await
    }

    /// How many times `index` has been scanned in this test's database, as far as the
    /// shared statistics know.
    pub async fn index_scans(&self, index: &str) -> i64 {
        sqlx::query_scalar("select coalesce(sum(idx_scan), 0)::int8 from pg_stat_user_indexes where indexrelname = $1")
            .bind(index)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// How many heap blocks of `table` have been read (from shared buffers or not) in this
    /// test's database, as far as the shared statistics know.
    pub async fn heap_blocks_read(&self, table: &str) -> i64 {
        sqlx::query_scalar(
            "select (coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0))::int8
             from pg_statio_user_tables where relname = $1",
        )
        .bind(table)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// Fails unless `index` is scanned more than `before` times within 20 s: a backend
    /// hands its statistics to the shared counters only about a second after it goes idle.
    pub async fn assert_index_scanned_since(&self, index: &str, before: i64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let now = self.index_scans(index).await;
            if now > before {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{index} was never scanned (still {now} scans)");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Creates a customer as tenant A (or B) and returns its JSON.
    pub async fn customer(&self, token: &str, body: Value) -> Value {
        let (status, json) = self.send("POST", "/api/v1/customers", Some(token), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json["data"].clone()
    }
}

/// Sends `method path` with `token` (and a JSON `body`) through `router` (an app from
/// [`TestApp::with`] or [`TestApp::with_llm`]); status and JSON body (`Null` if none).
pub async fn call(router: &Router, token: &str, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {token}"));
    let req = match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A Twilio-style form POST to `path`, signed the way Twilio signs it.
pub fn twilio_callback(path: &str, params: &[(&str, &str)], token: &str) -> Request<Body> {
    let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sig = fibonacco_delivery::providers::twilio::signature(token, &format!("{APP_URL}{path}"), &owned);
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(Body::from(serde_urlencoded::to_string(params).unwrap()))
        .unwrap()
}

/// The error code of an error envelope.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error envelope>")
}

/// An OpenAI-compatible provider that answers with what it was given, so a test checks
/// that a prompt carries what it should rather than what a canned template says. The
/// answer is a numbered list, one line per message (`role: content`, line breaks as
/// spaces); when the system message asks to "Suggest N" items, it is N numbered ideas
/// built from the user's message instead. Returns the provider and the requests seen.
pub async fn echo_llm() -> (fibonacco_platform::llm::LlmProvider, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::{Json, extract::State, routing::post};
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;
    async fn answer(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
        seen.lock().unwrap_or_else(|p| p.into_inner()).push(body.clone());
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let text = |m: &Value| m["content"].as_str().unwrap_or_default().replace('\n', " ");
        let role_text = |role: &str| messages.iter().find(|m| m["role"] == role).map(text).unwrap_or_default();
        let asked: Option<usize> = role_text("system")
            .split("Suggest ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        let content = match asked {
            Some(n) => {
                (1..=n.min(50)).map(|i| format!("{i}. Idea {i}: {}", role_text("user"))).collect::<Vec<_>>().join("\n")
            }
            None => {
                let lines: Vec<String> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| format!("{}. {}: {}", i + 1, m["role"].as_str().unwrap_or_default(), text(m)))
                    .collect();
                format!("Echo of the prompt\n{}", lines.join("\n"))
            }
        };
        Json(
            serde_json::json!({"model": "echo-1", "choices": [{"message": {"role": "assistant", "content": content}}]}),
        )
    }
    let seen: Seen = Default::default();
    let app = Router::new().route("/v1/chat/completions", post(answer)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = format!("http://{addr}/v1");
    let provider = fibonacco_platform::llm::LlmProvider::from_lookup(move |k| match k {
        "OPENAI_API_KEY" => Some("sk-echo".into()),
        "OPENAI_BASE_URL" => Some(base.clone()),
        _ => None,
    });
    (provider, seen)
}

/// A router whose API accepts webhook endpoints on loopback (the tests' receivers).
pub fn with_private_webhook_targets(app: &TestApp) -> Router {
    app.with(|s| {
        let mut config = (*s.config).clone();
        config.webhook_private_targets = true;
        s.config = std::sync::Arc::new(config);
    })
}

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    pub path: String,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
}

impl ReceivedWebhook {
    /// Verifies the signature the way a receiver following Standard Webhooks does, with
    /// its own HMAC (not the platform's signing code): `v1,` + base64(HMAC-SHA256(key,
    /// `id.timestamp.body`)), the key being the secret's base64 after `whsec_`.
    pub fn verify(&self, secret: &str) -> bool {
        use base64::{Engine, engine::general_purpose::STANDARD};
        use hmac::{Hmac, Mac};
        let Some(key) = secret.strip_prefix("whsec_").and_then(|k| STANDARD.decode(k).ok()) else { return false };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{}.{}.", self.id, self.timestamp).as_bytes());
        mac.update(&self.body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        let fresh = self.timestamp.parse::<i64>().is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
        fresh && self.signature.split(' ').any(|s| s == expected)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on loopback for webhook tests. Paths: `/ok` (204), `/fail-once/{k}`
/// (500 the first time per `k`, then 200), `/always-500` (500 with a 64 KiB body),
/// `/slow` (answers after 10 s), `/redirect` (302 to `/ok`). Every request is recorded.
pub struct WebhookReceiver {
    pub base: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<ReceivedWebhook>>>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        use axum::{extract::State, response::IntoResponse, routing::any};
        type Log = std::sync::Arc<std::sync::Mutex<Vec<ReceivedWebhook>>>;
        async fn record(State(log): State<Log>, req: Request<Body>) -> impl IntoResponse {
            let path = req.uri().path().to_owned();
            let (id, timestamp, signature) = {
                let header =
                    |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"))
            };
            let first = {
                let log = log.lock().unwrap();
                !log.iter().any(|r| r.path == path)
            };
            if path == "/slow" {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default().to_vec();
            log.lock().unwrap().push(ReceivedWebhook { path: path.clone(), id, timestamp, signature, body });
            match path.as_str() {
                "/ok" => StatusCode::NO_CONTENT.into_response(),
                p if p.starts_with("/fail-once/") && first => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response()
                }
                p if p.starts_with("/fail-once/") => StatusCode::OK.into_response(),
                "/always-500" => (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(64 * 1024)).into_response(),
                "/redirect" => (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response(),
                _ => StatusCode::OK.into_response(),
            }
        }
        let received: Log = Default::default();
        let app = Router::new().fallback(any(record)).with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, received }
    }

    pub fn got(&self, path: &str) -> Vec<ReceivedWebhook> {
        self.received.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}
