//! `/api/v1/search` over the real stack with the local embedding model.

mod common;

use axum::http::StatusCode;
use common::{TestApp, code};
use fibonacco_platform::{TenantId, db};
use fibonacco_search::embed::{knowledge_text, local::MiniLm, pgvector_literal};
use serde_json::{Value, json};

async fn entry(app: &TestApp, token: &str, body: Value) -> String {
    let (s, k) = app.send("POST", "/api/v1/knowledge", Some(token), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    k["data"]["id"].as_str().unwrap().to_owned()
}

/// Embeds entries the way the GenerateEmbedding job does.
async fn embed(app: &TestApp, tenant: TenantId, model: &MiniLm, ids: &[&str]) {
    let mut tx = db::begin_tenant(&app.db.pool, tenant).await.unwrap();
    for id in ids {
        let (title, content): (String, String) =
            sqlx::query_as("select title, content from knowledge_base where id = $1::uuid")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        let v = model.embed_blocking(&[knowledge_text(&title, &content)]).unwrap().remove(0);
        sqlx::query(
            "update knowledge_base set embedding = $2::text::vector, embedding_model = 'all-MiniLM-L6-v2',
                embedding_status = 'completed' where id = $1::uuid",
        )
        .bind(id)
        .bind(pgvector_literal(&v))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn hybrid_finds_what_keyword_and_vector_search_each_miss() {
    let app = TestApp::spawn().await;
    let model = MiniLm::load(&MiniLm::default_dir()).expect("run scripts/models.sh");
    let t = &app.token_a;
    // Shares no word with the question, but means the same: only the vectors find it.
    let refund = entry(&app, t, json!({"title": "Returns", "content": "Unhappy with a purchase? Return it within 30 days and we reimburse the full price.", "category": "billing"})).await;
    // Shares the words but has no vector yet (just written): only full text finds it.
    let card = entry(&app, t, json!({"title": "Gift card money", "content": "You cannot get money back for unused gift card balances.", "category": "billing"})).await;
    let hours = entry(&app, t, json!({"title": "Opening hours", "content": "We open at nine and close at five.", "category": "general", "tags": ["hours"]})).await;
    embed(&app, app.tenant_a, &model, &[&refund, &hours]).await;

    let q = "how do I get my money back";
    let (s, keyword) = app.get(&format!("/api/v1/search?mode=keyword&q={}", urlenc(q)), t).await;
    assert_eq!(s, StatusCode::OK, "{keyword}");
    let (_, semantic) = app.get(&format!("/api/v1/search?mode=semantic&per_page=1&q={}", urlenc(q)), t).await;
    let (_, hybrid) = app.get(&format!("/api/v1/search?q={}", urlenc(q)), t).await;
    assert!(ids(&keyword).contains(&card) && !ids(&keyword).contains(&refund), "{keyword}");
    assert_eq!(ids(&semantic), vec![refund.clone()], "{semantic}");
    assert!(!semantic.to_string().contains(&card));
    let h = ids(&hybrid);
    assert!(h.contains(&refund) && h.contains(&card), "{hybrid}");
    assert_eq!(hybrid["data"]["mode"], "hybrid");
    assert_eq!(hybrid["data"]["model"], "all-MiniLM-L6-v2");
    let first = &hybrid["data"]["hits"][0];
    assert!(first["score"].as_f64().unwrap() > 0.0 && first.get("semantic_score").is_some());

    // Filters.
    let (_, filtered) = app.get("/api/v1/search?mode=semantic&q=when%20do%20you%20open&tags=hours", t).await;
    assert_eq!(ids(&filtered), vec![hours.clone()]);
    let (_, filtered) = app.get("/api/v1/search?mode=semantic&q=when%20do%20you%20open&category=billing", t).await;
    assert!(!ids(&filtered).contains(&hours));

    // Every hit counted as a use.
    let (_, e) = app.get(&format!("/api/v1/knowledge/{refund}"), t).await;
    assert!(e["data"]["usage_count"].as_i64().unwrap() >= 2, "{e}");
}

#[tokio::test]
async fn search_is_tenant_scoped_and_validates_queries() {
    let app = TestApp::spawn().await;
    let model = MiniLm::load(&MiniLm::default_dir()).expect("run scripts/models.sh");
    let mine = entry(&app, &app.token_a, json!({"title": "Parking", "content": "Free parking behind the shop."})).await;
    let private_b =
        entry(&app, &app.token_b, json!({"title": "Parking B", "content": "Parking for tenant B staff only."})).await;
    let public_b = entry(
        &app,
        &app.token_b,
        json!({"title": "Parking rules", "content": "Public parking guidance.", "is_public": true}),
    )
    .await;
    embed(&app, app.tenant_a, &model, &[&mine]).await;
    embed(&app, app.tenant_b, &model, &[&private_b, &public_b]).await;
    for mode in ["semantic", "keyword", "hybrid"] {
        let (s, r) = app.get(&format!("/api/v1/search?mode={mode}&q=parking"), &app.token_a).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let found = ids(&r);
        assert!(found.contains(&mine), "{mode}: {r}");
        assert!(!found.contains(&private_b), "{mode}: another tenant's private entry leaked: {r}");
        assert!(found.contains(&public_b), "{mode}: public entries are shared: {r}");
        let shared = r["data"]["hits"].as_array().unwrap().iter().find(|h| h["id"] == public_b.as_str()).unwrap();
        assert_eq!(shared["shared"], true);
        let (_, own_only) =
            app.get(&format!("/api/v1/search?mode={mode}&q=parking&include_public=false"), &app.token_a).await;
        assert_eq!(ids(&own_only), vec![mine.clone()], "{mode}");
    }
    let (_, b_view) = app.get("/api/v1/search?mode=hybrid&q=parking", &app.token_b).await;
    assert!(!ids(&b_view).contains(&mine));

    let long = "x".repeat(1001);
    for (path, field) in [
        ("/api/v1/search?q=", "q"),
        ("/api/v1/search?q=%20%20", "q"),
        (&format!("/api/v1/search?q={long}") as &str, "q"),
        ("/api/v1/search?q=parking&mode=fuzzy", "mode"),
        ("/api/v1/search?q=parking&per_page=0", "per_page"),
        ("/api/v1/search?q=parking&validation_status=maybe", "validation_status"),
    ] {
        let (s, r) = app.get(path, &app.token_a).await;
        assert_eq!((s, code(&r)), (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED"), "{path}: {r}");
        assert!(r["error"]["details"].get(field).is_some(), "{path}: {r}");
    }
    let (s, r) = app
        .send("POST", "/api/v1/search", Some(&app.token_a), Some(json!({"query": "parking", "mode": "keyword"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(ids(&r).contains(&mine));
    let (s, _) = app.send("GET", "/api/v1/search?q=parking", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

fn urlenc(s: &str) -> String {
    s.replace(' ', "%20")
}

/// A small FAQ written for this test and questions that paraphrase each entry without
/// reusing its key words where possible.
const FAQ: &[(&str, &str, &str)] = &[
    (
        "Opening hours",
        "We are open Monday to Friday from 9am to 6pm and on Saturday mornings.",
        "What time do you close on weekdays?",
    ),
    (
        "Refund policy",
        "Products can be returned within 30 days for a full refund to the original payment method.",
        "Can I send an item back and be reimbursed?",
    ),
    (
        "Shipping times",
        "Orders are dispatched within two business days and usually arrive in three to five days.",
        "How long does delivery take?",
    ),
    ("Payment methods", "We accept Visa, Mastercard, PayPal and bank transfer.", "Which cards can I pay with?"),
    (
        "Password reset",
        "Use the 'Forgot password' link on the sign-in page to receive a reset e-mail.",
        "I can't log in because I forgot my credentials",
    ),
    (
        "Warranty",
        "All appliances carry a two-year manufacturer warranty covering defects.",
        "What happens if my device breaks after a year?",
    ),
    (
        "Gift cards",
        "Gift cards never expire and can be used online or in store.",
        "Is there an expiry date on vouchers?",
    ),
    ("Parking", "Free customer parking is available behind the building.", "Where can I leave my car when I visit?"),
    ("Pet policy", "Dogs on a leash are welcome inside the shop.", "Can I bring my dog along?"),
    (
        "Data privacy",
        "We never sell personal data and you can request deletion at any time.",
        "Do you share my information with other companies?",
    ),
    (
        "Bulk discounts",
        "Orders of more than 50 units receive a 10 percent discount.",
        "Is it cheaper if I buy in large quantities?",
    ),
    (
        "Installation service",
        "Our technicians can install your appliance for a flat fee of 49 dollars.",
        "Can someone come and set up the machine for me?",
    ),
];

#[tokio::test]
async fn paraphrased_questions_find_their_faq_entry() {
    let app = TestApp::spawn().await;
    let model = MiniLm::load(&MiniLm::default_dir()).expect("run scripts/models.sh");
    let t = &app.token_a;
    let mut entry_ids = Vec::new();
    for (title, content, _) in FAQ {
        entry_ids.push(entry(&app, t, json!({"title": title, "content": content, "category": "faq"})).await);
    }
    let refs: Vec<&str> = entry_ids.iter().map(String::as_str).collect();
    embed(&app, app.tenant_a, &model, &refs).await;
    for mode in ["semantic", "hybrid"] {
        let (mut reciprocal, mut in_top5) = (0.0, 0);
        for (i, (_, _, question)) in FAQ.iter().enumerate() {
            let (_, r) = app.get(&format!("/api/v1/search?mode={mode}&per_page=10&q={}", urlenc(question)), t).await;
            let found = ids(&r);
            if let Some(rank) = found.iter().position(|id| *id == entry_ids[i]) {
                reciprocal += 1.0 / (rank + 1) as f64;
                in_top5 += usize::from(rank < 5);
            }
        }
        let mrr = reciprocal / FAQ.len() as f64;
        let recall5 = in_top5 as f64 / FAQ.len() as f64;
        println!("{mode}: MRR {mrr:.3}, recall@5 {recall5:.3} over {} paraphrased questions", FAQ.len());
        assert!(mrr >= 0.75, "{mode}: MRR {mrr:.3}");
        assert!(recall5 >= 0.9, "{mode}: recall@5 {recall5:.3}");
    }
}

#[tokio::test]
async fn reindex_rebuilds_every_tenants_vectors_from_postgres() {
    let app = TestApp::spawn().await;
    let a = entry(&app, &app.token_a, json!({"title": "Hours", "content": "Open nine to five."})).await;
    let b = entry(&app, &app.token_b, json!({"title": "Prices", "content": "Haircuts cost twenty dollars."})).await;
    // One entry carries a stale vector from another model; reindex replaces it.
    let mut tx = db::begin_system(&app.db.pool).await.unwrap();
    sqlx::query("update knowledge_base set embedding = array_fill(0.1, array[384])::vector, embedding_model = 'old-model', embedding_status = 'completed' where id = $1::uuid")
        .bind(&a)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fibonacco"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.db.url)
        .env("REDIS_URL", fibonacco_platform::testing::redis_url())
        .env("EMBEDDING_MODEL_DIR", MiniLm::default_dir())
        .args(["search", "reindex", "--batch", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("2 of 2 entries embedded"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut tx = db::begin_system(&app.db.pool).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("select embedding_status, embedding_model from knowledge_base where id in ($1::uuid, $2::uuid)")
            .bind(&a)
            .bind(&b)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows, vec![("completed".into(), "all-MiniLM-L6-v2".into()); 2]);
    // The new vectors answer queries: tenant B's entry is found by meaning.
    let (_, r) = app.get("/api/v1/search?mode=semantic&q=how%20much%20is%20a%20haircut", &app.token_b).await;
    assert_eq!(ids(&r)[0], b);
}
