//! Outbound campaigns, recipients, templates, analytics and status callbacks.

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use fibonacco_api::testing::{TestApp, code};
use fibonacco_platform::db;
use serde_json::{Value, json};

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let (status, json) = app.send("POST", path, Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{path}: {json}");
    json["data"].clone()
}

async fn customers(app: &TestApp, token: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..n {
        let c =
            app.customer(token, json!({"name": format!("Recipient {i}"), "email": format!("r{i}@example.com")})).await;
        out.push(c["id"].clone());
    }
    out
}

/// As the send worker will: every recipient of the campaign `sent` with a provider
/// message id. Returns (message id, the customer's phone), ordered by message id.
async fn mark_sent(app: &TestApp, campaign: &str) -> Vec<(String, Option<String>)> {
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query("update outbound_campaign_recipients set provider_message_id = 'SM' || md5(id::text), status = 'sent', sent_at = now() where campaign_id = $1::uuid")
        .bind(campaign)
        .execute(&mut *tx)
        .await
        .unwrap();
    let sent = sqlx::query_as(
        "select r.provider_message_id, c.phone from outbound_campaign_recipients r join crm_customers c on c.id = r.customer_id
         where r.campaign_id = $1::uuid order by 1",
    )
    .bind(campaign)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sent
}

#[tokio::test]
async fn templates_collect_their_placeholders() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let email = post(&app, t, "/api/v1/outbound/email/templates",
        json!({"name": "Welcome", "subject": "Hi {{ first_name }}", "html_body": "<p>{{first_name}}, welcome to {{ company }}</p>"})).await;
    assert_eq!(email["variables"], json!(["first_name", "company"]));
    let sms = post(&app, t, "/api/v1/outbound/sms/templates", json!({"name": "Ping", "body": "Hi {{name}}"})).await;
    assert_eq!(sms["variables"], json!(["name"]));
    let script = post(
        &app,
        t,
        "/api/v1/outbound/phone/scripts",
        json!({"name": "Call", "script": "Hello {{name}}", "voice_id": "v1"}),
    )
    .await;
    assert_eq!(script["voice_id"], "v1");
    let (_, list) = app.get("/api/v1/outbound/email/templates", t).await;
    assert_eq!(list["meta"]["pagination"]["total"], 1);
    let (status, json) = app
        .send(
            "POST",
            "/api/v1/outbound/sms/templates",
            Some(t),
            Some(json!({"name": "Long", "body": "x".repeat(1601)})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    let (status, json) =
        app.send("POST", "/api/v1/outbound/email/templates", Some(t), Some(json!({"name": "No body"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json["error"]["details"]["subject"].is_array() && json["error"]["details"]["html_body"].is_array());
    // A subject goes into a mail header: CR, LF (header injection) are refused, by field.
    for subject in ["Hi\r\nBcc: all@evil.example", "Hi\nthere", "Hi\rthere"] {
        let (status, json) = app
            .send(
                "POST",
                "/api/v1/outbound/email/templates",
                Some(t),
                Some(json!({"name": "Inject", "subject": subject, "html_body": "<p>x</p>"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{subject:?}: {json}");
        assert!(json["error"]["details"]["subject"].is_array(), "{json}");
    }
    let (_, other) = app.get("/api/v1/outbound/email/templates", &app.token_b).await;
    assert_eq!(other["meta"]["pagination"]["total"], 0);
}

#[tokio::test]
async fn campaign_lifecycle_from_draft_to_running() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let ids = customers(&app, t, 3).await;
    let template =
        post(&app, t, "/api/v1/outbound/email/templates", json!({"name": "T", "subject": "S", "html_body": "B"})).await;
    let c = post(&app, t, "/api/v1/outbound/email/campaigns",
        json!({"name": "Spring sale", "template_id": template["id"], "customer_ids": [ids[0], ids[1], ids[2], ids[0]], "fixed_cost_minor": 2500})).await;
    assert_eq!(
        (c["type"].as_str(), c["status"].as_str(), c["recipient_count"].as_i64()),
        (Some("email"), Some("draft"), Some(3))
    );
    let id = c["id"].as_str().unwrap();

    let (_, recipients) = app.get(&format!("/api/v1/outbound/campaigns/{id}/recipients?status=pending"), t).await;
    assert_eq!(recipients["meta"]["pagination"]["total"], 3);
    assert_eq!(recipients["data"][0]["customer_name"], "Recipient 0");

    // Scheduling needs a future time.
    let (status, _) = app
        .send("PUT", &format!("/api/v1/outbound/campaigns/{id}"), Some(t), Some(json!({"status": "scheduled"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let later = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let (status, scheduled) = app
        .send(
            "PUT",
            &format!("/api/v1/outbound/campaigns/{id}"),
            Some(t),
            Some(json!({"status": "scheduled", "scheduled_at": later, "customer_ids": [ids[0], ids[1]]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{scheduled}");
    assert_eq!(
        (scheduled["data"]["status"].as_str(), scheduled["data"]["recipient_count"].as_i64()),
        (Some("scheduled"), Some(2))
    );

    let (status, started) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(t), None).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["data"]["status"], "running");
    assert!(started["data"]["started_at"].is_string());

    let (status, json) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(t), None).await;
    assert_eq!((status, code(&json)), (StatusCode::CONFLICT, "CONFLICT"));
    let (status, _) = app
        .send("PUT", &format!("/api/v1/outbound/campaigns/{id}"), Some(t), Some(json!({"customer_ids": [ids[2]]})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "recipients are fixed once running");
    let (status, renamed) = app
        .send("PUT", &format!("/api/v1/outbound/campaigns/{id}"), Some(t), Some(json!({"name": "Spring sale (EU)"})))
        .await;
    assert_eq!((status, renamed["data"]["name"].as_str()), (StatusCode::OK, Some("Spring sale (EU)")));
    let (status, _) = app.send("DELETE", &format!("/api/v1/outbound/campaigns/{id}"), Some(t), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a running campaign is not deleted");

    let (_, analytics) = app.get(&format!("/api/v1/outbound/campaigns/{id}/analytics"), t).await;
    assert_eq!((analytics["data"]["recipients"].as_i64(), analytics["data"]["pending"].as_i64()), (Some(2), Some(2)));
    assert_eq!(analytics["data"]["open_rate"], Value::Null, "no rate before anything is sent");

    let (_, by_type) = app.get("/api/v1/outbound/campaigns?type=email&status=running", t).await;
    assert_eq!(by_type["meta"]["pagination"]["total"], 1);
    let (_, sms_list) = app.get("/api/v1/outbound/sms/campaigns", t).await;
    assert_eq!(sms_list["meta"]["pagination"]["total"], 0);
}

#[tokio::test]
async fn start_needs_recipients_and_content() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let empty = post(&app, t, "/api/v1/outbound/campaigns", json!({"name": "Empty", "type": "sms"})).await;
    let (status, json) = app
        .send("POST", &format!("/api/v1/outbound/campaigns/{}/start", empty["id"].as_str().unwrap()), Some(t), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert!(json["error"]["details"]["recipients"].is_array() && json["error"]["details"]["template_id"].is_array());
    let (_, still) = app.get(&format!("/api/v1/outbound/campaigns/{}", empty["id"].as_str().unwrap()), t).await;
    assert_eq!(still["data"]["status"], "draft", "nothing changed");
}

#[tokio::test]
async fn bad_campaign_input_is_422_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let mine = customers(&app, t, 1).await;
    let theirs = customers(&app, &app.token_b, 1).await;
    let sms_template = post(&app, t, "/api/v1/outbound/sms/templates", json!({"name": "S", "body": "B"})).await;
    for (path, body, field) in [
        ("/api/v1/outbound/campaigns", json!({"name": "x"}), "type"),
        ("/api/v1/outbound/campaigns", json!({"name": "x", "type": "fax"}), "type"),
        ("/api/v1/outbound/email/campaigns", json!({"name": "x", "type": "sms"}), "type"),
        ("/api/v1/outbound/email/campaigns", json!({"type": "email"}), "name"),
        (
            "/api/v1/outbound/email/campaigns",
            json!({"name": "x", "scheduled_at": "2020-01-01T00:00:00Z"}),
            "scheduled_at",
        ),
        (
            "/api/v1/outbound/email/campaigns",
            json!({"name": "x", "customer_ids": [mine[0], theirs[0]]}),
            "customer_ids",
        ),
        ("/api/v1/outbound/email/campaigns", json!({"name": "x", "template_id": sms_template["id"]}), "template_id"),
        ("/api/v1/outbound/email/campaigns", json!({"name": "x", "currency": "dollars"}), "currency"),
        ("/api/v1/outbound/email/campaigns", json!({"name": "x", "fixed_cost_minor": -1}), "fixed_cost_minor"),
        (
            "/api/v1/outbound/email/campaigns",
            json!({"name": "x", "customer_ids": [mine[0]], "all_customers": true}),
            "customer_ids",
        ),
    ] {
        let (status, json) = app.send("POST", path, Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["details"][field].is_array(), "{body}: {json}");
    }
    let (_, list) = app.get("/api/v1/outbound/campaigns", t).await;
    assert_eq!(list["meta"]["pagination"]["total"], 0, "no half-created campaign");
    let all = post(&app, t, "/api/v1/outbound/sms/campaigns", json!({"name": "All", "all_customers": true})).await;
    assert_eq!(all["recipient_count"], 1, "only this tenant's customers");
    for q in ["type=fax", "status=done"] {
        let (status, _) = app.get(&format!("/api/v1/outbound/campaigns?{q}"), t).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
    }
}

#[tokio::test]
async fn provider_status_callbacks_move_recipients() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let ids = customers(&app, t, 2).await;
    let sms = post(&app, t, "/api/v1/outbound/sms/campaigns", json!({"name": "SMS", "customer_ids": ids})).await;
    let sms_id = sms["id"].as_str().unwrap().to_owned();
    let sids: Vec<String> = mark_sent(&app, &sms_id).await.into_iter().map(|(sid, _)| sid).collect();

    // Twilio posts signed forms.
    let path = format!("/api/v1/outbound/sms/campaigns/{sms_id}/sms-status");
    let form = |sid: &str, status: &str| {
        fibonacco_api::testing::twilio_callback(
            &path,
            &[("MessageSid", sid), ("MessageStatus", status), ("To", "+15550001")],
            fibonacco_api::testing::TWILIO_TOKEN,
        )
    };
    let (status, json) = app.raw(form(&sids[0], "delivered")).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["data"], "delivered");
    let (status, _) = app.raw(form(&sids[1], "undelivered")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.raw(form("SMunknown", "delivered")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.raw(form(&sids[0], "teleported")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Statuses only move forward: a late `sent`, a replayed `delivered` and a `failed`
    // after delivery change nothing (and are acknowledged, so Twilio stops retrying).
    for late in ["sent", "delivered", "failed", "queued"] {
        let (status, json) = app.raw(form(&sids[0], late)).await;
        assert_eq!(status, StatusCode::OK, "{late}: {json}");
    }
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let first: String =
        sqlx::query_scalar("select status from outbound_campaign_recipients where provider_message_id = $1")
            .bind(&sids[0])
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first, "delivered", "late or replayed reports moved the recipient back");
    // A failed recipient is final: a later `delivered` does not revive it.
    let (status, _) = app.raw(form(&sids[1], "delivered")).await;
    assert_eq!(status, StatusCode::OK);

    let (_, analytics) = app.get(&format!("/api/v1/outbound/campaigns/{sms_id}/analytics"), t).await;
    let a = &analytics["data"];
    assert_eq!((a["sent"].as_i64(), a["delivered"].as_i64(), a["failed"].as_i64()), (Some(2), Some(1), Some(1)));
    assert_eq!(a["delivery_rate"], 0.5);
    // Engagement rates divide by delivered (docs/metrics.md), as the CRM analytics do.
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query(
        "update outbound_campaign_recipients set opened_at = now(), clicked_at = now() where provider_message_id = $1",
    )
    .bind(&sids[0])
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (_, analytics) = app.get(&format!("/api/v1/outbound/campaigns/{sms_id}/analytics"), t).await;
    let a = &analytics["data"];
    assert_eq!((a["open_rate"].as_f64(), a["click_rate"].as_f64()), (Some(1.0), Some(1.0)), "{a}");
    assert_eq!(a["bounce_rate"], 0.0, "bounces divide by sent");

    // A call-status callback for an SMS campaign finds no phone campaign.
    let call_path = format!("/api/v1/outbound/phone/campaigns/{sms_id}/call-status");
    let (status, _) = app
        .raw(fibonacco_api::testing::twilio_callback(
            &call_path,
            &[("CallSid", &sids[0]), ("CallStatus", "completed")],
            fibonacco_api::testing::TWILIO_TOKEN,
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad signatures (wrong token, tampered parameters, none at all) are 403 and change nothing.
    let (status, json) = app
        .raw(fibonacco_api::testing::twilio_callback(
            &path,
            &[("MessageSid", &sids[1]), ("MessageStatus", "delivered")],
            "wrong-token",
        ))
        .await;
    assert_eq!((status, fibonacco_api::testing::code(&json)), (StatusCode::FORBIDDEN, "INVALID_SIGNATURE"));
    let mut tampered = fibonacco_api::testing::twilio_callback(
        &path,
        &[("MessageSid", &sids[1]), ("MessageStatus", "failed")],
        fibonacco_api::testing::TWILIO_TOKEN,
    );
    *tampered.body_mut() = Body::from(format!("MessageSid={}&MessageStatus=delivered", sids[1]));
    let (status, _) = app.raw(tampered).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let unsigned = Request::post(&path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("MessageSid={}&MessageStatus=delivered", sids[1])))
        .unwrap();
    let (status, _) = app.raw(unsigned).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, analytics) = app.get(&format!("/api/v1/outbound/campaigns/{sms_id}/analytics"), t).await;
    assert_eq!(analytics["data"]["delivered"], 1, "refused callbacks changed nothing");
}

#[tokio::test]
async fn tenant_b_cannot_reach_tenant_a_campaigns() {
    let app = TestApp::spawn().await;
    let ids = customers(&app, &app.token_a, 1).await;
    let c = post(
        &app,
        &app.token_a,
        "/api/v1/outbound/campaigns",
        json!({"name": "A", "type": "email", "customer_ids": ids}),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    for (method, path, body) in [
        ("GET", format!("/api/v1/outbound/campaigns/{id}"), None),
        ("PUT", format!("/api/v1/outbound/campaigns/{id}"), Some(json!({"name": "hijack"}))),
        ("DELETE", format!("/api/v1/outbound/campaigns/{id}"), None),
        ("GET", format!("/api/v1/outbound/campaigns/{id}/recipients"), None),
        ("POST", format!("/api/v1/outbound/campaigns/{id}/start"), None),
        ("GET", format!("/api/v1/outbound/campaigns/{id}/analytics"), None),
        ("POST", format!("/api/v1/outbound/campaigns/{id}/pause"), None),
        ("POST", format!("/api/v1/outbound/campaigns/{id}/cancel"), None),
    ] {
        let (status, json) = app.send(method, &path, Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {json}");
    }
    let (_, list) = app.get("/api/v1/outbound/campaigns", &app.token_b).await;
    assert_eq!(list["meta"]["pagination"]["total"], 0);
    let (_, still) = app.get(&format!("/api/v1/outbound/campaigns/{id}"), &app.token_a).await;
    assert_eq!((still["data"]["name"].as_str(), still["data"]["status"].as_str()), (Some("A"), Some("draft")));
}

/// A STOP reply to the platform's number suppresses that number in every tenant with a
/// customer at it (Twilio blocks it for every sender of the number anyway), marks the
/// customer unsubscribed and records the activity; START lifts it. Unsigned: nothing.
#[tokio::test]
async fn sms_stop_and_start_replies_switch_the_number_off_and_on() {
    use fibonacco_api::testing::{TWILIO_TOKEN, twilio_callback};
    let app = TestApp::spawn().await;
    let a = app.customer(&app.token_a, json!({"name": "Ann", "phone": "+1 (555) 010-7777"})).await;
    app.customer(&app.token_b, json!({"name": "Ann at B", "phone": "+15550107777"})).await;
    let path = "/api/twilio/sms/inbound";
    let form =
        |body: &'static str| [("From", "+15550107777"), ("To", "+15550000000"), ("Body", body), ("MessageSid", "SM1")];

    let forged = twilio_callback(path, &form("STOP"), "not-the-token");
    let (s, _) = app.raw(forged).await;
    assert_eq!(s, axum::http::StatusCode::FORBIDDEN);
    let listed = |token: String| {
        let app = &app;
        async move { app.get("/api/v1/outbound/suppressions", &token).await.1["data"].as_array().unwrap().len() }
    };
    assert_eq!(listed(app.token_a.clone()).await, 0, "a forged reply changes nothing");

    for not_a_keyword in ["stop it please", "Thanks!"] {
        let (s, _) = app.raw(twilio_callback(path, &form(not_a_keyword), TWILIO_TOKEN)).await;
        assert_eq!(s, axum::http::StatusCode::OK);
    }
    assert_eq!(listed(app.token_a.clone()).await, 0);

    use tower::ServiceExt;
    let res = app.router.clone().oneshot(twilio_callback(path, &form("  Stop "), TWILIO_TOKEN)).await.unwrap();
    assert_eq!(res.status(), axum::http::StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/xml"));
    assert_eq!(listed(app.token_a.clone()).await, 1);
    assert_eq!(listed(app.token_b.clone()).await, 1, "the number is blocked for every sender of it");
    let (_, list) = app.get("/api/v1/outbound/suppressions", &app.token_a).await;
    assert_eq!(
        (list["data"][0]["target"].as_str(), list["data"][0]["reason"].as_str()),
        (Some("+15550107777"), Some("stop"))
    );
    let unsubscribed = || async {
        let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let at: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("select unsubscribed_at from crm_customers where id = $1::uuid")
                .bind(a["id"].as_str().unwrap())
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        tx.commit().await.unwrap();
        at.is_some()
    };
    assert!(unsubscribed().await);
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let kinds: Vec<String> = sqlx::query_scalar(
        "select activity_type from customer_activities where customer_id = $1::uuid and channel = 'sms'",
    )
    .bind(a["id"].as_str().unwrap())
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(kinds, ["unsubscribe"]);

    let (s, _) = app.raw(twilio_callback(path, &form("START"), TWILIO_TOKEN)).await;
    assert_eq!(s, axum::http::StatusCode::OK);
    assert_eq!(listed(app.token_a.clone()).await, 0);
    assert!(!unsubscribed().await);
}

/// A message Twilio could not deliver for good (a landline, an unknown or invalid number,
/// a number that replied STOP) suppresses that number; a passing failure does not.
#[tokio::test]
async fn permanent_sms_failures_suppress_the_number() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = app.customer(t, json!({"name": format!("Texted {i}"), "phone": format!("+1555020000{i}")})).await;
        ids.push(c["id"].clone());
    }
    let sms = post(&app, t, "/api/v1/outbound/sms/campaigns", json!({"name": "SMS", "customer_ids": ids})).await;
    let sms_id = sms["id"].as_str().unwrap().to_owned();
    let sids: Vec<(String, String)> =
        mark_sent(&app, &sms_id).await.into_iter().map(|(sid, phone)| (sid, phone.unwrap_or_default())).collect();
    let path = format!("/api/v1/outbound/sms/campaigns/{sms_id}/sms-status");
    for ((sid, _), code) in sids.iter().zip(["30006", "21610", "30003"]) {
        let form = [("MessageSid", sid.as_str()), ("MessageStatus", "undelivered"), ("ErrorCode", code)];
        let (s, r) =
            app.raw(fibonacco_api::testing::twilio_callback(&path, &form, fibonacco_api::testing::TWILIO_TOKEN)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let (_, list) = app.get("/api/v1/outbound/suppressions", t).await;
    let mut got: Vec<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["target"].as_str().unwrap().to_owned(), e["reason"].as_str().unwrap().to_owned()))
        .collect();
    got.sort();
    let mut want = vec![(sids[0].1.clone(), "bounce".to_owned()), (sids[1].1.clone(), "stop".to_owned())];
    want.sort();
    assert_eq!(got, want, "30003 (unreachable for now) suppresses nothing");
}
