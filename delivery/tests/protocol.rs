//! The send protocol's fault matrix: each case ends with exactly one message per recipient
//! at the emulator or stub, or the recipient visibly `unknown`, and never a second message.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
    response::IntoResponse,
    routing::any,
};
use fibonacco_api::testing::{APP_URL, TestApp};
use fibonacco_delivery::{
    links::{Links, RecipientRef},
    reconcile,
    scheduler::{Scheduler, tasks},
};
use fibonacco_platform::{queue::failed, testing::wait_for};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::support::*;

/// An e-mail campaign of `n` recipients at a fresh domain, started; returns (domain,
/// sender, campaign id).
async fn started_campaign(app: &TestApp, n: usize, tag: &str) -> (String, String, String) {
    let domain = format!("{}.{tag}.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(app, &domain, n).await;
    let id = email_campaign(app, &ids).await;
    let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(&app.token_a), None).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    (domain, sender, id)
}

fn messages(mail: &std::collections::HashMap<String, Vec<String>>) -> usize {
    mail.values().map(Vec::len).sum()
}

/// Forwards to moto (which accepts the message), then answers only after `delay`.
async fn slow_ses(delay: Duration) -> String {
    let (upstream, _) = flaky_ses(0).await;
    let app = Router::new().fallback(any(move |req: Request<Body>| {
        let upstream = upstream.clone();
        async move {
            let res = forward(req, &upstream).await;
            tokio::time::sleep(delay).await;
            res
        }
    }));
    serve(app).await
}

/// Forwards to moto (which accepts the message) and never answers.
async fn silent_ses(accepted: Arc<AtomicUsize>) -> String {
    let (upstream, _) = flaky_ses(0).await;
    let app = Router::new().fallback(any(move |req: Request<Body>| {
        let (upstream, accepted) = (upstream.clone(), accepted.clone());
        async move {
            let _ = forward(req, &upstream).await;
            accepted.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
    }));
    serve(app).await
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Reads one HTTP request off a raw socket, forwards it to moto (which accepts the
/// message), then drops the connection without a byte of answer.
async fn dropping_ses() -> String {
    let (upstream, _) = flaky_ses(0).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0usize);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.lines();
                let target = lines.next().unwrap_or_default().split(' ').nth(1).unwrap_or("/").to_owned();
                let mut req = reqwest::Client::new().post(format!("{upstream}{target}"));
                for line in lines {
                    if let Some((k, v)) = line.split_once(':')
                        && !k.eq_ignore_ascii_case("host")
                        && !k.eq_ignore_ascii_case("content-length")
                    {
                        req = req.header(k.trim(), v.trim());
                    }
                }
                let _ = req.body(buf[head_end..].to_vec()).send().await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// A TCP proxy to Postgres that can be cut (every connection dropped at once, new ones
/// refused) and restored: "Postgres refused" between two steps of a send.
struct PgProxy {
    url: String,
    down: Arc<AtomicBool>,
    cuts: tokio::sync::watch::Sender<usize>,
}

impl PgProxy {
    async fn start(database_url: &str) -> Self {
        let target: url_parts::Target = url_parts::parse(database_url);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let (cuts, _) = tokio::sync::watch::channel(0usize);
        let (d, c) = (down.clone(), cuts.clone());
        let upstream = format!("{}:{}", target.host, target.port);
        tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (upstream, mut cut) = (upstream.clone(), c.subscribe());
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        let url = url_parts::with_port(database_url, port);
        Self { url, down, cuts }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

mod url_parts {
    pub struct Target {
        pub host: String,
        pub port: u16,
    }

    /// Host and port of `postgres://user:pass@host:port/db`.
    pub fn parse(url: &str) -> Target {
        let after_at = url.rsplit_once('@').map(|(_, r)| r).unwrap_or(url);
        let authority = after_at.split('/').next().unwrap_or_default();
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "5432"));
        Target { host: host.to_owned(), port: port.parse().unwrap_or(5432) }
    }

    pub fn with_port(url: &str, port: u16) -> String {
        let t = parse(url);
        url.replacen(&format!("{}:{}", t.host, t.port), &format!("127.0.0.1:{port}"), 1)
    }
}

#[tokio::test]
async fn a_job_timeout_after_the_provider_accepted_sends_once() {
    // The new user's report: SES answering after 6 s with retry_after 5 s gave 5 copies.
    let app = TestApp::spawn().await;
    let (domain, sender, id) = started_campaign(&app, 1, "slowses").await;
    let retry_after = Duration::from_secs(2);
    let endpoint = slow_ses(Duration::from_secs(3)).await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender), ("SES_ENDPOINT", endpoint)], retry_after);
    let worker = RunningWorker::start(ctx, &["emails"], retry_after);
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    // Let every retry of the timed-out job run.
    tokio::time::sleep(Duration::from_secs(4)).await;
    worker.stop().await;
    assert_eq!(messages(&sent_to(&domain).await), 1, "one message, however often the job ran");
    let r = recipient_statuses(&app, &id).await;
    assert_eq!((r[0].0.as_str(), r[0].1.is_some()), ("sent", true), "the late answer was recorded: {r:?}");
}

