//! Queues, workers and sends end to end: real Postgres, real Redis, SES through moto's
//! emulator (started by the stack script), Twilio and ElevenLabs as HTTP stubs.

use std::{sync::atomic::Ordering, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::Path,
    http::{Request, StatusCode},
    response::IntoResponse,
    routing::post,
};
use fibonacco_api::testing::{APP_URL, TestApp};
use fibonacco_delivery::{
    links::{Links, RecipientRef},
    scheduler::{self, Scheduler, TickOutcome},
};
use fibonacco_platform::{
    db,
    queue::{self, failed},
    testing::wait_for,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn email_campaign_reaches_fifty_recipients_once_each_with_tracking() {
    let app = TestApp::spawn().await;
    let domain = format!("{}.fifty.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 50).await;
    let id = email_campaign(&app, &ids).await;
    let (s, started) =
        app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(&app.token_a), None).await;
    assert_eq!(s, StatusCode::OK, "{started}");

    let ctx = job_context(&app, &[("MAIL_FROM", sender.clone())], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    let (ok, _, failed) = worker.stop().await;
    assert_eq!(failed, 0);
    assert!(ok >= 3, "one dispatch and two send jobs (25 recipients each), got {ok}");

    let mail = sent_to(&domain).await;
    assert_eq!(mail.len(), 50, "every recipient got mail");
    assert!(mail.values().all(|m| m.len() == 1), "nobody got two");
    let sample = &mail[&format!("c7@{domain}")][0];
    assert!(sample.contains("Hello Customer"), "merged subject");
    assert!(sample.contains("List-Unsubscribe: <https://fib.test/t/unsubscribe/"), "unsubscribe header");
    let recipients = recipient_statuses(&app, &id).await;
    assert_eq!(recipients.len(), 50);
    assert!(recipients.iter().all(|(s, m, _)| s == "sent" && m.is_some()), "{recipients:?}");

    // The dispatch ran as a job batch that finished.
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let batch: (i32, i32, i32, bool) = sqlx::query_as(
        "select b.total_jobs, b.pending_jobs, b.failed_jobs, b.finished_at is not null
         from outbound_campaigns c join job_batches b on b.id = c.last_batch_id where c.id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(batch, (2, 0, 0, true), "50 recipients in jobs of 25");
    let (_, analytics) = app.get(&format!("/api/v1/outbound/campaigns/{id}/analytics"), &app.token_a).await;
    let d = &analytics["data"]["dispatch"];
    assert_eq!((d["total_jobs"].as_i64(), d["progress"].as_i64()), (Some(2), Some(100)), "{analytics}");
    assert_eq!(analytics["data"]["sent"], 50);

    // Tracking: open, click (only the signed destination), unsubscribe. The mail went out
    // an hour ago: a click seconds after sending is a scanner's, not this person's.
    let recipient: Uuid = recipients[0].2.parse().unwrap();
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query("update outbound_campaign_recipients set sent_at = sent_at - interval '1 hour' where id = $1")
        .bind(recipient)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let links =
        Links::new(APP_URL, app.state.config.app_key.expose(), RecipientRef { tenant: app.tenant_a, recipient });
    let path = |url: String| url.trim_start_matches(APP_URL).to_owned();
    for _ in 0..2 {
        let res = app.router.clone().oneshot_get(&path(links.open_pixel())).await;
        assert_eq!((res.0, res.1.as_str()), (StatusCode::OK, "image/gif"));
    }
    let res = app.router.clone().oneshot_get(&path(links.click("https://shop.example/offer?x=1"))).await;
    assert_eq!(res.0, StatusCode::SEE_OTHER);
    assert_eq!(res.2.as_deref(), Some("https://shop.example/offer?x=1"));
    let forged = path(links.click("https://shop.example/offer?x=1")).replace("shop.example", "evil.example");
    let res = app.router.clone().oneshot_get(&forged).await;
    assert_eq!((res.0, res.2), (StatusCode::NOT_FOUND, None), "no open redirect");
    let res = app.router.clone().oneshot_get("/t/open/not-a-token").await;
    assert_eq!(res.0, StatusCode::OK, "the pixel always renders");
    let unsubscribe = path(links.unsubscribe());
    let res = app.router.clone().oneshot_get(&unsubscribe).await;
    assert_eq!(res.0, StatusCode::OK, "GET only shows the button");
    let (s, _) = app.raw(Request::post(&unsubscribe).body(Body::from("List-Unsubscribe=One-Click")).unwrap()).await;
    assert_eq!(s, StatusCode::OK);

    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let (status, opened, clicked): (String, bool, bool) = sqlx::query_as(
        "select status, opened_at is not null, clicked_at is not null from outbound_campaign_recipients where id = $1",
    )
    .bind(recipient)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((status.as_str(), opened, clicked), ("unsubscribed", true, true));
    let activities: Vec<(String,)> = sqlx::query_as(
        "select activity_type from customer_activities where campaign_id = $1::uuid order by occurred_at, activity_type",
    )
    .bind(&id)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let kinds: Vec<&str> = activities.iter().map(|(k,)| k.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "email_open").count(),
        1,
        "two opens, one first-open activity: {kinds:?}"
    );
    assert!(kinds.contains(&"email_click") && kinds.contains(&"unsubscribe"), "{kinds:?}");
    let suppressed: Option<String> = sqlx::query_scalar(
        "select s.reason from outbound_suppressions s join crm_customers c on c.tenant_id = s.tenant_id and lower(c.email) = s.target
         join outbound_campaign_recipients r on r.customer_id = c.id where r.id = $1 and s.channel = 'email'",
    )
    .bind(recipient)
    .fetch_optional(&mut *tx)
    .await
    .unwrap();
    assert_eq!(suppressed.as_deref(), Some("unsubscribe"), "the address is on the tenant's list");
    let unsubscribed: bool = sqlx::query_scalar(
        "select c.unsubscribed_at is not null from crm_customers c join outbound_campaign_recipients r on r.customer_id = c.id where r.id = $1",
    )
    .bind(recipient)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(unsubscribed, "the customer opted out");
    // An open proves delivery: the opened e-mail counts as delivered, and the open rate
    // (opened / delivered, docs/metrics.md) is defined without a delivery report.
    let (_, analytics) = app.get(&format!("/api/v1/outbound/campaigns/{id}/analytics"), &app.token_a).await;
    let a = &analytics["data"];
    assert_eq!((a["delivered"].as_i64(), a["opened"].as_i64()), (Some(1), Some(1)), "{a}");
    assert_eq!(a["open_rate"].as_f64(), Some(1.0), "{a}");

    // Another tenant's token cannot touch these recipients: tokens are bound to their tenant.
    let other = Links::new(APP_URL, "another-key-not-ours-123", RecipientRef { tenant: app.tenant_b, recipient });
    let res = app.router.clone().oneshot_get(&path(other.unsubscribe())).await;
    assert_eq!(res.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ses_errors_are_retried_and_permanent_rejections_wait_in_failed_jobs() {
    let app = TestApp::spawn().await;
    let domain = format!("{}.flaky.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 3).await;
    let id = email_campaign(&app, &ids).await;
    app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(&app.token_a), None).await;

    // SES answers 500 to the first four calls: the job (all three recipients) is retried
    // with backoff until each is sent, once.
    let (endpoint, seen) = flaky_ses(4).await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender.clone()), ("SES_ENDPOINT", endpoint)], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    let (_, retried, failed) = worker.stop().await;
    assert!(retried >= 2 && failed == 0, "retried {retried}, failed {failed}");
    assert!(seen.load(Ordering::SeqCst) >= 7);
    let mail = sent_to(&domain).await;
    assert_eq!((mail.len(), mail.values().map(Vec::len).max()), (3, Some(1)), "no duplicate after retries");

    // An unverified sender is a permanent rejection: straight to failed_jobs, recipient failed.
    let domain2 = format!("{}.rejected.example", unique());
    let sender2 = format!("news@{domain2}-sender.example");
    let ids2 = customers(&app, &domain2, 1).await;
    let id2 = email_campaign(&app, &ids2).await;
    app.send("POST", &format!("/api/v1/outbound/campaigns/{id2}/start"), Some(&app.token_a), None).await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender2.clone())], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx.clone(), &["emails"], Duration::from_secs(30));
    let ours = |jobs: Vec<failed::FailedJob>| {
        let id2 = id2.clone();
        jobs.into_iter().filter(move |j| j.payload["data"]["campaign_id"] == json!(id2)).collect::<Vec<_>>()
    };
    wait_for("the job to fail", Duration::from_secs(30), || async {
        !ours(failed::list(&app.db.pool).await.unwrap()).is_empty()
    })
    .await;
    worker.stop().await;
    let job = ours(failed::list(&app.db.pool).await.unwrap()).remove(0);
    assert!(job.exception.contains("rejected"), "{}", job.exception);
    assert_eq!(job.job_name(), "SendEmailCampaign");
    assert_eq!(recipient_statuses(&app, &id2).await[0].0, "failed");
    assert!(sent_to(&domain2).await.is_empty());

    // The cause is fixed (sender verified); `queue retry <uuid>` sends it.
    verify_sender(&sender2).await;
    let pushed = failed::retry(&app.db.pool, &app.state.queue, Some(job.uuid)).await.unwrap();
    assert_eq!(pushed, vec![job.uuid]);
    assert!(ours(failed::list(&app.db.pool).await.unwrap()).is_empty(), "no longer listed as failed");
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for("the retried send", Duration::from_secs(30), || async { sent_to(&domain2).await.len() == 1 }).await;
    worker.stop().await;
    assert_eq!(recipient_statuses(&app, &id2).await[0].0, "sent");
}

