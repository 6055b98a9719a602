//! What the change-data-capture tests share (this crate's test binary and the root's
//! tests of the `fibonacco ingest` process): a database with two captured tables, a lake
//! and a slot per test, a background writer, and comparisons of the lake with the tables.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use datafusion::arrow::{array::Array, util::display::array_value_to_string};
use fibonacco_ingest::{Ingest, IngestConfig, Lake, Running, slot, view};
use fibonacco_platform::{config::Secret, testing::TestDatabase};
use sqlx::{PgPool, Row};

pub const TABLES: &str = "
create table cdc_items (
    id uuid primary key default gen_random_uuid(),
    n int4 not null,
    big int8,
    small int2,
    price numeric(12, 2),
    ratio float8,
    flag bool,
    label text,
    body text,
    doc jsonb,
    tags text[],
    scores int4[],
    embedding vector(3),
    seen_at timestamptz,
    day date
);

create table cdc_events (
    id bigserial primary key,
    item_id uuid,
    kind text not null,
    at timestamptz not null default now()
);";

pub struct Fixture {
    pub db: TestDatabase,
    pub lake: PathBuf,
    pub slot: String,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::on(&fibonacco_platform::testing::database_url()).await
    }

    /// The fixture on another server (a `ScratchCluster`).
    pub async fn on(server_url: &str) -> Self {
        // reqwest (the S3 bucket, /metrics) is built without its own crypto provider.
        fibonacco_platform::install_tls_provider();
        let db = TestDatabase::create_on(server_url, 8).await;
        sqlx::raw_sql(TABLES).execute(&db.pool).await.unwrap();
        // Slots are cluster-wide: one per test database.
        let slot = format!("t_{}", &db.name["fibtest_".len()..]);
        let lake = std::env::temp_dir().join(format!("fib-lake-{slot}"));
        let _ = std::fs::remove_dir_all(&lake);
        Self { db, lake, slot }
    }

    pub fn config(&self) -> IngestConfig {
        let mut config = IngestConfig::new(Secret::new(self.db.url.clone()), self.lake.display().to_string());
        config.slot = self.slot.clone();
        config.publication = "cdc_test".into();
        config.tables = vec!["cdc_items".into(), "cdc_events".into()];
        config.flush_interval = Duration::from_millis(50);
        config
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    pub async fn manifest(&self) -> fibonacco_ingest::Manifest {
        Lake::open(&self.lake.display().to_string()).unwrap().read_manifest().await.unwrap().unwrap()
    }

    pub async fn cleanup(self) {
        // The walsender of a process just stopped may hold the slot for a moment; a slot
        // left behind would keep WAL forever.
        let _ = slot::wait_inactive(&self.db.pool, &self.slot, Duration::from_secs(15)).await;
        slot::drop_slot(&self.db.pool, &self.slot).await.unwrap();
        let _ = std::fs::remove_dir_all(&self.lake);
    }
}

/// An in-process capture, once it streams.
pub async fn start(config: IngestConfig) -> Running {
    let mut running = Ingest::connect(config).await.unwrap().spawn();
    let started = tokio::time::timeout(Duration::from_secs(60), running.wait_until(|p| p.streaming)).await;
    assert!(started.is_ok_and(|r| r.is_ok()), "ingest did not start streaming");
    running
}

/// A writer changing the tables until `finish`: `step(pool, n)` for n = first, first+1, …
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub task: tokio::task::JoinHandle<i32>,
}

impl Load {
    pub fn start<F, Fut>(pool: &PgPool, first: i32, step: F) -> Self
    where
        F: Fn(PgPool, i32) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (pool, flag) = (pool.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut n = first;
            while !flag.load(Ordering::Relaxed) {
                step(pool.clone(), n).await;
                n += 1;
            }
            n
        });
        Self { stop, task }
    }

    /// Stops the writer; returns the next `n` it would have written.
    pub async fn finish(self) -> i32 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

pub type Rows = Vec<Vec<Option<String>>>;