#[tokio::test]
async fn ses_accepting_then_dropping_the_connection_leaves_the_recipient_unknown() {
    let app = TestApp::spawn().await;
    let (domain, sender, id) = started_campaign(&app, 1, "dropped").await;
    let endpoint = dropping_ses().await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender), ("SES_ENDPOINT", endpoint)], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, retried, failed_jobs) = worker.stop().await;
    assert_eq!((retried, failed_jobs), (0, 0), "an ambiguous outcome is never retried");
    assert_eq!(messages(&sent_to(&domain).await), 1);
    assert_eq!(recipient_statuses(&app, &id).await[0].0, "unknown");
    let (_, a) = app.get(&format!("/api/v1/outbound/campaigns/{id}/analytics"), &app.token_a).await;
    assert_eq!((a["data"]["unknown"].as_i64(), a["data"]["sent"].as_i64()), (Some(1), Some(0)), "{a}");
}

#[tokio::test]
async fn postgres_refused_between_accept_and_record_loses_no_outcome() {
    let app = TestApp::spawn().await;
    let (domain, sender, id) = started_campaign(&app, 1, "pgdown").await;
    let proxy = Arc::new(PgProxy::start(&app.db.url).await);
    let pool = fibonacco_platform::db::connect_url(&proxy.url, 4, Duration::from_secs(2)).await.unwrap();
    // SES: the moment the message is accepted, Postgres goes away for 1.5 s.
    let (upstream, _) = flaky_ses(0).await;
    let p = proxy.clone();
    let endpoint = serve(Router::new().fallback(any(move |req: Request<Body>| {
        let (upstream, p) = (upstream.clone(), p.clone());
        async move {
            let res = forward(req, &upstream).await;
            p.cut();
            // Every pooled connection is gone before SES's answer reaches the worker.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let p2 = p.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                p2.restore();
            });
            res
        }
    })))
    .await;
    let mut ctx = job_context(&app, &[("MAIL_FROM", sender), ("SES_ENDPOINT", endpoint)], Duration::from_secs(30));
    ctx.pool = pool;
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    // Any retry of the job runs before the check.
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.stop().await;
    assert_eq!(messages(&sent_to(&domain).await), 1);
    let r = recipient_statuses(&app, &id).await;
    assert_eq!((r[0].0.as_str(), r[0].1.is_some()), ("sent", true), "the outcome write was retried: {r:?}");
}

#[tokio::test]
async fn a_worker_killed_after_accept_never_sends_twice_and_the_sweep_says_unknown() {
    let app = TestApp::spawn().await;
    let (domain, sender, id) = started_campaign(&app, 1, "killed").await;
    let retry_after = Duration::from_secs(2);
    let accepted = Arc::new(AtomicUsize::new(0));
    let endpoint = silent_ses(accepted.clone()).await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender.clone()), ("SES_ENDPOINT", endpoint)], retry_after);
    let worker = RunningWorker::start(ctx.clone(), &["emails"], retry_after);
    wait_for("SES to accept the message", Duration::from_secs(30), || async { accepted.load(Ordering::SeqCst) == 1 })
        .await;
    worker.kill();
    // A new worker gets the redelivered job: the recipient is still claimed, nothing sent.
    let ctx2 = job_context(&app, &[("MAIL_FROM", sender)], retry_after);
    let worker = RunningWorker::start(ctx2, &["emails"], retry_after);
    wait_for("every redelivered job to be done", Duration::from_secs(30), || async {
        app.state.queue.sizes("emails").await.unwrap() == Default::default()
    })
    .await;
    assert_eq!(recipient_statuses(&app, &id).await[0].0, "sending");
    // The sweep: an attempt past its expiry is unknown, and the campaign can complete.
    let mut sweep = Scheduler::new(app.db.pool.clone(), app.state.queue.clone()).with_retry_after(retry_after);
    sweep.attempt_expiry = Duration::from_secs(1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tasks::run(&sweep, "campaigns:dispatch").await.unwrap();
    assert_eq!(recipient_statuses(&app, &id).await[0].0, "unknown");
    assert_eq!(campaign_status(&app, &id).await, "completed");
    worker.stop().await;
    assert_eq!(messages(&sent_to(&domain).await), 1, "the accepted message, and no second one");
}