#[tokio::test]
async fn sms_and_call_campaigns_go_through_twilio_and_signed_callbacks_record_status() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let domain = format!("{}.twilio.example", unique());
    let ids = customers(&app, &domain, 3).await;
    let (_, sms_tpl) = app
        .send(
            "POST",
            "/api/v1/outbound/sms/templates",
            Some(t),
            Some(json!({"name": "s", "body": "Hi {{ first_name }}!"})),
        )
        .await;
    let (_, sms) = app
        .send(
            "POST",
            "/api/v1/outbound/sms/campaigns",
            Some(t),
            Some(json!({"name": "SMS", "template_id": sms_tpl["data"]["id"], "customer_ids": ids})),
        )
        .await;
    let sms_id = sms["data"]["id"].as_str().unwrap().to_owned();
    let (_, script) = app
        .send(
            "POST",
            "/api/v1/outbound/phone/scripts",
            Some(t),
            Some(json!({"name": "c", "script": "Hello {{ name }} & co"})),
        )
        .await;
    let (_, call) = app
        .send(
            "POST",
            "/api/v1/outbound/phone/campaigns",
            Some(t),
            Some(json!({"name": "Calls", "template_id": script["data"]["id"], "customer_ids": &ids[..1]})),
        )
        .await;
    let call_id = call["data"]["id"].as_str().unwrap().to_owned();
    for c in [&sms_id, &call_id] {
        let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{c}/start"), Some(t), None).await;
        assert_eq!(s, StatusCode::OK, "{j}");
    }

    let (base, stub) = twilio_stub().await;
    let ctx = twilio_context(&app, base);
    let worker = RunningWorker::start(ctx, &["sms", "calls"], Duration::from_secs(30));
    wait_for("both campaigns to complete", Duration::from_secs(30), || async {
        campaign_status(&app, &sms_id).await == "completed" && campaign_status(&app, &call_id).await == "completed"
    })
    .await;
    worker.stop().await;

    let posts = stub.posts.lock().unwrap().clone();
    let messages: Vec<_> = posts.iter().filter(|p| p.0 == "AC123/Messages.json").collect();
    let calls: Vec<_> = posts.iter().filter(|p| p.0 == "AC123/Calls.json").collect();
    assert_eq!((messages.len(), calls.len()), (3, 1));
    assert!(messages[0].1.starts_with("Basic "), "basic auth");
    assert_eq!(messages[0].2["From"], "+15550000000");
    assert!(messages.iter().any(|m| m.2["Body"] == "Hi Customer!"), "{messages:?}");
    assert_eq!(messages[0].2["StatusCallback"], format!("{APP_URL}/api/v1/outbound/sms/campaigns/{sms_id}/sms-status"));
    assert!(calls[0].2["Twiml"].contains("<Say>Hello Customer 0"), "{:?}", calls[0].2);
    assert!(calls[0].2["Twiml"].contains("&amp; co"), "escaped");

    // Twilio reports back, signed: the recipients move.
    let recipients = recipient_statuses(&app, &sms_id).await;
    let sid = recipients[0].1.clone().unwrap();
    let path = format!("/api/v1/outbound/sms/campaigns/{sms_id}/sms-status");
    let (s, j) = app
        .raw(fibonacco_api::testing::twilio_callback(
            &path,
            &[("MessageSid", &sid), ("MessageStatus", "delivered")],
            fibonacco_api::testing::TWILIO_TOKEN,
        ))
        .await;
    assert_eq!((s, j["data"].as_str()), (StatusCode::OK, Some("delivered")));
    let (s, _) = app
        .raw(fibonacco_api::testing::twilio_callback(
            &path,
            &[("MessageSid", &sid), ("MessageStatus", "failed")],
            "forged",
        ))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let call_sid = recipient_statuses(&app, &call_id).await[0].1.clone().unwrap();
    let call_path = format!("/api/v1/outbound/phone/campaigns/{call_id}/call-status");
    let (s, j) = app
        .raw(fibonacco_api::testing::twilio_callback(
            &call_path,
            &[("CallSid", &call_sid), ("CallStatus", "completed"), ("AnsweredBy", "human")],
            fibonacco_api::testing::TWILIO_TOKEN,
        ))
        .await;
    assert_eq!((s, j["data"].as_str()), (StatusCode::OK, Some("answered")));
    assert_eq!(recipient_statuses(&app, &sms_id).await[0].0, "delivered");
}

