//! `fibonacco bench search`: embedding throughput of the local model on both engines (ONNX
//! Runtime and candle; and of Python sentence-transformers on the same machine when it is
//! installed), passages and single queries, then vector search
//! latency and recall@10 against exact search with a tenant filter, and the search
//! service's overhead (HTTP, auth, hit rows, usage counts) over the bare pgvector query.

use std::{sync::Arc, time::Instant};

use clap::Args;
use fibonacco_platform::{TenantId, db, domain::Slug, tenancy};
use fibonacco_search::{
    embed::{
        local::{MiniLm, RuntimeChoice, default_library},
        pgvector_literal,
    },
    store::pgvector::QUERY_SETTINGS,
};
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
    /// Recall/latency curves instead of the single-setting figures: pgvector (and Qdrant
    /// with `--qdrant`) over the same vectors, for each data set and search effort.
    #[arg(long)]
    curves: bool,
    /// Data sets of the curves: `sentences` (perturbed real embeddings) and/or `clusters`.
    #[arg(long, value_delimiter = ',', default_value = "sentences,clusters")]
    datasets: Vec<String>,
    /// Search efforts of the curves (pgvector `hnsw.ef_search`, Qdrant `hnsw_ef`).
    #[arg(long, value_delimiter = ',', default_value = "40,100,200,400")]
    ef: Vec<u64>,
    /// Measure Qdrant too (`QDRANT_URL`, else the stack's stand-in `QDRANT_STUB_URL`).
    #[arg(long)]
    qdrant: bool,
    /// Leave pgvector's index out of the curves (Qdrant alone; exact answers still from
    /// Postgres).
    #[arg(long)]
    no_pgvector: bool,
    /// HNSW `m` of both indexes in the curves.
    #[arg(long, default_value_t = 16)]
    hnsw_m: u64,
    /// HNSW `ef_construction` of both indexes in the curves.
    #[arg(long, default_value_t = 64)]
    hnsw_ef_construction: u64,
    /// The Python that runs the sentence-transformers baseline (default: the project's .venv).
    #[arg(long)]
    baseline_python: Option<std::path::PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The engine the platform uses by default (`onnxruntime` when present).
    runtime: &'static str,
    model_load_ms: f64,
    passages_per_sec: f64,
    query_embed_p50_ms: f64,
    candle_passages_per_sec: f64,
    candle_query_embed_p50_ms: f64,
    sentence_transformers_passages_per_sec: Option<f64>,
    sentence_transformers_query_p50_ms: Option<f64>,
    /// passages/s of the default engine over sentence-transformers' (target ≥ 1).
    passages_vs_sentence_transformers: Option<f64>,
    /// sentence-transformers' query time over the default engine's (target ≥ 1).
    query_vs_sentence_transformers: Option<f64>,
    vectors: usize,
    tenants: usize,
    ann_p50_ms: Option<f64>,
    ann_p99_ms: Option<f64>,
    exact_p50_ms: Option<f64>,
    recall_at_10: Option<f64>,
    index_build_s: Option<f64>,
    /// The same filtered top-10 query: bare SQL vs the search service over HTTP (query
    /// embedding excluded from both: a fixed vector per query).
    direct_sql_p50_ms: Option<f64>,
    /// The service's own vector query in semantic mode (`pgvector::nearest_hits_in` with
    /// the rows it shows, in a tenant transaction with the same settings: the same SQL
    /// text, binds and plan as inside the service) called directly.
    store_query_p50_ms: Option<f64>,
    service_p50_ms: Option<f64>,
    service_p99_ms: Option<f64>,
    /// The same request in hybrid mode (the default): a vector pool three pages deep,
    /// the keyword query, and the page's re-read.
    service_hybrid_p50_ms: Option<f64>,
    service_hybrid_p99_ms: Option<f64>,
    /// The service's p50 over the store query's, minus one: what HTTP, auth, the re-read
    /// of the hits and the envelope add to the same query.
    service_overhead: Option<f64>,
    /// The median over queries of the service's time over its own vector query's for the
    /// same query vector, minus one: the same overhead, paired per query, so it does not
    /// carry the spread between cheap and costly queries that each p50 carries alone.
    service_overhead_paired: Option<f64>,
    /// The service's p50 over the single-table bare query's, minus one.
    service_overhead_vs_direct: Option<f64>,
    /// An unauthenticated request to the same route on the same connection pool, answered
    /// 401 before any database or store work: HTTP on localhost, routing, the envelope.
    http_floor_p50_ms: Option<f64>,
    curves: Vec<crate::recall::Curve>,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
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