#[tokio::test]
async fn a_job_retried_from_failed_jobs_after_its_send_went_out_sends_nothing() {
    let app = TestApp::spawn().await;
    let (domain, sender, id) = started_campaign(&app, 1, "retried").await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender)], Duration::from_secs(30));
    // Run the dispatch and the send by hand, keeping the send's payload.
    use fibonacco_platform::queue::Handler;
    let dispatch = app.state.queue.pop("emails", Duration::from_secs(30)).await.unwrap().unwrap().unwrap();
    ctx.handle(&dispatch).await.unwrap();
    app.state.queue.ack(&dispatch).await.unwrap();
    let send = app.state.queue.pop("emails", Duration::from_secs(30)).await.unwrap().unwrap().unwrap();
    ctx.handle(&send).await.unwrap();
    app.state.queue.ack(&send).await.unwrap();
    assert_eq!(messages(&sent_to(&domain).await), 1);
    // An operator puts the same job back (`queue retry`), e.g. after a spurious failure.
    let payload = serde_json::to_value(&send.payload).unwrap();
    failed::record(&app.db.pool, send.payload.uuid, "emails", payload, "spurious").await.unwrap();
    failed::retry(&app.db.pool, &app.state.queue, Some(send.payload.uuid)).await.unwrap();
    let again = app.state.queue.pop("emails", Duration::from_secs(30)).await.unwrap().unwrap().unwrap();
    assert_eq!(again.payload.uuid, send.payload.uuid);
    ctx.handle(&again).await.unwrap();
    assert_eq!(messages(&sent_to(&domain).await), 1, "the retried job sent nothing");
    assert_eq!(recipient_statuses(&app, &id).await[0].0, "sent");
}

#[tokio::test]
async fn twilio_success_with_a_bad_body_is_unknown_until_reconciled() {
    let app = TestApp::spawn().await;
    let (twilio, stub) = twilio_stub().await;
    let t = &app.token_a;
    let domain = format!("{}.sms.example", unique());
    let ids = customers(&app, &domain, 2).await;
    let (_, tpl) = app
        .send(
            "POST",
            "/api/v1/outbound/sms/templates",
            Some(t),
            Some(json!({"name": "S", "body": "Hi {{ first_name }}"})),
        )
        .await;
    let (_, c) = app
        .send(
            "POST",
            "/api/v1/outbound/sms/campaigns",
            Some(t),
            Some(json!({"name": "SMS", "template_id": tpl["data"]["id"], "customer_ids": ids})),
        )
        .await;
    let id = c["data"]["id"].as_str().unwrap().to_owned();
    app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(t), None).await;
    // One message is created but answered with a body that is not JSON; the other never
    // reaches Twilio's records (answered oddly and not created).
    stub.faults.bad_body.store(1, Ordering::SeqCst);
    stub.faults.lost.store(1, Ordering::SeqCst);
    let over = [
        ("TWILIO_ACCOUNT_SID", "AC1".to_owned()),
        ("TWILIO_AUTH_TOKEN", "tok".to_owned()),
        ("TWILIO_FROM", "+15550000000".to_owned()),
        ("TWILIO_BASE_URL", twilio.clone()),
    ];
    let ctx = job_context(&app, &over, Duration::from_secs(30));
    let worker = RunningWorker::start(ctx.clone(), &["sms"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    let (_, retried, _) = worker.stop().await;
    assert_eq!(retried, 0, "never retried: a retry could send twice");
    let statuses: Vec<String> = recipient_statuses(&app, &id).await.into_iter().map(|r| r.0).collect();
    assert_eq!(statuses, vec!["unknown", "unknown"]);
    assert_eq!(stub.posts.lock().unwrap().len(), 2);

    // Reconcile: the one Twilio has is settled with its sid; the one it never created is
    // sent again, once.
    let reports =
        reconcile::reconcile(&app.db.pool, &app.state.queue, &ctx.providers, Some(id.parse().unwrap())).await.unwrap();
    assert_eq!((reports[0].settled, reports[0].released, reports[0].unknown), (1, 1, 0), "{reports:?}");
    let worker = RunningWorker::start(ctx, &["sms"], Duration::from_secs(30));
    wait_for("the released recipient to be sent", Duration::from_secs(30), || async {
        recipient_statuses(&app, &id).await.iter().all(|r| r.0 == "sent" || r.0 == "delivered")
    })
    .await;
    worker.stop().await;
    let records = stub.records.lock().unwrap().clone();
    let recipients: HashSet<String> = records.iter().map(|r| r.1.clone()).collect();
    assert_eq!((records.len(), recipients.len()), (2, 2), "one message per recipient at Twilio");
    let sids: HashSet<String> = recipient_statuses(&app, &id).await.into_iter().filter_map(|r| r.1).collect();
    let known: HashSet<String> = records.iter().map(|r| r.2.clone()).collect();
    assert_eq!(sids, known, "each recipient carries its own message's sid");
}

#[tokio::test]
async fn losing_the_queue_mid_campaign_loses_and_doubles_nothing() {
    let app = TestApp::spawn().await;
    let (domain, sender, id) = started_campaign(&app, 500, "flushed").await;
    let retry_after = Duration::from_secs(2);
    let ctx = job_context(&app, &[("MAIL_FROM", sender.clone())], retry_after);
    let worker = RunningWorker::start(ctx.clone(), &["emails"], retry_after);
    wait_for("some sends", Duration::from_secs(60), || async { messages(&sent_to(&domain).await) >= 50 }).await;
    // What FLUSHALL does to this test's queues (the Redis is shared with other tests, so
    // only this test's keys go): every job waiting, delayed or reserved is gone.
    let mut redis = app.state.queue.connection();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:*", app.state.queue.prefix())).query_async(&mut redis).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
    }
    let sweep = Scheduler::new(app.db.pool.clone(), app.state.queue.clone()).with_retry_after(retry_after);
    wait_for("the campaign to complete", Duration::from_secs(120), || async {
        tasks::run(&sweep, "campaigns:dispatch").await.unwrap();
        campaign_status(&app, &id).await == "completed"
    })
    .await;
    worker.stop().await;
    let mail = sent_to(&domain).await;
    assert_eq!(mail.len(), 500, "nothing lost");
    assert!(mail.values().all(|m| m.len() == 1), "nothing doubled");
    let statuses = recipient_statuses(&app, &id).await;
    assert!(statuses.iter().all(|r| r.0 == "sent"), "{statuses:?}");
}

