//! Change data capture end to end against the real Postgres: snapshot, stream, the lake's
//! current-state view against the tables, crashes, schema changes, TOAST, a 1M-row
//! transaction, and the errors a user meets.

use std::time::{Duration, Instant};

use datafusion::arrow::util::display::array_value_to_string;
use fibonacco_ingest::{Ingest, IngestConfig, IngestError, slot};
use fibonacco_platform::{config::Secret, testing::TestDatabase};

use crate::support::*;

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
    // The walsender lets go of the slot a moment after the stream ends (SlotBusy under load).
    let _ = slot::wait_inactive(fx.pool(), &fx.slot, Duration::from_secs(15)).await;
    slot::drop_slot(fx.pool(), &fx.slot).await.unwrap();
    let err = Ingest::connect(fx.config()).await.unwrap().run(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, IngestError::SlotLost { .. }), "{err}");
    assert!(err.to_string().contains("--resnapshot"), "{err}");
    // A spawned capture waited on reports the same cause, not only that it ended.
    let mut running = Ingest::connect(fx.config()).await.unwrap().spawn();
    let err = running.wait_until(|p| p.streaming).await.unwrap_err();
    assert!(matches!(err, IngestError::SlotLost { .. }), "{err}");
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
async fn every_default_table_can_be_published() {
    let db = TestDatabase::create().await;
    let config = IngestConfig::new(Secret::new(db.url.clone()), "unused");
    slot::preflight(&db.pool, &config).await.unwrap();
}