#[tokio::test]
async fn pause_stops_sends_resume_continues_and_cancel_ends() {
    let app = TestApp::spawn().await;
    let domain = format!("{}.pause.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 5).await;
    let id = email_campaign(&app, &ids).await;
    let t = &app.token_a;
    app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(t), None).await;
    let ctx = job_context(&app, &[("MAIL_FROM", sender.clone())], Duration::from_secs(30));
    // Dispatch only (run the dispatch job by hand), then pause before any send runs.
    let dispatch = app.state.queue.pop("emails", Duration::from_secs(30)).await.unwrap().unwrap().unwrap();
    assert_eq!(dispatch.payload.job, "DispatchCampaign");
    use fibonacco_platform::queue::Handler;
    ctx.handle(&dispatch).await.unwrap();
    app.state.queue.ack(&dispatch).await.unwrap();
    assert!(recipient_statuses(&app, &id).await.iter().all(|r| r.0 == "queued"));
    let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/pause"), Some(t), None).await;
    assert_eq!((s, j["data"]["status"].as_str()), (StatusCode::OK, Some("paused")));
    let (s, _) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/pause"), Some(t), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "already paused");

    let worker = RunningWorker::start(ctx.clone(), &["emails"], Duration::from_secs(30));
    wait_for("the queue to drain", Duration::from_secs(30), || async {
        app.state.queue.sizes("emails").await.unwrap().ready == 0
    })
    .await;
    worker.stop().await;
    assert!(sent_to(&domain).await.is_empty(), "paused: nothing sent");
    assert!(recipient_statuses(&app, &id).await.iter().all(|r| r.0 == "pending"));

    let (s, _) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/resume"), Some(t), None).await;
    assert_eq!(s, StatusCode::OK);
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(sent_to(&domain).await.len(), 5);
    let (s, _) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/cancel"), Some(t), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "a completed campaign cannot be cancelled");

    let other = email_campaign(&app, &ids).await;
    let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{other}/cancel"), Some(t), None).await;
    assert_eq!((s, j["data"]["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let (s, _) = app.send("POST", &format!("/api/v1/outbound/campaigns/{other}/start"), Some(t), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn tts_jobs_store_audio_and_embedding_jobs_never_mark_entries_done() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    async fn speak(headers: axum::http::HeaderMap, Path(voice): Path<String>, body: String) -> impl IntoResponse {
        let key = headers.get("xi-api-key").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if key != "el-key" {
            return (StatusCode::UNAUTHORIZED, Vec::new());
        }
        let body: Value = serde_json::from_str(&body).unwrap();
        (StatusCode::OK, format!("ID3-{voice}-{}", body["text"].as_str().unwrap()).into_bytes())
    }
    let stub = Router::new().route("/v1/text-to-speech/{voice}", post(speak));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, stub).await.unwrap() });

    let (s, r) =
        app.send("POST", "/api/v1/tts", Some(t), Some(json!({"text": "Welcome aboard", "voice_id": "voice1"}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let tts_id = r["data"]["id"].as_str().unwrap().to_owned();
    let (s, k) = app
        .send(
            "POST",
            "/api/v1/knowledge",
            Some(t),
            Some(json!({"title": "Hours", "content": "We open at nine.", "category": "faq"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let kid = k["data"]["id"].as_str().unwrap().to_owned();
    let (s, _) = app.send("POST", &format!("/api/v1/knowledge/{kid}/generate-embedding"), Some(t), None).await;
    assert_eq!(s, StatusCode::ACCEPTED);

    let ctx = job_context(
        &app,
        &[("ELEVENLABS_API_KEY", "el-key".into()), ("ELEVENLABS_BASE_URL", format!("http://{addr}"))],
        Duration::from_secs(30),
    );
    let worker = RunningWorker::start(ctx.clone(), &["tts", "embeddings"], Duration::from_secs(30));
    wait_for("the audio", Duration::from_secs(30), || async {
        let (_, r) = app.get(&format!("/api/v1/tts/{tts_id}"), t).await;
        r["data"]["status"] == "completed"
    })
    .await;
    let (_, r) = app.get(&format!("/api/v1/tts/{tts_id}"), t).await;
    let url = r["data"]["audio_url"].as_str().unwrap();
    assert!(url.starts_with("file://") && url.ends_with(&format!("{tts_id}.mp3")), "{url}");
    let stored = std::fs::read(url.trim_start_matches("file://")).unwrap();
    assert_eq!(stored, b"ID3-voice1-Welcome aboard");
    assert_eq!(r["data"]["audio_bytes"], stored.len());

    // This worker has no embedder: the embedding job is retried later and the entry stays pending.
    wait_for("the embedding job to be retried", Duration::from_secs(10), || async {
        app.state.queue.sizes("embeddings").await.unwrap().delayed == 1
    })
    .await;
    worker.stop().await;
    let (_, entry) = app.get(&format!("/api/v1/knowledge/{kid}"), t).await;
    assert_eq!(entry["data"]["embedding_status"], "pending");
}

#[tokio::test]
async fn scheduler_runs_each_tick_once_across_instances_and_prevents_overlap() {
    let app = TestApp::spawn().await;
    let tasks = scheduler::tasks(|_| None).unwrap();
    let a = Scheduler::new(app.db.pool.clone(), app.state.queue.clone());
    let mut b = Scheduler::new(app.db.pool.clone(), app.state.queue.clone());
    b.instance = format!("{}-b", b.instance);
    let task = scheduler::find(&tasks, "campaigns:dispatch").unwrap();
    let tick = chrono::Utc::now();
    let (ra, rb) = tokio::join!(a.run_tick(task, tick), b.run_tick(task, tick));
    let ran = [&ra, &rb].iter().filter(|o| matches!(o, TickOutcome::Ran(_))).count();
    let taken = [&ra, &rb].iter().filter(|o| matches!(o, TickOutcome::TakenElsewhere)).count();
    assert_eq!((ran, taken), (1, 1), "{ra:?} {rb:?}");
    let runs: i64 = sqlx::query_scalar("select count(*) from scheduled_task_runs where task = $1 and tick = $2")
        .bind(task.name)
        .bind(tick)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 1);

    // An unfinished run blocks a no-overlap task; a stale one does not.
    let sweep = scheduler::find(&tasks, "embeddings:process").unwrap();
    sqlx::query(
        "insert into scheduled_task_runs (task, tick, instance) values ($1, now() - interval '1 minute', 'elsewhere')",
    )
    .bind(sweep.name)
    .execute(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(a.run_now(sweep).await, TickOutcome::SkippedOverlap);
    sqlx::query("update scheduled_task_runs set started_at = now() - interval '2 hours' where instance = 'elsewhere'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert!(matches!(a.run_now(sweep).await, TickOutcome::Ran(_)));

    // Scheduled campaigns start and are dispatched; scheduled ones without recipients go back to draft.
    let domain = format!("{}.sched.example", unique());
    let ids = customers(&app, &domain, 2).await;
    let id = email_campaign(&app, &ids).await;
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query("update outbound_campaigns set status = 'scheduled', scheduled_at = now() - interval '1 second' where id = $1::uuid")
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let start = scheduler::find(&tasks, "campaigns:start-scheduled").unwrap();
    let outcome = a.run_now(start).await;
    assert!(matches!(&outcome, TickOutcome::Ran(d) if d.starts_with("1 campaigns started")), "{outcome:?}");
    assert_eq!(campaign_status(&app, &id).await, "running");
    let queued = app.state.queue.ready_payloads("emails").await.unwrap();
    assert!(queued.iter().any(|p| p.job == "DispatchCampaign" && p.data["campaign_id"] == json!(id)));

    // Due scheduled content is published with a history row.
    let (_, content) = app
        .send(
            "POST",
            "/api/v1/content/generate",
            Some(&app.token_a),
            Some(json!({"content_type": "blog_post", "topic": "Spring offers"})),
        )
        .await;
    if let Some(cid) = content["data"]["id"].as_str() {
        let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        sqlx::query(
            "update content_workflow set status = 'scheduled', scheduled_publish_at = now() - interval '1 second'
             where content_id = $1::uuid",
        )
        .bind(cid)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let publish = scheduler::find(&tasks, "content:publish-scheduled").unwrap();
        assert_eq!(a.run_now(publish).await, TickOutcome::Ran("1 content items published".into()));
        let (_, c) = app.get(&format!("/api/v1/content/{cid}"), &app.token_a).await;
        assert_eq!(c["data"]["status"], "published", "{c}");
    } else {
        panic!("content not generated: {content}");
    }
}

#[tokio::test]
async fn queue_delivers_delayed_jobs_and_gives_up_after_max_tries() {
    let app = TestApp::spawn().await;
    let q = &app.state.queue;
    let mut payload = queue::JobPayload::new(queue::SEND_SMS, json!({"n": 1}));
    payload.max_tries = 2;
    q.push_payload(&payload, Some(Duration::from_millis(300))).await.unwrap();
    assert!(q.pop("sms", Duration::from_secs(5)).await.unwrap().is_none(), "delayed: not ready yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    q.migrate_due("sms").await.unwrap();
    let job = q.pop("sms", Duration::from_millis(200)).await.unwrap().unwrap().unwrap();
    assert_eq!((job.payload.uuid, job.attempts), (payload.uuid, 1));
    // Not acknowledged: after the reservation lapses it is delivered again, counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.migrate_due("sms").await.unwrap();
    let again = q.pop("sms", Duration::from_millis(200)).await.unwrap().unwrap().unwrap();
    assert_eq!((again.payload.uuid, again.attempts), (payload.uuid, 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.migrate_due("sms").await.unwrap();

    // A worker sees the third delivery of a two-try job: failed_jobs, with the reason.
    let ctx = job_context(&app, &[], Duration::from_secs(5));
    let worker = RunningWorker::start(ctx, &["sms"], Duration::from_secs(5));
    wait_for("the failed job", Duration::from_secs(10), || async {
        failed::list(&app.db.pool).await.unwrap().iter().any(|j| j.uuid == payload.uuid)
    })
    .await;
    worker.stop().await;
    let f = failed::list(&app.db.pool).await.unwrap().into_iter().find(|j| j.uuid == payload.uuid).unwrap();
    assert!(f.exception.contains("taken 3 times"), "{}", f.exception);
    let sizes = q.sizes("sms").await.unwrap();
    assert_eq!((sizes.ready, sizes.delayed, sizes.reserved), (0, 0, 0));
    assert!(failed::forget(&app.db.pool, payload.uuid).await.unwrap());
    assert!(failed::list(&app.db.pool).await.unwrap().iter().all(|j| j.uuid != payload.uuid));
}

#[tokio::test]
async fn embedding_jobs_store_vectors_that_find_paraphrased_questions() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let faq = [
        ("Opening hours", "We are open Monday to Friday from 9am to 5pm, and closed on weekends."),
        ("Refunds", "You can return any product within 30 days for a full refund of the purchase price."),
        ("Delivery", "Orders ship within two business days; delivery takes three to five days."),
    ];
    let mut ids = Vec::new();
    for (title, content) in faq {
        let (s, k) = app
            .send(
                "POST",
                "/api/v1/knowledge",
                Some(t),
                Some(json!({"title": title, "content": content, "category": "faq"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        let id = k["data"]["id"].as_str().unwrap().to_owned();
        let (s, _) = app.send("POST", &format!("/api/v1/knowledge/{id}/generate-embedding"), Some(t), None).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        ids.push(id);
    }
    let ctx = with_local_embedder(job_context(&app, &[], Duration::from_secs(30)));
    let worker = RunningWorker::start(ctx, &["embeddings"], Duration::from_secs(30));
    wait_for("all entries embedded", Duration::from_secs(60), || async {
        let mut done = true;
        for id in &ids {
            let (_, e) = app.get(&format!("/api/v1/knowledge/{id}"), t).await;
            done &= e["data"]["embedding_status"] == "completed";
        }
        done
    })
    .await;
    worker.stop().await;

    let model =
        fibonacco_search::embed::local::MiniLm::load(&fibonacco_search::embed::local::MiniLm::default_dir()).unwrap();
    for (question, expected) in [
        ("When can I visit your store?", 0),
        ("How do I get my money back?", 1),
        ("How long until my package arrives?", 2),
    ] {
        let q = model.embed_blocking(&[question.to_owned()]).unwrap().remove(0);
        let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let hits: Vec<(Uuid, f64)> =
            sqlx::query_as("select id, similarity from knowledge_semantic_search($1, $2::text::vector, 3)")
                .bind(app.tenant_a)
                .bind(fibonacco_search::embed::pgvector_literal(&q))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        let (model_name,): (String,) = sqlx::query_as("select embedding_model from knowledge_base where id = $1::uuid")
            .bind(&ids[expected])
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(model_name, "all-MiniLM-L6-v2");
        assert_eq!(hits[0].0.to_string(), ids[expected], "{question}: {hits:?}");
        assert!(hits[0].1 > hits[1].1);
    }
}

/// A template link with non-ASCII characters (an IRI) redirects to its ASCII form (IDNA
/// host, percent-encoded path and query) instead of failing to build the Location header.
#[tokio::test]
async fn a_click_on_a_non_ascii_link_redirects_to_its_ascii_form() {
    let app = TestApp::spawn().await;
    let domain = format!("{}.iri.example", unique());
    let ids = customers(&app, &domain, 1).await;
    let link = "https://bücher.example/straße?q=größe&n=1";
    let id = email_campaign_with(&app, &ids, &format!("<a href=\"{link}\">Books</a>")).await;
    let recipients = recipient_statuses(&app, &id).await;
    let recipient: Uuid = recipients[0].2.parse().unwrap();
    let links =
        Links::new(APP_URL, app.state.config.app_key.expose(), RecipientRef { tenant: app.tenant_a, recipient });
    let path = links.click(link).trim_start_matches(APP_URL).to_owned();
    let res = app.router.clone().oneshot_get(&path).await;
    assert_eq!(res.0, StatusCode::SEE_OTHER);
    assert_eq!(res.2.as_deref(), Some("https://xn--bcher-kva.example/stra%C3%9Fe?q=gr%C3%B6%C3%9Fe&n=1"));
}

/// A suppressed address (here entered by hand, upper-cased) is never mailed: its recipient
/// ends `failed` with the reason, the others are sent; the list is per tenant.
#[tokio::test]
async fn a_suppressed_address_is_skipped_with_its_reason_and_never_sent() {
    let app = TestApp::spawn().await;
    let domain = format!("{}.suppressed.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 3).await;
    let t = Some(app.token_a.as_str());
    let entry =
        json!({"channel": "email", "target": format!("C1@{}", domain.to_uppercase()), "note": "asked on the phone"});
    let (s, created) = app.send("POST", "/api/v1/outbound/suppressions", t, Some(entry.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["data"]["target"], format!("c1@{domain}"));
    assert_eq!(created["data"]["reason"], "manual");
    let (s, dup) = app.send("POST", "/api/v1/outbound/suppressions", t, Some(entry)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{dup}");
    for bad in [
        json!({"channel": "email", "target": "not an address"}),
        json!({"channel": "fax", "target": "x"}),
        json!({"channel": "phone", "target": "555"}),
    ] {
        let (s, r) = app.send("POST", "/api/v1/outbound/suppressions", t, Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    }
    let (_, theirs) = app.get("/api/v1/outbound/suppressions", &app.token_b).await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0, "another tenant's list is its own");

    let id = email_campaign(&app, &ids).await;
    let (s, started) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), t, None).await;
    assert_eq!(s, StatusCode::OK, "{started}");
    let ctx = job_context(&app, &[("MAIL_FROM", sender.clone())], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    worker.stop().await;
    let mail = sent_to(&domain).await;
    assert_eq!(mail.len(), 2, "{:?}", mail.keys());
    assert!(!mail.contains_key(&format!("c1@{domain}")));
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let skipped: Vec<(String, Option<String>)> = sqlx::query_as(
        "select status, error from outbound_campaign_recipients where campaign_id = $1::uuid and status <> 'sent'",
    )
    .bind(&id)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(skipped, vec![("failed".to_owned(), Some("suppressed (manual)".to_owned()))]);

    let entry_id = created["data"]["id"].as_str().unwrap();
    let (s, _) =
        app.send("DELETE", &format!("/api/v1/outbound/suppressions/{entry_id}"), Some(&app.token_b), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant cannot lift it");
    let (s, _) = app.send("DELETE", &format!("/api/v1/outbound/suppressions/{entry_id}"), t, None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = app.get("/api/v1/outbound/suppressions", &app.token_a).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
}

/// Link scanners and prefetchers are recorded but flagged: a HEAD request or a scanner's
/// user agent leaves the recipient unopened and unclicked (so rates and the engagement
/// score see people only) and writes a `machine_open` / `machine_click` activity.
#[tokio::test]
async fn scanner_opens_and_clicks_are_flagged_as_machine_events() {
    use tower::ServiceExt;
    let app = TestApp::spawn().await;
    let domain = format!("{}.scanned.example", unique());
    let ids = customers(&app, &domain, 1).await;
    let link = "https://shop.example/offer";
    let id = email_campaign_with(&app, &ids, &format!("<a href=\"{link}\">Offer</a>")).await;
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query("update outbound_campaign_recipients set status = 'sent', sent_at = now() - interval '1 hour', provider_message_id = 'm1' where campaign_id = $1::uuid")
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let recipient: Uuid = recipient_statuses(&app, &id).await[0].2.parse().unwrap();
    let links =
        Links::new(APP_URL, app.state.config.app_key.expose(), RecipientRef { tenant: app.tenant_a, recipient });
    let path = |url: String| url.trim_start_matches(APP_URL).to_owned();
    let request = |method: &str, url: String, agent: &str| {
        Request::builder().method(method).uri(path(url)).header("user-agent", agent).body(Body::empty()).unwrap()
    };
    let scanner = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))";
    let browser = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)";
    for req in [
        request("GET", links.open_pixel(), scanner),
        request("HEAD", links.click(link), browser),
        request("GET", links.click(link), "python-requests/2.31"),
    ] {
        let res = app.router.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success() || res.status() == StatusCode::SEE_OTHER, "{}", res.status());
    }
    let state = || async {
        let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let row: (bool, bool, String) = sqlx::query_as(
            "select opened_at is not null, clicked_at is not null, status from outbound_campaign_recipients where id = $1",
        )
        .bind(recipient)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let kinds: Vec<String> = sqlx::query_scalar(
            "select activity_type from customer_activities where campaign_id = $1::uuid order by activity_type",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        (row, kinds)
    };
    let (row, kinds) = state().await;
    assert_eq!(row, (false, false, "sent".to_owned()), "machines neither open nor click");
    assert_eq!(kinds, ["machine_click", "machine_click", "machine_open"]);
    // A person's open and click count as ever.
    let res = app.router.clone().oneshot(request("GET", links.click(link), browser)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (row, kinds) = state().await;
    assert_eq!(row, (true, true, "clicked".to_owned()));
    assert!(kinds.contains(&"email_click".to_owned()), "{kinds:?}");
}