#[tokio::test]
async fn injected_content_is_refused_or_neutralised() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let domain = format!("{}.inject.example", unique());
    let evil = format!("{}.evil.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    // A merge value that would add a header once merged into the subject.
    let c = app
        .customer(
            t,
            json!({"name": "Mallory", "email": format!("m@{domain}"),
                   "business_context": {"company": format!("Acme\r\nBcc: everyone@{evil}")}}),
        )
        .await;
    let (_, tpl) = app
        .send(
            "POST",
            "/api/v1/outbound/email/templates",
            Some(t),
            Some(json!({"name": "T", "subject": "News for {{ company }}", "html_body": "<p>Hi</p>"})),
        )
        .await;
    let (_, camp) = app
        .send(
            "POST",
            "/api/v1/outbound/email/campaigns",
            Some(t),
            Some(json!({"name": "C", "template_id": tpl["data"]["id"], "customer_ids": [c["id"]]})),
        )
        .await;
    let id = camp["data"]["id"].as_str().unwrap().to_owned();
    app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(t), None).await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender)], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    worker.stop().await;
    assert!(sent_to(&domain).await.is_empty() && sent_to(&evil).await.is_empty(), "nothing went out");
    let (_, r) = app.get(&format!("/api/v1/outbound/campaigns/{id}/recipients"), t).await;
    assert_eq!(r["data"][0]["status"], "failed");
    assert!(r["data"][0]["error"].as_str().unwrap().contains("carriage return"), "{r}");

    // A click link validly signed for a real recipient, to a URL its template does not
    // carry, redirects nowhere; nor does one for a recipient that does not exist.
    let recipient: Uuid = r["data"][0]["id"].as_str().unwrap().parse().unwrap();
    let key = app.state.config.app_key.expose().to_owned();
    let links = Links::new(APP_URL, &key, RecipientRef { tenant: app.tenant_a, recipient });
    let path = |url: String| url.trim_start_matches(APP_URL).to_owned();
    let res = app.router.clone().oneshot_get(&path(links.click("https://evil.example/login"))).await;
    assert_eq!((res.0, res.2), (StatusCode::NOT_FOUND, None), "no redirect to a URL the template lacks");
    let ghost = Links::new(APP_URL, &key, RecipientRef { tenant: app.tenant_a, recipient: Uuid::now_v7() });
    let res = app.router.clone().oneshot_get(&path(ghost.click("https://shop.example/offer?x=1"))).await;
    assert_eq!((res.0, res.2), (StatusCode::NOT_FOUND, None), "no redirect for a recipient that does not exist");
}

