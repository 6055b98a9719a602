//! The webhooks' outbox end to end: rows changed by SQL (not through the API) are
//! captured into the lake, turned into events and deliveries for the endpoints that
//! subscribed to their types, delivered by a worker signed so the receiver verifies them,
//! once each, and a round repeated after a crash doubles nothing.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::http::StatusCode;
use fibonacco_api::testing::{WebhookReceiver, call, with_private_webhook_targets};
use fibonacco_delivery::{
    JobContext,
    providers::{DeliverySettings, Providers},
};
use fibonacco_ingest::Lake;
use fibonacco_pipelines::webhooks::Outbox;
use fibonacco_platform::queue::{Worker, WorkerOptions};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::runs::Env;

/// The worker side: webhook deliveries may reach the loopback receiver.
fn job_context(env: &Env) -> JobContext {
    let storage = std::env::temp_dir().join(format!("fib-audio-{}", Uuid::now_v7()));
    let lookup = move |k: &str| match k {
        "WEBHOOK_ALLOW_PRIVATE_TARGETS" => Some("true".to_string()),
        "STORAGE_URL" => Some(storage.display().to_string()),
        _ => None,
    };
    let app = &env.app;
    JobContext {
        pool: app.db.pool.clone(),
        queue: app.state.queue.clone(),
        providers: Providers::from_lookup(&lookup).unwrap(),
        settings: Arc::new(
            DeliverySettings::from_lookup(
                "http://127.0.0.1",
                app.state.config.app_key.clone(),
                Duration::from_secs(30),
                &lookup,
            )
            .unwrap(),
        ),
        embedder: None,
        store: app.state.search.store.clone(),
        templates: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_changed_by_sql_reach_the_subscribed_endpoints_once_each_signed() {
    let mut env = Env::seeded(40, 2, 30).await;
    let admin = env.pool().clone();
    let (t1, t2) = (env.tenant("seed-7-1").await, env.tenant("seed-7-2").await);
    env.app.state.queue.clear("webhooks").await.unwrap();
    let receiver = WebhookReceiver::start().await;
    let router = with_private_webhook_targets(&env.app);
    let mut secrets = BTreeMap::new();
    for (tenant, path, types) in [
        (
            t1,
            "/t1",
            json!([
                "customer.created",
                "customer.updated",
                "customer.deleted",
                "order.created",
                "order.paid",
                "conversation.message.created"
            ]),
        ),
        (t1, "/t1-orders", json!(["order.paid"])),
        (t2, "/t2", json!(["customer.created"])),
    ] {
        let token = env.app.token_with(tenant, &["webhooks:write"], None).await;
        let (status, body) = call(
            &router,
            &token,
            "POST",
            "/api/v1/webhooks/endpoints",
            Some(json!({"url": format!("{}{path}", receiver.base), "event_types": types})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        secrets.insert(path, body["data"]["secret"].as_str().unwrap().to_owned());
    }
    let outbox = Outbox {
        pool: env.app.db.pool.clone(),
        lake: Lake::open(&env.lake.display().to_string()).unwrap(),
        queue: Some(env.app.state.queue.clone()),
    };
    // The first round places the cursor at the lake's end: the seeded history is not announced.
    let first = outbox.round().await.unwrap();
    assert_eq!((first.events, first.from_lsn), (0, first.to_lsn));
    let lake_before = env.running.as_ref().unwrap().progress.borrow().durable_lsn;

    // One transaction by SQL, bypassing the API.
    let mut tx = admin.begin().await.unwrap();
    let one = async |tx: &mut sqlx::PgConnection, sql: &str, binds: &[&(dyn ToString + Sync)]| -> Uuid {
        let mut q = sqlx::query_scalar::<_, Uuid>(sqlx::AssertSqlSafe(sql.to_string()));
        for b in binds {
            q = q.bind(b.to_string());
        }
        q.fetch_one(&mut *tx).await.unwrap()
    };
    let ada = one(
        &mut *tx,
        "insert into crm_customers (tenant_id, name, slug, email, metadata)
         values ($1::uuid, 'Ada Hook', 'ada-hook', 'ada.hook@example.com', '{\"plan\": \"gold\"}') returning id",
        &[&t1.as_uuid()],
    )
    .await;
    one(&mut *tx, "update crm_customers set name = 'Ada H.' where id = $1::uuid returning id", &[&ada]).await;
    let gone = one(
        &mut *tx,
        "insert into crm_customers (tenant_id, name, slug) values ($1::uuid, 'Gone Soon', 'gone-soon') returning id",
        &[&t1.as_uuid()],
    )
    .await;
    one(&mut *tx, "delete from crm_customers where id = $1::uuid returning id", &[&gone]).await;
    let order = one(
        &mut *tx,
        "insert into orders (tenant_id, customer_id, order_number, amount_minor)
         values ($1::uuid, $2::uuid, 'HOOK-1', 1500) returning id",
        &[&t1.as_uuid(), &ada],
    )
    .await;
    one(&mut *tx, "update orders set status = 'paid', paid_at = now() where id = $1::uuid returning id", &[&order])
        .await;
    // Another change of a paid order is not another payment.
    one(&mut *tx, "update orders set metadata = '{\"note\": \"gift\"}' where id = $1::uuid returning id", &[&order])
        .await;
    let conversation = one(
        &mut *tx,
        "insert into crm_conversations (tenant_id, customer_id) values ($1::uuid, $2::uuid) returning id",
        &[&t1.as_uuid(), &ada],
    )
    .await;
    one(
        &mut *tx,
        "insert into crm_conversation_messages (tenant_id, conversation_id, role, content)
         values ($1::uuid, $2::uuid, 'customer', 'Hello \"there\"') returning id",
        &[&t1.as_uuid(), &conversation],
    )
    .await;
    one(
        &mut *tx,
        "insert into crm_customers (tenant_id, name, slug, email) values ($1::uuid, 'Bea Other', 'bea-other', 'bea@example.com') returning id",
        &[&t2.as_uuid()],
    )
    .await;
    tx.commit().await.unwrap();

    let running = env.running.as_mut().unwrap();
    let durable = tokio::time::timeout(Duration::from_secs(60), running.wait_until(|p| p.durable_lsn > lake_before))
        .await
        .expect("the capture did not take the transaction")
        .unwrap()
        .durable_lsn;
    let mut rounds = Vec::new();
    while rounds.last().is_none_or(|r: &fibonacco_pipelines::webhooks::Round| r.to_lsn < durable) {
        rounds.push(outbox.round().await.unwrap());
    }
    let events: Vec<(String, Uuid, Option<Uuid>, Value)> =
        sqlx::query_as("select type, tenant_id, customer_id, payload from webhook_events order by id")
            .fetch_all(&admin)
            .await
            .unwrap();
    let mut kinds: Vec<(Uuid, &str)> = events.iter().map(|(k, t, _, _)| (*t, k.as_str())).collect();
    kinds.sort();
    let mut expected = vec![
        (t1.as_uuid(), "conversation.message.created"),
        (t1.as_uuid(), "customer.created"),
        (t1.as_uuid(), "customer.created"),
        (t1.as_uuid(), "customer.deleted"),
        (t1.as_uuid(), "customer.updated"),
        (t1.as_uuid(), "order.created"),
        (t1.as_uuid(), "order.paid"),
        (t2.as_uuid(), "customer.created"),
    ];
    expected.sort();
    assert_eq!(kinds, expected, "{events:#?}");
    let message = events.iter().find(|e| e.0 == "conversation.message.created").unwrap();
    assert_eq!(message.2, Some(ada), "a message's customer is its conversation's (erasure finds it)");

    // A round repeated (a crash after reading, before the cursor moved) doubles nothing.
    let deliveries = async || -> i64 {
        sqlx::query_scalar("select count(*) from webhook_deliveries").fetch_one(&admin).await.unwrap()
    };
    assert_eq!(deliveries().await, 7 + 1 + 1);
    sqlx::query("update webhook_outbox_cursor set lsn = $1").bind(first.to_lsn as i64).execute(&admin).await.unwrap();
    while outbox.round().await.unwrap().to_lsn < durable {}
    let again: i64 = sqlx::query_scalar("select count(*) from webhook_events").fetch_one(&admin).await.unwrap();
    assert_eq!((again, deliveries().await), (events.len() as i64, 9));

    // A worker delivers them; each receiver verifies each with its endpoint's secret.
    let ctx = job_context(&env);
    let mut options = WorkerOptions::new(vec!["webhooks".into()], Duration::from_secs(30));
    options.idle_poll = Duration::from_millis(20);
    let worker = Worker::new(ctx.queue.clone(), ctx.pool.clone(), Arc::new(ctx), options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while receiver.received.lock().unwrap().len() < 9 {
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries did not arrive: {:?}",
            receiver.received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Followed as `fibonacco run` does: woken by the capture's feed, the outbox announces a
    // new change without being asked, and queues its delivery itself (no scheduler here).
    let (follow_stop, follow_rx) = tokio::sync::watch::channel(false);
    let feed = env.running.as_ref().unwrap().feed.clone();
    let outbox = Arc::new(outbox);
    let following = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.follow(&feed, follow_rx).await }
    });
    sqlx::query(
        "insert into crm_customers (tenant_id, name, slug, email) values ($1, 'Cy Later', 'cy-later', 'cy@example.com')",
    )
    .bind(t2)
    .execute(&admin)
    .await
    .unwrap();
    while receiver.got("/t2").len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the followed change was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.got("/t2")[1].json()["data"]["email"], "cy@example.com");
    follow_stop.send(true).unwrap();
    following.await.unwrap().unwrap();
    let _ = stop.send(());
    handle.await.unwrap();
    let t1_got = receiver.got("/t1");
    assert_eq!(t1_got.len(), 7);
    let ids: std::collections::BTreeSet<&str> = t1_got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 7, "one id per event");
    for (path, got) in [("/t1", &t1_got), ("/t1-orders", &receiver.got("/t1-orders")), ("/t2", &receiver.got("/t2"))] {
        assert!(got.iter().all(|r| r.verify(&secrets[path])), "{path}");
    }
    let body_of = |kind: &str| t1_got.iter().map(|r| r.json()).filter(|b| b["type"] == kind).collect::<Vec<_>>();
    let created = body_of("customer.created");
    let ada_created = created.iter().find(|b| b["data"]["email"] == "ada.hook@example.com").unwrap();
    assert_eq!(ada_created["data"]["metadata"], json!({"plan": "gold"}), "JSON columns stay JSON");
    assert!(ada_created["data"].get("tenant_id").is_none());
    assert_eq!(body_of("customer.updated")[0]["data"]["name"], "Ada H.");
    assert_eq!(body_of("customer.deleted")[0]["data"], json!({"id": gone.to_string()}));
    assert_eq!(body_of("order.paid")[0]["data"]["status"], "paid");
    assert_eq!(body_of("conversation.message.created")[0]["data"]["content"], "Hello \"there\"");
    let t2_got = receiver.got("/t2");
    assert_eq!(t2_got.len(), 2, "one from the rounds, one followed");
    assert_eq!(t2_got[0].json()["data"]["email"], "bea@example.com", "tenant 2 hears only of its own");
    assert_eq!(receiver.got("/t1-orders").len(), 1);
    env.cleanup().await;
}
