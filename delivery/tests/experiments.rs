//! A/B tests with an automatic winner and send-time optimisation, through the API, real
//! workers sending through SES (moto) and the scheduler's tasks.

use std::{collections::HashMap, time::Duration};

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;
use fibonacco_delivery::scheduler::{Scheduler, tasks};
use fibonacco_platform::testing::wait_for;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::*;

/// An e-mail template whose subject is `subject`; returns its id.
async fn template(app: &TestApp, token: &str, subject: &str) -> String {
    let (s, t) = app
        .send(
            "POST",
            "/api/v1/outbound/email/templates",
            Some(token),
            Some(json!({"name": subject, "subject": subject, "html_body": "<p>Hi {{ name }}</p>"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t["data"]["id"].as_str().unwrap().to_owned()
}

/// SQL in tenant A's own transaction (as the app's connections run).
async fn tenant_sql(app: &TestApp, sql: &str, campaign: &str) -> u64 {
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let n = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(campaign.parse::<Uuid>().unwrap())
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    tx.commit().await.unwrap();
    n
}

/// Each recipient's customer → (variant, waiting for the winner, status).
async fn plan(app: &TestApp, campaign: &str) -> HashMap<String, (Option<i16>, bool, String)> {
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let rows: Vec<(String, Option<i16>, bool, String)> = sqlx::query_as(
        "select customer_id::text, variant, coalesce(not_before = 'infinity', false), status
         from outbound_campaign_recipients where campaign_id = $1",
    )
    .bind(campaign.parse::<Uuid>().unwrap())
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows.into_iter().map(|(c, v, w, s)| (c, (v, w, s))).collect()
}

fn scheduler(app: &TestApp) -> Scheduler {
    Scheduler::new(app.db.pool.clone(), app.state.queue.clone())
}

async fn ab_campaign(app: &TestApp, ids: &[String], test: Value) -> String {
    let (s, c) = app
        .send(
            "POST",
            "/api/v1/outbound/email/campaigns",
            Some(&app.token_a),
            Some(json!({"name": "Spring test", "customer_ids": ids, "ab_test": test})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    c["data"]["id"].as_str().unwrap().to_owned()
}

async fn start(app: &TestApp, id: &str) -> Value {
    let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{id}/start"), Some(&app.token_a), None).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    j
}

/// Variant B is planted better (every test recipient of B opens, one of A's does): after
/// the wait the scheduler decides B, significantly, stores the numbers, and sends B to
/// the rest; every customer gets exactly one message, of the variant they were given.
#[tokio::test]
async fn an_ab_test_sends_the_planted_better_variant_to_the_rest_once_each() {
    let app = TestApp::spawn().await;
    let domain = format!("{}.ab.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 40).await;
    let a = template(&app, &app.token_a, "Spring A").await;
    let b = template(&app, &app.token_a, "Spring B").await;
    let test = json!({"variants": [{"name": "A", "template_id": a}, {"name": "B", "template_id": b}],
                      "test_share": 0.5, "metric": "opens", "wait_minutes": 1, "seed": 7});
    let id = ab_campaign(&app, &ids, test).await;
    let (_, c) = app.get(&format!("/api/v1/outbound/campaigns/{id}"), &app.token_a).await;
    assert_eq!(c["data"]["template_id"], json!(a), "the first variant's template is the campaign's: {c}");
    assert_eq!(c["data"]["ab_test"]["metric"], "opens");
    start(&app, &id).await;

    // Half the audience in the test, 10 per variant; the other 20 wait for the winner.
    let split = plan(&app, &id).await;
    let count = |v: Option<i16>, waiting: bool| split.values().filter(|(x, w, _)| *x == v && *w == waiting).count();
    assert_eq!((count(Some(0), false), count(Some(1), false), count(None, true)), (10, 10, 20), "{split:?}");

    let ctx = job_context(&app, &[("MAIL_FROM", sender.clone())], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx.clone(), &["emails"], Duration::from_secs(30));
    wait_for("the 20 test sends", Duration::from_secs(60), || async {
        plan(&app, &id).await.values().filter(|(_, _, s)| s == "sent").count() == 20
    })
    .await;
    worker.stop().await;
    assert_eq!(campaign_status(&app, &id).await, "running", "the rest keeps the campaign open");
    let mail = sent_to(&domain).await;
    assert_eq!(mail.len(), 20, "only the test's share is sent before the decision");

    // The planted result, then the decision: not before the wait has passed.
    tenant_sql(
        &app,
        "update outbound_campaign_recipients set opened_at = now() where campaign_id = $1 and variant = 1",
        &id,
    )
    .await;
    let one_of_a = "update outbound_campaign_recipients set opened_at = now()
                    where id = (select id from outbound_campaign_recipients where campaign_id = $1 and variant = 0 order by id limit 1)";
    assert_eq!(tenant_sql(&app, one_of_a, &id).await, 1);
    let sweep = scheduler(&app);
    let report = tasks::run(&sweep, "campaigns:ab-decide").await.unwrap();
    assert!(report.starts_with("0 A/B tests decided"), "{report}");
    tenant_sql(
        &app,
        "update outbound_campaign_recipients set sent_at = sent_at - interval '2 minutes' where campaign_id = $1",
        &id,
    )
    .await;
    let report = tasks::run(&sweep, "campaigns:ab-decide").await.unwrap();
    assert_eq!(report, "1 A/B tests decided, 1 with a significant winner");

    let (_, c) = app.get(&format!("/api/v1/outbound/campaigns/{id}"), &app.token_a).await;
    let d = &c["data"]["ab_decision"];
    assert_eq!(
        (d["winner"].clone(), d["winner_name"].clone(), d["significant"].clone()),
        (json!(1), json!("B"), json!(true)),
        "{d}"
    );
    assert_eq!(
        (d["arms"][0]["sent"].clone(), d["arms"][0]["responses"].clone(), d["arms"][1]["responses"].clone()),
        (json!(10), json!(1), json!(10)),
        "{d}"
    );
    // 10/10 against 1/10: pooled 0.55, z = 0.9 / sqrt(0.55 · 0.45 · 0.2) = 4.045.
    assert!((d["comparisons"][0]["z"].as_f64().unwrap() - 4.045).abs() < 1e-3, "{d}");
    assert!(d["p_value"].as_f64().unwrap() < 0.001 && d["released"] == json!(20), "{d}");
    let (_, numbers) = app.get(&format!("/api/v1/outbound/campaigns/{id}/analytics"), &app.token_a).await;
    assert_eq!(numbers["data"]["ab_decision"]["winner"], json!(1), "{numbers}");
    assert_eq!(numbers["data"]["variants"][1]["name"], "B", "{numbers}");
    assert_eq!(numbers["data"]["variants"][1]["recipients"], json!(30), "the rest now counts as B: {numbers}");
    // Decided once: a second run (another scheduler) changes nothing.
    assert!(tasks::run(&sweep, "campaigns:ab-decide").await.unwrap().starts_with("0 A/B tests decided"));

    // The winner goes to the rest (the decision queued its dispatch).
    let worker = RunningWorker::start(ctx, &["emails"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    worker.stop().await;
    let mail = sent_to(&domain).await;
    assert_eq!((mail.len(), mail.values().map(Vec::len).sum::<usize>()), (40, 40), "each customer exactly once");
    let emails: HashMap<String, String> =
        ids.iter().enumerate().map(|(i, id)| (id.clone(), format!("c{i}@{domain}"))).collect();
    for (customer, (variant, _, _)) in &split {
        let message = &mail[&emails[customer]][0];
        let expected = if *variant == Some(0) { "Subject: Spring A" } else { "Subject: Spring B" };
        assert!(message.contains(expected), "{customer} ({variant:?}) got {}", &message[..message.len().min(400)]);
    }
}

/// Two equal variants: the decision reports no significant winner (p ≈ 1) and the rest
/// gets the first variant, the control.
#[tokio::test]
async fn an_ab_test_between_equal_variants_reports_no_significant_winner() {
    let app = TestApp::spawn().await;
    let ids = customers(&app, &format!("{}.tie.example", unique()), 24).await;
    let a = template(&app, &app.token_a, "Tie A").await;
    let b = template(&app, &app.token_a, "Tie B").await;
    let test = json!({"variants": [{"name": "A", "template_id": a}, {"name": "B", "template_id": b}],
                      "test_share": 0.5, "metric": "clicks", "wait_minutes": 5});
    let id = ab_campaign(&app, &ids, test).await;
    start(&app, &id).await;
    // The test's sends as the workers would record them, each variant's first three clicked.
    let sent = "update outbound_campaign_recipients r set status = 'sent', sent_at = now() - interval '10 minutes',
                  clicked_at = case when r.id in (select id from outbound_campaign_recipients x
                                                  where x.campaign_id = r.campaign_id and x.variant = r.variant
                                                  order by id limit 3) then now() end
                where campaign_id = $1 and variant is not null";
    assert_eq!(tenant_sql(&app, sent, &id).await, 12);
    let report = tasks::run(&scheduler(&app), "campaigns:ab-decide").await.unwrap();
    assert_eq!(report, "1 A/B tests decided, 0 with a significant winner");
    let (_, c) = app.get(&format!("/api/v1/outbound/campaigns/{id}"), &app.token_a).await;
    let d = &c["data"]["ab_decision"];
    assert_eq!(
        (d["winner"].clone(), d["significant"].clone(), d["metric"].clone()),
        (json!(0), json!(false), json!("clicks"))
    );
    assert_eq!((d["arms"][0]["rate"].clone(), d["arms"][1]["rate"].clone()), (json!(0.5), json!(0.5)), "{d}");
    assert!(d["p_value"].as_f64().unwrap() > 0.99, "{d}");
    let rest = plan(&app, &id).await;
    assert_eq!(
        rest.values().filter(|(v, waiting, s)| *v == Some(0) && !waiting && s == "pending").count(),
        12,
        "the rest is released with the control: {rest:?}"
    );
}

/// The split is reproducible (same seed and audience, same split; another seed, another
/// split); bad tests are refused field by field, and a test whose variant's template is
/// gone cannot start.
#[tokio::test]
async fn ab_tests_are_checked_reproducible_and_need_every_template() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let ids = customers(&app, &format!("{}.split.example", unique()), 30).await;
    let a = template(&app, &app.token_a, "Split A").await;
    let b = template(&app, &app.token_a, "Split B").await;
    let c = template(&app, &app.token_a, "Split C").await;
    let other_tenants = template(&app, &app.token_b, "Theirs").await;
    let variants = |ids: &[&String]| -> Value {
        ids.iter().enumerate().map(|(i, t)| json!({"name": format!("V{i}"), "template_id": t})).collect()
    };
    for (body, field) in [
        (json!({"ab_test": {"variants": variants(&[&a])}}), "ab_test.variants"),
        (json!({"ab_test": {"variants": variants(&[&a, &b, &c, &a, &b])}}), "ab_test.variants"),
        (json!({"ab_test": {"variants": variants(&[&a, &b]), "test_share": 0}}), "ab_test.test_share"),
        (json!({"ab_test": {"variants": variants(&[&a, &b]), "test_share": 1.5}}), "ab_test.test_share"),
        (json!({"ab_test": {"variants": variants(&[&a, &b]), "metric": "likes"}}), "ab_test.metric"),
        (json!({"ab_test": {"variants": variants(&[&a, &b]), "wait_minutes": 0}}), "ab_test.wait_minutes"),
        (
            json!({"ab_test": {"variants": variants(&[&a, &b]), "wait_minutes": 99_999_999_999i64}}),
            "ab_test.wait_minutes",
        ),
        (
            json!({"ab_test": {"variants": [{"name": " ", "template_id": a}, {"name": "B", "template_id": b}]}}),
            "ab_test.variants[0].name",
        ),
        (
            json!({"ab_test": {"variants": [{"name": "A", "template_id": a}, {"name": "B"}]}}),
            "ab_test.variants[1].template_id",
        ),
        (json!({"ab_test": {"variants": variants(&[&a, &other_tenants])}}), "ab_test.variants[1].template_id"),
        (json!({"template_id": b, "ab_test": {"variants": variants(&[&a, &b])}}), "template_id"),
        (json!({"send_time": "tomorrow", "template_id": a}), "send_time"),
    ] {
        let mut body = body;
        body["name"] = json!("Bad test");
        body["customer_ids"] = json!(ids);
        let (s, j) = app.send("POST", "/api/v1/outbound/email/campaigns", t, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {j}");
        assert!(j["error"]["details"][field].is_array(), "{body} should name {field}: {j}");
    }

    let test = |seed: i64| json!({"variants": variants(&[&a, &b, &c]), "test_share": 0.6, "seed": seed});
    let first = ab_campaign(&app, &ids, test(11)).await;
    let again = ab_campaign(&app, &ids, test(11)).await;
    let other = ab_campaign(&app, &ids, test(12)).await;
    for id in [&first, &again, &other] {
        start(&app, id).await;
    }
    let (p1, p2, p3) = (plan(&app, &first).await, plan(&app, &again).await, plan(&app, &other).await);
    let split = |p: &HashMap<String, (Option<i16>, bool, String)>| -> Vec<(String, Option<i16>)> {
        let mut v: Vec<_> = p.iter().map(|(c, (v, _, _))| (c.clone(), *v)).collect();
        v.sort();
        v
    };
    assert_eq!(split(&p1), split(&p2), "same seed, same audience: same split");
    assert_ne!(split(&p1), split(&p3), "another seed: another split");
    // 30 · 0.6 = 18 in the test, 6 per variant.
    for v in 0..3 {
        assert_eq!(p1.values().filter(|(x, _, _)| *x == Some(v)).count(), 6, "{p1:?}");
    }

    // A test can be removed from a draft; a variant whose template is gone stops the start.
    let draft = ab_campaign(&app, &ids, test(13)).await;
    let (s, j) =
        app.send("PUT", &format!("/api/v1/outbound/campaigns/{draft}"), t, Some(json!({"ab_test": null}))).await;
    assert_eq!((s, j["data"]["ab_test"].clone()), (StatusCode::OK, Value::Null), "{j}");
    let draft = ab_campaign(&app, &ids, test(14)).await;
    // Templates have no delete route; one removed in the database stands for it.
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query("delete from email_templates where id = $1::uuid").bind(&c).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let (s, j) = app.send("POST", &format!("/api/v1/outbound/campaigns/{draft}/start"), t, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{j}");
    assert!(j["error"]["details"]["template_id"].to_string().contains("no longer exists"), "{j}");
}

/// `app_best_send_at` in each customer's zone, across both DST changes: the customer's own
/// best slot when it falls in the next 24 hours; else their best hour of the day (any
/// weekday); else the tenant's best slot; a tenant without history sends at once.
#[tokio::test]
async fn the_best_send_time_is_each_customers_hour_across_zones_and_dst() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let ids = customers(&app, &format!("{}.sto.example", unique()), 5).await;
    for (id, tz) in [(&ids[0], "America/New_York"), (&ids[1], "Asia/Tokyo")] {
        let (s, r) = app.send("PUT", &format!("/api/v1/customers/{id}"), t, Some(json!({"timezone": tz}))).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let other = app.customer(&app.token_b, json!({"name": "Elsewhere", "email": "else@sto.example"})).await;
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    // Sunday 10:00 local for New York (slot 154), Monday 09:00 local for Tokyo (slot 9),
    // Monday 09:00 UTC for the customer without a zone (each 30 responses where their
    // campaigns drew 6); the tenant answers best on Sundays at 20:00 (1.8 times what its
    // campaigns draw) and worst on Sundays at 06:00.
    for (customer, slot) in [(&ids[0], 154), (&ids[1], 9), (&ids[2], 9)] {
        sqlx::query(
            "insert into customer_send_slots (tenant_id, customer_id, slot, sends, responses, expected, as_of)
             values ($1, $2::uuid, $3, 40, 30, 6.0, now())",
        )
        .bind(app.tenant_a)
        .bind(customer)
        .bind(slot as i16)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query(
        "insert into tenant_send_slots (tenant_id, slot, sends, responses, expected, rate, as_of)
         select $1, s, 100, 30, 30.0, case s when 164 then 1.8 when 150 then 0.3 else 1.0 end, now()
         from generate_series(0, 167) s",
    )
    .bind(app.tenant_a)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let best = async |token_tenant: fibonacco_platform::TenantId, at: &str, customer: &str| -> String {
        let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, token_tenant).await.unwrap();
        let at: String = sqlx::query_scalar(
            "select to_char(app_best_send_at($1::timestamptz, $2, c.id, app_zone(c.timezone, null)) at time zone 'UTC',
                            'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             from crm_customers c where c.id = $3::uuid",
        )
        .bind(at)
        .bind(token_tenant)
        .bind(customer)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        at
    };
    let a = app.tenant_a;
    for (at, customer, expected, why) in [
        // Midnight EST on the night clocks go forward: 10:00 that morning is EDT (UTC-4).
        ("2026-03-08T05:00:00Z", &ids[0], "2026-03-08T14:00:00Z", "New York, spring"),
        // Midnight EDT on the night clocks go back: 10:00 that morning is EST (UTC-5).
        ("2026-11-01T04:00:00Z", &ids[0], "2026-11-01T15:00:00Z", "New York, autumn"),
        // Sunday 14:00 in Tokyo: Monday 09:00 JST is within the day.
        ("2026-03-08T05:00:00Z", &ids[1], "2026-03-09T00:00:00Z", "Tokyo"),
        // No zone (UTC): Monday 09:00 is not within the day; 09:00 on Sunday, their hour.
        ("2026-03-08T05:00:00Z", &ids[2], "2026-03-08T09:00:00Z", "their hour of day"),
        // No history of their own: the tenant's best slot, Sunday 20:00 (UTC).
        ("2026-03-08T05:00:00Z", &ids[3], "2026-03-08T20:00:00Z", "the tenant's prior"),
        // Inside their best hour already: at once.
        ("2026-03-08T14:20:00Z", &ids[0], "2026-03-08T14:20:00Z", "now is their hour"),
    ] {
        assert_eq!(best(a, at, customer).await, expected, "{why}");
    }
    // A customer whose zone no tz database has (written around the API) is read in UTC.
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, a).await.unwrap();
    sqlx::query("update crm_customers set timezone = 'Mars/Base' where id = $1::uuid")
        .bind(&ids[4])
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(best(a, "2026-03-08T05:00:00Z", &ids[4]).await, "2026-03-08T20:00:00Z", "a bad zone is UTC");
    // Another tenant has no history, and never sees tenant A's: at once.
    let other = other["id"].as_str().unwrap();
    assert_eq!(best(app.tenant_b, "2026-03-08T05:00:00Z", other).await, "2026-03-08T05:00:00Z");
}

/// A `best_hour` campaign: at its start a recipient whose best hour is three hours away
/// waits until then; the others go at once. Once the wait is over the scheduler's sweep
/// releases the recipient and it is sent, once.
#[tokio::test]
async fn a_best_hour_campaign_holds_each_recipient_until_their_hour() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let domain = format!("{}.besthour.example", unique());
    let sender = format!("news@{domain}-sender.example");
    verify_sender(&sender).await;
    let ids = customers(&app, &domain, 3).await;
    let (s, r) =
        app.send("PUT", &format!("/api/v1/customers/{}", ids[0]), t, Some(json!({"timezone": "Asia/Tokyo"}))).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // Tokyo's slot three hours from now answers always; the hour now, never.
    let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let slot: i16 = sqlx::query_scalar(
        "insert into customer_send_slots (tenant_id, customer_id, slot, sends, responses, expected, as_of)
         values ($1, $2::uuid, app_week_slot((now() + interval '3 hours') at time zone 'Asia/Tokyo'), 8, 8, 2.0, now()),
                ($1, $2::uuid, app_week_slot(now() at time zone 'Asia/Tokyo'), 8, 0, 2.0, now())
         returning slot",
    )
    .bind(app.tenant_a)
    .bind(&ids[0])
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let id = email_campaign(&app, &ids).await;
    let (s, j) =
        app.send("PUT", &format!("/api/v1/outbound/campaigns/{id}"), t, Some(json!({"send_time": "best_hour"}))).await;
    assert_eq!((s, j["data"]["send_time"].clone()), (StatusCode::OK, json!("best_hour")), "{j}");
    start(&app, &id).await;
    let waits = async || -> Vec<(String, Option<i16>, Option<bool>, String)> {
        let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let rows = sqlx::query_as(
            "select r.customer_id::text, app_week_slot(r.not_before at time zone 'Asia/Tokyo'),
                    r.not_before between now() + interval '2 hours' and now() + interval '3 hours 1 minute'
                      and extract(minute from r.not_before at time zone 'Asia/Tokyo') = 0,
                    r.status
             from outbound_campaign_recipients r where r.campaign_id = $1::uuid order by r.customer_id",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    };
    let rows = waits().await;
    for (customer, not_before_slot, on_the_hour, _) in &rows {
        if customer == &ids[0] {
            assert_eq!((*not_before_slot, *on_the_hour), (Some(slot), Some(true)), "{rows:?}");
        } else {
            assert_eq!(*not_before_slot, None, "no history: at once: {rows:?}");
        }
    }
    let ctx = job_context(&app, &[("MAIL_FROM", sender)], Duration::from_secs(30));
    let worker = RunningWorker::start(ctx.clone(), &["emails"], Duration::from_secs(30));
    wait_for("the two without a wait sent", Duration::from_secs(60), || async {
        waits().await.iter().filter(|r| r.3 == "sent").count() == 2
    })
    .await;
    let sweep = scheduler(&app);
    let report = tasks::run(&sweep, "campaigns:dispatch").await.unwrap();
    assert!(report.starts_with("0 campaigns re-dispatched"), "the wait is not over: {report}");
    assert_eq!(campaign_status(&app, &id).await, "running");
    // Three hours later (moved back rather than waited for), the sweep releases it.
    tenant_sql(
        &app,
        "update outbound_campaign_recipients set not_before = now() - interval '1 second'
         where campaign_id = $1 and not_before is not null",
        &id,
    )
    .await;
    let report = tasks::run(&sweep, "campaigns:dispatch").await.unwrap();
    assert!(report.starts_with("1 campaigns re-dispatched"), "{report}");
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    worker.stop().await;
    let mail = sent_to(&domain).await;
    assert_eq!((mail.len(), mail.values().map(Vec::len).sum::<usize>()), (3, 3), "each once");
}

/// An SMS test on the whole audience: each customer gets their variant's text through
/// Twilio (the stub), the campaign completes with its last send, and the decision is still
/// made afterwards, as the campaign's report (nothing left to release).
#[tokio::test]
async fn an_sms_test_on_the_whole_audience_sends_each_variant_and_reports_after_completion() {
    let app = TestApp::spawn().await;
    let t = Some(app.token_a.as_str());
    let ids = customers(&app, &format!("{}.smsab.example", unique()), 8).await;
    let mut templates = Vec::new();
    for body in ["Offer A for {{ first_name }}", "Offer B for {{ first_name }}"] {
        let (s, tpl) =
            app.send("POST", "/api/v1/outbound/sms/templates", t, Some(json!({"name": body, "body": body}))).await;
        assert_eq!(s, StatusCode::CREATED, "{tpl}");
        templates.push(tpl["data"]["id"].clone());
    }
    let test = json!({"variants": [{"name": "A", "template_id": templates[0]}, {"name": "B", "template_id": templates[1]}],
                      "test_share": 1, "wait_minutes": 1});
    let (s, c) = app
        .send(
            "POST",
            "/api/v1/outbound/sms/campaigns",
            t,
            Some(json!({"name": "SMS test", "customer_ids": ids, "ab_test": test})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["data"]["ab_test"]["metric"], "clicks", "an SMS test counts clicks unless told");
    let id = c["data"]["id"].as_str().unwrap().to_owned();
    start(&app, &id).await;
    let split = plan(&app, &id).await;
    assert!(split.values().all(|(v, waiting, _)| v.is_some() && !waiting), "everyone is in the test: {split:?}");

    let (base, stub) = twilio_stub().await;
    let ctx = twilio_context(&app, base);
    let worker = RunningWorker::start(ctx, &["sms"], Duration::from_secs(30));
    wait_for_completion(&app, &id, Duration::from_secs(60)).await;
    worker.stop().await;
    let posts = stub.posts.lock().unwrap().clone();
    let bodies: HashMap<String, String> = posts
        .iter()
        .filter(|p| p.0 == "AC123/Messages.json")
        .map(|p| (p.2["To"].clone(), p.2["Body"].clone()))
        .collect();
    assert_eq!(bodies.len(), 8, "{posts:?}");
    for (i, customer) in ids.iter().enumerate() {
        let expected = if split[customer].0 == Some(0) { "Offer A for" } else { "Offer B for" };
        let to = format!("+1555{i:07}");
        assert!(bodies[&to].starts_with(expected), "{to}: {} (variant {:?})", bodies[&to], split[customer].0);
    }

    tenant_sql(
        &app,
        "update outbound_campaign_recipients set sent_at = sent_at - interval '2 minutes' where campaign_id = $1",
        &id,
    )
    .await;
    let report = tasks::run(&scheduler(&app), "campaigns:ab-decide").await.unwrap();
    assert_eq!(report, "1 A/B tests decided, 0 with a significant winner");
    let (_, c) = app.get(&format!("/api/v1/outbound/campaigns/{id}"), &app.token_a).await;
    let d = &c["data"]["ab_decision"];
    assert_eq!(
        (d["released"].clone(), d["arms"][0]["sent"].clone(), d["arms"][1]["sent"].clone()),
        (json!(0), json!(4), json!(4)),
        "{d}"
    );
    assert_eq!(d["p_value"], Value::Null, "no clicks: nothing to test: {d}");
}
