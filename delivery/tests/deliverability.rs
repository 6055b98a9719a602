//! SES events over SNS, end to end: a real campaign sent through SES (moto), then SNS
//! messages signed by the test with its own certificate, served from a local host the
//! app allow-lists. Confirmation, each event type, bad signatures, a wrong certificate
//! host, a foreign topic, replays and stale messages, unknown message ids; bounces and
//! complaints suppressing the next campaign; machine clicks kept out of the rates.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
    routing::get,
};
use chrono::{SecondsFormat, Utc};
use fibonacco_api::testing::TestApp;
use fibonacco_delivery::sns::test_signer;
use fibonacco_platform::db;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::*;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";

/// Serves the test certificate and counts subscription confirmations.
async fn sns_host() -> (String, Arc<AtomicUsize>) {
    let confirmations = Arc::new(AtomicUsize::new(0));
    let counted = confirmations.clone();
    let app = Router::new().route("/cert.pem", get(|| async { test_signer::CERT_PEM })).route(
        "/confirm",
        get(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                "<ConfirmSubscriptionResponse/>"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), confirmations)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An SES event notification for `message_id`, signed, as SNS posts it.
fn notification(host: &str, sns_id: &str, event: Value) -> Value {
    test_signer::message("Notification", sns_id, TOPIC, &event.to_string(), &now(), &format!("{host}/cert.pem"))
}

fn ses(kind: &str, message_id: &str, part: Option<(&str, Value)>) -> Value {
    let mut event = json!({"eventType": kind, "mail": {"messageId": message_id, "timestamp": now()}});
    if let Some((name, value)) = part {
        event[name] = value;
    }
    event
}

/// Posts as SNS does: JSON in a `text/plain` body.
async fn post(router: &Router, body: &Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri("/api/ses/events")
        .header(header::CONTENT_TYPE, "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", body["Type"].as_str().unwrap_or_default())
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn router_for(app: &TestApp, host: &str) -> Router {
    let host = host.to_owned();
    app.with(move |s| {
        let c = Arc::make_mut(&mut s.config);
        c.ses_events.topic_arns = vec![TOPIC.to_owned()];
        c.ses_events.cert_hosts = vec![host];
        c.ses_events.transient_bounce_limit = 2;
    })
}

/// (status, error, delivered, bounced, complained, opened) of each recipient by address.
async fn recipients(app: &TestApp, campaign: &str) -> Vec<(String, String, Option<String>, bool, bool, bool, bool)> {
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let rows = sqlx::query_as(
        "select c.email, r.status, r.error, r.delivered_at is not null, r.bounced_at is not null,
                r.complained_at is not null, r.opened_at is not null
         from outbound_campaign_recipients r join crm_customers c on c.id = r.customer_id
         where r.campaign_id = $1::uuid order by c.email",
    )
    .bind(campaign)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows
}

async fn activity_count(app: &TestApp, kind: &str) -> i64 {
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let n = sqlx::query_scalar("select count(*) from customer_activities where activity_type = $1")
        .bind(kind)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    n
}

async fn run_campaign(app: &TestApp, sender: &str, ids: &[String]) -> String {
    let id = email_campaign(app, ids).await;
    let (s, started) =
        app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(&app.token_a), None).await;
    assert_eq!(s, StatusCode::OK, "{started}");
    let ctx = job_context(app, &[("MAIL_FROM", sender.to_owned())], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(app, &id, Duration::from_secs(60)).await;
    worker.stop().await;
    id
}

#[tokio::test]
async fn ses_events_over_sns_move_recipients_and_suppress_bounces_and_complaints() {
    let app = TestApp::spawn().await;
    let (host, confirmations) = sns_host().await;
    let router = router_for(&app, &host);
    let domain = format!("{}.ses-events.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    // c0 delivered, opened, scanned; c1 bounces for good; c2 complains; c3 bounces
    // softly twice; c4 is rejected.
    let ids = customers(&app, &domain, 5).await;
    // Tenant B has a customer at c1's address: a permanent bounce reaches its list too.
    app.customer(&app.token_b, json!({"name": "B's copy", "email": format!("c1@{domain}")})).await;
    let first = run_campaign(&app, &sender, &ids).await;
    let sent = recipient_statuses(&app, &first).await;
    let mut message_ids = std::collections::HashMap::new();
    for (email, ..) in recipients(&app, &first).await {
        message_ids.insert(email, String::new());
    }
    {
        let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select c.email, r.provider_message_id from outbound_campaign_recipients r
             join crm_customers c on c.id = r.customer_id where r.campaign_id = $1::uuid",
        )
        .bind(&first)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        message_ids.extend(rows);
    }
    assert!(sent.iter().all(|(s, m, _)| s == "sent" && m.is_some()), "{sent:?}");
    let mid = |i: usize| message_ids[&format!("c{i}@{domain}")].clone();
    let cert = format!("{host}/cert.pem");

    // Subscription: confirmed for our topic only.
    let confirm =
        test_signer::message("SubscriptionConfirmation", "sub-1", TOPIC, "You have chosen to subscribe", &now(), &cert);
    let mut confirm = confirm;
    confirm["SubscribeURL"] = json!(format!("{host}/confirm?Token=abc"));
    test_signer::sign(&mut confirm);
    let (s, body) = post(&router, &confirm).await;
    assert_eq!((s, body["data"].as_str()), (StatusCode::OK, Some("confirmed")), "{body}");
    let foreign = test_signer::message(
        "SubscriptionConfirmation",
        "sub-2",
        "arn:aws:sns:us-east-1:999999999999:theirs",
        "x",
        &now(),
        &cert,
    );
    let (s, _) = post(&router, &foreign).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "another account's topic is not confirmed");
    assert_eq!(confirmations.load(Ordering::SeqCst), 1);

    // Each event type.
    let events = [
        ("e-deliv-0", ses("Delivery", &mid(0), Some(("delivery", json!({"timestamp": now()}))))),
        ("e-send-0", ses("Send", &mid(0), Some(("send", json!({}))))),
        (
            "e-open-0",
            ses(
                "Open",
                &mid(0),
                Some(("open", json!({"timestamp": now(), "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"}))),
            ),
        ),
        (
            "e-click-0",
            ses(
                "Click",
                &mid(0),
                Some((
                    "click",
                    json!({"timestamp": now(), "link": "https://shop.example/offer?x=1", "userAgent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}),
                )),
            ),
        ),
        (
            "e-bounce-1",
            ses(
                "Bounce",
                &mid(1),
                Some((
                    "bounce",
                    json!({"bounceType": "Permanent", "bounceSubType": "NoEmail",
            "bouncedRecipients": [{"emailAddress": format!("C1@{domain}"), "diagnosticCode": "smtp; 550 5.1.1 user unknown"}], "timestamp": now()}),
                )),
            ),
        ),
        ("e-deliv-2", ses("Delivery", &mid(2), Some(("delivery", json!({"timestamp": now()}))))),
        (
            "e-complaint-2",
            ses(
                "Complaint",
                &mid(2),
                Some((
                    "complaint",
                    json!({"complainedRecipients": [{"emailAddress": format!("c2@{domain}")}],
            "complaintFeedbackType": "abuse", "timestamp": now()}),
                )),
            ),
        ),
        (
            "e-delay-3",
            ses(
                "DeliveryDelay",
                &mid(3),
                Some(("deliveryDelay", json!({"delayType": "MailboxFull", "timestamp": now()}))),
            ),
        ),
        (
            "e-soft-3a",
            ses(
                "Bounce",
                &mid(3),
                Some((
                    "bounce",
                    json!({"bounceType": "Transient", "bounceSubType": "MailboxFull",
            "bouncedRecipients": [{"emailAddress": format!("c3@{domain}")}], "timestamp": now()}),
                )),
            ),
        ),
        ("e-reject-4", ses("Reject", &mid(4), Some(("reject", json!({"reason": "Bad content"}))))),
        (
            "e-render-4",
            ses("Rendering Failure", &mid(4), Some(("failure", json!({"errorMessage": "missing variable"})))),
        ),
        ("e-sub-0", ses("Subscription", &mid(0), Some(("subscription", json!({}))))),
    ];
    for (sns_id, event) in &events {
        let (s, body) = post(&router, &notification(&host, sns_id, event.clone())).await;
        assert_eq!(s, StatusCode::OK, "{sns_id}: {body}");
        assert_eq!(body["data"], "applied", "{sns_id}: {body}");
    }
    let rows = recipients(&app, &first).await;
    let by = |i: usize| rows.iter().find(|r| r.0 == format!("c{i}@{domain}")).unwrap().clone();
    assert_eq!(
        (by(0).1.as_str(), by(0).3, by(0).6),
        ("opened", true, true),
        "delivered, then a person opened: {rows:?}"
    );
    assert_eq!((by(1).1.as_str(), by(1).4), ("bounced", true), "{rows:?}");
    assert!(by(1).2.as_deref().unwrap().starts_with("permanent bounce (NoEmail): smtp; 550"), "{rows:?}");
    assert_eq!((by(2).1.as_str(), by(2).5), ("delivered", true), "a complaint is not a status: {rows:?}");
    assert_eq!(by(3).1, "bounced", "{rows:?}");
    assert_eq!(by(4).1, "failed", "{rows:?}");
    assert!(by(4).2.as_deref().unwrap().starts_with("rejected by SES"), "the first failure is kept: {rows:?}");
    assert_eq!(activity_count(&app, "email_bounce").await, 2);
    assert_eq!(activity_count(&app, "email_complaint").await, 1);
    assert_eq!(activity_count(&app, "email_delayed").await, 1);
    assert_eq!(activity_count(&app, "email_open").await, 1);
    assert_eq!(activity_count(&app, "machine_click").await, 1, "the scanner's click is a machine's");
    assert_eq!(activity_count(&app, "email_click").await, 0);

    // A second transient bounce of c3 within the window reaches the limit (2 here).
    let (s, _) = post(&router, &notification(&host, "e-soft-3b", ses("Bounce", &mid(3), Some(("bounce", json!({"bounceType": "Transient",
        "bounceSubType": "MailboxFull", "bouncedRecipients": [{"emailAddress": format!("c3@{domain}")}], "timestamp": now()})))))).await;
    assert_eq!(s, StatusCode::OK);

    // Late and replayed messages change nothing.
    let late =
        notification(&host, "e-late-0", ses("Delivery", &mid(0), Some(("delivery", json!({"timestamp": now()})))));
    let (_, body) = post(&router, &late).await;
    assert_eq!(body["data"], "applied");
    assert_eq!(
        by(0).1,
        recipients(&app, &first).await.iter().find(|r| r.0 == format!("c0@{domain}")).unwrap().1,
        "opened stays opened"
    );
    let replay = notification(&host, "e-complaint-2", events[6].1.clone());
    let (s, body) = post(&router, &replay).await;
    assert_eq!((s, body["data"].as_str()), (StatusCode::OK, Some("duplicate")));
    assert_eq!(activity_count(&app, "email_complaint").await, 1, "a replay writes nothing");

    // Refused: a bad signature, a certificate elsewhere, a foreign topic, a stale message.
    let mut forged = notification(
        &host,
        "e-forged",
        ses(
            "Bounce",
            &mid(0),
            Some((
                "bounce",
                json!({"bounceType": "Permanent",
        "bouncedRecipients": [{"emailAddress": format!("c0@{domain}")}]}),
            )),
        ),
    );
    forged["Message"] = json!(forged["Message"].as_str().unwrap().replace("Permanent", "Permanent "));
    let (s, body) = post(&router, &forged).await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("INVALID_SIGNATURE")), "{body}");
    let elsewhere = test_signer::message(
        "Notification",
        "e-elsewhere",
        TOPIC,
        &ses("Delivery", &mid(0), None).to_string(),
        &now(),
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
    );
    assert_eq!(post(&router, &elsewhere).await.0, StatusCode::FORBIDDEN);
    let plain_http_elsewhere = test_signer::message(
        "Notification",
        "e-http",
        TOPIC,
        &ses("Delivery", &mid(0), None).to_string(),
        &now(),
        &format!("{}/cert.pem", host.replace("127.0.0.1", "localhost")),
    );
    assert_eq!(post(&router, &plain_http_elsewhere).await.0, StatusCode::FORBIDDEN);
    let theirs = test_signer::message(
        "Notification",
        "e-theirs",
        "arn:aws:sns:us-east-1:999999999999:theirs",
        &ses("Bounce", &mid(0), None).to_string(),
        &now(),
        &cert,
    );
    assert_eq!(post(&router, &theirs).await.0, StatusCode::FORBIDDEN);
    let stale = test_signer::message(
        "Notification",
        "e-stale",
        TOPIC,
        &ses("Delivery", &mid(0), None).to_string(),
        &(Utc::now() - chrono::Duration::hours(2)).to_rfc3339_opts(SecondsFormat::Millis, true),
        &cert,
    );
    assert_eq!(post(&router, &stale).await.0, StatusCode::BAD_REQUEST);
    let (s, body) = post(&router, &json!({"Type": "Notification"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // Without SNS_TOPIC_ARNS the endpoint refuses everything.
    assert_eq!(post(&app.router, &late).await.0, StatusCode::FORBIDDEN);
    assert_eq!(activity_count(&app, "email_bounce").await, 3, "nothing refused was applied");

    // An unknown message id is counted and dropped.
    let (s, body) = post(&router, &notification(&host, "e-unknown", ses("Delivery", "0100-not-ours", None))).await;
    assert_eq!((s, body["data"].as_str()), (StatusCode::OK, Some("unknown_message")));

    // The record of messages is pruned once a replay would be stale anyway.
    let mut tx = db::begin_system(&app.db.pool).await.unwrap();
    sqlx::query("update sns_messages set received_at = now() - interval '3 days' where message_id = 'e-unknown'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tasks = fibonacco_delivery::scheduler::tasks(|_| None).unwrap();
    let cleanup = fibonacco_delivery::scheduler::find(&tasks, "cleanup:old-data").unwrap();
    fibonacco_delivery::scheduler::Scheduler::new(app.db.pool.clone(), app.state.queue.clone()).run_now(cleanup).await;
    let mut tx = db::begin_system(&app.db.pool).await.unwrap();
    let kept: Vec<String> =
        sqlx::query_scalar("select message_id from sns_messages where message_id in ('e-unknown', 'e-deliv-0')")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(kept, ["e-deliv-0"]);

    // The suppression list: c1 (bounce, in both tenants), c2 (complaint), c3 (two soft bounces).
    let (_, list) = app.get("/api/v1/outbound/suppressions?per_page=100", &app.token_a).await;
    let mut entries: Vec<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["target"].as_str().unwrap().to_owned(), e["reason"].as_str().unwrap().to_owned()))
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            (format!("c1@{domain}"), "bounce".to_owned()),
            (format!("c2@{domain}"), "complaint".to_owned()),
            (format!("c3@{domain}"), "bounce".to_owned())
        ],
        "{list}"
    );
    let (_, list_b) = app.get("/api/v1/outbound/suppressions", &app.token_b).await;
    let targets_b: Vec<&str> =
        list_b["data"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert_eq!(
        targets_b,
        [format!("c1@{domain}").as_str()],
        "a permanent bounce reaches every tenant; a complaint does not"
    );

    // The next campaign skips them, with the reason, and mails the others.
    let second = run_campaign(&app, &sender, &ids).await;
    let rows = recipients(&app, &second).await;
    for (email, status, error, ..) in &rows {
        let expected = if email.starts_with("c1@") || email.starts_with("c3@") {
            Some("suppressed (bounce)")
        } else if email.starts_with("c2@") {
            Some("suppressed (complaint)")
        } else {
            None
        };
        match expected {
            Some(reason) => assert_eq!((status.as_str(), error.as_deref()), ("failed", Some(reason)), "{email}"),
            None => assert_eq!(status, "sent", "{email}"),
        }
    }
    let mail = sent_to(&domain).await;
    for skipped in ["c1", "c2", "c3"] {
        assert_eq!(mail[&format!("{skipped}@{domain}")].len(), 1, "{skipped} got only the first campaign");
    }
    assert_eq!(mail[&format!("c0@{domain}")].len(), 2);

    // Both analytics surfaces give the first campaign's rates over the same counts.
    let (_, analytics) = app.get(&format!("/api/v1/outbound/campaigns/{first}/analytics"), &app.token_a).await;
    let a = &analytics["data"];
    assert_eq!(
        (a["sent"].as_i64(), a["delivered"].as_i64(), a["bounced"].as_i64()),
        (Some(5), Some(2), Some(2)),
        "{analytics}"
    );
    assert_eq!(a["complained"].as_i64(), Some(1), "{analytics}");
    assert_eq!(a["open_rate"].as_f64(), Some(0.5), "opened / delivered: {analytics}");
    assert_eq!(a["bounce_rate"].as_f64(), Some(0.4), "bounced / sent: {analytics}");
    assert_eq!(a["complaint_rate"].as_f64(), Some(0.5), "complained / delivered: {analytics}");
    assert_eq!(a["click_rate"].as_f64(), Some(0.0), "the scanner's click is not a click: {analytics}");
    assert_eq!(
        (a["clicked"].as_i64(), a["machine_clicks"].as_i64()),
        (Some(0), Some(1)),
        "both counts shown: {analytics}"
    );
}

/// A click within seconds of delivery, or one among several links clicked at once, is a
/// scanner's; a burst also takes back the click it started with.
#[tokio::test]
async fn clicks_too_soon_or_all_at_once_are_machine_clicks() {
    let app = TestApp::spawn().await;
    let domain = format!("{}.burst.example", unique());
    let ids = customers(&app, &domain, 2).await;
    let links_html = "<a href=\"https://shop.example/a\">A</a> <a href=\"https://shop.example/b\">B</a>";
    let id = email_campaign_with(&app, &ids, links_html).await;
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    // c0 was delivered an hour ago, c1 a moment ago.
    sqlx::query(
        "update outbound_campaign_recipients r set status = 'delivered',
            sent_at = now() - case when c.email like 'c0@%' then interval '1 hour' else interval '1 second' end,
            delivered_at = now() - case when c.email like 'c0@%' then interval '1 hour' else interval '1 second' end
         from crm_customers c where c.id = r.customer_id and r.campaign_id = $1::uuid",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await
    .unwrap();
    let recipients: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "select c.email, r.id from outbound_campaign_recipients r join crm_customers c on c.id = r.customer_id
         where r.campaign_id = $1::uuid order by c.email",
    )
    .bind(&id)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let browser = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)";
    let click = |recipient: uuid::Uuid, url: &str| {
        let links = fibonacco_delivery::links::Links::new(
            fibonacco_api::testing::APP_URL,
            app.state.config.app_key.expose(),
            fibonacco_delivery::links::RecipientRef { tenant: app.tenant_a, recipient },
        );
        let path = links.click(url).trim_start_matches(fibonacco_api::testing::APP_URL).to_owned();
        Request::builder().uri(path).header("user-agent", browser).body(Body::empty()).unwrap()
    };
    let state = |recipient: uuid::Uuid| {
        let pool = app.db.pool.clone();
        let tenant = app.tenant_a;
        async move {
            let mut tx = db::begin_tenant(&pool, tenant).await.unwrap();
            let row: (String, bool, bool) = sqlx::query_as(
                "select status, opened_at is not null, clicked_at is not null from outbound_campaign_recipients where id = $1",
            )
            .bind(recipient)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            let kinds: Vec<String> = sqlx::query_scalar(
                "select a.activity_type from customer_activities a join outbound_campaign_recipients r
                   on r.customer_id = a.customer_id and r.campaign_id = a.campaign_id
                 where r.id = $1 order by a.occurred_at",
            )
            .bind(recipient)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
            (row, kinds)
        }
    };

    // c1: a click one second after delivery is a scanner's.
    let res = app.router.clone().oneshot(click(recipients[1].1, "https://shop.example/a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(state(recipients[1].1).await, (("delivered".into(), false, false), vec!["machine_click".to_owned()]));

    // c0: one click is a person's; a second link clicked at once makes both a scanner's.
    let c0 = recipients[0].1;
    app.router.clone().oneshot(click(c0, "https://shop.example/a")).await.unwrap();
    assert_eq!(state(c0).await, (("clicked".into(), true, true), vec!["email_click".to_owned()]));
    app.router.clone().oneshot(click(c0, "https://shop.example/b")).await.unwrap();
    assert_eq!(
        state(c0).await,
        (("delivered".into(), false, false), vec!["machine_click".to_owned(), "machine_click".to_owned()]),
        "the burst takes back the first click and the open it implied"
    );
    // The same link clicked again later by the person counts.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.router.clone().oneshot(click(c0, "https://shop.example/a")).await.unwrap();
    assert_eq!(state(c0).await.0, ("clicked".into(), true, true));
}

/// Concurrent notifications share batches; every SNS message applies once, even when SNS
/// delivers two copies at the same moment.
#[tokio::test]
async fn concurrent_events_and_their_copies_apply_once() {
    let app = TestApp::spawn().await;
    let (host, _) = sns_host().await;
    let router = router_for(&app, &host);
    let domain = format!("{}.concurrent.example", unique());
    let ids = customers(&app, &domain, 30).await;
    let id = email_campaign(&app, &ids).await;
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query(
        "update outbound_campaign_recipients set status = 'sent', sent_at = now() - interval '1 hour',
            provider_message_id = 'conc-' || customer_id where campaign_id = $1::uuid",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let bodies: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, customer)| {
            let event = if i % 3 == 0 {
                ses(
                    "Bounce",
                    &format!("conc-{customer}"),
                    Some((
                        "bounce",
                        json!({"bounceType": "Transient",
                    "bounceSubType": "MailboxFull", "bouncedRecipients": [{"emailAddress": format!("c{i}@{domain}")}]}),
                    )),
                )
            } else {
                ses("Delivery", &format!("conc-{customer}"), Some(("delivery", json!({"timestamp": now()}))))
            };
            notification(&host, &format!("conc-sns-{i}"), event)
        })
        .collect();
    let mut tasks = Vec::new();
    for body in bodies.iter().chain(bodies.iter()) {
        let (router, body) = (router.clone(), body.clone());
        tasks.push(tokio::spawn(async move { post(&router, &body).await }));
    }
    let mut outcomes = std::collections::HashMap::<String, usize>::new();
    for t in tasks {
        let (s, body) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{body}");
        *outcomes.entry(body["data"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(outcomes.get("applied"), Some(&30), "{outcomes:?}");
    assert_eq!(outcomes.get("duplicate"), Some(&30), "{outcomes:?}");
    assert_eq!(activity_count(&app, "email_bounce").await, 10, "one activity per bounce, not per copy");
    let rows = recipients(&app, &id).await;
    assert_eq!(rows.iter().filter(|r| r.1 == "delivered").count(), 20, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.1 == "bounced").count(), 10, "{rows:?}");
}
