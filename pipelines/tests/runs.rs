//! The analytics pipelines end to end: synthetic data seeded through Postgres, captured
//! into the lake, computed by the batch and watch runs, read back through the API.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use fibonacco_analytics::{AnalyticsConfig, bridge, engagement, predictive};
use fibonacco_api::testing::TestApp;
use fibonacco_bench::synthetic;
use fibonacco_ingest::{Ingest, IngestConfig, Lake, Running, slot, view};
use fibonacco_pipelines::{Engine, Pipeline, Pipelines, watch::Watch};
use fibonacco_platform::{TenantId, auth, config::Secret};
use polars::prelude::IntoLazy;
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

const END: &str = "2026-11-01";

pub(crate) fn as_of() -> DateTime<Utc> {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

pub(crate) struct Env {
    pub(crate) app: TestApp,
    /// Connections that see every tenant (row-level security bypassed), for checks.
    admin: PgPool,
    pub(crate) lake: PathBuf,
    pub(crate) slot: String,
    pub(crate) running: Option<Running>,
}

impl Env {
    /// A test app whose database holds `customers` seeded customers, with the capture
    /// streaming into a fresh lake.
    pub(crate) async fn seeded(customers: u32, tenants: u32, days: u32) -> Self {
        let app = TestApp::spawn().await;
        let slot = format!("p_{}", &app.db.name["fibtest_".len()..]);
        let lake = std::env::temp_dir().join(format!("fib-lake-{slot}"));
        let _ = std::fs::remove_dir_all(&lake);
        // What `fibonacco seed --customers … --seed 7 --end END` does (the command itself is
        // tested with the binary, in the workspace root).
        let plan = synthetic::Plan { customers: customers.into(), tenants, days, seed: 7, end: END.parse().unwrap() };
        plan.check().unwrap();
        synthetic::seed(&app.db.pool, &plan, false).await.expect("seed");
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("set app.bypass_rls = 'on'").execute(conn).await?;
                    Ok(())
                })
            })
            .connect(&app.db.url)
            .await
            .unwrap();
        let mut env = Env { app, admin, lake, slot, running: None };
        let mut running = Ingest::connect(env.ingest_config()).await.unwrap().spawn();
        let started = tokio::time::timeout(Duration::from_secs(120), running.wait_until(|p| p.streaming)).await;
        assert!(started.is_ok_and(|r| r.is_ok()), "ingest did not start streaming");
        env.running = Some(running);
        env
    }

    fn ingest_config(&self) -> IngestConfig {
        let mut config = IngestConfig::new(Secret::new(self.app.db.url.clone()), self.lake.display().to_string());
        config.slot = self.slot.clone();
        config.flush_interval = Duration::from_millis(50);
        config
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.admin
    }

    pub(crate) fn pipelines(&self) -> Pipelines {
        Pipelines {
            pool: self.app.db.pool.clone(),
            lake: Lake::open(&self.lake.display().to_string()).unwrap(),
            config: AnalyticsConfig::default(),
            progress: false,
            engine: Engine::Local,
        }
    }

    pub(crate) async fn tenant(&self, slug: &str) -> TenantId {
        let id: Uuid = sqlx::query_scalar("select id from tenants where slug = $1")
            .bind(slug)
            .fetch_one(self.pool())
            .await
            .unwrap();
        TenantId::from_uuid(id)
    }

    async fn token(&self, tenant: TenantId) -> String {
        auth::issue_token(self.pool(), tenant, "analytics", &[], None).await.unwrap().plain_text
    }

    pub(crate) async fn cleanup(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        let _ = slot::wait_inactive(self.pool(), &self.slot, Duration::from_secs(15)).await;
        slot::drop_slot(self.pool(), &self.slot).await.unwrap();
        let _ = std::fs::remove_dir_all(&self.lake);
    }
}