/// The one-statement claim: taken once, never again while live, only for a recipient of
/// the campaign the job names and only while that campaign runs.
#[tokio::test]
async fn a_claim_is_taken_once_and_only_for_its_own_running_campaign() {
    use fibonacco_delivery::campaigns::store;
    let app = TestApp::spawn().await;
    let domain = format!("{}.claim.example", unique());
    let ids = customers(&app, &domain, 1).await;
    let (first, other) = (email_campaign(&app, &ids).await, email_campaign(&app, &ids).await);
    for id in [&first, &other] {
        let (s, j) =
            app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(&app.token_a), None).await;
        assert_eq!(s, StatusCode::OK, "{j}");
    }
    let (first, other) = (uuid::Uuid::parse_str(&first).unwrap(), uuid::Uuid::parse_str(&other).unwrap());
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let recipient: uuid::Uuid =
        sqlx::query_scalar("select id from outbound_campaign_recipients where campaign_id = $1")
            .bind(first)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let t = app.tenant_a;
    macro_rules! claim {
        ($campaign:expr) => {
            store::claim_sends(&mut tx, t, $campaign, &[recipient], uuid::Uuid::now_v7()).await.unwrap()
        };
    }
    let wrong_campaign = claim!(other);
    assert_eq!(wrong_campaign.len(), 1, "one row: the campaign, nothing claimed");
    assert_eq!(wrong_campaign[0].customer_id, None, "another campaign's job cannot claim it");
    let claimed = claim!(first);
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].campaign_status.as_str(), claimed[0].customer_id.is_some()), ("running", true));
    assert_eq!(claimed[0].recipient_id, Some(recipient));
    assert_eq!(claimed[0].email.as_deref().map(|e| e.ends_with(&domain)), Some(true), "the customer comes with it");
    assert_eq!(claim!(first)[0].customer_id, None, "a live claim is never taken again");
    assert!(claim!(uuid::Uuid::now_v7()).is_empty(), "no campaign, nothing");
    tx.rollback().await.unwrap();
}

