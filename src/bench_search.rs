//! `fibonacco bench search`: embedding throughput of the local model (and of Python
//! sentence-transformers on the same machine when it is installed), then vector search
//! latency and recall@10 against exact search with a tenant filter.

use std::time::Instant;

use clap::Args;
use fibonacco_platform::{TenantId, db, domain::Slug, tenancy, testing::TestDatabase};
use fibonacco_search::embed::{local::MiniLm, pgvector_literal};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use uuid::Uuid;

#[derive(Args)]
pub struct SearchBench {
    /// Passages embedded for the throughput figure (batches of 32).
    #[arg(long, default_value_t = 512)]
    passages: usize,
    /// Synthetic 384-d vectors in the index (0 skips the vector part).
    #[arg(long, default_value_t = 20_000)]
    vectors: usize,
    /// Tenants the vectors are spread over; every query filters by one.
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Queries measured.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    model_load_ms: f64,
    passages_per_sec: f64,
    query_embed_p50_ms: f64,
    sentence_transformers_passages_per_sec: Option<f64>,
    vectors: usize,
    tenants: usize,
    ann_p50_ms: Option<f64>,
    ann_p99_ms: Option<f64>,
    exact_p50_ms: Option<f64>,
    recall_at_10: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A passage of about 40 word pieces, varied so no two are the same.
fn passage(i: usize) -> String {
    const WORDS: &[&str] = &[
        "customers",
        "appointment",
        "delivery",
        "refund",
        "warranty",
        "invoice",
        "booking",
        "schedule",
        "discount",
        "service",
        "repair",
        "order",
        "payment",
        "support",
        "weekend",
        "opening",
        "account",
        "password",
        "shipping",
        "installation",
    ];
    let mut s = String::from("Our team helps");
    for k in 0..28 {
        s.push(' ');
        s.push_str(WORDS[(i * 7 + k * 3) % WORDS.len()]);
    }
    s.push('.');
    s
}

pub async fn run(args: SearchBench) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = MiniLm::load(&MiniLm::default_dir())?;
    let model_load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let texts: Vec<String> = (0..args.passages.max(32)).map(passage).collect();
    // Warm-up, then the measured run.
    model.embed_blocking(&texts[..32])?;
    let t = Instant::now();
    for chunk in texts.chunks(32) {
        model.embed_blocking(chunk)?;
    }
    let passages_per_sec = texts.len() as f64 / t.elapsed().as_secs_f64();
    let mut query_ms = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        model.embed_blocking(&["What time do you open on Saturday mornings?".to_owned()])?;
        query_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    query_ms.sort_by(f64::total_cmp);
    let st = sentence_transformers(texts.len());
    let mut report = Report {
        model_load_ms,
        passages_per_sec,
        query_embed_p50_ms: percentile(&query_ms, 0.5),
        sentence_transformers_passages_per_sec: st,
        vectors: args.vectors,
        tenants: args.tenants,
        ann_p50_ms: None,
        ann_p99_ms: None,
        exact_p50_ms: None,
        recall_at_10: None,
    };
    if args.vectors > 0 {
        vectors(&args, &mut report).await?;
    }
    println!("model load: {:.0} ms", report.model_load_ms);
    println!(
        "embedding: {:.1} passages/s (batch 32, ~40 tokens); one query {:.1} ms p50",
        report.passages_per_sec, report.query_embed_p50_ms
    );
    match report.sentence_transformers_passages_per_sec {
        Some(v) => println!("baseline: Python sentence-transformers, same passages: {v:.1} passages/s"),
        None => println!("baseline: Python sentence-transformers is not installed in .venv; no baseline this run"),
    }
    if let (Some(p50), Some(p99), Some(exact), Some(recall)) =
        (report.ann_p50_ms, report.ann_p99_ms, report.exact_p50_ms, report.recall_at_10)
    {
        println!(
            "vectors: {} in {} tenants; HNSW with tenant filter p50 {p50:.2} ms, p99 {p99:.2} ms; exact scan p50 {exact:.2} ms; recall@10 {recall:.3}",
            report.vectors, report.tenants
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Python sentence-transformers on the same passages, when the venv has it.
fn sentence_transformers(n: usize) -> Option<f64> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let script = format!(
        "import time\nfrom sentence_transformers import SentenceTransformer\nm = SentenceTransformer('{}')\n\
         texts = [{}]\nm.encode(texts[:32], batch_size=32)\nt = time.time()\nm.encode(texts, batch_size=32)\nprint(len(texts) / (time.time() - t))",
        MiniLm::default_dir().display(),
        (0..n).map(|i| format!("{:?}", passage(i))).collect::<Vec<_>>().join(",")
    );
    let out = std::process::Command::new(python).args(["-c", &script]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

async fn vectors(args: &SearchBench, report: &mut Report) -> anyhow::Result<()> {
    let db = TestDatabase::create().await;
    let mut rng = StdRng::seed_from_u64(7);
    // Clustered data (topics), as real embeddings are: 64 centres, noise around them.
    let centres: Vec<Vec<f32>> = (0..64)
        .map(|_| {
            let mut c: Vec<f32> = (0..384).map(|_| rng.random::<f32>() - 0.5).collect();
            unit(&mut c);
            c
        })
        .collect();
    let near = |rng: &mut StdRng| {
        let c = &centres[rng.random_range(0..centres.len())];
        let mut v: Vec<f32> = c.iter().map(|x| x + (rng.random::<f32>() - 0.5) * 0.15).collect();
        unit(&mut v);
        v
    };
    let mut tenants = Vec::new();
    for i in 0..args.tenants.max(1) {
        tenants.push(tenancy::create(&db.pool, &format!("T{i}"), &Slug::parse(&format!("t{i}"))?).await?.id);
    }
    eprintln!("inserting {} vectors…", args.vectors);
    let t = Instant::now();
    let per_tenant = args.vectors / tenants.len();
    for &tenant in &tenants {
        let mut done = 0;
        while done < per_tenant {
            let n = (per_tenant - done).min(500);
            let vectors: Vec<String> = (0..n).map(|_| pgvector_literal(&near(&mut rng))).collect();
            let mut tx = db::begin_tenant(&db.pool, tenant).await?;
            sqlx::query(
                "insert into knowledge_base (tenant_id, title, content, embedding, embedding_model, embedding_status)
                 select $1, 'entry', 'synthetic', v::vector, 'synthetic', 'completed' from unnest($2::text[]) v",
            )
            .bind(tenant)
            .bind(&vectors)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            done += n;
        }
    }
    sqlx::query("analyze knowledge_base").execute(&db.pool).await?;
    eprintln!("inserted (with HNSW maintenance) in {:.1}s", t.elapsed().as_secs_f64());

    let (mut ann, mut exact, mut recall) = (Vec::new(), Vec::new(), 0.0);
    for i in 0..args.queries {
        let tenant: TenantId = tenants[i % tenants.len()];
        let q = pgvector_literal(&near(&mut rng));
        let sql = "select id from knowledge_base where tenant_id = $1 and embedding_model = 'synthetic'
                   order by embedding <=> $2::text::vector limit 10";
        let mut tx = db::begin_tenant(&db.pool, tenant).await?;
        sqlx::query("select set_config('hnsw.iterative_scan', 'relaxed_order', true)").execute(&mut *tx).await?;
        let t = Instant::now();
        let got: Vec<Uuid> = sqlx::query_scalar(sql).bind(tenant).bind(&q).fetch_all(&mut *tx).await?;
        ann.push(t.elapsed().as_secs_f64() * 1000.0);
        sqlx::query("select set_config('enable_indexscan', 'off', true)").execute(&mut *tx).await?;
        let t = Instant::now();
        let truth: Vec<Uuid> = sqlx::query_scalar(sql).bind(tenant).bind(&q).fetch_all(&mut *tx).await?;
        exact.push(t.elapsed().as_secs_f64() * 1000.0);
        tx.commit().await?;
        recall += got.iter().filter(|id| truth.contains(id)).count() as f64 / truth.len().max(1) as f64;
    }
    ann.sort_by(f64::total_cmp);
    exact.sort_by(f64::total_cmp);
    report.ann_p50_ms = Some(percentile(&ann, 0.5));
    report.ann_p99_ms = Some(percentile(&ann, 0.99));
    report.exact_p50_ms = Some(percentile(&exact, 0.5));
    report.recall_at_10 = Some(recall / args.queries.max(1) as f64);
    Ok(())
}
