//! The batch run on a Ballista cluster (scheduler and executor started in this process
//! by the functions `fibonacco ballista scheduler|executor` run) over the lake on S3
//! (moto): the same tables as the in-process engine.

use std::{collections::BTreeMap, time::Duration};

use datafusion::arrow::datatypes::DataType;
use fibonacco_ingest::Lake;
use fibonacco_pipelines::{Engine, Pipeline, Pipelines, cluster};
use fibonacco_platform::testing::stack_setting;
use serde_json::Value;
use sqlx::PgPool;

use crate::runs::{Env, as_of};

/// Every table a batch run of all pipelines writes.
const RESULTS: &[&str] = &[
    "customer_engagement_scores",
    "customer_score_summaries",
    "campaign_roi",
    "customer_predictive_scores",
    "analytics_daily_activity",
    "analytics_daily_orders",
    "analytics_daily_campaigns",
    "analytics_daily_customers",
    "analytics_content",
    "customer_send_slots",
    "tenant_send_slots",
];

/// A table's rows as JSON objects, without the columns that record when they were written.
async fn rows(pool: &PgPool, table: &str) -> Vec<BTreeMap<String, Value>> {
    let sql = format!("select to_jsonb(t) - 'computed_at' - 'updated_at' - 'id' from {table} t");
    let rows: Vec<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap();
    let mut rows: Vec<BTreeMap<String, Value>> = rows.into_iter().map(|r| serde_json::from_value(r).unwrap()).collect();
    // Ordered by what identifies a row, not by the floats an engine may sum in another order.
    rows.sort_by_key(|r| {
        r.iter().filter(|(_, v)| !v.is_f64()).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    });
    rows
}

/// Equal, with floats within a relative 1e-9 (sums over differently ordered rows).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The local lake's files, copied as they are under `s3://<bucket>/lake/` on moto.
async fn lake_on_s3(env: &Env) -> (String, Vec<(String, String)>) {
    let endpoint = stack_setting("SES_ENDPOINT");
    let bucket = format!("lake-{}", env.slot.replace('_', "-"));
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let settings: Vec<(String, String)> = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing"),
        ("aws_region", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let location = format!("s3://{bucket}/lake");
    let s3 = Lake::open_with(&location, settings.clone()).unwrap();
    let mut dirs = vec![env.lake.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(&env.lake).unwrap().to_str().unwrap().to_string();
                s3.put_bytes(&relative, std::fs::read(&path).unwrap()).await.unwrap();
            }
        }
    }
    (location, settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ballista_runs_the_batch_over_the_s3_lake_with_the_local_engines_results() {
    let mut env = Env::seeded(400, 2, 120).await;
    // The lake is complete once streaming (the seed came before the capture): stop the
    // capture so both runs read the same files.
    env.running.take().unwrap().stop().await.unwrap();
    let local = env.pipelines().run(&Pipeline::ALL, as_of()).await.unwrap();
    let mut expected = BTreeMap::new();
    for table in RESULTS {
        let rows = rows(env.pool(), table).await;
        assert!(!rows.is_empty(), "the local run wrote no {table}");
        expected.insert(*table, rows);
    }

    let (location, settings) = lake_on_s3(&env).await;
    let open = || Lake::open_with(&location, settings.clone()).unwrap();
    let cluster = cluster::InProcess::start(|| Ok(open()), 1).unwrap();
    let nobody = cluster::free_ports(1).unwrap()[0];

    // A scheduler nobody runs: the run fails, naming its address.
    let nowhere = Pipelines {
        lake: open(),
        engine: format!("ballista://127.0.0.1:{nobody}").parse().unwrap(),
        ..env.pipelines()
    };
    let err = tokio::time::timeout(Duration::from_secs(30), nowhere.run(&[Pipeline::Engagement], as_of()))
        .await
        .expect("a run against no scheduler waits")
        .expect_err("no scheduler there");
    assert!(err.to_string().contains(&format!("127.0.0.1:{nobody}")), "{err}");

    for table in RESULTS {
        sqlx::query(sqlx::AssertSqlSafe(format!("delete from {table}"))).execute(env.pool()).await.unwrap();
    }
    let remote = Pipelines { lake: open(), engine: cluster.engine.clone(), ..env.pipelines() };
    // Plain strings on the cluster, string views in process: a view column written to a
    // shuffle file carries every buffer it points into (docs/benchmarks.md).
    let id_type = |engine: Engine, lake: Lake| async move {
        let (ctx, _) = engine.session(&lake).await.unwrap();
        let table = ctx.table_provider("crm_customers_changes").await.unwrap();
        table.schema().field_with_name("id").unwrap().data_type().clone()
    };
    assert_eq!(id_type(remote.engine.clone(), open()).await, DataType::Utf8);
    assert_eq!(id_type(Engine::Local, open()).await, DataType::Utf8View);
    // A job submitted before the executor registers waits for it.
    let reports = match remote.run(&Pipeline::ALL, as_of()).await {
        Ok(reports) => reports,
        Err(e) => {
            for (name, task) in cluster.tasks {
                if task.is_finished() {
                    panic!("the {name} stopped ({:?}); the run: {e}", task.await);
                }
            }
            panic!("the Ballista run failed: {e}");
        }
    };
    for (l, r) in local.iter().zip(&reports) {
        assert_eq!((l.pipeline, l.rows_written), (r.pipeline, r.rows_written));
    }
    for table in RESULTS {
        let actual = rows(env.pool(), table).await;
        let wanted = &expected[table];
        assert_eq!(actual.len(), wanted.len(), "{table}: row counts");
        for (a, w) in actual.iter().zip(wanted) {
            let (a, w) = (serde_json::to_value(a).unwrap(), serde_json::to_value(w).unwrap());
            assert!(same(&a, &w), "{table}: Ballista wrote\n{a}\nthe local engine\n{w}");
        }
    }
    for dir in &cluster.work_dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    env.cleanup().await;
}