/// One send job names many recipients: each ends on its own (sent, suppressed, failed with
/// its reason), the job waits in `failed_jobs` saying how many failed, and its retry sends
/// nothing a second time.
#[tokio::test]
async fn recipients_of_one_send_job_end_each_on_their_own() {
    let app = TestApp::spawn().await;
    let domain = format!("{}.batch.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let mut ids = customers(&app, &domain, 3).await;
    let bare = app.customer(&app.token_a, json!({"name": "No Mail", "phone": "+15559990001"})).await;
    ids.push(bare["id"].as_str().unwrap().to_owned());
    let t = Some(app.token_a.as_str());
    let (s, r) = app
        .send(
            "POST",
            "/api/v1/outbound/suppressions",
            t,
            Some(json!({"channel": "email", "target": format!("c1@{domain}")})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = email_campaign(&app, &ids).await;
    let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), t, None).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    let ctx = job_context(&app, &[("MAIL_FROM", sender)], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx.clone(), &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    worker.stop().await;

    let sent_once = |mail: &std::collections::HashMap<String, Vec<String>>| {
        let mut to: Vec<String> = mail.keys().cloned().collect();
        to.sort();
        (to, messages(mail))
    };
    let expected = (vec![format!("c0@{domain}"), format!("c2@{domain}")], 2);
    assert_eq!(sent_once(&sent_to(&domain).await), expected);
    let mut ends: Vec<(String, Option<String>)> =
        recipient_errors(&app, &id).await.into_iter().filter(|(s, _)| s != "sent").collect();
    ends.sort();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(ends[0].1.as_deref().is_some_and(|e| e.contains("no e-mail address")), "{ends:?}");
    assert_eq!(ends[1], ("failed".to_owned(), Some("suppressed (manual)".to_owned())), "{ends:?}");
    let ours = |jobs: Vec<failed::FailedJob>| {
        jobs.into_iter().filter(|j| j.payload["data"]["campaign_id"] == json!(id)).collect::<Vec<_>>()
    };
    let jobs = ours(failed::list(&app.db.pool).await.unwrap());
    assert_eq!(jobs.len(), 1, "one job for the four recipients");
    assert!(jobs[0].exception.contains("1 of 3 recipients failed"), "{}", jobs[0].exception);

    // `queue retry`: what was sent stays sent once; the failures fail again, alone.
    failed::retry(&app.db.pool, &app.state.queue, Some(jobs[0].uuid)).await.unwrap();
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for("the retried job to fail again", Duration::from_secs(30), || async {
        !ours(failed::list(&app.db.pool).await.unwrap()).is_empty()
    })
    .await;
    worker.stop().await;
    assert_eq!(sent_once(&sent_to(&domain).await), expected, "nothing sent twice");
}

/// A frequency cap holds across two campaigns started together: each customer gets one
/// e-mail, the other campaign's recipients end `failed` with the cap as the reason; once
/// the cap is removed a third campaign reaches everyone.
#[tokio::test]
async fn a_frequency_cap_holds_across_two_overlapping_campaigns() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    for (body, status) in [
        (json!({"max_messages": 0, "window_hours": 24}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"max_messages": 1}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"max_messages": 1, "window_hours": 24}), StatusCode::OK),
    ] {
        let (s, r) = app.send("PUT", "/api/v1/outbound/contact-policy/email", t, Some(body)).await;
        assert_eq!(s, status, "{r}");
    }
    let (s, _) = app
        .send("PUT", "/api/v1/outbound/contact-policy/fax", t, Some(json!({"max_messages": 1, "window_hours": 1})))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, caps) = app.get("/api/v1/outbound/contact-policy", &app.token_b).await;
    assert_eq!(caps["data"], json!([]), "another tenant's caps are its own");

    let domain = format!("{}.capped.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 4).await;
    let (first, second) = (email_campaign(&app, &ids).await, email_campaign(&app, &ids).await);
    for id in [&first, &second] {
        let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), t, None).await;
        assert_eq!(s, StatusCode::OK, "{j}");
    }
    let ctx = job_context(&app, &[("MAIL_FROM", sender), ("SEND_BATCH_SIZE", "2".into())], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx.clone(), &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &first, Duration::from_secs(60)).await;
    wait_for_completion(&app, &second, Duration::from_secs(60)).await;
    worker.stop().await;
    let mail = sent_to(&domain).await;
    assert_eq!((mail.len(), messages(&mail)), (4, 4), "one message per customer across both campaigns");
    let mut ends: Vec<(String, Option<String>)> = recipient_errors(&app, &first).await;
    ends.extend(recipient_errors(&app, &second).await);
    assert_eq!(ends.iter().filter(|(s, _)| s == "sent").count(), 4, "{ends:?}");
    let capped: Vec<_> = ends.iter().filter(|(s, _)| s == "failed").collect();
    assert_eq!(capped.len(), 4, "{ends:?}");
    assert!(
        capped
            .iter()
            .all(|(_, e)| e.as_deref() == Some("frequency cap: at most 1 email message per 24 hours to one customer")),
        "{ends:?}"
    );

    let (s, _) = app.send("DELETE", "/api/v1/outbound/contact-policy/email", t, None).await;
    assert_eq!(s, StatusCode::OK);
    let third = email_campaign(&app, &ids).await;
    app.send("POST", &format!("/api/v1/outbound/campaigns/{third}/start"), t, None).await;
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &third, Duration::from_secs(60)).await;
    worker.stop().await;
    assert_eq!(messages(&sent_to(&domain).await), 8, "without a cap everyone gets the third campaign");
}

