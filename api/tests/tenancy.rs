//! Tenant isolation: a foreign id is a 404, lists never leak, and row-level security
//! holds even for a query that forgets its tenant filter.

use axum::http::StatusCode;
use fibonacco_api::testing::{TestApp, code};
use fibonacco_platform::db;
use serde_json::json;

#[tokio::test]
async fn tenant_b_cannot_see_or_touch_tenant_a_customers() {
    let app = TestApp::spawn().await;
    let a = app.customer(&app.token_a, json!({"name": "Alpha Co", "email": "boss@alpha.example"})).await;
    let b = app.customer(&app.token_b, json!({"name": "Beta Co"})).await;
    let id = a["id"].as_str().unwrap();
    let slug = a["slug"].as_str().unwrap();

    let attempts = [
        ("GET", format!("/api/v1/customers/{id}"), None),
        ("PUT", format!("/api/v1/customers/{id}"), Some(json!({"name": "Hijacked"}))),
        ("DELETE", format!("/api/v1/customers/{id}"), None),
        ("GET", format!("/api/v1/customers/slug/{slug}"), None),
        ("PUT", format!("/api/v1/customers/{id}/business-context"), Some(json!({"business_context": {"x": 1}}))),
        ("GET", format!("/api/v1/customers/{id}/ai-context"), None),
    ];
    for (method, path, body) in attempts {
        let (status, json) = app.send(method, &path, Some(&app.token_b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {json}");
        assert_eq!(code(&json), "NOT_FOUND");
    }

    // B's list holds only B's customer, even when searching for A's name.
    let (_, list) = app.get("/api/v1/customers?search=alpha", &app.token_b).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    let (_, list) = app.get("/api/v1/customers", &app.token_b).await;
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![b["id"].as_str().unwrap()]);
    assert_eq!(list["meta"]["pagination"]["total"], 1);

    // A's customer is exactly as it was.
    let (status, still) = app.get(&format!("/api/v1/customers/{id}"), &app.token_a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still["data"]["name"], "Alpha Co");
    assert_eq!(still["data"]["business_context"], json!({}));
}

#[tokio::test]
async fn the_same_slug_and_email_may_exist_in_two_tenants() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "Same Name", "slug": "same", "email": "same@example.com"});
    app.customer(&app.token_a, body.clone()).await;
    app.customer(&app.token_b, body).await;
}

#[tokio::test]
async fn row_level_security_hides_other_tenants_rows_without_a_filter() {
    let app = TestApp::spawn().await;
    app.customer(&app.token_a, json!({"name": "A1"})).await;
    app.customer(&app.token_a, json!({"name": "A2"})).await;
    app.customer(&app.token_b, json!({"name": "B1"})).await;

    // Under A's setting, a query with no tenant filter sees A's rows only.
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_a).await.unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("select name from crm_customers order by name").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(names, vec!["A1", "A2"]);
    // Updates and deletes without a filter cannot reach B's rows either.
    let touched = sqlx::query("update crm_customers set name = name || '!'").execute(&mut *tx).await.unwrap();
    assert_eq!(touched.rows_affected(), 2);
    // Writing a row for B while acting as A is refused by the policy's check.
    let err = sqlx::query("insert into crm_customers (tenant_id, name, slug) values ($1, 'sneaky', 'sneaky')")
        .bind(app.tenant_b)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);

    // With no tenant set at all, nothing is visible.
    let mut conn = app.db.pool.acquire().await.unwrap();
    let count: i64 = sqlx::query_scalar("select count(*) from crm_customers").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(count, 0);

    // B still has exactly its one customer, unchanged.
    let mut tx = db::begin_tenant(&app.db.pool, app.tenant_b).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar("select name from crm_customers").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(names, vec!["B1"]);
}

#[tokio::test]
async fn the_tenant_setting_does_not_outlive_its_transaction() {
    let app = TestApp::spawn().await;
    app.customer(&app.token_a, json!({"name": "A1"})).await;
    // A pool of one connection: the next user of the same connection must not inherit A.
    let pool = fibonacco_platform::db::connect_url(&app.db.url, 1, std::time::Duration::from_secs(5)).await.unwrap();
    let mut tx = db::begin_tenant(&pool, app.tenant_a).await.unwrap();
    let seen: i64 = sqlx::query_scalar("select count(*) from crm_customers").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(seen, 1);
    tx.commit().await.unwrap();
    let after: i64 = sqlx::query_scalar("select count(*) from crm_customers").fetch_one(&pool).await.unwrap();
    assert_eq!(after, 0);
}

#[tokio::test]
async fn one_round_trip_reads_are_tenant_scoped_and_leave_nothing_behind() {
    use fibonacco_platform::db::{ScopedStatement, fetch_scoped};
    static NAMES: ScopedStatement = ScopedStatement {
        name: "fib_test_names",
        param_types: "uuid",
        // Deliberately no tenant filter: only row-level security scopes this.
        sql: "select name from crm_customers where $1::uuid is not null order by name",
    };
    let app = TestApp::spawn().await;
    app.customer(&app.token_a, json!({"name": "A1"})).await;
    app.customer(&app.token_b, json!({"name": "B1"})).await;

    let pool = fibonacco_platform::db::connect_url(&app.db.url, 1, std::time::Duration::from_secs(5)).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let names = |rows: Vec<sqlx::postgres::PgRow>| -> Vec<String> {
        use sqlx::Row;
        rows.iter().map(|r| r.get::<String, _>("name")).collect()
    };
    // First call prepares the statement on this connection, the second reuses it.
    let rows = fetch_scoped(&mut conn, app.tenant_a, &NAMES, &[&uuid::Uuid::nil()]).await.unwrap();
    assert_eq!(names(rows), vec!["A1"]);
    let rows = fetch_scoped(&mut conn, app.tenant_b, &NAMES, &[&uuid::Uuid::nil()]).await.unwrap();
    assert_eq!(names(rows), vec!["B1"]);
    // The setting ended with the message's implicit transaction.
    let visible: i64 = sqlx::query_scalar("select count(*) from crm_customers").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(visible, 0);
    drop(conn);

    // Inside an explicit transaction it joins that transaction.
    let mut tx = db::begin_tenant(&pool, app.tenant_a).await.unwrap();
    let rows = fetch_scoped(&mut tx, app.tenant_a, &NAMES, &[&uuid::Uuid::nil()]).await.unwrap();
    assert_eq!(names(rows), vec!["A1"]);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_first_scoped_read_inside_a_transaction_prepares_without_aborting_it() {
    let app = TestApp::spawn().await;
    let c = app.customer(&app.token_a, json!({"name": "In Tx"})).await;
    let id: uuid::Uuid = c["id"].as_str().unwrap().parse().unwrap();
    // A fresh pool: nothing is prepared on its connection yet.
    let pool = fibonacco_platform::db::connect_url(&app.db.url, 1, std::time::Duration::from_secs(5)).await.unwrap();
    let mut tx = db::begin_tenant(&pool, app.tenant_a).await.unwrap();
    sqlx::query("update crm_customers set phone = '+15550001111' where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let got = fibonacco_api::customers::store::get(&mut tx, app.tenant_a, id).await.unwrap().unwrap();
    assert_eq!(got.phone.as_deref(), Some("+15550001111"), "sees the transaction's own write");
    tx.commit().await.unwrap();
    let (_, after) = app.get(&format!("/api/v1/customers/{id}"), &app.token_a).await;
    assert_eq!(after["data"]["phone"], "+15550001111", "the earlier write was committed, not lost");
}