/// passages/s in batches of 32 (after a warm-up batch) and one query's p50 in ms.
fn throughput(model: &MiniLm, texts: &[String]) -> anyhow::Result<(f64, f64)> {
    model.embed_blocking(&texts[..32])?;
    let t = Instant::now();
    for chunk in texts.chunks(32) {
        model.embed_blocking(chunk)?;
    }
    let passages_per_sec = texts.len() as f64 / t.elapsed().as_secs_f64();
    let mut query_ms = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        model.embed_blocking(&[QUERY.to_owned()])?;
        query_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    query_ms.sort_by(f64::total_cmp);
    Ok((passages_per_sec, percentile(&query_ms, 0.5)))
}

const QUERY: &str = "What time do you open on Saturday mornings?";

pub async fn run(args: SearchBench) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = MiniLm::load(&MiniLm::default_dir())?;
    let model_load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let texts: Vec<String> = (0..args.passages.max(32)).map(passage).collect();
    let (passages_per_sec, query_p50) = throughput(&model, &texts)?;
    let dir = MiniLm::default_dir();
    let candle = MiniLm::load_with(&dir, RuntimeChoice::Candle, &default_library(&dir, |k| std::env::var(k).ok()))?;
    let (candle_passages_per_sec, candle_query_p50) = throughput(&candle, &texts)?;
    drop(candle);
    let st = sentence_transformers(texts.len(), args.baseline_python.as_deref());
    let mut report = Report {
        runtime: model.runtime().as_str(),
        model_load_ms,
        passages_per_sec,
        query_embed_p50_ms: query_p50,
        candle_passages_per_sec,
        candle_query_embed_p50_ms: candle_query_p50,
        sentence_transformers_passages_per_sec: st.map(|(p, _)| p),
        sentence_transformers_query_p50_ms: st.map(|(_, q)| q),
        passages_vs_sentence_transformers: st.map(|(p, _)| passages_per_sec / p),
        query_vs_sentence_transformers: st.map(|(_, q)| q / query_p50),
        vectors: args.vectors,
        tenants: args.tenants,
        ann_p50_ms: None,
        ann_p99_ms: None,
        exact_p50_ms: None,
        recall_at_10: None,
        index_build_s: None,
        direct_sql_p50_ms: None,
        store_query_p50_ms: None,
        service_p50_ms: None,
        service_p99_ms: None,
        service_hybrid_p50_ms: None,
        service_hybrid_p99_ms: None,
        service_overhead: None,
        service_overhead_paired: None,
        service_overhead_vs_direct: None,
        http_floor_p50_ms: None,
        curves: Vec::new(),
    };
    if args.curves {
        let qdrant = if args.qdrant {
            let url =
                ["QDRANT_URL", "QDRANT_STUB_URL"].iter().find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()));
            Some(url.ok_or_else(|| anyhow::anyhow!("--qdrant needs QDRANT_URL or the stack's QDRANT_STUB_URL"))?)
        } else {
            None
        };
        let settings = crate::recall::CurveSettings {
            vectors: args.vectors,
            tenants: args.tenants,
            queries: args.queries,
            datasets: args.datasets.clone(),
            ef: args.ef.clone(),
            qdrant,
            m: args.hnsw_m,
            ef_construction: args.hnsw_ef_construction,
            pgvector: !args.no_pgvector,
        };
        report.curves = crate::recall::measure(&settings, &model).await?;
    } else if args.vectors > 0 {
        vectors(&args, &mut report).await?;
    }
    println!("model load: {:.0} ms", report.model_load_ms);
    println!(
        "embedding on {}: {:.1} passages/s (batch 32, ~40 tokens); one query {:.2} ms p50",
        report.runtime, report.passages_per_sec, report.query_embed_p50_ms
    );
    println!(
        "embedding on candle: {:.1} passages/s; one query {:.2} ms p50",
        report.candle_passages_per_sec, report.candle_query_embed_p50_ms
    );
    match (report.sentence_transformers_passages_per_sec, report.sentence_transformers_query_p50_ms) {
        (Some(p), Some(q)) => println!(
            "baseline: Python sentence-transformers (PyTorch CPU), same passages: {p:.1} passages/s, one query {q:.2} ms p50 -> {:.2} x its throughput, {:.2} x its query speed",
            report.passages_per_sec / p,
            q / report.query_embed_p50_ms
        ),
        _ => println!("baseline: Python sentence-transformers is not installed; no baseline this run"),
    }
    if let (Some(p50), Some(p99), Some(exact), Some(recall)) =
        (report.ann_p50_ms, report.ann_p99_ms, report.exact_p50_ms, report.recall_at_10)
    {
        println!(
            "vectors: {} in {} tenants (HNSW built in {:.0} s); HNSW with tenant filter p50 {p50:.2} ms, p99 {p99:.2} ms; exact scan p50 {exact:.2} ms; recall@10 {recall:.3}",
            report.vectors,
            report.tenants,
            report.index_build_s.unwrap_or(0.0)
        );
    }
    if let (Some(direct), Some(store), Some(p50), Some(p99), Some(overhead), Some(paired), Some(floor)) = (
        report.direct_sql_p50_ms,
        report.store_query_p50_ms,
        report.service_p50_ms,
        report.service_p99_ms,
        report.service_overhead,
        report.service_overhead_paired,
        report.http_floor_p50_ms,
    ) {
        println!(
            "service: semantic search over HTTP p50 {p50:.2} ms, p99 {p99:.2} ms; baseline: the service's own vector query called directly p50 {store:.2} ms (overhead {:.1} % of p50s, {:.1} % paired per query), a single-table bare query p50 {direct:.2} ms; an HTTP request answered without the database p50 {floor:.2} ms",
            overhead * 100.0,
            paired * 100.0
        );
    }
    if let (Some(p50), Some(p99)) = (report.service_hybrid_p50_ms, report.service_hybrid_p99_ms) {
        println!("service: hybrid search over HTTP p50 {p50:.2} ms, p99 {p99:.2} ms");
    }
    for c in &report.curves {
        for p in &c.points {
            println!(
                "curve {} {} ({} vectors, m {}, ef_construction {}, built in {:.0} s): ef {} recall@10 {:.3} p50 {:.2} ms p99 {:.2} ms",
                c.dataset,
                c.store,
                c.vectors,
                c.m,
                c.ef_construction,
                c.build_s,
                p.ef,
                p.recall_at_10,
                p.p50_ms,
                p.p99_ms
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Python sentence-transformers on the same passages and query, when `python` has it:
/// passages/s and one query's p50 in ms.
fn sentence_transformers(n: usize, python: Option<&std::path::Path>) -> Option<(f64, f64)> {
    let default = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
    let python = python.map(std::path::Path::to_path_buf).unwrap_or(default);
    let script = format!(
        "import time\nfrom sentence_transformers import SentenceTransformer\nm = SentenceTransformer('{}', device='cpu')\n\
         texts = [{}]\nm.encode(texts[:32], batch_size=32)\nt = time.time()\nm.encode(texts, batch_size=32)\n\
         rate = len(texts) / (time.time() - t)\nq = []\nfor _ in range(30):\n    t = time.time()\n    m.encode([{QUERY:?}])\n    q.append((time.time() - t) * 1000)\n\
         q.sort()\nprint(rate, q[15])",
        MiniLm::default_dir().display(),
        (0..n).map(|i| format!("{:?}", passage(i))).collect::<Vec<_>>().join(",")
    );
    // Through a file: the passages inline exceed the kernel's limit on one argument.
    let path = std::env::temp_dir().join(format!("fib-st-bench-{}.py", std::process::id()));
    std::fs::write(&path, script).ok()?;
    let out = std::process::Command::new(python).arg(&path).output();
    let _ = std::fs::remove_file(&path);
    let out = out.ok()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.contains("No module named 'sentence_transformers'") {
            eprintln!("sentence-transformers baseline failed: {}", stderr.lines().last().unwrap_or(""));
        }
        return None;
    }
    // The library prints progress lines of its own; the figures are the last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut figures = stdout.lines().last()?.split_whitespace().map(str::parse::<f64>);
    Some((figures.next()?.ok()?, figures.next()?.ok()?))
}

pub(crate) fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

async fn vectors(args: &SearchBench, report: &mut Report) -> anyhow::Result<()> {
    let db = crate::scratch(5).await?;
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
    // Bulk load first, then build the index once (what a data team does for a big import;
    // inserting row by row into the HNSW graph is several times slower).
    // The same index the service queries: the 384-dimension expression index.
    let dims = fibonacco_search::vectors::Dims::new(384).expect("an indexable size");
    sqlx::query(sqlx::AssertSqlSafe(format!("drop index {}", dims.index_name("knowledge_base"))))
        .execute(&db.pool)
        .await?;
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
    eprintln!("inserted in {:.1}s; building the HNSW index…", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut conn = db.pool.acquire().await?;
    sqlx::query("set maintenance_work_mem = '4GB'").execute(&mut *conn).await?;
    sqlx::query("set max_parallel_maintenance_workers = 1").execute(&mut *conn).await?;
    sqlx::query(sqlx::AssertSqlSafe(dims.create_index("knowledge_base"))).execute(&mut *conn).await?;
    drop(conn);
    report.index_build_s = Some(t.elapsed().as_secs_f64());
    // As autovacuum leaves a freshly loaded table: planner statistics, and the full-text
    // GIN index's own (VACUUM keeps them in its metapage; without them Postgres prices
    // the index as if it knew nothing, and keyword search reads the tenant's rows).
    sqlx::query("vacuum (analyze) knowledge_base").execute(&db.pool).await?;
    eprintln!("index built in {:.1}s", t.elapsed().as_secs_f64());

    let (mut ann, mut exact, mut recall) = (Vec::new(), Vec::new(), 0.0);
    for i in 0..args.queries {
        let tenant: TenantId = tenants[i % tenants.len()];
        let q = pgvector_literal(&near(&mut rng));
        let sql = crate::recall::bare_query(dims, "id");
        let mut tx = db::begin_tenant_with(&db.pool, tenant, QUERY_SETTINGS).await?;
        let t = Instant::now();
        let got: Vec<Uuid> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(&q).fetch_all(&mut *tx).await?;
        ann.push(t.elapsed().as_secs_f64() * 1000.0);
        sqlx::query("select set_config('enable_indexscan', 'off', true)").execute(&mut *tx).await?;
        let t = Instant::now();
        let truth: Vec<Uuid> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(&q).fetch_all(&mut *tx).await?;
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

    // The service against the bare query, same tenants and query vectors.
    let queries: Vec<Vec<f32>> = (0..args.queries).map(|_| near(&mut rng)).collect();
    let embedder = Arc::new(FixedVectors(queries.clone()));
    let tokens = Arc::new(fibonacco_platform::auth::TokenCache::new(std::time::Duration::from_secs(60), 1000));
    let store = Arc::new(fibonacco_search::store::pgvector::PgVector::new(db.pool.clone()));
    let svc = fibonacco_search::SearchService::new(db.pool.clone(), tokens, store, 100).with_embedder(embedder);
    // What a semantic request with include_public=false asks the store for.
    let filters = fibonacco_search::knowledge::Filters { include_public: false, ..Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/api/v1/search", listener.local_addr()?);
    // The hits' usage counts are written once a second: flushed before the scratch
    // database goes, so no late write fails (and logs) after the report.
    let usage = svc.usage.clone();
    tokio::spawn(fibonacco_search::service::serve(listener, svc, std::future::pending()));
    let mut tokens = Vec::new();
    for &tenant in &tenants {
        tokens.push(fibonacco_platform::auth::issue_token(&db.pool, tenant, "bench", &[], None).await?.plain_text);
    }
    let http = reqwest::Client::new();
    let (mut direct, mut through_store, mut service, mut hybrid) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut paired, mut floor) = (Vec::new(), Vec::new());
    for round in 0..2 {
        for (i, q) in queries.iter().enumerate() {
            let tenant = tenants[i % tenants.len()];
            // Each query runs five ways; which goes first rotates, so none of them always
            // finds the index pages this vector touches already cached by the others.
            let mut took = [0.0f64; 5];
            for k in 0..5 {
                let way = (i + k) % 5;
                let t = Instant::now();
                match way {
                    0 => {
                        let mut tx = db::begin_tenant_with(&db.pool, tenant, QUERY_SETTINGS).await?;
                        let _: Vec<(Uuid, String)> =
                            sqlx::query_as(sqlx::AssertSqlSafe(crate::recall::bare_query(dims, "id, title")))
                                .bind(tenant)
                                .bind(pgvector_literal(q))
                                .fetch_all(&mut *tx)
                                .await?;
                        tx.commit().await?;
                    }
                    1 => {
                        let mut tx = db::begin_tenant_with(&db.pool, tenant, QUERY_SETTINGS).await?;
                        let found = fibonacco_search::store::pgvector::nearest_hits_in(
                            &mut tx,
                            tenant,
                            q,
                            "synthetic",
                            &filters,
                            10,
                            fibonacco_search::store::pgvector::Columns::Shown,
                        )
                        .await?;
                        tx.commit().await?;
                        anyhow::ensure!(found.len() == 10, "the store found {} neighbours", found.len());
                    }
                    4 => {
                        let resp = http.get(format!("{base}?q=q{i}&mode=semantic&include_public=false")).send().await?;
                        anyhow::ensure!(resp.status() == 401, "an unauthenticated search answered {}", resp.status());
                        resp.bytes().await?;
                    }
                    _ => {
                        let mode = if way == 2 { "semantic" } else { "hybrid" };
                        let resp = http
                            .get(format!("{base}?q=q{i}&mode={mode}&include_public=false"))
                            .bearer_auth(&tokens[i % tokens.len()])
                            .send()
                            .await?;
                        anyhow::ensure!(resp.status().is_success(), "service answered {}", resp.status());
                        let body: serde_json::Value = resp.json().await?;
                        anyhow::ensure!(
                            body["data"]["hits"].as_array().is_some_and(|h| h.len() == 10),
                            "service: {body}"
                        );
                    }
                }
                took[way] = t.elapsed().as_secs_f64() * 1000.0;
            }
            // The first round warms caches and the token cache.
            if round == 1 {
                direct.push(took[0]);
                through_store.push(took[1]);
                service.push(took[2]);
                hybrid.push(took[3]);
                floor.push(took[4]);
                paired.push(took[2] / took[1]);
            }
        }
    }
    usage.flush().await;
    direct.sort_by(f64::total_cmp);
    through_store.sort_by(f64::total_cmp);
    service.sort_by(f64::total_cmp);
    hybrid.sort_by(f64::total_cmp);
    report.service_hybrid_p50_ms = Some(percentile(&hybrid, 0.5));
    report.service_hybrid_p99_ms = Some(percentile(&hybrid, 0.99));
    let (d50, q50, s50) = (percentile(&direct, 0.5), percentile(&through_store, 0.5), percentile(&service, 0.5));
    report.direct_sql_p50_ms = Some(d50);
    report.store_query_p50_ms = Some(q50);
    report.service_p50_ms = Some(s50);
    report.service_p99_ms = Some(percentile(&service, 0.99));
    report.service_overhead = Some(s50 / q50 - 1.0);
    report.service_overhead_vs_direct = Some(s50 / d50 - 1.0);
    paired.sort_by(f64::total_cmp);
    report.service_overhead_paired = Some(percentile(&paired, 0.5) - 1.0);
    floor.sort_by(f64::total_cmp);
    report.http_floor_p50_ms = Some(percentile(&floor, 0.5));
    Ok(())
}

/// A query "embedder" returning the bench's precomputed vector for `q{i}`, so both sides
/// of the overhead comparison search with the same vector and neither pays for a model.
struct FixedVectors(Vec<Vec<f32>>);

impl fibonacco_search::Embedder for FixedVectors {
    fn model(&self) -> &str {
        "synthetic"
    }

    fn dimensions(&self) -> usize {
        384
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> fibonacco_search::embed::EmbedFuture<'a> {
        Box::pin(async move {
            texts
                .iter()
                .map(|t| {
                    t.strip_prefix('q')
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| self.0.get(i).cloned())
                        .ok_or_else(|| {
                            fibonacco_search::EmbedError::BadInput(format!("the bench has no vector for `{t}`"))
                        })
                })
                .collect()
        })
    }
}
