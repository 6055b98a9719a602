//! Change data capture end to end against the real Postgres: snapshot, stream, the lake's
//! current-state view against the tables, crashes, schema changes, TOAST, a 1M-row
//! transaction, and the errors a user meets.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use datafusion::arrow::{array::Array, util::display::array_value_to_string};
use fibonacco_ingest::{Ingest, IngestConfig, IngestError, Lake, Running, slot, view};
use fibonacco_platform::{config::Secret, testing::TestDatabase};
use sqlx::{PgPool, Row};

const TABLES: &str = "
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

struct Fixture {
    db: TestDatabase,
    lake: PathBuf,
    slot: String,
}

impl Fixture {
    async fn new() -> Self {
        // reqwest (the S3 bucket, /metrics) is built without its own crypto provider.
        fibonacco_platform::install_tls_provider();
        let db = TestDatabase::create_with_pool_size(8).await;
        sqlx::raw_sql(TABLES).execute(&db.pool).await.unwrap();
        // Slots are cluster-wide: one per test database.
        let slot = format!("t_{}", &db.name["fibtest_".len()..]);
        let lake = std::env::temp_dir().join(format!("fib-lake-{slot}"));
        let _ = std::fs::remove_dir_all(&lake);
        Self { db, lake, slot }
    }

    fn config(&self) -> IngestConfig {
        let mut config = IngestConfig::new(Secret::new(self.db.url.clone()), self.lake.display().to_string());
        config.slot = self.slot.clone();
        config.publication = "cdc_test".into();
        config.tables = vec!["cdc_items".into(), "cdc_events".into()];
        config.flush_interval = Duration::from_millis(50);
        config
    }

    fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The `fibonacco` binary with this fixture's settings (and `extra` over them).
    fn command(&self, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fibonacco"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", fibonacco_platform::testing::redis_url())
            .env("INGEST_SLOT", &self.slot)
            .env("INGEST_PUBLICATION", "cdc_test")
            .env("INGEST_TABLES", "cdc_items,cdc_events")
            .env("INGEST_LAKE", &self.lake)
            .env("INGEST_FLUSH_MS", "50")
            .env("INGEST_METRICS_ADDR", "off")
            .env("RUST_LOG", "warn");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// `fibonacco ingest` running with this fixture's settings.
    fn spawn_binary(&self, extra: &[(&str, &str)]) -> Child {
        self.command(extra).arg("ingest").stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap()
    }

    async fn manifest(&self) -> fibonacco_ingest::Manifest {
        Lake::open(&self.lake.display().to_string()).unwrap().read_manifest().await.unwrap().unwrap()
    }

    async fn cleanup(self) {
        // The walsender of a process just stopped may hold the slot for a moment; a slot
        // left behind would keep WAL forever.
        let _ = slot::wait_inactive(&self.db.pool, &self.slot, Duration::from_secs(15)).await;
        slot::drop_slot(&self.db.pool, &self.slot).await.unwrap();
        let _ = std::fs::remove_dir_all(&self.lake);
    }
}

/// An in-process capture, once it streams.
async fn start(config: IngestConfig) -> Running {
    let mut running = Ingest::connect(config).await.unwrap().spawn();
    let started = tokio::time::timeout(Duration::from_secs(60), running.wait_until(|p| p.streaming)).await;
    assert!(started.is_ok_and(|r| r.is_ok()), "ingest did not start streaming");
    running
}

/// A writer changing the tables until `finish`: `step(pool, n)` for n = first, first+1, …
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<i32>,
}

