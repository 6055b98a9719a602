//! Services, orders and the Stripe webhook.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use fibonacco_api::stripe::signature;
use fibonacco_api::testing::{STRIPE_SECRET, TestApp, code};
use serde_json::{Value, json};

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let (status, json) = app.send("POST", path, Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{path}: {json}");
    json["data"].clone()
}

async fn stripe(app: &TestApp, event: &Value, signed_at: i64, secret: &str) -> (StatusCode, Value) {
    let body = event.to_string();
    let req = Request::post("/api/stripe/webhook")
        .header("content-type", "application/json")
        .header("stripe-signature", signature::header(secret, signed_at, body.as_bytes()))
        .body(Body::from(body))
        .unwrap();
    app.raw(req).await
}

async fn order_status(app: &TestApp, id: &str) -> (String, Value) {
    let (_, o) = app.get(&format!("/api/v1/orders/{id}"), &app.token_a).await;
    (o["data"]["status"].as_str().unwrap().to_owned(), o["data"].clone())
}

#[tokio::test]
async fn services_and_orders() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let cat = post(&app, t, "/api/v1/services/categories", json!({"name": "Marketing"})).await;
    let svc = post(
        &app,
        t,
        "/api/v1/services",
        json!({"name": "SEO audit", "price_minor": 4999, "category_id": cat["id"], "features": ["report"]}),
    )
    .await;
    assert_eq!(
        (svc["slug"].as_str(), svc["currency"].as_str(), svc["billing_period"].as_str()),
        (Some("seo-audit"), Some("USD"), Some("one_time"))
    );
    let (_, cats) = app.get("/api/v1/services/categories", t).await;
    assert_eq!(cats["data"][0]["service_count"], 1);
    let customer = app.customer(t, json!({"name": "Buyer"})).await;

    let order =
        post(&app, t, "/api/v1/orders", json!({"service_id": svc["id"], "customer_id": customer["id"], "quantity": 3}))
            .await;
    assert_eq!((order["amount_minor"].as_i64(), order["status"].as_str()), (Some(14_997), Some("pending")));
    assert!(order["order_number"].as_str().unwrap().starts_with("ORD-"));

    // A price change does not touch placed orders.
    let sid = svc["id"].as_str().unwrap();
    let (status, _) =
        app.send("PUT", &format!("/api/v1/services/{sid}"), Some(t), Some(json!({"price_minor": 100}))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, same) = order_status(&app, order["id"].as_str().unwrap()).await;
    assert_eq!(same["amount_minor"], 14_997);

    let (status, cancelled) =
        app.send("POST", &format!("/api/v1/orders/{}/cancel", order["id"].as_str().unwrap()), Some(t), None).await;
    assert_eq!((status, cancelled["data"]["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let (status, _) =
        app.send("POST", &format!("/api/v1/orders/{}/cancel", order["id"].as_str().unwrap()), Some(t), None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, _) =
        app.send("PUT", &format!("/api/v1/services/{sid}"), Some(t), Some(json!({"is_active": false}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, json) = app.send("POST", "/api/v1/orders", Some(t), Some(json!({"service_id": sid}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "inactive service: {json}");
    for (body, field) in [
        (json!({}), "service_id"),
        (json!({"service_id": sid, "quantity": 0}), "quantity"),
        (json!({"service_id": sid, "stripe_payment_intent_id": "ch_123"}), "stripe_payment_intent_id"),
    ] {
        let (status, json) = app.send("POST", "/api/v1/orders", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["details"][field].is_array(), "{body}: {json}");
    }
    let (status, _) = app
        .send("POST", "/api/v1/services", Some(t), Some(json!({"name": "x", "price_minor": 1, "slug": "seo-audit"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Tenant B sees none of it.
    for path in [format!("/api/v1/services/{sid}"), format!("/api/v1/orders/{}", order["id"].as_str().unwrap())] {
        let (status, _) = app.get(&path, &app.token_b).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = app.send("POST", "/api/v1/orders", Some(&app.token_b), Some(json!({"service_id": sid}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "B cannot order A's service");
}

#[tokio::test]
async fn stripe_events_are_verified_applied_once_and_never_stored_when_forged() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let svc = post(&app, t, "/api/v1/services", json!({"name": "Plan", "price_minor": 4900})).await;
    let by_intent =
        post(&app, t, "/api/v1/orders", json!({"service_id": svc["id"], "stripe_payment_intent_id": "pi_123abc"}))
            .await;
    let by_metadata = post(&app, t, "/api/v1/orders", json!({"service_id": svc["id"]})).await;
    let now = chrono::Utc::now().timestamp();

    let paid = json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_123abc", "object": "payment_intent", "amount": 4900, "currency": "usd"}}});
    // Forged (wrong secret), stale, and unsigned events change and store nothing.
    let (status, json) = stripe(&app, &paid, now, "whsec_wrong").await;
    assert_eq!((status, code(&json)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));
    let (status, _) = stripe(&app, &paid, now - 301, STRIPE_SECRET).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "outside the 300 s tolerance");
    let unsigned = Request::post("/api/stripe/webhook")
        .header("content-type", "application/json")
        .body(Body::from(paid.to_string()))
        .unwrap();
    let (status, _) = app.raw(unsigned).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let stored: i64 = sqlx::query_scalar("select count(*) from stripe_events").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(stored, 0);
    assert_eq!(order_status(&app, by_intent["id"].as_str().unwrap()).await.0, "pending");

    let (status, json) = stripe(&app, &paid, now, STRIPE_SECRET).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!((json["data"]["duplicate"].as_bool(), json["data"]["orders_updated"].as_i64()), (Some(false), Some(1)));
    let (status_now, order) = order_status(&app, by_intent["id"].as_str().unwrap()).await;
    assert_eq!(status_now, "paid");
    assert!(order["paid_at"].is_string());

    // A refund, then a replay of the payment event: the replay is acknowledged and changes nothing.
    let refund = json!({"id": "evt_2", "type": "charge.refunded", "data": {"object": {"id": "ch_1", "payment_intent": "pi_123abc", "amount": 4900, "amount_refunded": 4900, "currency": "usd"}}});
    let (status, _) = stripe(&app, &refund, now, STRIPE_SECRET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(order_status(&app, by_intent["id"].as_str().unwrap()).await.0, "refunded");
    let (status, json) = stripe(&app, &paid, now, STRIPE_SECRET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((json["data"]["duplicate"].as_bool(), json["data"]["orders_updated"].as_i64()), (Some(true), Some(0)));
    assert_eq!(
        order_status(&app, by_intent["id"].as_str().unwrap()).await.0,
        "refunded",
        "the replay did not re-pay it"
    );

    // Checkout sessions find the order through metadata.order_id.
    let session = json!({"id": "evt_3", "type": "checkout.session.completed",
        "data": {"object": {"id": "cs_test_1", "payment_status": "paid", "payment_intent": "pi_456", "amount_total": 4900, "currency": "usd", "metadata": {"order_id": by_metadata["id"]}}}});
    let (status, _) = stripe(&app, &session, now, STRIPE_SECRET).await;
    assert_eq!(status, StatusCode::OK);
    let (s, o) = order_status(&app, by_metadata["id"].as_str().unwrap()).await;
    assert_eq!(
        (s.as_str(), o["stripe_checkout_session_id"].as_str(), o["stripe_payment_intent_id"].as_str()),
        ("paid", Some("cs_test_1"), Some("pi_456"))
    );

    // Signed but not an event: 400.
    let (status, _) = stripe(&app, &json!({"hello": "world"}), now, STRIPE_SECRET).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let stored: i64 = sqlx::query_scalar("select count(*) from stripe_events").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(stored, 3);
}

/// What a forged-looking but correctly signed event can no longer do: reach another
/// tenant's order, pay an order with the wrong amount or currency, refund a whole order
/// with a partial refund, or make Stripe retry forever with a 500.
#[tokio::test]
async fn stripe_events_change_only_their_own_order_after_checking_amount_and_currency() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    let svc_a = post(&app, &app.token_a, "/api/v1/services", json!({"name": "Plan", "price_minor": 4900})).await;
    let svc_b = post(&app, &app.token_b, "/api/v1/services", json!({"name": "B plan", "price_minor": 4900})).await;
    let a = post(
        &app,
        &app.token_a,
        "/api/v1/orders",
        json!({"service_id": svc_a["id"], "stripe_payment_intent_id": "pi_a1"}),
    )
    .await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let b = post(
        &app,
        &app.token_b,
        "/api/v1/orders",
        json!({"service_id": svc_b["id"], "stripe_checkout_session_id": "cs_b1"}),
    )
    .await;
    let b_id = b["id"].as_str().unwrap().to_owned();

    // A session id belongs to one order: another tenant cannot claim B's.
    let (s, r) = app
        .send(
            "POST",
            "/api/v1/orders",
            Some(&app.token_a),
            Some(json!({"service_id": svc_a["id"], "stripe_checkout_session_id": "cs_b1"})),
        )
        .await;
    assert_eq!(
        (s, r["error"]["details"]["field"].as_str()),
        (StatusCode::CONFLICT, Some("stripe_checkout_session_id")),
        "{r}"
    );

    let event = |id: &str, kind: &str, object: Value| json!({"id": id, "type": kind, "data": {"object": object}});
    let conflict = |r: &Value| r["data"]["outcome"] == "conflict" && r["data"]["orders_updated"] == 0;

    // Wrong amount, wrong currency, another tenant named in metadata: 200, kept, nothing changed.
    for (n, object) in [
        json!({"id": "pi_a1", "amount": 100, "currency": "usd"}),
        json!({"id": "pi_a1", "amount": 4900, "currency": "eur"}),
        json!({"id": "pi_a1", "amount": 4900, "currency": "usd", "metadata": {"order_id": a_id, "tenant_id": app.tenant_b.to_string()}}),
        json!({"id": "pi_a1"}),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, r) = stripe(&app, &event(&format!("evt_bad_{n}"), "payment_intent.succeeded", object), now, STRIPE_SECRET).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert!(conflict(&r), "{r}");
        assert!(!r["data"]["conflict"].as_str().unwrap().is_empty(), "{r}");
    }
    assert_eq!(order_status(&app, &a_id).await.0, "pending");

    // A PaymentIntent already on A's order, claimed by a session for B's order: a conflict
    // (it used to be a unique violation and a 500 that Stripe retried for days).
    let (s, r) = stripe(
        &app,
        &event("evt_steal", "checkout.session.completed", json!({"id": "cs_b1", "payment_status": "paid", "payment_intent": "pi_a1", "amount_total": 4900, "currency": "usd"})),
        now,
        STRIPE_SECRET,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(conflict(&r), "{r}");
    let (_, b_now) = app.get(&format!("/api/v1/orders/{b_id}"), &app.token_b).await;
    assert_eq!(b_now["data"]["status"], "pending");

    // The right amount in Stripe's lower-case currency pays it.
    let (s, r) = stripe(
        &app,
        &event("evt_pay", "payment_intent.succeeded", json!({"id": "pi_a1", "amount": 4900, "currency": "usd"})),
        now,
        STRIPE_SECRET,
    )
    .await;
    assert_eq!(
        (s, r["data"]["outcome"].as_str(), r["data"]["orders_updated"].as_i64()),
        (StatusCode::OK, Some("applied"), Some(1)),
        "{r}"
    );

    // A partial refund is an amount; the order is refunded only when all of it is.
    let refund = |id: &str, refunded: i64| {
        event(
            id,
            "charge.refunded",
            json!({"id": "ch_a1", "payment_intent": "pi_a1", "amount": 4900, "amount_refunded": refunded, "currency": "usd"}),
        )
    };
    let (s, r) = stripe(&app, &refund("evt_r1", 1000), now, STRIPE_SECRET).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (status, order) = order_status(&app, &a_id).await;
    assert_eq!((status.as_str(), order["refunded_minor"].as_i64()), ("paid", Some(1000)), "{order}");
    let (s, _) = stripe(&app, &refund("evt_r2", 4900), now, STRIPE_SECRET).await;
    assert_eq!(s, StatusCode::OK);
    let (status, order) = order_status(&app, &a_id).await;
    assert_eq!((status.as_str(), order["refunded_minor"].as_i64()), ("refunded", Some(4900)), "{order}");
    assert!(order["refunded_at"].is_string());

    // Every conflict is kept for an operator, with its reason and the order it named.
    let kept: Vec<(String, Option<String>)> =
        sqlx::query_as("select id, detail from stripe_events where outcome = 'conflict' order by id")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(kept.len(), 5, "{kept:?}");
    let mut tx = fibonacco_platform::db::begin_system(&app.db.pool).await.unwrap();
    let listed = fibonacco_api::stripe::store::conflicts(&mut tx, 50).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().any(|c| c.id == "evt_steal" && c.order_id.is_none()), "{listed:?}");
    assert!(listed.iter().any(|c| c.id == "evt_bad_0" && c.order_id.map(|o| o.to_string()) == Some(a_id.clone())));
    assert!(kept.iter().all(|(_, d)| d.as_deref().is_some_and(|d| !d.is_empty())), "{kept:?}");
}