async fn scalar_i64(pool: &PgPool, sql: &str, tenant: TenantId) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_run_scores_everyone_and_the_api_serves_the_results() {
    // Seeded before the capture started: the snapshot holds all of it.
    let mut env = Env::seeded(600, 2, 240).await;
    let pipelines = env.pipelines();
    let lake_before = env.running.as_ref().unwrap().progress.borrow().durable_lsn;
    // Rows a run must replace: a stale score of a customer it scores (updated in place)
    // and one of a customer it does not score (created after as_of: deleted).
    // In the second tenant: the first one's e-mail campaigns are checked below as they were seeded.
    let (tenant, scored): (Uuid, Uuid) = sqlx::query_as(
        "select tenant_id, id from crm_customers
         where created_at <= $1 and tenant_id = (select id from tenants where slug = 'seed-7-2') order by id limit 1",
    )
    .bind(as_of())
    .fetch_one(env.pool())
    .await
    .unwrap();
    let mut tx = env.pool().begin().await.unwrap();
    let unscored: Uuid = sqlx::query_scalar(
        "insert into crm_customers (tenant_id, name, slug, created_at)
         values ($1, 'Not Yet', 'not-yet', '2026-11-15T00:00:00Z') returning id",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    for customer in [scored, unscored] {
        sqlx::query(
            "insert into customer_engagement_scores (tenant_id, customer_id, score, components, as_of)
             values ($1, $2, 99.99, '{\"stale\": 99.99}', '2020-01-01T00:00:00Z')",
        )
        .bind(tenant)
        .bind(customer)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    // An order split linearly over n touches whose amount leaves a remainder of n − 1: in
    // integers the parts sum to the amount; as floats (what DuckDB's `/` gave the
    // benchmark's baseline) each new campaign's part has a fraction ≥ ½ that rounds up.
    // Four new campaigns touch the customer in the week before the order, beside the
    // seeded sends already in its window.
    let mut campaigns: Vec<Uuid> = Vec::new();
    for n in 0..4 {
        campaigns.push(
            sqlx::query_scalar(
                "insert into outbound_campaigns (tenant_id, name, type, status, created_at)
                 values ($1, $2, 'sms', 'completed', '2026-10-01T00:00:00Z') returning id",
            )
            .bind(tenant)
            .bind(format!("linear split {n}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap(),
        );
    }
    let currency: String = sqlx::query_scalar("select currency::text from outbound_campaigns where id = $1")
        .bind(campaigns[0])
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    for (i, campaign) in campaigns.iter().enumerate() {
        sqlx::query(
            "insert into outbound_campaign_recipients (tenant_id, campaign_id, customer_id, status, sent_at)
             values ($1, $2, $3, 'sent', $4)",
        )
        .bind(tenant)
        .bind(campaign)
        .bind(scored)
        .bind(as_of() - chrono::Duration::days(5 + i as i64))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    let paid_at = as_of() - chrono::Duration::days(1);
    let touches: i64 = sqlx::query_scalar(
        "select count(*) from outbound_campaign_recipients r join outbound_campaigns c on c.id = r.campaign_id
         where r.customer_id = $1 and c.currency = $2 and r.sent_at between $3 - interval '30 days' and $3",
    )
    .bind(scored)
    .bind(&currency)
    .bind(paid_at)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into orders (tenant_id, customer_id, order_number, status, amount_minor, currency, paid_at)
         values ($1, $2, 'LINEAR-SPLIT', 'paid', $5, $3, $4)",
    )
    .bind(tenant)
    .bind(scored)
    .bind(&currency)
    .bind(paid_at)
    .bind(1000 * touches + touches - 1)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // The run reads the lake once the capture holds that transaction (its input position
    // is checked against the manifest below).
    let running = env.running.as_mut().unwrap();
    tokio::time::timeout(Duration::from_secs(60), running.wait_until(|p| p.durable_lsn > lake_before))
        .await
        .expect("the capture did not take the new customer")
        .unwrap();
    let reports = pipelines.run(&Pipeline::ALL, as_of()).await.unwrap();
    assert_eq!(reports.len(), 5);
    let (components, stamp): (Value, DateTime<Utc>) =
        sqlx::query_as("select components, as_of from customer_engagement_scores where customer_id = $1")
            .bind(scored)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert!(components.get("stale").is_none() && stamp == as_of(), "{components} as of {stamp}");
    for r in &reports {
        let stages = r.details["stages_ms"].as_object().unwrap_or_else(|| panic!("{:?} has no stages", r.pipeline));
        assert!(
            stages.contains_key("derive") || stages.contains_key("commit") || stages.contains_key("write"),
            "{:?}: {stages:?}",
            r.pipeline
        );
    }
    let manifest = Lake::open(&env.lake.display().to_string()).unwrap().read_manifest().await.unwrap().unwrap();
    let lsn = slot::format_lsn(manifest.durable_lsn);
    for r in &reports {
        assert_eq!(r.input_lsn, lsn);
        assert!(r.rows_written > 0, "{r:?}");
        assert!(!r.derived.is_empty(), "{:?} wrote nothing to the lake", r.pipeline);
        for path in &r.derived {
            assert!(env.lake.join(path).exists(), "{path} missing");
        }
    }
    let runs: i64 = sqlx::query_scalar("select count(*) from pipeline_runs where mode = 'batch' and input_lsn = $1")
        .bind(&lsn)
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(runs, 5);

    // The batch writes its rows in key order, so the tables' heaps are in key order and
    // the next run's updates reach each page once. Score rows vary in width, so a short
    // one can land in the free space an earlier page had left (a few steps back), and the
    // stale row updated in place stays where it was; rows in random order step back at
    // every other row.
    let customers: i64 = sqlx::query_scalar("select count(*) from crm_customers").fetch_one(env.pool()).await.unwrap();
    for table in ["customer_engagement_scores", "customer_predictive_scores"] {
        let descents = heap_descents(env.pool(), table, "customer_id").await;
        assert!(descents <= customers / 50, "{table}'s heap steps back {descents} times in {customers} rows");
    }
    assert_eq!(heap_descents(env.pool(), "customer_send_slots", "customer_id, slot").await, 0);

    // Every customer has an engagement score and a purchase probability.
    let customers: i64 = sqlx::query_scalar("select count(*) from crm_customers where created_at <= $1")
        .bind(as_of())
        .fetch_one(env.pool())
        .await
        .unwrap();
    for table in ["customer_engagement_scores", "customer_predictive_scores"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(env.pool())
            .await
            .unwrap();
        assert_eq!(n, customers, "{table}");
    }
    // Rows written: every row the run left in its tables.
    let written = |p: Pipeline| reports.iter().find(|r| r.pipeline == p).unwrap().rows_written as i64;
    assert_eq!((written(Pipeline::Engagement), written(Pipeline::Predictive)), (customers, customers));
    let slots: i64 = sqlx::query_scalar(
        "select (select count(*) from customer_send_slots) + (select count(*) from tenant_send_slots)",
    )
    .fetch_one(env.pool())
    .await
    .unwrap();
    assert_eq!(written(Pipeline::SendTimes), slots);

    // The model finds the hidden propensity: well above chance and above the
    // "bought recently" rule, and the same inputs give the same model.
    let details = &reports.iter().find(|r| r.pipeline == Pipeline::Predictive).unwrap().details;
    let auc = details["auc_validation"].as_f64().unwrap();
    let baseline = details["baseline_auc_recent_buyer"].as_f64().unwrap();
    eprintln!("predictive: {details}");
    assert!(auc > 0.7, "validation AUC {auc}");
    assert!(auc > baseline + 0.05, "AUC {auc} vs recent-buyer rule {baseline}");
    let (ctx, _) = view::session(&pipelines.lake).await.unwrap();
    let config = AnalyticsConfig::default();
    let inputs = predictive::inputs(&ctx, &config.engagement).await.unwrap();
    let a = predictive::train(&inputs, &config.engagement, &config.predictive, as_of()).unwrap();
    let b = predictive::train(&inputs, &config.engagement, &config.predictive, as_of()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.version, details["model_version"].as_str().unwrap());
    assert_eq!(a.metrics.train_sample, 1.0, "{} training rows need no sample", a.metrics.train_rows);
    // Above ANALYTICS_MAX_TRAIN_ROWS the rows are a reproducible sample.
    let mut capped = config.predictive.clone();
    let cap = a.metrics.train_rows / 2;
    capped.max_train_rows = cap;
    let c = predictive::train(&inputs, &config.engagement, &capped, as_of()).unwrap();
    assert!(c.metrics.train_sample < 1.0, "{:?}", c.metrics);
    assert!(c.metrics.train_rows.abs_diff(cap) < cap / 6, "{} rows for a cap of {cap}", c.metrics.train_rows);
    assert_eq!(c, predictive::train(&inputs, &config.engagement, &capped, as_of()).unwrap());

    // The benchmark's baselines compute the same numbers: Postgres over the tables, DuckDB
    // over the same Parquet (an error names the engine and the figures that differ).
    fibonacco_bench::pipelines::engines(env.pool(), &pipelines.lake, &env.lake, as_of())
        .await
        .expect("DataFusion, Postgres and DuckDB agree on engagement and ROI");

    // DataFusion and Polars compute the same engagement over the lake.
    let scores =
        bridge::frame_of(engagement::scores(&ctx, &config.engagement, as_of(), None).await.unwrap()).await.unwrap();
    let events = bridge::query_frame(&ctx, &engagement::events_sql(&config.engagement, "a.customer_id")).await.unwrap();
    let polars = engagement::score_frame(
        engagement::decayed_components(events.lazy(), &config.engagement, as_of().timestamp_micros()),
        &config.engagement,
    )
    .collect()
    .unwrap();
    let by_key: std::collections::HashMap<String, f64> = polars
        .column("key")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .zip(polars.column("score").unwrap().f64().unwrap().iter())
        .map(|(k, s)| (k.unwrap().to_string(), s.unwrap()))
        .collect();
    let ids = scores.column("customer_id").unwrap().str().unwrap().clone();
    let values = scores.column("score").unwrap().f64().unwrap().clone();
    let mut compared = 0;
    for i in 0..scores.height() {
        let expected = by_key.get(ids.get(i).unwrap()).copied().unwrap_or(0.0);
        assert!((values.get(i).unwrap() - expected).abs() < 1e-9, "customer {:?}", ids.get(i));
        compared += usize::from(expected > 0.0);
    }
    assert!(compared > 100, "only {compared} customers with activity");

    // The API reads what was computed, per tenant.
    let t1 = env.tenant("seed-7-1").await;
    let t2 = env.tenant("seed-7-2").await;
    let token = env.token(t1).await;
    let app = &env.app;
    let range = "from=2026-03-01&to=2026-10-31";
    let (status, body) = app.get(&format!("/api/v1/crm/dashboard/analytics?{range}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Its score KPIs were summed when the scores were written, and equal the scores.
    let live: (i64, i64, Option<f64>, i64, i64, Option<f64>) = sqlx::query_as(
        "select (select count(*) from crm_customers where tenant_id = $1), count(*), avg(score)::float8,
                count(*) filter (where score >= 70),
                (select count(*) from customer_predictive_scores where tenant_id = $1 and probability >= 0.5),
                (select sum(probability) from customer_predictive_scores where tenant_id = $1)
         from customer_engagement_scores where tenant_id = $1",
    )
    .bind(t1)
    .fetch_one(env.pool())
    .await
    .unwrap();
    let scores = &body["data"]["scores"];
    assert!(scores["computed_at"].is_string(), "{scores}");
    assert_eq!(
        (scores["customers"].as_i64(), scores["scored_customers"].as_i64(), scores["highly_engaged"].as_i64()),
        (Some(live.0), Some(live.1), Some(live.3)),
        "{scores}"
    );
    assert_eq!(scores["likely_buyers"].as_i64(), Some(live.4), "{scores}");
    let close = |a: &Value, b: Option<f64>| (a.as_f64().unwrap() - b.unwrap()).abs() < 1e-6;
    assert!(
        close(&scores["average_engagement"], live.2) && close(&scores["expected_buyers"], live.5),
        "{scores} vs {live:?}"
    );
    assert_eq!(body["meta"]["as_of"], "2026-11-01T00:00:00Z");
    assert_eq!(body["meta"]["period"]["from"], "2026-03-01");
    let pool = env.pool();
    let window = "between '2026-03-01'::timestamptz and '2026-11-01'::timestamptz";
    let new_customers = scalar_i64(
        pool,
        &format!("select count(*) from crm_customers where tenant_id = $1 and created_at {window}"),
        t1,
    )
    .await;
    assert_eq!(body["data"]["customers"]["new_customers"], new_customers);
    let sent = scalar_i64(
        pool,
        &format!("select count(*) from outbound_campaign_recipients where tenant_id = $1 and sent_at {window}"),
        t1,
    )
    .await;
    assert_eq!(body["data"]["campaigns"]["sent"], sent);
    let revenue = scalar_i64(
        pool,
        &format!("select sum(amount_minor - refunded_minor)::int8 from orders where tenant_id = $1 and status = 'paid' and created_at {window}"),
        t1,
    )
    .await;
    assert_eq!(body["data"]["orders"][0]["revenue_minor"], revenue);
    assert_eq!(body["data"]["series"].as_array().unwrap().len(), 245);

    let (status, body) = app.get(&format!("/api/v1/crm/analytics/purchases?{range}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["totals"][0]["revenue_minor"], revenue);
    let by_service: i64 =
        body["data"]["by_service"].as_array().unwrap().iter().map(|s| s["revenue_minor"].as_i64().unwrap()).sum();
    assert_eq!(by_service, revenue);

    let reads = scalar_i64(
        pool,
        &format!(
            "select count(*) from customer_activities where tenant_id = $1 and occurred_at {window}
             and activity_type in ('article_read', 'faq_read', 'knowledge_view', 'presentation_view')"
        ),
        t1,
    )
    .await;
    let (status, body) = app.get(&format!("/api/v1/crm/analytics/learning?{range}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["total_events"], reads);
    assert!(!body["data"]["top_content"].as_array().unwrap().is_empty());

    let (status, body) = app.get(&format!("/api/v1/crm/analytics/interest?{range}&channel=web"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["total_events"].as_i64().unwrap() > reads);
    assert_eq!(body["meta"]["period"]["filters"]["channel"], "web");

    let (status, body) = app.get(&format!("/api/v1/crm/analytics/campaign-performance?{range}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["totals"]["sent"], sent);
    let campaign =
        body["data"]["campaigns"].as_array().unwrap().iter().find(|c| c["channel"] == "email").unwrap().clone();
    assert!(campaign["rates"]["delivery_rate"].as_f64().unwrap() > 0.5, "{campaign}");
    assert!(campaign["roi"]["cost_minor"].as_i64().unwrap() > 0);

    // The campaign's own analytics and the CRM read model agree on an e-mail campaign whose
    // whole life lies in the range (the synthetic e-mail outcomes came through SES events:
    // deliveries, bounces, complaints, opens and clicks).
    let whole = "from=2025-11-02&to=2026-10-31";
    let (_, body) = app.get(&format!("/api/v1/crm/analytics/campaign-performance?{whole}&channel=email"), &token).await;
    let mut agreed = 0;
    for crm in body["data"]["campaigns"].as_array().unwrap() {
        let id = crm["campaign_id"].as_str().unwrap();
        let after_as_of = scalar_i64(
            pool,
            &format!(
                "select count(*) from outbound_campaign_recipients where tenant_id = $1 and campaign_id = '{id}'
                 and greatest(sent_at, delivered_at, opened_at, clicked_at, replied_at, bounced_at, complained_at, updated_at)
                     >= '2026-11-01'"
            ),
            t1,
        )
        .await;
        if after_as_of > 0 {
            continue;
        }
        let (status, own) = app.get(&format!("/api/v1/outbound/campaigns/{id}/analytics"), &token).await;
        assert_eq!(status, StatusCode::OK, "{own}");
        let own = &own["data"];
        for count in [
            "sent",
            "delivered",
            "opened",
            "clicked",
            "replied",
            "bounced",
            "unsubscribed",
            "complained",
            "machine_opens",
            "machine_clicks",
        ] {
            assert_eq!(crm[count], own[count], "{count} of {id}: {crm} vs {own}");
        }
        for rate in [
            "delivery_rate",
            "open_rate",
            "click_rate",
            "reply_rate",
            "bounce_rate",
            "unsubscribe_rate",
            "complaint_rate",
        ] {
            assert_eq!(crm["rates"][rate], own[rate], "{rate} of {id}: {crm} vs {own}");
        }
        assert!(own["bounced"].as_i64().unwrap() > 0, "the synthetic SES events bounce some: {own}");
        agreed += 1;
    }
    assert!(agreed > 0, "no e-mail campaign lies wholly in the range: {body}");

    // Bad ranges and filters are 422, never 500.
    for bad in [
        "from=2026-10-31&to=2026-10-01",
        "from=2020-01-01&to=2026-10-31",
        "from=yesterday",
        "channel=fax",
        "campaign_id=not-a-uuid",
    ] {
        let (status, body) = app.get(&format!("/api/v1/crm/analytics/campaign-performance?{bad}"), &token).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{body}");
    }

    // Scores of one customer, with their parts; another tenant's customer is 404.
    let customer: Uuid = sqlx::query_scalar(
        "select customer_id from customer_engagement_scores where tenant_id = $1 order by score desc limit 1",
    )
    .bind(t1)
    .fetch_one(pool)
    .await
    .unwrap();
    let (status, body) = app.get(&format!("/api/v1/crm/customers/{customer}/engagement-score"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let score = body["data"]["score"].as_f64().unwrap();
    let parts: f64 = body["data"]["components"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
    assert!(score > 0.0 && (score - parts).abs() < 0.05, "{body}");
    let (status, body) = app.get(&format!("/api/v1/crm/customers/{customer}/predictive-score"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["model_version"], a.version);
    assert_eq!(body["data"]["top_features"].as_array().unwrap().len(), 3);
    let metrics = &body["data"]["model_metrics"];
    assert!(metrics["auc_validation"].as_f64().unwrap() > 0.7);
    // The model is trained over every tenant's customers: a tenant sees how good it is,
    // labelled as the platform's, never how many customers or buyers the others have.
    assert_eq!(metrics["scope"], "platform", "{metrics}");
    for leak in [
        "train_rows",
        "train_positives",
        "validation_rows",
        "validation_positives",
        "calibration",
        "base_rate_validation",
    ] {
        assert!(metrics.get(leak).is_none(), "{leak} reaches a tenant: {metrics}");
    }
    let token2 = env.token(t2).await;
    for path in ["engagement-score", "predictive-score"] {
        let (status, _) = app.get(&format!("/api/v1/crm/customers/{customer}/{path}"), &token2).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} across tenants");
    }
    let (status, _) = app.get(&format!("/api/v1/crm/customers/{}/engagement-score", Uuid::new_v4()), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let row = sqlx::query(
        "select c.id, c.type, c.fixed_cost_minor,
                (select count(*) from outbound_campaign_recipients r where r.campaign_id = c.id and r.sent_at is not null) as sends
         from outbound_campaigns c where c.tenant_id = $1 and c.type = 'sms' limit 1",
    )
    .bind(t1)
    .fetch_one(pool)
    .await
    .unwrap();
    let campaign: Uuid = row.get("id");
    let (status, body) = app.get(&format!("/api/v1/crm/campaigns/{campaign}/roi"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sends: i64 = row.get("sends");
    let fixed: i64 = row.get("fixed_cost_minor");
    assert_eq!(body["data"]["cost"]["sends"], sends);
    assert_eq!(body["data"]["cost"]["total_minor"], sends * 8 + fixed);
    let (status, _) = app.get(&format!("/api/v1/crm/campaigns/{campaign}/roi"), &token2).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Five attribution models, each splitting every order in whole minor units: over the
    // tenant's campaigns they credit the same total revenue.
    let totals: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "select sum(last_touch_revenue_minor)::int8, sum(linear_revenue_minor)::int8, sum(first_touch_revenue_minor)::int8,
                sum(time_decay_revenue_minor)::int8, sum(position_revenue_minor)::int8
         from campaign_roi where tenant_id = $1",
    )
    .bind(t1)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(totals.0 > 0, "{totals:?}");
    assert_eq!([totals.1, totals.2, totals.3, totals.4], [totals.0; 4], "every model distributes the same revenue");
    let (status, body) = app.get(&format!("/api/v1/crm/campaigns/{campaign}/roi?model=time_decay"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["data"]["model"].clone(), body["data"]["selected"].clone()),
        (serde_json::json!("time_decay"), body["data"]["time_decay"].clone())
    );
    let (status, body) = app.get(&format!("/api/v1/crm/campaigns/{campaign}/roi?model=w-shaped"), &token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, performance) =
        app.get(&format!("/api/v1/crm/analytics/campaign-performance?{range}&model=position_based"), &token).await;
    let position_roi: Option<f64> = sqlx::query_scalar("select position_roi from campaign_roi where campaign_id = $1")
        .bind(campaign)
        .fetch_one(pool)
        .await
        .unwrap();
    let rows: Vec<&Value> = performance["data"]["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["campaign_id"] == campaign.to_string())
        .collect();
    assert_eq!(rows.len(), 1, "{performance}");
    assert_eq!(rows[0]["roi"]["model"], "position_based", "{}", rows[0]);
    assert_eq!(rows[0]["roi"]["roi"].as_f64(), position_roi, "{}", rows[0]);

    // The other tenant sees only its own numbers.
    let (_, other) = app.get(&format!("/api/v1/crm/analytics/campaign-performance?{range}"), &token2).await;
    let ours: Vec<&Value> = other["data"]["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["campaign_id"] == campaign.to_string())
        .collect();
    assert!(ours.is_empty());

    // A token without the ability is refused.
    let narrow = app.token_with(t1, &["customers:read"], None).await;
    let (status, _) = app.get("/api/v1/crm/dashboard/analytics", &narrow).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The data team's notebooks run against this lake and database (nbclient).
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::process::Command::new(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/scripts/run_notebooks.py"))
        .arg(env.lake.join("_notebooks"))
        .env("INGEST_LAKE", &env.lake)
        .env("DATABASE_URL", &env.app.db.url)
        .output()
        .expect("the project venv has python (scripts/stack.sh install)");
    assert!(
        out.status.success(),
        "notebooks failed (a cell, or a chart that drew nothing):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every notebook has an HTML copy whose charts are inline images.
    for name in ["campaign_performance", "campaign_roi", "engagement", "predictive_model"] {
        let html = std::fs::read_to_string(env.lake.join("_notebooks").join(format!("{name}.html")))
            .unwrap_or_else(|e| panic!("{name}.html: {e}"));
        assert!(html.contains("data:image/png;base64,"), "{name}.html shows no chart");
    }

    env.cleanup().await;
}

/// Send-time optimisation learns from the lake: the slots hold exactly the sends and
/// responses the tables have (each customer's and each tenant's), and the moments
/// `app_best_send_at` picks from them beat sending at once, judged by the synthetic
/// customers' hidden best hours (`fibonacco bench send-time` at scale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_times_learn_the_hidden_best_hours_from_the_lake() {
    let env = Env::seeded(4000, 2, 180).await;
    let reports = env.pipelines().run(&[Pipeline::SendTimes], as_of()).await.unwrap();
    let totals = "select count(*)::bigint, (count(*) filter (where opened_at is not null or clicked_at is not null
                    or replied_at is not null))::bigint from outbound_campaign_recipients where sent_at <= $1";
    let tables: (i64, i64) = sqlx::query_as(totals).bind(as_of()).fetch_one(env.pool()).await.unwrap();
    let customers: (i64, i64) =
        sqlx::query_as("select sum(sends)::bigint, sum(responses)::bigint from customer_send_slots")
            .fetch_one(env.pool())
            .await
            .unwrap();
    let tenants: (i64, i64, i64) =
        sqlx::query_as("select sum(sends)::bigint, sum(responses)::bigint, count(*) from tenant_send_slots")
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert!(tables.0 > 10_000 && tables.1 > 1_000, "{tables:?}");
    assert_eq!((customers, (tenants.0, tenants.1)), (tables, tables), "the lake's history, folded");
    assert_eq!(tenants.2, 2 * 168, "every slot of each tenant has a prior");
    assert_eq!(reports[0].details["sends"], serde_json::json!(tables.0));
    // Per customer, the slots of one: what the tables say, by local hour of the week (UTC).
    let (customer, expected): (uuid::Uuid, Vec<(i16, i64, i64)>) = {
        let rows: Vec<(uuid::Uuid, i16, i64, i64)> = sqlx::query_as(
            "select customer_id, ((extract(isodow from sent_at at time zone 'UTC')::int - 1) * 24
                                  + extract(hour from sent_at at time zone 'UTC')::int)::smallint as slot,
                    count(*), count(*) filter (where opened_at is not null or clicked_at is not null or replied_at is not null)
             from outbound_campaign_recipients
             where customer_id = (select customer_id from outbound_campaign_recipients where sent_at is not null
                                  order by customer_id limit 1)
               and sent_at is not null
             group by 1, 2 order by 2",
        )
        .fetch_all(env.pool())
        .await
        .unwrap();
        (rows[0].0, rows.iter().map(|r| (r.1, r.2, r.3)).collect())
    };
    let stored: Vec<(i16, i64, i64)> = sqlx::query_as(
        "select slot, sends::bigint, responses::bigint from customer_send_slots where customer_id = $1 order by slot",
    )
    .bind(customer)
    .fetch_all(env.pool())
    .await
    .unwrap();
    assert_eq!(stored, expected);
    // Written in key order, and a second run's updates leave every row where it was.
    assert_eq!(heap_descents(env.pool(), "customer_send_slots", "customer_id, slot").await, 0);
    env.pipelines().run(&[Pipeline::SendTimes], as_of()).await.unwrap();
    assert_eq!(heap_descents(env.pool(), "customer_send_slots", "customer_id, slot").await, 0);

    let starts = fibonacco_bench::send_time::starts(as_of(), 4);
    let lift = fibonacco_bench::send_time::evaluate(env.pool(), &starts, 4000).await.unwrap();
    // Sending at once is a random hour for the hidden best hours (factor ~1.0); a random
    // pick would recover nothing and land within an hour of the best one time in eight.
    assert!(lift.lift > 0.1 && lift.within_one_hour > 0.3, "{lift:?}");
    env.cleanup().await;
}

/// A write that fails ends the run with its error: no computation starts after the
/// failure is seen, the writes under way finish and are recorded, and the failed
/// pipeline records nothing. Analytics and predictive compute before send times, so
/// their writes are under way or done when the send slots' write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_ends_the_run_and_keeps_the_writes_under_way() {
    let env = Env::seeded(300, 2, 120).await;
    let pipelines = env.pipelines();
    let runs = async || -> std::collections::BTreeMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>("select pipeline, count(*) from pipeline_runs group by 1")
            .fetch_all(env.pool())
            .await
            .unwrap()
            .into_iter()
            .collect()
    };
    let before = runs().await;
    sqlx::query(
        "create function refuse_send_slots() returns trigger language plpgsql
         as $$ begin raise exception 'send slots refused'; end $$",
    )
    .execute(env.pool())
    .await
    .unwrap();
    sqlx::query(
        "create trigger refuse before insert or update on customer_send_slots
         for each statement execute function refuse_send_slots()",
    )
    .execute(env.pool())
    .await
    .unwrap();
    let err = pipelines.run(&Pipeline::ALL, as_of()).await.unwrap_err();
    assert!(err.to_string().contains("send slots refused"), "{err}");
    let after = runs().await;
    let added = |p: &str| after.get(p).copied().unwrap_or(0) - before.get(p).copied().unwrap_or(0);
    assert_eq!((added("analytics"), added("predictive"), added("send_times")), (1, 1, 0), "{after:?}");
    let slots: i64 =
        sqlx::query_scalar("select count(*) from customer_send_slots").fetch_one(env.pool()).await.unwrap();
    assert_eq!(slots, 0, "the failed write left rows");
    // The predictive write committed: its scores are there.
    let scored: i64 =
        sqlx::query_scalar("select count(*) from customer_predictive_scores").fetch_one(env.pool()).await.unwrap();
    assert!(scored > 0);
    env.cleanup().await;
}

/// The lake can trail Postgres: a customer deleted after the capture last saw it is still
/// in the lake, so a batch run computes rows for it. Its writes leave none of them (the
/// deletion cascaded to what was stored) and count only the rows they wrote: on a first
/// run, into empty tables, and on a run that updates rows in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_a_trailing_lake_writes_nothing_of_customers_deleted_since() {
    let mut env = Env::seeded(300, 2, 120).await;
    // From here on the lake sees nothing of what happens in Postgres.
    env.running.take().unwrap().stop().await.unwrap();
    let pipelines = env.pipelines();
    // Customers with sends before as_of: each has rows in all three tables.
    let sent: Vec<Uuid> = sqlx::query_scalar(
        "select distinct customer_id from outbound_campaign_recipients
         where sent_at <= $1 and customer_id in (select id from crm_customers where created_at <= $1)
         order by 1 limit 2",
    )
    .bind(as_of())
    .fetch_all(env.pool())
    .await
    .unwrap();
    assert_eq!(sent.len(), 2);
    let mut gone = Vec::new();
    for customer in sent {
        sqlx::query("delete from crm_customers where id = $1").bind(customer).execute(env.pool()).await.unwrap();
        gone.push(customer);
        let reports = pipelines.run(&Pipeline::ALL, as_of()).await.expect("the run drops the deleted customers' rows");
        let report = |p: Pipeline| reports.iter().find(|r| r.pipeline == p).unwrap();
        let count = async |sql: &str| -> i64 {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(env.pool()).await.unwrap()
        };
        for table in ["customer_engagement_scores", "customer_predictive_scores", "customer_send_slots"] {
            let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "select count(*) from {table} where customer_id = any($1)"
            )))
            .bind(&gone)
            .fetch_one(env.pool())
            .await
            .unwrap();
            assert_eq!(left, 0, "{table} holds rows of deleted customers");
        }
        let engagement = report(Pipeline::Engagement);
        let stored = count("select count(*) from customer_engagement_scores").await;
        assert_eq!(engagement.rows_written as i64, stored);
        // The lake still has them: the run computed their scores and wrote all the others.
        assert_eq!(engagement.details["customers"].as_i64().unwrap(), stored + gone.len() as i64);
        let stored = count("select count(*) from customer_predictive_scores").await;
        assert_eq!(report(Pipeline::Predictive).rows_written as i64, stored);
        let stored =
            count("select (select count(*) from customer_send_slots) + (select count(*) from tenant_send_slots)").await;
        assert_eq!(report(Pipeline::SendTimes).rows_written as i64, stored);
    }
    env.cleanup().await;
}

/// How often `table`'s rows, read in heap order, step back in `key` order: 0 when the
/// heap is in key order. A `MERGE` updates rows in the order the batch produced them,
/// and in a heap in that order it reads and dirties each page once; in random order,
/// each update can evict and re-read a page (docs/benchmarks.md).
async fn heap_descents(pool: &PgPool, table: &str, key: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from (select row({key}) < lag(row({key})) over (order by ctid) as back from {table}) h
         where back"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn engagement_table(pool: &PgPool) -> Vec<(Uuid, String, String)> {
    sqlx::query_as("select customer_id, score::text, components::text from customer_engagement_scores order by 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// campaign, sends, cost, last-touch revenue, linear orders, linear revenue, both ROIs
type RoiRow = (Uuid, i64, i64, i64, String, i64, Option<f64>, Option<f64>);

async fn roi_table(pool: &PgPool) -> Vec<RoiRow> {
    sqlx::query_as(
        "select campaign_id, sends, cost_minor, last_touch_revenue_minor, linear_orders::text, linear_revenue_minor,
                last_touch_roi, linear_roi
         from campaign_roi order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_recomputes_only_what_changed_and_equals_a_full_recompute() {
    let mut env = Env::seeded(150, 1, 120).await;
    let pipelines = env.pipelines();
    pipelines.run(&[Pipeline::Engagement, Pipeline::Roi], as_of()).await.unwrap();
    let before = engagement_table(env.pool()).await;

    let feed = env.running.as_ref().unwrap().feed.subscribe();
    let (progress, mut progress_rx) = tokio::sync::watch::channel(Default::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = Watch {
        pipelines: std::sync::Arc::new(env.pipelines()),
        as_of: Some(as_of()),
        debounce: Duration::from_millis(50),
    };
    let task = tokio::spawn(watch.run(feed, progress, async move {
        let _ = stopped.await;
    }));

    let pool = env.pool().clone();
    let tenant: Uuid =
        sqlx::query_scalar("select id from tenants where slug = 'seed-7-1'").fetch_one(&pool).await.unwrap();
    let customers: Vec<Uuid> =
        sqlx::query_scalar("select id from crm_customers where tenant_id = $1 order by id limit 4")
            .bind(tenant)
            .fetch_all(&pool)
            .await
            .unwrap();
    let campaign: Uuid =
        sqlx::query_scalar("select id from outbound_campaigns where tenant_id = $1 and type = 'email' limit 1")
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
    let lake_before = env.running.as_ref().unwrap().progress.borrow().durable_lsn;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local app.bypass_rls = 'on'").execute(&mut *tx).await.unwrap();
    // A new activity for the first customer, the day before as_of.
    sqlx::query(
        "insert into customer_activities (tenant_id, customer_id, activity_type, channel, occurred_at)
         values ($1, $2, 'sales_contact', 'web', '2026-10-31T12:00:00Z'), ($1, $2, 'email_reply', 'email', '2026-10-31T13:00:00Z')",
    )
    .bind(tenant)
    .bind(customers[0])
    .execute(&mut *tx)
    .await
    .unwrap();
    // The second customer gets a send of the campaign and then pays an order.
    sqlx::query(
        "insert into outbound_campaign_recipients (tenant_id, campaign_id, customer_id, status, sent_at)
         values ($1, $2, $3, 'sent', '2026-10-20T09:00:00Z') on conflict (campaign_id, customer_id) do update set sent_at = excluded.sent_at",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(customers[1])
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into orders (tenant_id, customer_id, order_number, status, amount_minor, paid_at)
         values ($1, $2, 'WATCH-1', 'paid', 12345, '2026-10-25T10:00:00Z')",
    )
    .bind(tenant)
    .bind(customers[1])
    .execute(&mut *tx)
    .await
    .unwrap();
    // The third customer loses an activity (a delete carries only the key).
    sqlx::query(
        "delete from customer_activities where id = (select id from customer_activities where customer_id = $1 and occurred_at <= $2 order by occurred_at desc limit 1)",
    )
    .bind(customers[2])
    .bind(as_of())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let committed = Instant::now();

    // The new activity shows in the first customer's score.
    let old = before.iter().find(|r| r.0 == customers[0]).unwrap().1.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now: String =
            sqlx::query_scalar("select score::text from customer_engagement_scores where customer_id = $1")
                .bind(customers[0])
                .fetch_one(&pool)
                .await
                .unwrap();
        if now != old {
            break;
        }
        assert!(Instant::now() < deadline, "the watch never updated the score");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("new activity visible in the engagement score {} ms after commit", committed.elapsed().as_millis());
    // Wait for the round that includes the transaction (the lake position that made it
    // durable), then compare with a full recompute.
    let running = env.running.as_mut().unwrap();
    let durable = tokio::time::timeout(Duration::from_secs(60), running.wait_until(|p| p.durable_lsn > lake_before))
        .await
        .expect("the capture did not take the transaction")
        .unwrap()
        .durable_lsn;
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        progress_rx.wait_for(|p: &fibonacco_pipelines::watch::WatchProgress| p.durable_lsn >= durable),
    )
    .await
    .is_ok();
    assert!(done, "the watch did not reach the last change");
    let watched = (engagement_table(&pool).await, roi_table(&pool).await);
    let changed: Vec<Uuid> = watched.0.iter().zip(&before).filter(|(a, b)| a != b).map(|(a, _)| a.0).collect();
    assert!(changed.contains(&customers[0]) && changed.contains(&customers[2]), "{changed:?}");
    assert!(changed.len() < before.len() / 2, "the watch touched {} of {} customers", changed.len(), before.len());
    let watch_runs: i64 =
        sqlx::query_scalar("select count(*) from pipeline_runs where mode = 'watch'").fetch_one(&pool).await.unwrap();
    assert!(watch_runs >= 2);
    // The tenant's dashboard summary moved with the scores the watch wrote.
    let (kept, live): (Option<f64>, Option<f64>) = sqlx::query_as(
        "select (select average_engagement from customer_score_summaries where tenant_id = $1),
                (select avg(score)::float8 from customer_engagement_scores where tenant_id = $1)",
    )
    .bind(tenant)
    .fetch_one(&pool)
    .await
    .unwrap();
    let old_average = before.iter().map(|r| r.1.parse::<f64>().unwrap()).sum::<f64>() / before.len() as f64;
    assert!((kept.unwrap() - live.unwrap()).abs() < 1e-9, "summary {kept:?} vs scores {live:?}");
    assert!((live.unwrap() - old_average).abs() > 1e-9, "the scores' average did not move");

    pipelines.run(&[Pipeline::Engagement, Pipeline::Roi], as_of()).await.unwrap();
    let batch = (engagement_table(&pool).await, roi_table(&pool).await);
    assert_eq!(watched.0, batch.0, "engagement: watch != batch");
    assert_eq!(watched.1, batch.1, "roi: watch != batch");

    // An activity alone moves its customer's engagement and no campaign's ROI (ROI reads
    // sends and orders only): the round recomputes no campaign.
    let runs = |pipeline: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select count(*) from pipeline_runs where mode = 'watch' and pipeline = $1")
                .bind(pipeline)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (engagement_runs, roi_runs) = (runs("engagement").await, runs("roi").await);
    let rounds = progress_rx.borrow().rounds;
    add_activity(&pool, tenant, customers[3]).await;
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        progress_rx.wait_for(|p: &fibonacco_pipelines::watch::WatchProgress| p.rounds > rounds),
    )
    .await
    .is_ok();
    assert!(done, "the watch did not take the activity");
    assert_eq!(runs("engagement").await, engagement_runs + 1);
    assert_eq!(runs("roi").await, roi_runs, "an activity made the watch recompute campaign ROI");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    env.cleanup().await;
}

/// Adds two activities for `customer` the day before `as_of` (scores move).
async fn add_activity(pool: &PgPool, tenant: Uuid, customer: Uuid) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local app.bypass_rls = 'on'").execute(&mut *tx).await.unwrap();
    sqlx::query(
        "insert into customer_activities (tenant_id, customer_id, activity_type, channel, occurred_at)
         values ($1, $2, 'sales_contact', 'web', '2026-10-31T12:00:00Z'), ($1, $2, 'email_reply', 'email', '2026-10-31T13:00:00Z')",
    )
    .bind(tenant)
    .bind(customer)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn score_of(pool: &PgPool, customer: Uuid) -> Option<String> {
    sqlx::query_scalar("select score::text from customer_engagement_scores where customer_id = $1")
        .bind(customer)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_heals_after_a_failed_round_and_catches_up_on_what_it_missed() {
    use fibonacco_platform::supervise::{self, PartState};
    let env = Env::seeded(60, 1, 40).await;
    env.pipelines().run(&[Pipeline::Engagement, Pipeline::Roi], as_of()).await.unwrap();
    let pool = env.pool().clone();
    let tenant: Uuid =
        sqlx::query_scalar("select id from tenants where slug = 'seed-7-1'").fetch_one(&pool).await.unwrap();
    let customers: Vec<Uuid> =
        sqlx::query_scalar("select id from crm_customers where tenant_id = $1 order by id limit 2")
            .bind(tenant)
            .fetch_all(&pool)
            .await
            .unwrap();
    let (first_before, second_before) = (score_of(&pool, customers[0]).await, score_of(&pool, customers[1]).await);

    let watch = Watch {
        pipelines: std::sync::Arc::new(env.pipelines()),
        as_of: Some(as_of()),
        debounce: Duration::from_millis(50),
    };
    let feed = env.running.as_ref().unwrap().feed.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (progress, _) = tokio::sync::watch::channel(Default::default());
    let task = tokio::spawn(async move { watch.follow(&feed, progress, stopped).await });
    let state = || supervise::parts().get(fibonacco_pipelines::watch::PART).cloned();
    wait_until("the watch listens", async || state().is_some_and(|s| s.state == PartState::Running)).await;

    // The scores table is gone for a moment (as in a failover): the round for the first
    // customer's change fails.
    sqlx::query("alter table customer_engagement_scores rename to customer_engagement_scores_away")
        .execute(&pool)
        .await
        .unwrap();
    add_activity(&pool, tenant, customers[0]).await;
    wait_until("the failed round is reported", async || state().is_some_and(|s| s.state == PartState::Restarting))
        .await;
    let failed = state().unwrap();
    assert_eq!((failed.restarts, failed.last_error.as_deref()), (1, Some("database")), "{failed:?}");
    sqlx::query("alter table customer_engagement_scores_away rename to customer_engagement_scores")
        .execute(&pool)
        .await
        .unwrap();

    // Back: it first recomputes what it missed, then follows the feed again.
    wait_until("the missed change is scored", async || score_of(&pool, customers[0]).await != first_before).await;
    wait_until("the watch listens again", async || state().is_some_and(|s| s.state == PartState::Running)).await;
    add_activity(&pool, tenant, customers[1]).await;
    wait_until("a change after the failure is scored", async || score_of(&pool, customers[1]).await != second_before)
        .await;

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task).await.expect("the watch stops").unwrap().unwrap();
    assert_eq!(state().unwrap().state, PartState::Stopped);
    env.cleanup().await;
}

/// Every value of every Parquet file under `dir` as text, by file.
fn lake_texts(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let file = std::fs::File::open(&path).unwrap();
                let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
                let mut text = String::new();
                for batch in reader {
                    let batch = batch.unwrap();
                    for column in batch.columns() {
                        for row in 0..batch.num_rows() {
                            text.push_str(
                                &datafusion::arrow::util::display::array_value_to_string(column, row).unwrap(),
                            );
                            text.push('\n');
                        }
                    }
                }
                out.push((path.display().to_string(), text));
            } else {
                // The manifest, `_capture.json`, model cards.
                out.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap_or_default()));
            }
        }
    }
    out
}

/// Every key under the test app's queue prefix with its contents, as text.
async fn redis_texts(state: &fibonacco_api::state::AppState) -> String {
    let mut conn = state.queue.connection();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}*", state.queue.prefix())).query_async(&mut conn).await.unwrap();
    let mut text = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let values: Vec<String> = match kind.as_str() {
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap(),
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap()],
            _ => vec![],
        };
        text.push_str(&format!("{key}: {}\n", values.join(" ")));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_leaves_nothing_of_the_customer_in_tables_lake_or_queues() {
    let env = Env::seeded(80, 1, 60).await;
    let pool = env.pool().clone();
    let tenant = env.tenant("seed-7-1").await;
    let token = env.token(tenant).await;
    // A customer with orders and campaign sends, and another whose data must not move.
    let (target, other): (Uuid, Uuid) = sqlx::query_as(
        "select o.customer_id, (select id from crm_customers where tenant_id = $1 and id <> o.customer_id order by id limit 1)
         from orders o join outbound_campaign_recipients r on r.customer_id = o.customer_id
         where o.tenant_id = $1 order by o.customer_id limit 1",
    )
    .bind(tenant)
    .fetch_one(&pool)
    .await
    .unwrap();
    let (email,): (String,) =
        sqlx::query_as("select email from crm_customers where id = $1").bind(target).fetch_one(&pool).await.unwrap();
    let phrase = "my door code is 4711-erasure";
    let conversation: Uuid = sqlx::query_scalar(
        "insert into crm_conversations (tenant_id, customer_id, channel, status) values ($1, $2, 'chat', 'active') returning id",
    )
    .bind(tenant)
    .bind(target)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into crm_conversation_messages (tenant_id, conversation_id, role, content) values ($1, $2, 'user', $3)",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(phrase)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("insert into outbound_suppressions (tenant_id, channel, target, reason) values ($1, 'email', lower($2), 'unsubscribe') on conflict do nothing")
        .bind(tenant)
        .bind(&email)
        .execute(&pool)
        .await
        .unwrap();
    let recipients: Vec<Uuid> =
        sqlx::query_scalar("select id from outbound_campaign_recipients where customer_id = $1")
            .bind(target)
            .fetch_all(&pool)
            .await
            .unwrap();
    let campaign: Uuid = sqlx::query_scalar("select campaign_id from outbound_campaign_recipients where id = $1")
        .bind(recipients[0])
        .fetch_one(&pool)
        .await
        .unwrap();
    // A send about them waiting in Redis, and one for someone else that must stay.
    let other_recipient: Uuid = sqlx::query_scalar(
        "select id from outbound_campaign_recipients where tenant_id = $1 and customer_id <> $2 order by id limit 1",
    )
    .bind(tenant)
    .bind(target)
    .fetch_one(&pool)
    .await
    .unwrap();
    // Jobs in both shapes: one recipient (queued before sends were batched) and a batch
    // naming them with someone else.
    for recipient in [recipients[0], other_recipient] {
        let data =
            serde_json::json!({"tenant_id": tenant.as_uuid(), "campaign_id": campaign, "recipient_id": recipient});
        env.app.state.queue.push(fibonacco_platform::queue::SEND_EMAIL_CAMPAIGN, data).await.unwrap();
    }
    let batch = serde_json::json!({"tenant_id": tenant.as_uuid(), "campaign_id": campaign,
                                   "recipient_ids": [recipients[0], other_recipient]});
    let batch_job = env.app.state.queue.push(fibonacco_platform::queue::SEND_EMAIL_CAMPAIGN, batch).await.unwrap();
    // The lake holds it all, and the pipelines' derived files score them.
    let lake_has_message =
        async || lake_rows_text(&env.lake, "select count(*) from crm_conversation_messages").await != "0";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lake_has_message().await {
        assert!(Instant::now() < deadline, "the message never reached the lake");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.pipelines().run(&[Pipeline::Engagement, Pipeline::Roi], as_of()).await.unwrap();
    let marks = [target.to_string(), email.to_lowercase(), phrase.to_string(), recipients[0].to_string()];
    let mentioned = |text: &str| marks.iter().any(|m| text.to_lowercase().contains(&m.to_lowercase()));
    assert!(lake_texts(&env.lake).iter().any(|(_, t)| mentioned(t)), "the scan finds the customer before");
    assert!(mentioned(&redis_texts(&env.app.state).await));
    let (_, before) = env.app.get(&format!("/api/v1/customers/{other}/ai-context"), &token).await;
    let export = |id: Uuid| {
        let (app, token) = (&env.app, token.clone());
        async move {
            let (status, mut body) =
                app.send("POST", &format!("/api/v1/customers/{id}/export-personal-data"), Some(&token), None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["data"]["generated_at"] = Value::Null;
            body
        }
    };
    let other_before = export(other).await;
    let orders_before: (i64, i64) =
        sqlx::query_as("select count(*), sum(amount_minor)::int8 from orders where tenant_id = $1")
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap();

    let (status, body) = env.app.send("POST", &format!("/api/v1/customers/{target}/erase"), Some(&token), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let erasure = body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["queues"], "done", "{body}");
    assert_eq!(body["data"]["jobs_removed"], 2, "one job removed, the batch rewritten: {body}");
    assert_eq!(body["data"]["removed"]["crm_conversation_messages"], 1, "{body}");
    assert!(body["data"]["removed"]["orders"].as_i64().unwrap() >= 1, "{body}");
    // The lake follows once the capture has taken the erasure from the WAL.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (status, got) = env.app.get(&format!("/api/v1/erasures/{erasure}"), &token).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        if got["data"]["lake"] == "done" {
            break got;
        }
        assert!(Instant::now() < deadline, "the lake was never rewritten: {got}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(done["data"]["lake_files_rewritten"].as_i64().unwrap() >= 3, "{done}");

    // Nothing left anywhere: every table (but the erasure log), every lake file, Redis.
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'
         and table_name not in ('erasures', '_sqlx_migrations') order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select t::text from {table} t")))
            .fetch_all(&pool)
            .await
            .unwrap();
        let hits: Vec<&String> = rows.iter().filter(|r| mentioned(r)).collect();
        assert!(hits.is_empty(), "{table} still mentions the customer: {hits:?}");
    }
    for (path, text) in lake_texts(&env.lake) {
        assert!(!mentioned(&text), "{path} still mentions the customer");
    }
    let redis = redis_texts(&env.app.state).await;
    assert!(!mentioned(&redis), "Redis still mentions the customer: {redis}");
    assert!(redis.contains(&other_recipient.to_string()), "another customer's job was removed: {redis}");
    let left = env.app.state.queue.ready_payloads("emails").await.unwrap();
    let batch_left = left.iter().find(|p| p.uuid == batch_job).expect("the batch stays, under the same uuid");
    assert_eq!(
        batch_left.data["recipient_ids"],
        serde_json::json!([other_recipient]),
        "only the other recipient is left"
    );
    // Everyone else is untouched; the books keep the orders' totals.
    assert_eq!(export(other).await, other_before);
    let (_, after) = env.app.get(&format!("/api/v1/customers/{other}/ai-context"), &token).await;
    assert_eq!(after["data"]["customer"], before["data"]["customer"]);
    let orders_after: (i64, i64) =
        sqlx::query_as("select count(*), sum(amount_minor)::int8 from orders where tenant_id = $1")
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(orders_after, orders_before);
    // The lake's current state still equals the tables.
    for table in
        ["crm_customers", "orders", "customer_activities", "outbound_campaign_recipients", "crm_conversation_messages"]
    {
        let pg: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            lake_rows_text(&env.lake, &format!("select count(*) from {table}")).await,
            pg.to_string(),
            "{table}"
        );
    }
    // Asking again returns the same erasure; the customer is gone for the API.
    let (status, again) = env.app.send("POST", &format!("/api/v1/customers/{target}/erase"), Some(&token), None).await;
    assert_eq!((status, again["data"]["id"].as_str()), (StatusCode::ACCEPTED, Some(erasure.as_str())));
    assert_eq!(env.app.get(&format!("/api/v1/customers/{target}"), &token).await.0, StatusCode::NOT_FOUND);
    env.cleanup().await;
}

/// The first value of a query over the lake's current state, as text.
async fn lake_rows_text(lake: &std::path::Path, sql: &str) -> String {
    let lake = Lake::open(&lake.display().to_string()).unwrap();
    let (ctx, _) = view::session(&lake).await.unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
}

/// `run` writes pipelines' results concurrently, and the engagement and predictive writes
/// each refresh the per-tenant score summaries in their own transaction: neither may
/// lose the other's figures, whichever commits first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_score_writes_leave_summaries_equal_to_both_tables() {
    use fibonacco_pipelines::store;
    let app = TestApp::spawn().await;
    let customer = app.customer(&app.token_a, serde_json::json!({"name": "Ada", "email": "ada@example.com"})).await;
    let customer: Uuid = customer["id"].as_str().unwrap().parse().unwrap();
    let pool = app.db.pool.clone();

    let mut engagement = store::begin(&pool).await.unwrap();
    sqlx::query(
        "insert into customer_engagement_scores (tenant_id, customer_id, score, as_of) values ($1, $2, 80, $3)",
    )
    .bind(app.tenant_a)
    .bind(customer)
    .bind(as_of())
    .execute(&mut *engagement)
    .await
    .unwrap();
    store::refresh_score_summaries(&mut engagement, store::Summaries::Engagement).await.unwrap();

    let predictive = tokio::spawn({
        let (pool, tenant) = (pool.clone(), app.tenant_a);
        async move {
            let mut tx = store::begin(&pool).await.unwrap();
            sqlx::query(
                "insert into customer_predictive_scores (tenant_id, customer_id, probability, model_version, as_of)
                 values ($1, $2, 0.9, 'test', $3)",
            )
            .bind(tenant)
            .bind(customer)
            .bind(as_of())
            .execute(&mut *tx)
            .await
            .unwrap();
            store::refresh_score_summaries(&mut tx, store::Summaries::Predictive).await.unwrap();
            tx.commit().await.unwrap();
        }
    });
    // The predictive refresh is under way (waiting for a lock the engagement transaction
    // holds) before the engagement scores commit.
    wait_until("the second refresh waits", async || {
        sqlx::query_scalar::<_, bool>(
            "select exists (select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock')",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    })
    .await;
    engagement.commit().await.unwrap();
    predictive.await.unwrap();

    let (highly_engaged, average, likely, expected): (i64, Option<f64>, i64, Option<f64>) = sqlx::query_as(
        "select highly_engaged::int8, average_engagement::float8, likely_buyers::int8, expected_buyers::float8
         from customer_score_summaries where tenant_id = $1",
    )
    .bind(app.tenant_a)
    .fetch_one(&mut *store::begin(&pool).await.unwrap())
    .await
    .unwrap();
    assert_eq!((highly_engaged, average, likely, expected), (1, Some(80.0), 1, Some(0.9)));
}