impl Load {
    fn start<F, Fut>(pool: &PgPool, first: i32, step: F) -> Self
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
    async fn finish(self) -> i32 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

type Rows = Vec<Vec<Option<String>>>;

async fn lake_rows(lake: &Path, sql: &str) -> Result<Rows, String> {
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

async fn pg_rows(pool: &PgPool, sql: &str) -> Rows {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(pool).await.unwrap();
    rows.iter().map(|row| (0..row.len()).map(|i| row.get::<Option<String>, _>(i)).collect()).collect()
}

const ITEMS_PG: &str = "select id::text, n::text, big::text, small::text, price::text, ratio::text, flag::text, label, \
    md5(body), doc::text, array_to_string(tags, '|'), array_to_string(scores, '|'), \
    trim(both '[]' from embedding::text), (extract(epoch from seen_at) * 1000000)::int8::text, day::text \
    from cdc_items order by 1";
const ITEMS_LAKE: &str = "select id, n, big, small, price, ratio, flag, label, md5(body), doc, \
    array_to_string(tags, '|'), array_to_string(scores, '|'), array_to_string(embedding, ','), \
    cast(seen_at as bigint), day from cdc_items order by id";
const EVENTS_PG: &str = "select id::text, item_id::text, kind from cdc_events order by cdc_events.id";
const EVENTS_LAKE: &str = "select id, item_id, kind from cdc_events order by id";

/// Waits until the lake's current state equals the tables (both item and event tables).
async fn converge(fx: &Fixture, timeout: Duration) {
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

async fn insert_item(pool: &PgPool, n: i32) -> String {
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
async fn assert_no_duplicates(lake: &Path) {
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

#[tokio::test]
async fn lake_matches_tables_through_inserts_updates_deletes_and_truncate() {
    let fx = Fixture::new().await;
    // Rows before the slot exists reach the lake through the snapshot.
    let mut ids = Vec::new();
    for n in 1..=20 {
        ids.push(insert_item(fx.pool(), n).await);
    }
    sqlx::query("insert into cdc_events (item_id, kind) select id, 'seen' from cdc_items")
        .execute(fx.pool())
        .await
        .unwrap();
    let running = start(fx.config()).await;
    converge(&fx, Duration::from_secs(30)).await;

    for n in 21..=30 {
        ids.push(insert_item(fx.pool(), n).await);
    }
    // Several tables in one transaction, updates of every column kind, NULLs, deletes.
    let mut tx = fx.pool().begin().await.unwrap();
    sqlx::query(
        "update cdc_items set n = n + 1000, label = null, price = price + 0.01, tags = array[]::text[] where n <= 5",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("insert into cdc_events (item_id, kind) select id, 'updated' from cdc_items where n > 1000")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("delete from cdc_items where n between 10 and 14").execute(fx.pool()).await.unwrap();
    sqlx::query("update cdc_items set doc = '{\"moved\": true}', flag = null where n = 25")
        .execute(fx.pool())
        .await
        .unwrap();
    converge(&fx, Duration::from_secs(30)).await;

    // TRUNCATE empties the current state; rows after it count again.
    sqlx::query("truncate cdc_events").execute(fx.pool()).await.unwrap();
    sqlx::query("insert into cdc_events (item_id, kind) values (null, 'after truncate')")
        .execute(fx.pool())
        .await
        .unwrap();
    converge(&fx, Duration::from_secs(30)).await;
    assert_eq!(
        lake_rows(&fx.lake, "select kind from cdc_events").await.unwrap(),
        vec![vec![Some("after truncate".into())]]
    );

    let ops = lake_rows(&fx.lake, "select _op, count(*) from cdc_items_changes group by 1 order by 1").await.unwrap();
    assert_eq!(
        ops,
        vec![
            vec![Some("d".into()), Some("5".into())],
            vec![Some("i".into()), Some("10".into())],
            vec![Some("r".into()), Some("20".into())],
            vec![Some("u".into()), Some("6".into())],
        ]
    );
    assert_no_duplicates(&fx.lake).await;

    // Status reports the slot, zero-ish lag and the lake's contents.
    let status = fibonacco_ingest::status::status(fx.pool(), &fx.config()).await.unwrap();
    assert!(status.slot.as_ref().is_some_and(|s| s.active));
    let items = status.tables.iter().find(|t| t.table == "cdc_items").unwrap();
    assert_eq!(items.changes, 41);
    assert!(items.files >= 1 && status.files >= 2);
    let text = status.to_string();
    assert!(text.contains("cdc_items") && text.contains("durable LSN"), "{text}");
    running.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn change_feed_carries_durable_batches_with_the_keys_touched() {
    let fx = Fixture::new().await;
    let running = start(fx.config()).await;
    let mut feed = running.feed.subscribe();
    let id = insert_item(fx.pool(), 7).await;
    let batch = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let b = feed.recv().await.unwrap();
            if b.table == "cdc_items" {
                return b;
            }
        }
    })
    .await
    .expect("no change batch for cdc_items");
    assert_eq!(batch.keys, vec!["id".to_string()]);
    let keys = batch.keys_touched().unwrap();
    assert_eq!(keys.num_columns(), 1);
    assert_eq!(array_value_to_string(keys.column(0), 0).unwrap(), id);
    // Published only once durable: the manifest already covers it.
    let manifest = fx.manifest().await;
    assert!(manifest.durable_lsn >= batch.durable_lsn);
    assert!(manifest.files.iter().any(|f| f.table == "cdc_items"));
    running.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn schema_change_mid_stream_appears_in_later_files() {
    let fx = Fixture::new().await;
    insert_item(fx.pool(), 1).await;
    let running = start(fx.config()).await;
    insert_item(fx.pool(), 2).await;
    sqlx::query("insert into cdc_events (kind) values ('before')").execute(fx.pool()).await.unwrap();
    converge(&fx, Duration::from_secs(30)).await;
    sqlx::raw_sql("alter table cdc_events add column weight numeric(6, 3)").execute(fx.pool()).await.unwrap();
    sqlx::query("insert into cdc_events (kind, weight) values ('heavy', 12.5)").execute(fx.pool()).await.unwrap();
    sqlx::query("insert into cdc_events (kind) values ('light')").execute(fx.pool()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = vec![
        vec![Some("before".to_string()), None],
        vec![Some("heavy".into()), Some("12.500".into())],
        vec![Some("light".into()), None],
    ];
    loop {
        let got = lake_rows(&fx.lake, "select kind, weight from cdc_events order by id").await;
        if got.as_ref() == Ok(&want) {
            break;
        }
        assert!(Instant::now() < deadline, "new column never appeared: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    converge(&fx, Duration::from_secs(30)).await;
    // The old shape and the new one are separate files.
    let manifest = fx.manifest().await;
    assert!(manifest.files_of("cdc_events").filter(|f| f.rows > 0).count() >= 2);
    running.stop().await.unwrap();
    fx.cleanup().await;
}

/// An item whose body is ~200 kB of incompressible text: stored out of line (TOAST).
async fn insert_toasted_item(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "insert into cdc_items (n, body) select 1, string_agg(md5(g::text), '') from generate_series(1, 6000) g returning id::text",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn toasted_text_unchanged_by_an_update_is_marked_and_filled_never_wrong() {
    let fx = Fixture::new().await;
    let running = start(fx.config()).await;
    let id = insert_toasted_item(fx.pool()).await;
    sqlx::query("update cdc_items set n = 2 where id = $1::uuid").bind(&id).execute(fx.pool()).await.unwrap();
    sqlx::query("update cdc_items set label = 'again' where id = $1::uuid").bind(&id).execute(fx.pool()).await.unwrap();
    converge(&fx, Duration::from_secs(30)).await;
    let changes =
        lake_rows(&fx.lake, "select _op, _unchanged, body is null from cdc_items_changes order by _lsn, _seq")
            .await
            .unwrap();
    assert_eq!(
        changes,
        vec![
            vec![Some("i".into()), None, Some("false".into())],
            vec![Some("u".into()), Some(",body,".into()), Some("true".into())],
            vec![Some("u".into()), Some(",body,".into()), Some("true".into())],
        ],
        "the updates did not resend the TOASTed body: marked, stored as NULL"
    );
    let body = lake_rows(&fx.lake, "select length(body), n, label from cdc_items").await.unwrap();
    assert_eq!(body, vec![vec![Some("192000".into()), Some("2".into()), Some("again".into())]]);
    running.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn replica_identity_full_fills_toasted_values_from_the_old_image_and_keeps_the_primary_key() {
    let fx = Fixture::new().await;
    let running = start(fx.config()).await;
    let id = insert_toasted_item(fx.pool()).await;
    sqlx::raw_sql("alter table cdc_items replica identity full").execute(fx.pool()).await.unwrap();
    sqlx::query("update cdc_items set n = 5 where id = $1::uuid").bind(&id).execute(fx.pool()).await.unwrap();
    converge(&fx, Duration::from_secs(30)).await;
    // Every column is "key" in the stream now, yet the update is not a delete plus an
    // insert, and the body came from the old image rather than a marker.
    let manifest = fx.manifest().await;
    assert_eq!(manifest.tables["cdc_items"].keys, vec!["id".to_string()]);
    let changes =
        lake_rows(&fx.lake, "select _op, _unchanged, length(body) from cdc_items_changes order by _lsn, _seq")
            .await
            .unwrap();
    assert_eq!(
        changes,
        vec![vec![Some("i".into()), None, Some("192000".into())], vec![Some("u".into()), None, Some("192000".into())]]
    );
    running.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn snapshot_and_stream_meet_without_gap_or_overlap_under_concurrent_writes() {
    let fx = Fixture::new().await;
    for n in 1..=200 {
        insert_item(fx.pool(), n).await;
    }
    let load = Load::start(fx.pool(), 1000, |pool, n| async move {
        let id = insert_item(&pool, n).await;
        sqlx::query("insert into cdc_events (item_id, kind) values ($1::uuid, 'w')")
            .bind(&id)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("update cdc_items set n = n + 1 where n = $1").bind(n - 500).execute(&pool).await.unwrap();
    });
    // The slot and its snapshot are created while the writer runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = start(fx.config()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = load.finish().await;
    assert!(written > 1010, "the writer made few changes ({written})");
    converge(&fx, Duration::from_secs(60)).await;
    assert_no_duplicates(&fx.lake).await;
    let streamed = lake_rows(&fx.lake, "select count(*) from cdc_items_changes where _op = 'i'").await.unwrap();
    let snap = lake_rows(&fx.lake, "select count(*) from cdc_items_changes where _op = 'r'").await.unwrap();
    let streamed: u64 = streamed[0][0].as_deref().unwrap().parse().unwrap();
    let snap: u64 = snap[0][0].as_deref().unwrap().parse().unwrap();
    assert!(snap >= 200 && streamed > 0, "both sides of the seam carry rows: snapshot {snap}, stream {streamed}");
    running.stop().await.unwrap();
    fx.cleanup().await;
}

fn sigkill(child: &mut Child) {
    let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();
}

fn sigterm(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[tokio::test]
async fn killed_ten_times_under_load_the_lake_still_equals_the_tables() {
    let fx = Fixture::new().await;
    for n in 1..=50 {
        insert_item(fx.pool(), n).await;
    }
    let load = Load::start(fx.pool(), 100, |pool, n| async move {
        let mut tx = pool.begin().await.unwrap();
        let id = insert_item_tx(&mut tx, n).await;
        sqlx::query("insert into cdc_events (item_id, kind) values ($1::uuid, 'load')")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        if n % 3 == 0 {
            sqlx::query("update cdc_items set ratio = ratio + 1, label = 'u' || $1 where n = $2")
                .bind(n)
                .bind(n - 30)
                .execute(&pool)
                .await
                .unwrap();
        }
        if n % 7 == 0 {
            sqlx::query("delete from cdc_items where n = $1").bind(n - 50).execute(&pool).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    });
    let mut child = fx.spawn_binary(&[]);
    // Random moments: during the snapshot, mid-stream, right after a restart.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    for _ in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(150 + seed % 1200)).await;
        sigkill(&mut child);
        child = fx.spawn_binary(&[]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.finish().await;
    converge(&fx, Duration::from_secs(90)).await;
    sigterm(&mut child);
    assert_no_duplicates(&fx.lake).await;
    fx.cleanup().await;
}

async fn insert_item_tx(tx: &mut sqlx::PgConnection, n: i32) -> String {
    sqlx::query_scalar(
        "insert into cdc_items (n, ratio, label, tags, embedding, seen_at) \
         values ($1, $1 + 0.5, 'l' || $1, array['t' || $1], '[0.5,0.25,0.125]', now()) returning id::text",
    )
    .bind(n)
    .fetch_one(tx)
    .await
    .unwrap()
}

/// A `/proc/<pid>/status` memory line (`VmRSS:` now, `VmHWM:` peak) in KiB.
fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_million_row_transaction_streams_through_in_bounded_memory() {
    let fx = Fixture::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut child = fx.spawn_binary(&[("INGEST_FLUSH_MB", "4"), ("INGEST_METRICS_ADDR", &metrics_addr)]);
    // Wait for the (empty) snapshot, then write 1M rows (~250 MB of text) in one transaction.
    let lake = Lake::open(&fx.lake.display().to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lake.read_manifest().await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "no snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_mib = rss_kib(child.id(), "VmRSS:") / 1024;
    sqlx::query("insert into cdc_events (kind) select repeat(md5(g::text), 7) from generate_series(1, 1000000) g")
        .execute(fx.pool())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let manifest = loop {
        let m = lake.read_manifest().await.unwrap().unwrap();
        if m.tables.get("cdc_events").is_some_and(|t| t.rows >= 1_000_000) {
            break m;
        }
        assert!(Instant::now() < deadline, "the transaction never reached the lake");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let peak_mib = rss_kib(child.id(), "VmHWM:") / 1024;
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics")).await.unwrap().text().await.unwrap();
    sigterm(&mut child);
    assert!(metrics.contains("ingest_changes_total{table=\"cdc_events\"} 1000000"), "{metrics}");
    assert!(metrics.contains("ingest_durable_lsn"), "{metrics}");
    let files = manifest.files_of("cdc_events").count();
    let merged: u32 = manifest.files_of("cdc_events").map(|f| f.merged).sum();
    let growth = peak_mib.saturating_sub(before_mib);
    eprintln!(
        "1M-row transaction: RSS {before_mib} MiB before, peak {peak_mib} MiB (+{growth}), {files} files ({merged} before compaction)"
    );
    assert!(merged >= 10, "the transaction was written in pieces as it streamed ({merged} files)");
    assert_eq!(manifest.tables["cdc_events"].rows, 1_000_000);
    // ~250 MB of row text went through in one transaction; holding it would need more
    // than that. With a 4 MB buffer the process grows by a small multiple of it (Arrow
    // builders, the Parquet encoder's pages and output, allocator slack).
    assert!(growth < 96, "RSS grew by {growth} MiB during the transaction: memory is not bounded");
    let count = lake_rows(&fx.lake, "select count(*), count(distinct id) from cdc_events").await.unwrap();
    assert_eq!(count, vec![vec![Some("1000000".into()), Some("1000000".into())]]);
    fx.cleanup().await;
}

#[tokio::test]
async fn bad_situations_get_clear_errors() {
    let fx = Fixture::new().await;
    // A table that does not exist.
    let mut config = fx.config();
    config.tables.push("no_such_table".into());
    let err = Ingest::connect(config).await.unwrap().run(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, IngestError::MissingTable(ref t) if t == "no_such_table"), "{err}");
    // A table without a primary key would break its UPDATEs once published.
    sqlx::raw_sql("create table cdc_nokey (v text)").execute(fx.pool()).await.unwrap();
    let mut config = fx.config();
    config.tables = vec!["cdc_nokey".into()];
    let err = Ingest::connect(config).await.unwrap().run(std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("no primary key"), "{err}");

    // The slot dropped behind the lake's back: say so and offer --resnapshot.
    insert_item(fx.pool(), 1).await;
    let running = start(fx.config()).await;
    running.stop().await.unwrap();
    slot::drop_slot(fx.pool(), &fx.slot).await.unwrap();
    let err = Ingest::connect(fx.config()).await.unwrap().run(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, IngestError::SlotLost { .. }), "{err}");
    assert!(err.to_string().contains("--resnapshot"), "{err}");
    let mut config = fx.config();
    config.resnapshot = true;
    let running = start(config).await;
    converge(&fx, Duration::from_secs(30)).await;
    // A second process on the same slot is refused, not interleaved.
    let mut config = fx.config();
    config.slot_wait = Duration::from_millis(500);
    let err = Ingest::connect(config).await.unwrap().run(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, IngestError::SlotBusy(_)), "{err}");
    running.stop().await.unwrap();

    fx.cleanup().await;
}

#[tokio::test]
async fn small_files_are_compacted_and_the_lake_still_matches() {
    let fx = Fixture::new().await;
    let mut config = fx.config();
    config.compact_min_files = 4;
    let running = start(config).await;
    // One transaction per flush: each becomes its own small file.
    for n in 1..=12 {
        insert_item(fx.pool(), n).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    converge(&fx, Duration::from_secs(30)).await;
    let manifest = fx.manifest().await;
    let merged: Vec<u32> = manifest.files_of("cdc_items").map(|f| f.merged).collect();
    assert!(merged.iter().any(|m| *m >= 4), "no compaction happened: {merged:?}");
    assert!(merged.len() < 12, "still one file per transaction: {merged:?}");
    running.stop().await.unwrap();
    // Every file on disk is one the manifest lists (the merged-away ones are deleted).
    let manifest = fx.manifest().await;
    let mut on_disk = Vec::new();
    let mut stack = vec![fx.lake.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                on_disk.push(path.strip_prefix(&fx.lake).unwrap().display().to_string());
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = manifest.files.iter().map(|f| f.path.clone()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    converge(&fx, Duration::from_secs(5)).await;
    fx.cleanup().await;
}

#[tokio::test]
async fn status_and_query_from_the_command_line() {
    let fx = Fixture::new().await;
    insert_item(fx.pool(), 3).await;
    let running = start(fx.config()).await;
    insert_item(fx.pool(), 4).await;
    converge(&fx, Duration::from_secs(30)).await;
    let cli = |args: &[&str]| {
        let out = fx.command(&[]).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let status: serde_json::Value = serde_json::from_str(&cli(&["ingest", "status", "--json"])).unwrap();
    assert_eq!(status["slot"]["active"], true);
    let items = status["tables"].as_array().unwrap().iter().find(|t| t["table"] == "cdc_items").unwrap();
    assert_eq!(items["changes"], 2);
    assert!(status["lag_bytes"].is_u64());
    let text = cli(&["ingest", "status"]);
    assert!(text.contains("slot:") && text.contains("(active)"), "{text}");
    let table = cli(&["ingest", "query", "select n from cdc_items order by n"]);
    assert!(table.contains("| 3 |") && table.contains("| 4 |"), "{table}");
    // Compacting is the running process's job while it holds the slot.
    let out = fx.command(&[]).args(["ingest", "compact"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is running"), "{}", String::from_utf8_lossy(&out.stderr));
    running.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn the_lake_can_live_in_an_s3_bucket() {
    let fx = Fixture::new().await;
    insert_item(fx.pool(), 1).await;
    // moto (the local AWS emulator of the stack) serves S3 on the same port as SES.
    let endpoint = fibonacco_platform::testing::stack_setting("SES_ENDPOINT");
    let bucket = format!("lake-{}", &fx.slot[2..14]);
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let lake = format!("s3://{bucket}/lake");
    let env = [
        ("INGEST_LAKE", lake.as_str()),
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let mut child = fx.spawn_binary(&env);
    for n in 2..=5 {
        insert_item(fx.pool(), n).await;
    }
    let query = || {
        let out = fx
            .command(&env)
            .args(["ingest", "query", "select count(*) as c, sum(n) as s from cdc_items"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = query();
        if out.contains("| 5 | 15 |") {
            break;
        }
        assert!(Instant::now() < deadline, "the S3 lake never showed the 5 rows: {out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let listing =
        reqwest::get(format!("{endpoint}/{bucket}?list-type=2&prefix=lake/")).await.unwrap().text().await.unwrap();
    assert!(listing.contains("lake/_manifest.json") && listing.contains("lake/cdc_items/date="), "{listing}");
    sigterm(&mut child);
    fx.cleanup().await;
}

#[tokio::test]
async fn every_default_table_can_be_published() {
    let db = TestDatabase::create().await;
    let config = IngestConfig::new(Secret::new(db.url.clone()), "unused");
    slot::preflight(&db.pool, &config).await.unwrap();
}
