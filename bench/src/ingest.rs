//! `fibonacco bench ingest`: changes/s from the WAL into the lake against `pg_recvlogical`
//! reading the same WAL with the same plugin to /dev/null, peak RSS, and the
//! commit-to-durable lag under a steady transaction rate.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use fibonacco_ingest::{Ingest, IngestConfig, slot};
use fibonacco_platform::config::Secret;
use sqlx::PgPool;

#[derive(Args)]
pub struct IngestBench {
    /// Row changes written before the timed catch-up (inserts and updates).
    #[arg(long, default_value_t = 500_000)]
    changes: u64,
    /// Rows per writer transaction for the throughput run.
    #[arg(long, default_value_t = 1_000)]
    rows_per_tx: u64,
    /// Transactions per second of the steady load for the lag figure.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds of steady load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

const TABLE: &str = "create table bench_changes (
    id bigserial primary key,
    account uuid not null,
    amount int8 not null,
    status text not null,
    note text,
    at timestamptz not null default now()
)";

pub async fn run(args: IngestBench) -> anyhow::Result<()> {
    anyhow::ensure!(args.changes > 0 && args.rows_per_tx > 0 && args.rate > 0, "counts must be positive");
    let db = crate::scratch(8).await?;
    sqlx::raw_sql(TABLE).execute(&db.pool).await?;
    let lake = std::env::temp_dir().join(format!("fib-bench-lake-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&lake);
    let ours = format!("b_{}", &db.name["fibtest_".len()..]);
    let raw = format!("{ours}_raw");
    let mut config = IngestConfig::new(Secret::new(db.url.clone()), lake.display().to_string());
    config.slot = ours.clone();
    config.publication = "bench_pub".into();
    config.tables = vec!["bench_changes".into()];

    // Our slot (with its empty snapshot) and a raw slot at the same point.
    run_ingest_until(&config, |_| true).await?;
    sqlx::query("select pg_create_logical_replication_slot($1, 'pgoutput')").bind(&raw).execute(&db.pool).await?;

    eprintln!("writing {} changes ({} rows per transaction)…", args.changes, args.rows_per_tx);
    let inserts = args.changes * 4 / 5;
    let updates = args.changes - inserts;
    write_load(&db.pool, inserts, updates, args.rows_per_tx).await?;
    let end_lsn: String = sqlx::query_scalar("select pg_current_wal_lsn()::text").fetch_one(&db.pool).await?;

    let raw_secs = pg_recvlogical(&db.url, &raw, &end_lsn)?;
    let raw_rate = args.changes as f64 / raw_secs;
    eprintln!("pg_recvlogical: {raw_secs:.2} s, {raw_rate:.0} changes/s");

    let started = Instant::now();
    let changes = args.changes;
    let progress = run_ingest_until(&config, move |p| p.changes >= changes).await?;
    let our_secs = started.elapsed().as_secs_f64();
    let our_rate = progress.changes as f64 / our_secs;
    eprintln!("fibonacco ingest: {our_secs:.2} s, {our_rate:.0} changes/s into the lake");
    let peak_rss_mib = peak_rss_kib() / 1024;

    eprintln!("steady load: {} transactions/s for {} s…", args.rate, args.seconds);
    let (lags, achieved) = steady_lag(&config, &db.pool, args.rate, args.seconds).await?;
    let p50 = percentile(&lags, 0.50);
    let p99 = percentile(&lags, 0.99);

    for name in [&raw, &ours] {
        let _ = slot::wait_inactive(&db.pool, name, Duration::from_secs(15)).await;
        slot::drop_slot(&db.pool, name).await?;
    }
    let _ = std::fs::remove_dir_all(&lake);

    println!(
        "ingest throughput: {our_rate:.0} changes/s into the lake ({} changes in {our_secs:.2} s)",
        progress.changes
    );
    println!("  baseline pg_recvlogical (pgoutput → /dev/null): {raw_rate:.0} changes/s ({raw_secs:.2} s)");
    println!("  ratio {:.2} × (target ≥ 0.8 ×, and ≥ 50k changes/s)", our_rate / raw_rate);
    println!("  peak RSS of this process: {peak_rss_mib} MiB");
    println!(
        "commit → durable file at {achieved:.0} transactions/s: p50 {:.0} ms, p99 {:.0} ms over {} transactions (target p99 < 1 s)",
        p50 * 1e3,
        p99 * 1e3,
        lags.len()
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "ingest",
                "changes": progress.changes,
                "changes_per_sec": our_rate,
                "baseline_pg_recvlogical_changes_per_sec": raw_rate,
                "ratio": our_rate / raw_rate,
                "peak_rss_mib": peak_rss_mib,
                "steady_tx_per_sec": achieved,
                "lag_p50_ms": p50 * 1e3,
                "lag_p99_ms": p99 * 1e3,
            })
        );
    }
    Ok(())
}