/// A channel that requires consent sends only to customers who opted in; an opt-out and a
/// customer never asked both end `failed` with the reason.
#[tokio::test]
async fn a_channel_that_requires_consent_reaches_only_those_who_opted_in() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let (s, r) =
        app.send("PUT", "/api/v1/outbound/contact-policy/email", t, Some(json!({"require_consent": true}))).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((r["data"]["require_consent"].clone(), r["data"]["max_messages"].clone()), (json!(true), json!(null)));
    let (s, _) = app.send("PUT", "/api/v1/outbound/contact-policy/email", t, Some(json!({}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "neither a cap nor consent is no policy");

    let domain = format!("{}.consent.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 3).await;
    for (id, granted) in [(&ids[0], true), (&ids[1], false)] {
        let body = json!({"granted": granted, "source": "sign-up form"});
        let (s, r) = app.send("PUT", &format!("/api/v1/customers/{id}/consents/email"), t, Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    for (path, body, status) in [
        (
            format!("/api/v1/customers/{}/consents/email", ids[2]),
            json!({"source": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/api/v1/customers/{}/consents/email", ids[2]),
            json!({"granted": true, "source": "a\nb"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/api/v1/customers/{}/consents/fax", ids[2]),
            json!({"granted": true, "source": "x"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, r) = app.send("PUT", &path, t, Some(body)).await;
        assert_eq!(s, status, "{path}: {r}");
    }
    let (s, _) = app
        .send(
            "PUT",
            &format!("/api/v1/customers/{}/consents/email", ids[2]),
            Some(&app.token_b),
            Some(json!({"granted": true, "source": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant cannot record consent for this customer");
    let (_, listed) = app.get(&format!("/api/v1/customers/{}/consents", ids[0]), &app.token_a).await;
    assert_eq!(
        (listed["data"][0]["granted"].clone(), listed["data"][0]["source"].clone()),
        (json!(true), json!("sign-up form"))
    );

    let id = email_campaign(&app, &ids).await;
    app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), t, None).await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender)], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    worker.stop().await;
    let mail = sent_to(&domain).await;
    assert_eq!(
        mail.keys().cloned().collect::<Vec<_>>(),
        vec![format!("c0@{domain}")],
        "only the customer who opted in"
    );
    let refused: Vec<_> = recipient_errors(&app, &id).await.into_iter().filter(|(s, _)| s == "failed").collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|(_, e)| e.as_deref() == Some("no consent: the customer has not opted in to email messages"))
    );
}

/// Quiet hours end at the right instant in the customer's zone, across both DST changes,
/// for windows across midnight and within a day; a zone Postgres does not know falls back
/// to the policy's.
#[tokio::test]
async fn quiet_hours_end_at_the_right_instant_across_dst() {
    let app = TestApp::spawn().await;
    let until = async |at: &str, tz: Option<&str>, start: i32, end: i32| -> Option<String> {
        sqlx::query_scalar::<_, Option<String>>(
            "select to_char(app_quiet_until($1::timestamptz, $2, 'Asia/Tokyo', $3, $4) at time zone 'UTC',
                            'YYYY-MM-DD\"T\"HH24:MI\"Z\"')",
        )
        .bind(at)
        .bind(tz)
        .bind(start)
        .bind(end)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    let ny = Some("America/New_York");
    let night = (21 * 60, 8 * 60);
    for (at, tz, (start, end), expected) in [
        // Midnight EST on the night clocks go forward: 08:00 is EDT (UTC-4).
        ("2026-03-08T05:00:00Z", ny, night, Some("2026-03-08T12:00Z")),
        // 21:00 EST the evening before: the window's end is the next morning, EDT.
        ("2026-03-08T02:00:00Z", ny, night, Some("2026-03-08T12:00Z")),
        // 01:30 EDT on the night clocks go back: 08:00 is EST (UTC-5).
        ("2026-11-01T05:30:00Z", ny, night, Some("2026-11-01T13:00Z")),
        // 11:00 EDT: outside.
        ("2026-03-08T15:00:00Z", ny, night, None),
        // A window ending at 02:30, a local time the spring change skips: 03:30 EDT.
        ("2026-03-08T06:30:00Z", ny, (60, 150), Some("2026-03-08T07:30Z")),
        // Within a day, 13:00-14:00 in Tokyo (no DST), at 13:30 JST.
        ("2026-12-01T04:30:00Z", Some("Asia/Tokyo"), (13 * 60, 14 * 60), Some("2026-12-01T05:00Z")),
        // Its end is exclusive: at 14:00 JST the window is over.
        ("2026-12-01T05:00:00Z", Some("Asia/Tokyo"), (13 * 60, 14 * 60), None),
        // No zone, or one Postgres does not know: the policy's (Tokyo).
        ("2026-12-01T04:30:00Z", None, (13 * 60, 14 * 60), Some("2026-12-01T05:00Z")),
        ("2026-12-01T04:30:00Z", Some("Mars/Olympus_Mons"), (13 * 60, 14 * 60), Some("2026-12-01T05:00Z")),
    ] {
        assert_eq!(until(at, tz, start, end).await.as_deref(), expected, "{at} in {tz:?}, {start}-{end}");
    }
}

/// Quiet hours hold in each customer's own time zone across two overlapping campaigns:
/// the window is placed around Tokyo's current time, so customers in Tokyo (their own zone,
/// the policy's, or a bad zone written around the API, which falls back to the policy's)
/// wait, pending with the time the window ends, while a customer in New York is sent both
/// campaigns; once the window is lifted and the campaigns dispatched again, the others
/// get theirs, once each.
#[tokio::test]
async fn quiet_hours_hold_in_each_customers_time_zone_across_two_campaigns() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let tokyo: i32 = sqlx::query_scalar(
        "select (extract(hour from now() at time zone 'Asia/Tokyo') * 60 + extract(minute from now() at time zone 'Asia/Tokyo'))::int",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let clock = |m: i32| format!("{:02}:{:02}", m.rem_euclid(1440) / 60, m.rem_euclid(1440) % 60);
    let (start, end) = (clock(tokyo - 60), clock(tokyo + 120));
    for (body, status) in [
        (json!({"quiet_start": "25:00", "quiet_end": "08:00"}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"quiet_start": "21:00"}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"quiet_start": "21:00", "quiet_end": "21:00"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"quiet_start": "21:00", "quiet_end": "08:00", "timezone": "Mars/Base"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"quiet_start": start, "quiet_end": end, "timezone": "Asia/Tokyo"}), StatusCode::OK),
    ] {
        let (s, r) = app.send("PUT", "/api/v1/outbound/contact-policy/email", t, Some(body.clone())).await;
        assert_eq!(s, status, "{body}: {r}");
    }
    let (_, policy) = app.get("/api/v1/outbound/contact-policy", &app.token_a).await;
    assert_eq!(
        (
            policy["data"][0]["quiet_start"].clone(),
            policy["data"][0]["quiet_end"].clone(),
            policy["data"][0]["timezone"].clone()
        ),
        (json!(start), json!(end), json!("Asia/Tokyo")),
        "{policy}"
    );

    let domain = format!("{}.quiet.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 4).await;
    for (id, tz, status) in [
        (&ids[0], "America/New_York", StatusCode::OK),
        (&ids[1], "Asia/Tokyo", StatusCode::OK),
        (&ids[2], "Mars/Base", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (s, r) = app.send("PUT", &format!("/api/v1/customers/{id}"), t, Some(json!({"timezone": tz}))).await;
        assert_eq!(s, status, "{tz}: {r}");
    }
    // ids[2] gets a zone no tz database has, written around the API; ids[3] has none.
    let sql = async |sql: &str, bind: Vec<String>| {
        let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let n = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(bind).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        assert!(n.rows_affected() > 0, "{sql}");
    };
    sql("update crm_customers set timezone = 'Mars/Base' where id = any($1::uuid[])", vec![ids[2].clone()]).await;
    let campaigns = [email_campaign(&app, &ids).await, email_campaign(&app, &ids).await];
    for id in &campaigns {
        let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), t, None).await;
        assert_eq!(s, StatusCode::OK, "{j}");
    }
    let ctx = job_context(&app, &[("MAIL_FROM", sender), ("SEND_BATCH_SIZE", "2".into())], Duration::from_secs(30));
    let rows = async || -> Vec<(String, String, Option<String>, Option<bool>)> {
        let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let rows = sqlx::query_as(
            "select customer_id::text, status, error,
                    not_before between now() and now() + interval '121 minutes'
             from outbound_campaign_recipients where campaign_id = any($1::uuid[]) order by campaign_id, customer_id",
        )
        .bind(&campaigns[..])
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    };
    let worker = RunningWorker::start(ctx.clone(), &["emails"], Duration::from_secs(30));
    wait_for("two sent and six waiting", Duration::from_secs(60), || async {
        let now = rows().await;
        now.iter().filter(|(_, s, _, _)| s == "sent").count() == 2
            && now.iter().filter(|(_, s, e, _)| s == "pending" && e.is_some()).count() == 6
    })
    .await;
    worker.stop().await;
    let now = rows().await;
    for (customer, status, error, waits_until_window_end) in &now {
        if customer == &ids[0] {
            assert_eq!(status, "sent", "New York is outside the window: {now:?}");
        } else {
            assert_eq!(status, "pending", "{customer} is in Tokyo's quiet hours: {now:?}");
            assert!(error.as_deref().unwrap().starts_with("quiet hours in the customer's time zone: waits until"));
            assert_eq!(*waits_until_window_end, Some(true), "{now:?}");
        }
    }
    assert_eq!(messages(&sent_to(&domain).await), 2, "one message per campaign, to New York only");
    for id in &campaigns {
        assert_eq!(campaign_status(&app, id).await, "running", "a waiting recipient keeps the campaign open");
    }

    // The window lifted and the campaigns dispatched again: the others get theirs.
    let (s, _) = app.send("DELETE", "/api/v1/outbound/contact-policy/email", t, None).await;
    assert_eq!(s, StatusCode::OK);
    sql(
        "update outbound_campaign_recipients set not_before = now() - interval '1 second' where campaign_id = any($1::uuid[])",
        campaigns.to_vec(),
    )
    .await;
    for id in &campaigns {
        fibonacco_delivery::campaigns::enqueue_dispatch(&app.state.queue, app.tenant_a, id.parse().unwrap(), "email")
            .await
            .unwrap();
    }
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    for id in &campaigns {
        wait_for_completion(&app, id, Duration::from_secs(60)).await;
    }
    worker.stop().await;
    let mail = sent_to(&domain).await;
    assert_eq!((mail.len(), messages(&mail)), (4, 8), "each customer once per campaign");
}