pub async fn lake_rows(lake: &Path, sql: &str) -> Result<Rows, String> {
    let lake = Lake::open(&lake.display().to_string()).map_err(|e| e.to_string())?;
    let (ctx, _) = view::session(&lake).await.map_err(|e| e.to_string())?;
    let batches = ctx.sql(sql).await.map_err(|e| e.to_string())?.collect().await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in batches {
        for r in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| if c.is_null(r) { None } else { Some(array_value_to_string(c, r).unwrap()) })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

pub async fn pg_rows(pool: &PgPool, sql: &str) -> Rows {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(pool).await.unwrap();
    rows.iter().map(|row| (0..row.len()).map(|i| row.get::<Option<String>, _>(i)).collect()).collect()
}

pub const ITEMS_PG: &str = "select id::text, n::text, big::text, small::text, price::text, ratio::text, flag::text, label, \
    md5(body), doc::text, array_to_string(tags, '|'), array_to_string(scores, '|'), \
    trim(both '[]' from embedding::text), (extract(epoch from seen_at) * 1000000)::int8::text, day::text \
    from cdc_items order by 1";

pub const ITEMS_LAKE: &str = "select id, n, big, small, price, ratio, flag, label, md5(body), doc, \
    array_to_string(tags, '|'), array_to_string(scores, '|'), array_to_string(embedding, ','), \
    cast(seen_at as bigint), day from cdc_items order by id";

pub const EVENTS_PG: &str = "select id::text, item_id::text, kind from cdc_events order by cdc_events.id";

pub const EVENTS_LAKE: &str = "select id, item_id, kind from cdc_events order by id";

/// Waits until the lake's current state equals the tables (both item and event tables).
pub async fn converge(fx: &Fixture, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let want_items = pg_rows(fx.pool(), ITEMS_PG).await;
        let want_events = pg_rows(fx.pool(), EVENTS_PG).await;
        let items = lake_rows(&fx.lake, ITEMS_LAKE).await;
        let events = lake_rows(&fx.lake, EVENTS_LAKE).await;
        if items.as_ref() == Ok(&want_items) && events.as_ref() == Ok(&want_events) {
            return;
        }
        if Instant::now() > deadline {
            let show = |got: &Result<Rows, String>, want: &Rows| match got {
                Ok(rows) => {
                    let diff = rows.iter().zip(want).find(|(a, b)| a != b);
                    format!("lake {} rows, pg {} rows, first difference (lake, pg): {diff:?}", rows.len(), want.len())
                }
                Err(e) => e.clone(),
            };
            panic!(
                "lake never matched the tables:\n items: {}\n events: {}",
                show(&items, &want_items),
                show(&events, &want_events)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn insert_item(pool: &PgPool, n: i32) -> String {
    sqlx::query_scalar(
        "insert into cdc_items (n, big, small, price, ratio, flag, label, body, doc, tags, scores, embedding, seen_at, day) \
         values ($1, $1::int8 * 10000000000, ($1 % 100)::int2, $1 * 1.25, $1 + 0.25, $1 % 2 = 0, 'item ' || $1, \
                 repeat('b', $1 % 50), jsonb_build_object('n', $1, 'tags', jsonb_build_array('a', 'b')), \
                 array['x', 'y z', 'q\"uote'], array[$1, $1 + 1], \
                 format('[%s,%s,%s]', $1 + 0.5, 0.25, -1.5)::vector, \
                 '2026-11-25 10:00:00.123456+00'::timestamptz + make_interval(secs => $1), \
                 date '2026-01-01' + $1) returning id::text",
    )
    .bind(n)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The change identity (`_lsn`, `_seq`) appears once, and every item row was inserted
/// exactly once (by the snapshot or by the stream, never both).
pub async fn assert_no_duplicates(lake: &Path) {
    let dup = lake_rows(lake, "select _lsn, _seq, count(*) from cdc_items_changes group by 1, 2 having count(*) > 1")
        .await
        .unwrap();
    assert!(dup.is_empty(), "changes written twice: {dup:?}");
    let dup = lake_rows(lake, "select _lsn, _seq, count(*) from cdc_events_changes group by 1, 2 having count(*) > 1")
        .await
        .unwrap();
    assert!(dup.is_empty(), "event changes written twice: {dup:?}");
    let twice = lake_rows(
        lake,
        "select id, count(*) from cdc_items_changes where _op in ('r', 'i') group by id having count(*) <> 1",
    )
    .await
    .unwrap();
    assert!(twice.is_empty(), "items inserted other than once: {twice:?}");
}

/// An item whose body is ~200 kB of incompressible text: stored out of line (TOAST).
pub async fn insert_toasted_item(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "insert into cdc_items (n, body) select 1, string_agg(md5(g::text), '') from generate_series(1, 6000) g returning id::text",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

pub async fn insert_item_tx(tx: &mut sqlx::PgConnection, n: i32) -> String {
    sqlx::query_scalar(
        "insert into cdc_items (n, ratio, label, tags, embedding, seen_at) \
         values ($1, $1 + 0.5, 'l' || $1, array['t' || $1], '[0.5,0.25,0.125]', now()) returning id::text",
    )
    .bind(n)
    .fetch_one(tx)
    .await
    .unwrap()
}
