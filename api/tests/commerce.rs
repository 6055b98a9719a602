//! Services, orders and the Stripe webhook.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use fibonacco_api::stripe::signature;
use fibonacco_api::testing::{STRIPE_SECRET, TestApp, code, localstripe, stripe_api_base, stripe_card};
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

/// Polls the order until `check` holds (the webhook comes from localstripe a second or
/// so after the call that caused it), or fails after 15 s.
async fn eventually(app: &TestApp, order: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        let (_, o) = order_status(app, order).await;
        if check(&o) {
            return o;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: the order never got there: {}", order_status(app, order).await.1);
}

async fn purchases(app: &TestApp, order: &str) -> i64 {
    let mut tx = fibonacco_platform::db::begin_system(&app.db.pool).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "select count(*) from customer_activities where activity_type = 'purchase' and subject_id = $1::uuid",
    )
    .bind(order)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    n
}

#[tokio::test]
async fn an_order_is_paid_through_stripe_and_refunded_in_part_then_in_full() {
    let app = TestApp::spawn().await;
    app.receive_stripe_webhooks("commerce-paid-order").await;
    let t = &app.token_a;
    let svc = post(&app, t, "/api/v1/services", json!({"name": "Audit", "price_minor": 4900, "currency": "eur"})).await;
    let customer = app.customer(t, json!({"name": "Payer", "email": "payer@example.com"})).await;
    let order = post(&app, t, "/api/v1/orders", json!({"service_id": svc["id"], "customer_id": customer["id"]})).await;
    let oid = order["id"].as_str().unwrap();

    // Bad input first: a malformed PaymentMethod id, another tenant's order.
    let (status, json) = app
        .send("POST", &format!("/api/v1/orders/{oid}/pay"), Some(t), Some(json!({"payment_method": "pm_x/../y"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    let (status, _) = app.send("POST", &format!("/api/v1/orders/{oid}/pay"), Some(&app.token_b), Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Stripe's refusals of what the caller sent are theirs to fix (422), not our outage.
    let (status, json) = app
        .send(
            "POST",
            &format!("/api/v1/orders/{oid}/pay"),
            Some(t),
            Some(json!({"payment_method": "pm_unknownAtStripe"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert!(json["error"]["details"]["stripe"].is_array(), "{json}");
    let free = post(&app, t, "/api/v1/services", json!({"name": "Free intro", "price_minor": 0})).await;
    let free_order = post(&app, t, "/api/v1/orders", json!({"service_id": free["id"]})).await;
    let (status, json) = app
        .send("POST", &format!("/api/v1/orders/{}/pay", free_order["id"].as_str().unwrap()), Some(t), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to pay: {json}");

    let card = stripe_card("4242424242424242").await;
    let (status, paid) =
        app.send("POST", &format!("/api/v1/orders/{oid}/pay"), Some(t), Some(json!({"payment_method": card}))).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["data"]["status"], "succeeded");
    let intent = paid["data"]["payment_intent_id"].as_str().unwrap().to_owned();
    // Stripe charged what the order costs, in its currency.
    let at_stripe = reqwest::Client::new()
        .get(format!("{}/v1/payment_intents/{intent}", stripe_api_base()))
        .bearer_auth(fibonacco_api::testing::STRIPE_API_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!((at_stripe["amount"].as_i64(), at_stripe["currency"].as_str()), (Some(4900), Some("eur")));
    assert_eq!(at_stripe["metadata"]["order_id"], oid);

    // Stripe's webhook pays the order, and the purchase becomes the customer's activity.
    let o = eventually(&app, oid, "paid", |o| o["status"] == "paid").await;
    assert_eq!(o["stripe_payment_intent_id"], intent.as_str());
    assert_eq!(purchases(&app, oid).await, 1);
    let (status, _) = app.send("POST", &format!("/api/v1/orders/{oid}/pay"), Some(t), Some(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "a paid order is not paid again");

    // Refunds: in part, too much, the rest, then nothing left.
    let refund_path = format!("/api/v1/orders/{oid}/refund");
    let refund = |body: Value| app.send("POST", &refund_path, Some(t), Some(body));
    let (status, part) = refund(json!({"amount_minor": 1000})).await;
    assert_eq!(status, StatusCode::OK, "{part}");
    assert_eq!(
        (part["data"]["order"]["refunded_minor"].as_i64(), part["data"]["order"]["status"].as_str()),
        (Some(1000), Some("paid"))
    );
    let (status, json) = refund(json!({"amount_minor": 3901})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert!(json["error"]["details"]["amount_minor"].is_array());
    let (status, json) = refund(json!({"amount_minor": -5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    let (status, rest) = refund(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(rest["data"]["amount_minor"], 3900);
    assert_eq!(
        (rest["data"]["order"]["refunded_minor"].as_i64(), rest["data"]["order"]["status"].as_str()),
        (Some(4900), Some("refunded"))
    );
    assert!(rest["data"]["order"]["refunded_at"].is_string());
    let (status, _) = refund(json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing is left to refund");
    let refunds = reqwest::Client::new()
        .get(format!("{}/v1/refunds?payment_intent={intent}", stripe_api_base()))
        .bearer_auth(fibonacco_api::testing::STRIPE_API_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let amounts: i64 = refunds["data"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    assert_eq!(amounts, 4900, "Stripe refunded exactly the order: {refunds}");
}

#[tokio::test]
async fn a_declined_card_fails_the_order_and_another_card_pays_it() {
    let app = TestApp::spawn().await;
    app.receive_stripe_webhooks("commerce-declined").await;
    let t = &app.token_a;
    let svc = post(&app, t, "/api/v1/services", json!({"name": "Audit", "price_minor": 1500})).await;
    let customer = app.customer(t, json!({"name": "Declined"})).await;
    let order = post(&app, t, "/api/v1/orders", json!({"service_id": svc["id"], "customer_id": customer["id"]})).await;
    let oid = order["id"].as_str().unwrap();
    let declined = stripe_card("4000000000000341").await;
    let (status, json) = app
        .send("POST", &format!("/api/v1/orders/{oid}/pay"), Some(t), Some(json!({"payment_method": declined})))
        .await;
    assert_eq!((status, code(&json)), (StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED"), "{json}");
    assert!(json["error"]["message"].as_str().unwrap().contains("declined"), "{json}");
    let failed = eventually(&app, oid, "failed", |o| o["status"] == "failed").await;
    assert!(failed["stripe_payment_intent_id"].is_string(), "the failure event attached its PaymentIntent");
    assert_eq!(purchases(&app, oid).await, 0);

    let good = stripe_card("4242424242424242").await;
    let (status, json) =
        app.send("POST", &format!("/api/v1/orders/{oid}/pay"), Some(t), Some(json!({"payment_method": good}))).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_ne!(json["data"]["payment_intent_id"], failed["stripe_payment_intent_id"], "a new attempt");
    eventually(&app, oid, "paid", |o| o["status"] == "paid").await;
    assert_eq!(purchases(&app, oid).await, 1);
}

#[tokio::test]
async fn a_subscription_is_created_renewed_and_cancelled_through_stripe() {
    let app = TestApp::spawn().await;
    app.receive_stripe_webhooks("commerce-subscription").await;
    let t = &app.token_a;
    let monthly = post(
        &app,
        t,
        "/api/v1/services",
        json!({"name": "Care plan", "price_minor": 2900, "billing_period": "monthly"}),
    )
    .await;
    let yearly =
        post(&app, t, "/api/v1/services", json!({"name": "Hosting", "price_minor": 12000, "billing_period": "yearly"}))
            .await;
    let once = post(&app, t, "/api/v1/services", json!({"name": "Setup", "price_minor": 500})).await;
    let customer = app.customer(t, json!({"name": "Subscriber", "email": "sub@example.com"})).await;
    let card = stripe_card("4242424242424242").await;

    for (body, field) in [
        (json!({"customer_id": customer["id"], "service_id": once["id"]}), "service_id"),
        (json!({"service_id": monthly["id"]}), "customer_id"),
        (
            json!({"customer_id": customer["id"], "service_id": monthly["id"], "payment_method": "card_1"}),
            "payment_method",
        ),
    ] {
        let (status, json) = app.send("POST", "/api/v1/subscriptions", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["details"][field].is_array(), "{body}: {json}");
    }

    let (status, sub) = app
        .send(
            "POST",
            "/api/v1/subscriptions",
            Some(t),
            Some(json!({"customer_id": customer["id"], "service_id": monthly["id"], "payment_method": card})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    let sub = sub["data"].clone();
    let sid = sub["id"].as_str().unwrap();
    assert_eq!((sub["status"].as_str(), sub["amount_minor"].as_i64()), (Some("active"), Some(2900)));
    let stripe_sub = sub["stripe_subscription_id"].as_str().unwrap().to_owned();
    assert!(sub["current_period_end"].is_string());
    let (status, _) = app
        .send(
            "POST",
            "/api/v1/subscriptions",
            Some(t),
            Some(json!({"customer_id": customer["id"], "service_id": monthly["id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "one live subscription per customer and service");
    let (status, other) = app
        .send(
            "POST",
            "/api/v1/subscriptions",
            Some(t),
            Some(json!({"customer_id": customer["id"], "service_id": yearly["id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "the card on file pays the second one: {other}");

    // The first invoice, then a renewal (Stripe's clock, played by the test), each an order.
    let renewals = |n: usize| {
        let app = &app;
        let customer = customer["id"].as_str().unwrap().to_owned();
        async move {
            for _ in 0..150 {
                let (_, list) = app.get(&format!("/api/v1/orders?customer_id={customer}"), &app.token_a).await;
                let mine: Vec<Value> = list["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|o| o["subscription_id"].as_str() == Some(sid))
                    .cloned()
                    .collect();
                if mine.len() >= n {
                    return mine;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("never {n} renewal orders");
        }
    };
    let first = renewals(1).await;
    assert_eq!((first[0]["status"].as_str(), first[0]["amount_minor"].as_i64()), (Some("paid"), Some(2900)));
    let stripe_customer = reqwest::Client::new()
        .get(format!("{}/v1/subscriptions/{stripe_sub}", stripe_api_base()))
        .bearer_auth(fibonacco_api::testing::STRIPE_API_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_owned();
    let invoice = localstripe("/v1/invoices", &[("customer", &stripe_customer), ("subscription", &stripe_sub)]).await;
    localstripe(&format!("/v1/invoices/{}/pay", invoice["id"].as_str().unwrap()), &[]).await;
    let both = renewals(2).await;
    assert!(both.iter().all(|o| o["status"] == "paid" && o["amount_minor"] == 2900), "{both:?}");
    assert_eq!(purchases(&app, both[0]["id"].as_str().unwrap()).await, 1);

    // MRR: 2900 monthly + 12000 yearly (1000 a month).
    let (status, dash) = app.get("/api/v1/crm/dashboard/analytics", t).await;
    assert_eq!(status, StatusCode::OK, "{dash}");
    assert_eq!(
        dash["data"]["recurring"],
        json!([{"currency": "USD", "subscriptions": 2, "mrr_minor": 3900, "cancelling": 0}])
    );

    // Cancel at the period's end: still active; then now: cancelled, and the deletion event
    // that follows changes nothing.
    let cancel_path = format!("/api/v1/subscriptions/{sid}/cancel");
    let cancel = |body: Value| app.send("POST", &cancel_path, Some(t), Some(body));
    let (status, json) = cancel(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        (json["data"]["status"].as_str(), json["data"]["cancel_at_period_end"].as_bool()),
        (Some("active"), Some(true))
    );
    let (_, dash) = app.get("/api/v1/crm/dashboard/analytics", t).await;
    assert_eq!(dash["data"]["recurring"][0]["cancelling"], 1);
    let (status, json) = cancel(json!({"at_period_end": false})).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["data"]["status"], "canceled");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, shown) = app.get(&format!("/api/v1/subscriptions/{sid}"), t).await;
    assert_eq!(shown["data"]["status"], "canceled");
    let (status, _) = cancel(json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, dash) = app.get("/api/v1/crm/dashboard/analytics", t).await;
    assert_eq!(dash["data"]["recurring"][0]["mrr_minor"], 1000);

    // localstripe sends no `customer.subscription.updated`; Stripe's shape of it, signed:
    // a newer state lands, an older one arriving late does not undo it, and another
    // tenant's metadata is a conflict.
    let yearly_sub = other["data"].clone();
    let updated = |id: &str, created: i64, status: &str, tenant: String| {
        json!({"id": id, "type": "customer.subscription.updated", "created": created,
               "data": {"object": {"id": yearly_sub["stripe_subscription_id"], "object": "subscription", "status": status,
                   "cancel_at_period_end": false, "current_period_end": created + 86_400 * 365,
                   "metadata": {"tenant_id": tenant, "subscription_id": yearly_sub["id"]}}}})
    };
    let now = chrono::Utc::now().timestamp();
    let a = app.tenant_a.to_string();
    let (status, json) =
        stripe(&app, &updated("evt_sub_new", now + 5, "past_due", a.clone()), now, STRIPE_SECRET).await;
    assert_eq!((status, json["data"]["outcome"].as_str()), (StatusCode::OK, Some("applied")), "{json}");
    let (status, json) = stripe(&app, &updated("evt_sub_old", now - 60, "active", a), now, STRIPE_SECRET).await;
    assert_eq!((status, json["data"]["outcome"].as_str()), (StatusCode::OK, Some("ignored")), "{json}");
    // A status Stripe may add one day (not one our table knows) is kept for an operator,
    // not a 500 that Stripe would retry for days.
    let unknown = updated("evt_sub_unknown", now + 6, "frozen", app.tenant_a.to_string());
    let (status, json) = stripe(&app, &unknown, now, STRIPE_SECRET).await;
    assert_eq!((status, json["data"]["outcome"].as_str()), (StatusCode::OK, Some("conflict")), "{json}");
    let forged = updated("evt_sub_b", now + 10, "canceled", app.tenant_b.to_string());
    let (_, json) = stripe(&app, &forged, now, STRIPE_SECRET).await;
    assert_eq!(json["data"]["outcome"], "conflict", "{json}");
    let (_, shown) = app.get(&format!("/api/v1/subscriptions/{}", yearly_sub["id"].as_str().unwrap()), t).await;
    assert_eq!(shown["data"]["status"], "past_due");

    // Lists by customer; tenant B sees none of it.
    let (_, list) =
        app.get(&format!("/api/v1/subscriptions?customer_id={}", customer["id"].as_str().unwrap()), t).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let (status, _) = app.get(&format!("/api/v1/subscriptions/{sid}"), &app.token_b).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/api/v1/subscriptions", &app.token_b).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn without_a_stripe_key_payments_say_so() {
    let app = TestApp::spawn().await;
    let router = app.with(|s| s.stripe = None);
    let svc = post(&app, &app.token_a, "/api/v1/services", json!({"name": "Audit", "price_minor": 100})).await;
    let order = post(&app, &app.token_a, "/api/v1/orders", json!({"service_id": svc["id"]})).await;
    let (status, json) = fibonacco_api::testing::call(
        &router,
        &app.token_a,
        "POST",
        &format!("/api/v1/orders/{}/pay", order["id"].as_str().unwrap()),
        Some(json!({})),
    )
    .await;
    assert_eq!((status, code(&json)), (StatusCode::SERVICE_UNAVAILABLE, "PAYMENTS_NOT_CONFIGURED"), "{json}");
}

/// Stripe's 429 and 5xx answers cannot be provoked in localstripe: a stub answers 503, 429,
/// then 200, and the client retries with the same idempotency key; a decline is not retried.
#[tokio::test]
async fn the_stripe_client_retries_busy_answers_with_the_same_idempotency_key() {
    use axum::{Router, extract::State, http::HeaderMap, routing::post as route_post};
    use fibonacco_api::stripe::client::{Client, NewPayment, StripeError};
    use std::sync::{Arc, Mutex};
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
    async fn answer(State(seen): State<Seen>, headers: HeaderMap, body: String) -> (StatusCode, axum::Json<Value>) {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push((body.clone(), key));
            seen.len()
        };
        if body.contains("payment_method=pm_declined") {
            let error = json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}});
            return (StatusCode::PAYMENT_REQUIRED, axum::Json(error));
        }
        match n {
            1 => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": {"message": "busy"}}))),
            2 => (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"error": {"message": "slow down"}}))),
            _ => (
                StatusCode::OK,
                axum::Json(
                    json!({"id": "pi_1", "status": "succeeded", "client_secret": null, "amount": 700, "currency": "usd"}),
                ),
            ),
        }
    }
    fibonacco_platform::install_tls_provider();
    let seen: Seen = Arc::default();
    let base = fibonacco_api::testing::serve(
        Router::new().route("/v1/payment_intents", route_post(answer)).with_state(seen.clone()),
    )
    .await;
    let client = Client::new(&base, fibonacco_platform::config::Secret::new("sk_test_stub"))
        .with_backoff(std::time::Duration::from_millis(5));
    let metadata = [("order_id", "o-1".to_owned())];
    let payment = NewPayment {
        amount_minor: 700,
        currency: "USD",
        customer: None,
        payment_method: Some("pm_ok"),
        metadata: &metadata,
    };
    let intent = client.create_payment_intent(&payment, "fib-order-1").await.unwrap();
    assert_eq!((intent.id.as_str(), intent.amount), ("pi_1", 700));
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "503 and 429 retried, then done");
    assert!(calls.iter().all(|(body, key)| key.as_deref() == Some("fib-order-1") && body == &calls[0].0));
    assert!(
        calls[0].0.contains("amount=700")
            && calls[0].0.contains("currency=usd")
            && calls[0].0.contains("metadata%5Border_id%5D=o-1")
    );

    let declined = NewPayment { payment_method: Some("pm_declined"), ..payment };
    let err = client.create_payment_intent(&declined, "fib-order-2").await.unwrap_err();
    assert!(matches!(&err, StripeError::Declined { code: Some(c), .. } if c == "insufficient_funds"), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 4, "a decline is final");
}
