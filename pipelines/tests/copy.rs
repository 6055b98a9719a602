//! The binary `COPY` the pipelines write with, against Postgres' own reading of it: every
//! column type the analytics tables use, NULLs, hostile text, the edges of each integer
//! type, and values that do not fit, which fail before anything lands.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray};
use fibonacco_pipelines::{PipelineError, copy::CopyBatch, store};
use fibonacco_platform::testing::TestDatabase;

const TABLE: &str = "create temp table typed (
    flag boolean, small smallint, normal integer, big bigint, ratio double precision,
    score numeric(5,2), name text, currency character(3), doc jsonb, id uuid, day date,
    as_of timestamptz)";

fn strings(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn batch(ids: &[Option<&str>], small: &[Option<i64>]) -> CopyBatch {
    let mut b = CopyBatch::new();
    b.push("flag", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])));
    b.push("small", Arc::new(Int64Array::from(small.to_vec())));
    b.push("normal", Arc::new(Int64Array::from(vec![Some(i32::MAX.into()), Some(i32::MIN.into()), None])));
    b.push("big", Arc::new(Int64Array::from(vec![Some(i64::MAX), Some(i64::MIN), None])));
    b.push("ratio", Arc::new(Float64Array::from(vec![Some(0.1 + 0.2), Some(-1.5e300), None])));
    b.push("score", Arc::new(Float64Array::from(vec![Some(12.3456), Some(-0.004), None])));
    b.push("name", strings(&[Some("tab\there\nnew \\N line 'q' \"dq\""), Some("ünïcødé ✓ 日本"), None]));
    b.push("currency", strings(&[Some("EUR"), Some("usd"), None]));
    b.push("doc", strings(&[Some(r#"{"b": [1, 2.5], "a": "x\ny"}"#), Some("[]"), None]));
    b.push("id", strings(ids));
    // 2000-01-01 (Postgres' epoch), 1970-01-01, NULL.
    b.push("day", Arc::new(Date32Array::from(vec![Some(10_957), Some(0), None])));
    let at: DateTime<Utc> = "2026-11-01T12:34:56.789012Z".parse().unwrap();
    b.push_as_of(3, at);
    b
}

#[tokio::test]
async fn binary_copy_writes_every_column_type_as_postgres_reads_it() {
    let db = TestDatabase::create_with_pool_size(1).await;
    let mut conn = db.pool.acquire().await.unwrap();
    sqlx::query("set time zone 'UTC'").execute(&mut *conn).await.unwrap();
    sqlx::query(TABLE).execute(&mut *conn).await.unwrap();
    let id = "0b6f3c2e-8a1d-4c7e-9f00-123456789abc";
    let good = batch(&[Some(id), Some(&id.to_uppercase()), None], &[Some(32_767), Some(-32_768), None]);
    store::copy(&mut conn, "typed", &[good]).await.unwrap();
    let got: Vec<String> = sqlx::query_scalar("select t::text from typed t order by big desc nulls last")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(
        got,
        [
            format!(
                r#"(t,32767,2147483647,9223372036854775807,0.30000000000000004,12.35,"tab	here
new \\N line 'q' ""dq""",EUR,"{{""a"": ""x\\ny"", ""b"": [1, 2.5]}}",{id},2000-01-01,"2026-11-01 12:34:56.789012+00")"#
            ),
            format!(
                r#"(f,-32768,-2147483648,-9223372036854775808,-1.5e+300,0.00,"ünïcødé ✓ 日本",usd,[],{id},1970-01-01,"2026-11-01 12:34:56.789012+00")"#
            ),
            "(,,,,,,,,,,,\"2026-11-01 12:34:56.789012+00\")".to_string(),
        ]
    );

    // Values that do not fit their column fail with the column's name, and nothing of
    // the batch lands.
    sqlx::query("truncate typed").execute(&mut *conn).await.unwrap();
    let too_big = batch(&[Some(id), Some(id), None], &[Some(1), Some(32_768), None]);
    let err = store::copy(&mut conn, "typed", &[too_big]).await.unwrap_err();
    assert!(matches!(&err, PipelineError::Input(m) if m.contains("small") && m.contains("32768")), "{err}");
    let not_a_uuid = batch(&[Some(id), Some("0b6f3c2e'; drop table typed; --"), None], &[None, None, None]);
    let err = store::copy(&mut conn, "typed", &[not_a_uuid]).await.unwrap_err();
    assert!(matches!(&err, PipelineError::Input(m) if m.contains("column id") && !m.contains("drop")), "{err}");
    let mut fractions = CopyBatch::new();
    fractions.push("big", Arc::new(Float64Array::from(vec![1.5, 2.0])));
    let err = store::copy(&mut conn, "typed", &[fractions]).await.unwrap_err();
    assert!(matches!(&err, PipelineError::Input(m) if m.contains("big") && m.contains("floats")), "{err}");
    let mut not_a_date = CopyBatch::new();
    not_a_date.push("day", strings(&[Some("2026-11-01"), Some("someday")]));
    let err = store::copy(&mut conn, "typed", &[not_a_date]).await.unwrap_err();
    assert!(matches!(&err, PipelineError::Input(m) if m.contains("column day")), "{err}");
    let mut unknown = CopyBatch::new();
    unknown.push("nope", strings(&[Some("x")]));
    let err = store::copy(&mut conn, "typed", &[unknown]).await.unwrap_err();
    assert!(matches!(&err, PipelineError::Input(m) if m.contains("no column nope")), "{err}");
    // The connection is usable after an aborted COPY, and the table is still empty.
    let count: i64 = sqlx::query_scalar("select count(*) from typed").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(count, 0);
}
