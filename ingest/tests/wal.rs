//! A stopped capture must never fill the database's disk: on a private cluster whose
//! `max_slot_wal_keep_size` is 4 MB, writes continue while the capture is stopped until
//! Postgres invalidates the slot. Postgres stays up; status and the health check say so;
//! a start refuses with what to do; with `INGEST_AUTO_RESNAPSHOT` it copies the tables
//! again, keeps the lake's history and records the gap; the lake then equals the tables.

use std::time::Duration;

use fibonacco_ingest::{Ingest, IngestError, status};
use fibonacco_platform::{
    replication::{self, SlotHealth},
    testing::ScratchCluster,
};

use crate::support::*;

#[tokio::test]
async fn an_invalidated_slot_is_reported_and_a_new_snapshot_keeps_the_history_with_the_gap() {
    let cluster = ScratchCluster::start(4);
    let fx = Fixture::on(&cluster.url).await;
    for n in 1..=20 {
        insert_item(fx.pool(), n).await;
    }
    // An insert-only table with rows on both sides of the gap: its fast current-state view
    // must start from the new copy too (the old row would otherwise show twice).
    sqlx::query("insert into cdc_events (kind) values ('before the gap')").execute(fx.pool()).await.unwrap();
    let running = start(fx.config()).await;
    converge(&fx, Duration::from_secs(30)).await;
    running.stop().await.unwrap();
    let before = fx.manifest().await;

    // Healthy while stopped and small: the slot keeps little WAL.
    let slots = replication::slots(fx.pool()).await.unwrap();
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!(replication::worst(&slots, 1 << 30), SlotHealth::Ok);
    let text = status::status(fx.pool(), &fx.config()).await.unwrap().to_string();
    assert!(text.contains("retained WAL:") && text.contains("before Postgres invalidates"), "{text}");

    // Writes go on while nobody reads the slot: deletes, updates, inserts, and bulk WAL.
    sqlx::query("delete from cdc_items where n between 1 and 5").execute(fx.pool()).await.unwrap();
    sqlx::query("update cdc_items set label = 'during the gap' where n between 6 and 10")
        .execute(fx.pool())
        .await
        .unwrap();
    for n in 21..=25 {
        insert_item(fx.pool(), n).await;
    }
    let mut rounds = 0;
    loop {
        sqlx::query("insert into cdc_events (kind) select repeat('w', 200) from generate_series(1, 10000)")
            .execute(fx.pool())
            .await
            .unwrap();
        sqlx::query("checkpoint").execute(fx.pool()).await.unwrap();
        let slots = replication::slots(fx.pool()).await.unwrap();
        if replication::worst(&slots, 1 << 30) == SlotHealth::Lost {
            break;
        }
        rounds += 1;
        assert!(rounds < 30, "the slot was never invalidated: {slots:?}");
    }

    // Postgres is up, the slot says why it is gone, and every surface reports it.
    let one: i32 = sqlx::query_scalar("select 1").fetch_one(fx.pool()).await.unwrap();
    assert_eq!(one, 1);
    let slots = replication::slots(fx.pool()).await.unwrap();
    assert!(slots[0].invalidation_reason.is_some(), "{slots:?}");
    let st = status::status(fx.pool(), &fx.config()).await.unwrap();
    assert!(st.slot.as_ref().and_then(|s| s.lost()).is_some(), "{st:?}");
    let text = st.to_string();
    assert!(text.contains("LOST") && text.contains("--resnapshot"), "{text}");

    // A start without INGEST_AUTO_RESNAPSHOT refuses, naming both ways out.
    let err = Ingest::connect(fx.config()).await.unwrap().run(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, IngestError::SlotLost { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("--resnapshot") && message.contains("INGEST_AUTO_RESNAPSHOT"), "{message}");
    assert_eq!(fx.manifest().await, before, "a refused start changes nothing");

    // With it: a new slot and snapshot; the old files stay, the gap is recorded.
    let mut config = fx.config();
    config.auto_resnapshot = true;
    let running = start(config).await;
    converge(&fx, Duration::from_secs(60)).await;
    let after = fx.manifest().await;
    assert_eq!(after.gaps.len(), 1, "{:?}", after.gaps);
    let gap = &after.gaps[0];
    assert_eq!(gap.after_lsn, before.durable_lsn);
    assert!(gap.resumed_lsn > gap.after_lsn && gap.reason.contains("invalidated"), "{gap:?}");
    assert!(after.resnapshot_pending.is_none());
    for file in &before.files {
        assert!(after.files.contains(file), "{} was dropped from the lake", file.path);
    }
    // The history holds both copies; the current state only the new one.
    let copies = lake_rows(&fx.lake, "select count(*) from cdc_items_changes where _op = 'r'").await.unwrap();
    assert_eq!(copies, vec![vec![Some((20 + 20).to_string())]]);
    let text = status::status(fx.pool(), &fx.config()).await.unwrap().to_string();
    assert!(text.contains("gap:") && text.contains("missing from the history"), "{text}");

    // And it streams again from there.
    insert_item(fx.pool(), 26).await;
    sqlx::query("delete from cdc_items where n = 26").execute(fx.pool()).await.unwrap();
    insert_item(fx.pool(), 27).await;
    converge(&fx, Duration::from_secs(30)).await;
    // The new slot streams (its restart point moves on with the next checkpoint).
    let slots = replication::slots(fx.pool()).await.unwrap();
    assert!(slots[0].active && slots[0].invalidation_reason.is_none(), "{slots:?}");
    running.stop().await.unwrap();
    fx.cleanup().await;
}
