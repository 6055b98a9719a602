//! `fibonacco ingest` as a process: killed ten times under load, a million-row
//! transaction in bounded memory, a lake in an S3 bucket, and `ingest status | query |
//! compact` from the command line.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fibonacco_ingest::Lake;

#[path = "../ingest/tests/support.rs"]
mod support;
use support::*;

/// The `fibonacco` binary with the fixture's settings (and `extra` over them).
fn command(fx: &Fixture, extra: &[(&str, &str)]) -> Command {
    let mut cmd = crate::fibonacco(&fx.db.url);
    cmd.env("INGEST_SLOT", &fx.slot)
        .env("INGEST_PUBLICATION", "cdc_test")
        .env("INGEST_TABLES", "cdc_items,cdc_events")
        .env("INGEST_LAKE", &fx.lake)
        .env("INGEST_FLUSH_MS", "50")
        .env("INGEST_METRICS_ADDR", "off");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// `fibonacco ingest` running with the fixture's settings.
fn spawn_binary(fx: &Fixture, extra: &[(&str, &str)]) -> Child {
    command(fx, extra).arg("ingest").stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap()
}

fn sigkill(child: &mut Child) {
    let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();
}

fn sigterm(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
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
    let mut child = spawn_binary(&fx, &[]);
    // Random moments: during the snapshot, mid-stream, right after a restart.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    for _ in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(150 + seed % 1200)).await;
        sigkill(&mut child);
        child = spawn_binary(&fx, &[]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.finish().await;
    converge(&fx, Duration::from_secs(90)).await;
    sigterm(&mut child);
    assert_no_duplicates(&fx.lake).await;
    fx.cleanup().await;
}

#[tokio::test]
async fn a_million_row_transaction_streams_through_in_bounded_memory() {
    let fx = Fixture::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut child = spawn_binary(&fx, &[("INGEST_FLUSH_MB", "4"), ("INGEST_METRICS_ADDR", &metrics_addr)]);
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
async fn status_and_query_from_the_command_line() {
    let fx = Fixture::new().await;
    insert_item(fx.pool(), 3).await;
    let running = start(fx.config()).await;
    insert_item(fx.pool(), 4).await;
    converge(&fx, Duration::from_secs(30)).await;
    let cli = |args: &[&str]| {
        let out = command(&fx, &[]).args(args).output().unwrap();
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
    let out = command(&fx, &[]).args(["ingest", "compact"]).output().unwrap();
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
    let mut child = spawn_binary(&fx, &env);
    for n in 2..=5 {
        insert_item(fx.pool(), n).await;
    }
    let query = || {
        let out = command(&fx, &env)
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

/// `/health` of a `fibonacco run` on `port`, once it answers.
async fn health(port: u16) -> Option<serde_json::Value> {
    let got = reqwest::get(format!("http://127.0.0.1:{port}/health")).await.ok()?;
    got.json().await.ok()
}

/// Polls `/health` until `done` holds for the capture's part, or panics after `timeout`.
async fn wait_for_capture(port: u16, timeout: Duration, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(h) = health(port).await {
            if done(&h["parts"]["capture"]) {
                return;
            }
            last = Some(h);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the capture never got {what}; last /health: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fibonacco_run_captures_through_a_postgres_restart_under_load() {
    let cluster = fibonacco_platform::testing::ScratchCluster::start(256);
    let fx = Fixture::on(&cluster.url).await;
    for n in 1..=20 {
        insert_item(fx.pool(), n).await;
    }
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (app_port, search_port) = (free(), free());
    let prefix = format!("queues-{}", fx.slot);
    let env = [("APP_PORT", app_port.to_string()), ("SEARCH_PORT", search_port.to_string()), ("QUEUE_PREFIX", prefix)];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = command(&fx, &env).arg("run").stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
    wait_for_capture(app_port, Duration::from_secs(120), "running", |c| c["state"] == "running").await;

    // Writes go on through the restart; those the restart refuses are simply not made.
    let pool = fx.pool().clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut n, mut refused) = (100, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let step = async {
                    let mut tx = pool.begin().await?;
                    let id: String =
                        sqlx::query_scalar("insert into cdc_items (n, label) values ($1, 'load') returning id::text")
                            .bind(n)
                            .fetch_one(&mut *tx)
                            .await?;
                    sqlx::query("insert into cdc_events (item_id, kind) values ($1::uuid, 'load')")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("update cdc_items set label = 'u' || $1 where n = $2")
                        .bind(n)
                        .bind(n - 40)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await
                };
                if step.await.is_err() {
                    refused += 1;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (n, refused)
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let restart = std::thread::spawn(move || {
        cluster.restart();
        cluster
    });
    let cluster = tokio::task::spawn_blocking(move || restart.join().unwrap()).await.unwrap();
    wait_for_capture(app_port, Duration::from_secs(120), "running again after a restart", |c| {
        c["state"] == "running" && c["restarts"].as_u64().is_some_and(|r| r >= 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (written, refused) = writer.await.unwrap();
    eprintln!("{} write transactions during the test, {refused} refused by the restart", written - 100);
    assert!(written - 100 > refused + 20, "the load kept writing after the restart");

    converge(&fx, Duration::from_secs(90)).await;
    assert_no_duplicates(&fx.lake).await;
    let h = health(app_port).await.unwrap();
    assert_eq!(h["checks"]["background"], "ok", "{h}");
    assert!(h["parts"]["capture"]["last_error"].is_string(), "{h}");
    let status = command(&fx, &[]).args(["ingest", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("capture:        running since") && text.contains("restarts"), "{text}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{app_port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("part_restarts_total{part=\"capture\"}"), "{metrics}");
    sigterm(&mut child);
    fx.cleanup().await;
    drop(cluster);
}
