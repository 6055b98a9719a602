//! `fibonacco bench import`: rows/s of a customer CSV import (the checks, matching by
//! e-mail or phone, inserts and updates in chunks, progress and the error report: what
//! `POST /customers/import`'s job and `fibonacco import customers` run), three times over
//! the same people: all new, all unchanged, all changed. The baseline from the same run is
//! `COPY` of the same file into a bare table: the floor of moving those rows into Postgres.

use std::time::Instant;

use clap::Args;
use fibonacco_api::customers::import::{self, ImportRequest, run::Counts};
use fibonacco_platform::{TenantId, domain::Slug, tenancy};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Args)]
pub struct ImportBench {
    /// Rows of the file (about 2 % repeat an earlier row's e-mail, 1 % are invalid).
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Figure {
    name: &'static str,
    rows: usize,
    seconds: f64,
    rows_per_sec: f64,
    created: i32,
    updated: i32,
    unchanged: i32,
    errors: i32,
}

/// The file: `Name,Email,Phone,Tags,Plan`, `plan` standing for what a later import changes.
fn file(rows: usize, plan: &str) -> String {
    let mut csv = String::with_capacity(rows * 80);
    csv.push_str("Name,Email,Phone,Tags,Plan\n");
    for i in 0..rows {
        let person = if i % 50 == 49 { i - 7 } else { i };
        if i % 100 == 99 {
            csv.push_str(&format!("Person {person},not an address {person},,,{plan}\n"));
        } else {
            csv.push_str(&format!(
                "Person {person},person{person}@bench.example,+1555{:07},customer;bench,{plan}\n",
                person % 10_000_000
            ));
        }
    }
    csv
}

async fn import_once(
    pool: &PgPool,
    tenant: TenantId,
    csv: &str,
    name: &'static str,
    rows: usize,
) -> anyhow::Result<Figure> {
    let started = Instant::now();
    let request = ImportRequest { csv: Some(csv.to_owned()), file_name: None, mapping: None, dry_run: None };
    let accepted = import::accept(pool, tenant, None, request).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let c: Counts = import::run::run(pool, tenant, accepted.id, &|_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Figure {
        name,
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        created: c.created_count,
        updated: c.updated_count,
        unchanged: c.unchanged_count,
        errors: c.error_rows,
    })
}

pub async fn run(args: ImportBench) -> anyhow::Result<()> {
    anyhow::ensure!(args.rows > 0, "--rows must be positive");
    let db = crate::scratch(4).await?;
    let tenant = tenancy::create(&db.pool, "Bench", &Slug::parse("bench-import").expect("a static slug")).await?;
    let csv = file(args.rows, "basic");

    let started = Instant::now();
    let mut conn = db.pool.acquire().await?;
    sqlx::query("create table bench_copy (name text, email text, phone text, tags text, plan text)")
        .execute(&mut *conn)
        .await?;
    let mut sink = conn.copy_in_raw("copy bench_copy from stdin (format csv, header true)").await?;
    sink.send(csv.as_bytes()).await?;
    sink.finish().await?;
    drop(conn);
    let seconds = started.elapsed().as_secs_f64();
    let mut figures = vec![Figure {
        name: "baseline: COPY of the file into a bare table",
        rows: args.rows,
        seconds,
        rows_per_sec: args.rows as f64 / seconds,
        created: 0,
        updated: 0,
        unchanged: 0,
        errors: 0,
    }];
    figures.push(import_once(&db.pool, tenant.id, &csv, "import, every customer new", args.rows).await?);
    figures.push(import_once(&db.pool, tenant.id, &csv, "the same file again (all unchanged)", args.rows).await?);
    let changed = file(args.rows, "premium");
    figures.push(import_once(&db.pool, tenant.id, &changed, "a file changing every customer", args.rows).await?);

    // The import is only a figure if it was right: one customer per distinct address.
    let expected = (0..args.rows).filter(|i| i % 100 != 99 && i % 50 != 49).count() as i64;
    let mut tx = fibonacco_platform::db::begin_tenant(&db.pool, tenant.id).await?;
    let customers: i64 = sqlx::query_scalar("select count(*) from crm_customers where tenant_id = $1")
        .bind(tenant.id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    anyhow::ensure!(customers == expected, "{customers} customers, expected {expected}");

    println!(
        "{:<46} {:>9} {:>8} {:>10} {:>8} {:>8} {:>9} {:>7}",
        "scenario", "rows", "seconds", "rows/s", "created", "updated", "unchanged", "errors"
    );
    for f in &figures {
        println!(
            "{:<46} {:>9} {:>8.2} {:>10.0} {:>8} {:>8} {:>9} {:>7}",
            f.name, f.rows, f.seconds, f.rows_per_sec, f.created, f.updated, f.unchanged, f.errors
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"bench": "import", "rows": args.rows, "customers": customers, "scenarios": figures})
        );
    }
    Ok(())
}
