//! Segments: each rule of the language against audiences worked out by hand over four
//! customers, the saved segment's preview, errors with their paths, tenancy, and a
//! campaign whose recipients are the segment's customers when it starts.

use axum::http::StatusCode;
use fibonacco_api::testing::TestApp;
use fibonacco_platform::db;
use serde_json::{Value, json};

/// Ada, Bob, Cy and Dee of tenant A, each with what the rules test (see the table below);
/// and Eve of tenant B, who matches everything Ada does.
async fn people(app: &TestApp) -> Vec<(String, String)> {
    let mut ids = Vec::new();
    for (token, body) in [
        (
            &app.token_a,
            json!({"name": "Ada Gold", "email": "ada@example.com", "metadata": {"plan": "gold", "tags": ["vip"]}}),
        ),
        (
            &app.token_a,
            json!({"name": "Bob Silver", "email": "bob@example.com", "metadata": {"plan": "silver", "tags": ["churned"]}}),
        ),
        (&app.token_a, json!({"name": "Cy None", "phone": "+15550000003"})),
        (&app.token_a, json!({"name": "Dee Old", "email": "dee@example.com", "metadata": {"plan": "50%_off"}})),
        (
            &app.token_b,
            json!({"name": "Eve Other", "email": "eve@example.com", "metadata": {"plan": "gold", "tags": ["vip"]}}),
        ),
    ] {
        let c = app.customer(token, body).await;
        ids.push((c["name"].as_str().unwrap().to_owned(), c["id"].as_str().unwrap().to_owned()));
    }
    let id = |n: &str| ids.iter().find(|(name, _)| name.starts_with(n)).unwrap().1.clone();
    for (tenant, statements) in [
        (
            app.tenant_a,
            vec![
                format!("insert into customer_engagement_scores (tenant_id, customer_id, score, as_of) values
                    ($1, '{}', 80, now()), ($1, '{}', 30, now()), ($1, '{}', 50, now())", id("Ada"), id("Bob"), id("Dee")),
                format!("insert into customer_predictive_scores (tenant_id, customer_id, probability, model_version, as_of) values
                    ($1, '{}', 0.6, 't', now()), ($1, '{}', 0.1, 't', now()), ($1, '{}', 0.35, 't', now())", id("Ada"), id("Bob"), id("Dee")),
                format!("insert into orders (tenant_id, customer_id, order_number, status, amount_minor, paid_at) values
                    ($1, '{}', 'S-1', 'paid', 1000, now() - interval '10 days'),
                    ($1, '{}', 'S-2', 'paid', 1000, now() - interval '100 days'),
                    ($1, '{}', 'S-3', 'pending', 1000, null)", id("Ada"), id("Bob"), id("Dee")),
                format!("insert into customer_activities (tenant_id, customer_id, activity_type, occurred_at) values
                    ($1, '{}', 'email_open', now() - interval '5 days'),
                    ($1, '{}', 'page_view', now() - interval '40 days')", id("Ada"), id("Dee")),
                "insert into outbound_suppressions (tenant_id, channel, target, reason) values ($1, 'email', 'bob@example.com', 'bounce')".into(),
                format!("update crm_customers set unsubscribed_at = now() where tenant_id = $1 and id = '{}'", id("Cy")),
                format!("update crm_customers set created_at = now() - interval '400 days' where tenant_id = $1 and id = '{}'", id("Dee")),
                format!("insert into customer_consents (tenant_id, customer_id, channel, granted, source) values ($1, '{}', 'email', true, 'form')", id("Ada")),
            ],
        ),
        (
            app.tenant_b,
            vec![format!("insert into customer_engagement_scores (tenant_id, customer_id, score, as_of) values ($1, '{}', 99, now())", id("Eve"))],
        ),
    ] {
        let mut tx = db::begin_tenant(&app.db.pool, tenant).await.unwrap();
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    ids
}

async fn audience(app: &TestApp, rules: Value) -> Vec<String> {
    let (status, body) =
        app.send("POST", "/api/v1/segments/preview", Some(&app.token_a), Some(json!({"rules": rules}))).await;
    assert_eq!(status, StatusCode::OK, "{rules}: {body}");
    let mut names: Vec<String> =
        body["data"]["sample"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(body["data"]["count"], names.len(), "{body}");
    names.sort();
    names
}

#[tokio::test]
async fn each_rule_selects_the_audience_worked_out_by_hand() {
    let app = TestApp::spawn().await;
    people(&app).await;
    let cond = |field: &str, op: &str, value: Value| json!({"field": field, "op": op, "value": value});
    let cases: Vec<(Value, &[&str])> = vec![
        (cond("engagement_score", "gte", json!(40)), &["Ada Gold", "Dee Old"]),
        // Cy has no score: a comparison never selects the unscored.
        (cond("engagement_score", "lt", json!(40)), &["Bob Silver"]),
        (json!({"not": cond("engagement_score", "gte", json!(40))}), &["Bob Silver", "Cy None"]),
        (cond("purchase_probability", "gte", json!(0.3)), &["Ada Gold", "Dee Old"]),
        (cond("last_order", "within_days", json!(30)), &["Ada Gold"]),
        (cond("last_order", "not_within_days", json!(60)), &["Bob Silver", "Cy None", "Dee Old"]),
        (json!({"field": "last_order", "op": "never"}), &["Cy None", "Dee Old"]),
        (json!({"field": "last_order", "op": "ever"}), &["Ada Gold", "Bob Silver"]),
        (cond("suppressed", "is", json!(true)), &["Bob Silver"]),
        (cond("unsubscribed", "is", json!(true)), &["Cy None"]),
        (cond("consent.email", "is", json!(true)), &["Ada Gold"]),
        (cond("consent.email", "is", json!(false)), &["Bob Silver", "Cy None", "Dee Old"]),
        (cond("tags", "has", json!("vip")), &["Ada Gold"]),
        (cond("tags", "lacks", json!("vip")), &["Bob Silver", "Cy None", "Dee Old"]),
        (cond("metadata.plan", "eq", json!("GOLD")), &["Ada Gold"]),
        (cond("metadata.plan", "neq", json!("gold")), &["Bob Silver", "Cy None", "Dee Old"]),
        (cond("metadata.plan", "contains", json!("%_")), &["Dee Old"]),
        (cond("metadata.plan", "contains", json!("_")), &["Dee Old"]),
        (json!({"field": "email", "op": "not_set"}), &["Cy None"]),
        (json!({"field": "email", "op": "set"}), &["Ada Gold", "Bob Silver", "Dee Old"]),
        (cond("name", "starts_with", json!("b")), &["Bob Silver"]),
        (cond("name", "contains", json!("LD")), &["Ada Gold", "Dee Old"]),
        (cond("created_at", "older_than_days", json!(365)), &["Dee Old"]),
        (cond("created_at", "within_days", json!(30)), &["Ada Gold", "Bob Silver", "Cy None"]),
        (cond("last_activity", "within_days", json!(7)), &["Ada Gold"]),
        (cond("last_activity", "not_within_days", json!(30)), &["Bob Silver", "Cy None", "Dee Old"]),
        (
            json!({"field": "last_activity", "op": "within_days", "value": 60, "activity_type": "page_view"}),
            &["Dee Old"],
        ),
        (
            json!({"any": [cond("tags", "has", json!("vip")), cond("engagement_score", "lt", json!(40))]}),
            &["Ada Gold", "Bob Silver"],
        ),
        // The example: engaged, likely to buy, no order in 60 days, not suppressed.
        (
            json!({"all": [
                cond("engagement_score", "gte", json!(40)),
                cond("purchase_probability", "gte", json!(0.3)),
                cond("last_order", "not_within_days", json!(60)),
                cond("suppressed", "is", json!(false))
            ]}),
            &["Dee Old"],
        ),
    ];
    for (rules, expected) in cases {
        assert_eq!(audience(&app, rules.clone()).await, expected.to_vec(), "{rules}");
    }
}

#[tokio::test]
async fn saved_segments_preview_and_feed_a_campaign_at_its_start() {
    let app = TestApp::spawn().await;
    let ids = people(&app).await;
    let t = Some(app.token_a.as_str());
    let (status, body) = app
        .send(
            "POST",
            "/api/v1/segments",
            t,
            Some(json!({"name": "Engaged", "rules": {"all": [
                {"field": "engagement_score", "op": "gte", "value": 40},
                {"field": "suppressed", "op": "is", "value": false}
            ]}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let segment = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .send("POST", "/api/v1/segments", t, Some(json!({"name": "engaged", "rules": {"field": "email", "op": "set"}})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "names are unique in any case");
    let (_, preview) = app.get(&format!("/api/v1/segments/{segment}/preview"), &app.token_a).await;
    assert_eq!(preview["data"]["count"], 2, "{preview}");
    assert_eq!(preview["data"]["sample"][0]["name"], "Ada Gold");

    // The customer list and the export take the segment as a filter.
    let (status, listed) = app.get(&format!("/api/v1/customers?segment_id={segment}&sort=name"), &app.token_a).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let names: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ada Gold", "Dee Old"]);
    let req = axum::http::Request::get(format!("/api/v1/customers/export?segment_id={segment}&sort=name"))
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {}", app.token_a))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req).await.unwrap();
    let csv = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert_eq!(csv.lines().count(), 3, "the header, Ada and Dee: {csv}");
    assert!(csv.contains("Ada Gold") && csv.contains("Dee Old") && !csv.contains("Bob"), "{csv}");
    for (token, query) in [(&app.token_b, segment.clone()), (&app.token_a, "not-a-uuid".to_owned())] {
        let (status, body) = app.get(&format!("/api/v1/customers?segment_id={query}"), token).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["details"]["segment_id"].is_array(), "{body}");
    }

    // Problems are reported with their paths; nothing is saved.
    let (status, body) = app
        .send(
            "POST",
            "/api/v1/segments",
            t,
            Some(json!({"name": "Bad", "rules": {"all": [
                {"field": "engagement_score", "op": "gte", "value": 400},
                {"field": "shoe_size", "op": "eq", "value": "9"}
            ]}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let details = &body["error"]["details"];
    assert!(details["rules.all[0].value"].is_array() && details["rules.all[1].field"].is_array(), "{body}");
    let (status, _) = app.send("POST", "/api/v1/segments/preview", t, Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Tenant B neither sees it nor previews it; its own preview never reaches A's customers.
    assert_eq!(app.get(&format!("/api/v1/segments/{segment}"), &app.token_b).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/api/v1/segments/{segment}/preview"), &app.token_b).await.0, StatusCode::NOT_FOUND);
    let (_, theirs) = app
        .send(
            "POST",
            "/api/v1/segments/preview",
            Some(&app.token_b),
            Some(json!({"rules": {"field": "email", "op": "set"}})),
        )
        .await;
    assert_eq!(theirs["data"]["count"], 1, "{theirs}");

    // A campaign takes the segment; its recipients are resolved when it starts.
    let (_, template) = app
        .send(
            "POST",
            "/api/v1/outbound/email/templates",
            t,
            Some(json!({"name": "Hello", "subject": "Hi", "html_body": "<p>Hi</p>"})),
        )
        .await;
    let template = template["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .send(
            "POST",
            "/api/v1/outbound/email/campaigns",
            t,
            Some(json!({"name": "To the engaged", "template_id": template, "segment_id": segment, "all_customers": true})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a segment or a list, not both: {body}");
    let (status, body) = app
        .send(
            "POST",
            "/api/v1/outbound/email/campaigns",
            t,
            Some(json!({"name": "To the engaged", "template_id": template, "segment_id": uuid::Uuid::now_v7()})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .send(
            "POST",
            "/api/v1/outbound/email/campaigns",
            t,
            Some(json!({"name": "To the engaged", "template_id": template, "segment_id": segment})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["data"]["segment_id"].as_str(), body["data"]["recipient_count"].as_i64()),
        (Some(segment.as_str()), Some(0))
    );
    let campaign = body["data"]["id"].as_str().unwrap().to_owned();
    // Bob's score rises after the campaign was planned, before it starts: he is in.
    let bob = &ids.iter().find(|(n, _)| n.starts_with("Bob")).unwrap().1;
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    sqlx::query("update customer_engagement_scores set score = 90 where customer_id = $1::uuid")
        .bind(bob)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("delete from outbound_suppressions where target = 'bob@example.com'").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    // A planned campaign can change its segment, or leave it (null).
    let (status, body) =
        app.send("PUT", &format!("/api/v1/outbound/campaigns/{campaign}"), t, Some(json!({"segment_id": null}))).await;
    assert_eq!((status, body["data"]["segment_id"].clone()), (StatusCode::OK, Value::Null), "{body}");
    let (status, body) = app
        .send("PUT", &format!("/api/v1/outbound/campaigns/{campaign}"), t, Some(json!({"segment_id": segment})))
        .await;
    assert_eq!((status, body["data"]["segment_id"].as_str()), (StatusCode::OK, Some(segment.as_str())), "{body}");
    let (status, _) = app
        .send(
            "PUT",
            &format!("/api/v1/outbound/campaigns/{campaign}"),
            t,
            Some(json!({"segment_id": uuid::Uuid::now_v7()})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = app.send("POST", &format!("/api/v1/outbound/campaigns/{campaign}/start"), t, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["recipient_count"], 3, "Ada, Bob and Dee at the start: {body}");
    let (status, _) =
        app.send("PUT", &format!("/api/v1/outbound/campaigns/{campaign}"), t, Some(json!({"segment_id": null}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "a running campaign's audience is fixed");

    // A segment that selects nobody cannot start a campaign.
    let (_, empty) = app
        .send(
            "POST",
            "/api/v1/segments",
            t,
            Some(json!({"name": "Nobody", "rules": {"field": "engagement_score", "op": "gt", "value": 100}})),
        )
        .await;
    let (_, c2) = app
        .send(
            "POST",
            "/api/v1/outbound/email/campaigns",
            t,
            Some(json!({"name": "Empty", "template_id": template, "segment_id": empty["data"]["id"]})),
        )
        .await;
    let (status, body) = app
        .send("POST", &format!("/api/v1/outbound/campaigns/{}/start", c2["data"]["id"].as_str().unwrap()), t, None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["details"]["recipients"][0].as_str().unwrap().contains("segment selects nobody"), "{body}");
}