/// Runs the capture until `done(progress)`, then stops it cleanly.
async fn run_ingest_until(
    config: &IngestConfig,
    done: impl Fn(&fibonacco_ingest::Progress) -> bool,
) -> anyhow::Result<fibonacco_ingest::Progress> {
    let mut running = Ingest::connect(config.clone()).await?.spawn();
    let reached = running.wait_until(|p| p.streaming && done(p)).await;
    running.stop().await?;
    Ok(reached?)
}

async fn write_load(pool: &PgPool, inserts: u64, updates: u64, per_tx: u64) -> anyhow::Result<()> {
    let mut left = inserts;
    while left > 0 {
        let n = left.min(per_tx) as i64;
        sqlx::query(
            "insert into bench_changes (account, amount, status, note) \
             select gen_random_uuid(), g * 37 % 100000, 'open', 'note ' || g from generate_series(1, $1) g",
        )
        .bind(n)
        .execute(pool)
        .await?;
        left -= n as u64;
    }
    let mut left = updates;
    let mut from = 1i64;
    while left > 0 {
        let n = left.min(per_tx) as i64;
        sqlx::query("update bench_changes set status = 'paid', amount = amount + 1 where id >= $1 and id < $1 + $2")
            .bind(from)
            .bind(n)
            .execute(pool)
            .await?;
        from += n;
        left -= n as u64;
    }
    Ok(())
}

/// `pg_recvlogical` from the raw slot to /dev/null until `end_lsn`: seconds taken.
fn pg_recvlogical(url: &str, slot: &str, end_lsn: &str) -> anyhow::Result<f64> {
    let bin = std::process::Command::new("bash").args(["scripts/stack.sh", "pg-bin"]).output()?;
    anyhow::ensure!(bin.status.success(), "scripts/stack.sh pg-bin failed: run from the repository root");
    let bin = String::from_utf8(bin.stdout)?.trim().to_string();
    let started = Instant::now();
    let status = std::process::Command::new(format!("{bin}/pg_recvlogical"))
        .args([
            "-d",
            url,
            "--slot",
            slot,
            "--start",
            "--no-loop",
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=bench_pub",
            "--endpos",
            end_lsn,
            "-f",
            "/dev/null",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "pg_recvlogical failed");
    Ok(started.elapsed().as_secs_f64())
}

/// Single-row transactions at `rate`/s for `seconds` while the capture runs; each
/// transaction's commit-to-durable latency, and the rate achieved.
async fn steady_lag(config: &IngestConfig, pool: &PgPool, rate: u64, seconds: u64) -> anyhow::Result<(Vec<f64>, f64)> {
    let mut ingest = Ingest::connect(config.clone()).await?;
    let samples = ingest.record_lag();
    let mut running = ingest.spawn();
    let before = running.wait_until(|p| p.streaming).await?.transactions;
    let committed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writers = 8u64;
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..writers {
        let pool = pool.clone();
        let committed = committed.clone();
        let done = done.clone();
        let period = Duration::from_secs_f64(writers as f64 / rate as f64);
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let ok = sqlx::query(
                    "insert into bench_changes (account, amount, status) values (gen_random_uuid(), $1, 'steady')",
                )
                .bind(w as i64)
                .execute(&pool)
                .await
                .is_ok();
                if ok {
                    committed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    done.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = committed.load(Ordering::Relaxed);
    // Let the last transactions become durable before stopping.
    let target = before + total;
    let _ = tokio::time::timeout(Duration::from_secs(30), running.wait_until(|p| p.transactions >= target)).await;
    running.stop().await?;
    let lags = samples.lock().map(|s| s.clone()).unwrap_or_default();
    Ok((lags, total as f64 / elapsed))
}

fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub(crate) fn peak_rss_kib() -> u64 {
    fibonacco_pipelines::stages::peak_rss_kib().unwrap_or(0)
}
