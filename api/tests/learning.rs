//! Learning campaigns, guides, suggestions and sales leads.

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn generated_campaigns_are_found_by_slug_with_their_guide() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    // A provider that answers with its prompt: the guide shows what the prompt carried.
    let (llm, seen) = fibonacco_api::testing::echo_llm().await;
    let router = app.with_llm(llm);
    let (status, c) = fibonacco_api::testing::call(
        &router,
        t,
        "POST",
        "/api/v1/campaigns/generate",
        Some(json!({"topic": "Summer HVAC checkups", "audience": "homeowners", "campaign_type": "seasonal", "is_template": true})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let d = &c["data"];
    assert_eq!(
        (d["slug"].as_str(), d["status"].as_str(), d["model"].as_str()),
        (Some("summer-hvac-checkups"), Some("draft"), Some("echo-1"))
    );
    let steps = d["guide"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "one step per prompt message: {d}");
    assert!(steps[0]["title"].as_str().unwrap().contains("seasonal learning campaigns"), "the kind: {d}");
    assert_eq!(steps[1]["title"], "user: Summer HVAC checkups Audience: homeowners", "topic and audience: {d}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let (_, again) =
        app.send("POST", "/api/v1/campaigns/generate", Some(t), Some(json!({"topic": "Summer HVAC checkups"}))).await;
    assert_eq!(again["data"]["slug"], "summer-hvac-checkups-2");

    let (status, by_slug) = app.get("/api/v1/campaigns/summer-hvac-checkups", t).await;
    assert_eq!((status, by_slug["data"]["id"].clone()), (StatusCode::OK, d["id"].clone()));
    let (_, all) = app.get("/api/v1/campaigns", t).await;
    assert_eq!(all["meta"]["pagination"]["total"], 2);
    let (_, templates) = app.get("/api/v1/campaigns/templates", t).await;
    assert_eq!(templates["meta"]["pagination"]["total"], 1);

    let (status, guide) = app.get(&format!("/api/v1/learning/campaigns/{}/guide", d["id"].as_str().unwrap()), t).await;
    assert_eq!(status, StatusCode::OK, "{guide}");
    assert_eq!(guide["data"]["guide"]["steps"].as_array().unwrap().len(), 2);
    assert_eq!(guide["data"]["guide"]["steps"][0]["order"], 1);

    for path in [
        "/api/v1/campaigns/summer-hvac-checkups".to_string(),
        format!("/api/v1/learning/campaigns/{}/guide", d["id"].as_str().unwrap()),
    ] {
        let (status, _) = app.get(&path, &app.token_b).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = app.get("/api/v1/campaigns/Not%20A%20Slug", t).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        app.send("POST", "/api/v1/campaigns/generate", Some(t), Some(json!({"campaign_type": "viral"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    for count in [2, 5] {
        let (status, ideas) = fibonacco_api::testing::call(
            &router,
            t,
            "POST",
            "/api/v1/campaigns/suggestions",
            Some(json!({"industry": "bakery", "count": count})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{ideas}");
        let ideas = ideas["data"].as_array().unwrap();
        assert_eq!(ideas.len(), count, "the count reached the prompt: {ideas:?}");
        assert!(ideas.iter().all(|i| i["title"].as_str().unwrap().contains("bakery")), "the industry too: {ideas:?}");
    }
    let (status, _) = app.send("POST", "/api/v1/campaigns/suggestions", Some(t), Some(json!({"count": 50}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn contact_sales_stores_the_lead_links_the_customer_and_queues_a_notification() {
    let app = TestApp::spawn().await;
    let t = &app.token_a;
    let customer = app.customer(t, json!({"name": "Known", "email": "known@shop.example"})).await;
    let (status, lead) = app
        .send(
            "POST",
            "/api/v1/learning/contact/sales",
            Some(t),
            Some(json!({"name": "Kim", "email": "KNOWN@shop.example", "message": "Call me"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{lead}");
    let job = lead["data"]["notification_job_id"].as_str().unwrap().to_owned();

    let (customer_id, activity): (Option<uuid::Uuid>, i64) = {
        let mut tx = fibonacco_platform::db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
        let row = sqlx::query_as(
            "select customer_id, (select count(*) from customer_activities where activity_type = 'sales_contact')
             from learning_sales_contacts where id = $1::uuid",
        )
        .bind(lead["data"]["id"].as_str().unwrap())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        row
    };
    assert_eq!(customer_id.map(|c| c.to_string()), customer["id"].as_str().map(str::to_owned));
    assert_eq!(activity, 1);

    let mut redis = app.state.redis.clone();
    let queued: Vec<String> = redis::cmd("LRANGE")
        .arg(app.state.queue.list_key("emails"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let ours = queued.iter().find(|p| p.contains(&job)).expect("notification queued on emails");
    let payload: Value = serde_json::from_str(ours).unwrap();
    assert_eq!(payload["job"], "SendSalesNotification");
    let _: i64 = redis::cmd("LREM")
        .arg(app.state.queue.list_key("emails"))
        .arg(0)
        .arg(ours)
        .query_async(&mut redis)
        .await
        .unwrap();

    for (body, field) in [
        (json!({"email": "a@b.co"}), "name"),
        (json!({"name": "x"}), "email"),
        (json!({"name": "x", "email": "nope"}), "email"),
        (json!({"name": "x", "email": "a@b.co", "phone": "12"}), "phone"),
        (json!({"name": "x", "email": "a@b.co", "campaign_id": uuid::Uuid::now_v7()}), "campaign_id"),
        // The name goes into the notification's subject: no header injection.
        (json!({"name": "Eve\r\nBcc: all@evil.example", "email": "a@b.co"}), "name"),
        (json!({"name": "Eve\nX-Spam: no", "email": "a@b.co"}), "name"),
    ] {
        let (status, json) = app.send("POST", "/api/v1/learning/contact/sales", Some(t), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["details"][field].is_array(), "{body}: {json}");
    }
}
