//! `fibonacco bench search --curves`: recall@10 against exact search and query latency
//! as the search effort grows, for pgvector and for Qdrant side by side on the same
//! vectors, every query filtered by one of the tenants.
//!
//! Two data sets: `sentences` (real all-MiniLM-L6-v2 embeddings of varied generated
//! sentences, each stored vector a small perturbation of one of them, so neighbourhoods
//! look like real text; queries are embedded questions) and `clusters` (64 random centres
//! with uniform noise: the points of a cluster are nearly equidistant, the hard case).

use std::time::Instant;

use fibonacco_platform::{TenantId, db, domain::Slug, tenancy};
use fibonacco_search::{
    embed::{local::MiniLm, pgvector_literal},
    store::pgvector::QUERY_SETTINGS,
    vectors::Dims,
};
use qdrant_client::{
    Payload, Qdrant,
    qdrant::{
        Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, Distance, FieldType, Filter,
        HnswConfigDiffBuilder, KeywordIndexParamsBuilder, PointStruct, QueryPointsBuilder, SearchParamsBuilder,
        UpsertPointsBuilder, VectorParamsBuilder,
    },
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::search::{percentile, unit};
use serde::Serialize;
use uuid::Uuid;

pub struct CurveSettings {
    pub vectors: usize,
    pub tenants: usize,
    pub queries: usize,
    pub datasets: Vec<String>,
    pub ef: Vec<u64>,
    /// Qdrant's gRPC address, when Qdrant is measured too.
    pub qdrant: Option<String>,
    pub m: u64,
    pub ef_construction: u64,
    /// Build and measure pgvector's index (off: Qdrant alone, exact answers still from
    /// Postgres' full scan).
    pub pgvector: bool,
}

#[derive(Debug, Serialize)]
pub struct Curve {
    pub dataset: String,
    pub store: &'static str,
    pub vectors: usize,
    pub m: u64,
    pub ef_construction: u64,
    pub build_s: f64,
    pub exact_p50_ms: Option<f64>,
    pub points: Vec<CurvePoint>,
}

impl Curve {
    /// A curve without points yet, for `store` under the run's settings.
    fn new(dataset: &str, store: &'static str, s: &CurveSettings, build_s: f64, exact_p50_ms: Option<f64>) -> Self {
        Self {
            dataset: dataset.to_owned(),
            store,
            vectors: s.vectors,
            m: s.m,
            ef_construction: s.ef_construction,
            build_s,
            exact_p50_ms,
            points: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CurvePoint {
    pub ef: u64,
    pub recall_at_10: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The bench's nearest-ten query for one tenant over the 384-dimension index, selecting
/// `columns` (`$1` tenant, `$2` the vector literal).
pub(crate) fn bare_query(dims: Dims, columns: &str) -> String {
    format!(
        "select {columns} from knowledge_base where tenant_id = $1 and embedding_model = 'synthetic' and {}
         order by {} <=> $2{} limit 10",
        dims.predicate("embedding"),
        dims.expr("embedding"),
        dims.cast()
    )
}

/// A point of a curve from one effort's latencies (sorted here) and summed recall.
fn curve_point(label: &str, ef: u64, mut ms: Vec<f64>, recall_sum: f64, queries: usize) -> CurvePoint {
    ms.sort_by(f64::total_cmp);
    let point = CurvePoint {
        ef,
        recall_at_10: recall_sum / queries.max(1) as f64,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
    };
    eprintln!(
        "{label} ef {ef}: recall {:.3}, p50 {:.2} ms, p99 {:.2} ms",
        point.recall_at_10, point.p50_ms, point.p99_ms
    );
    point
}

/// Builds pgvector's HNSW index after the bulk load, as a data team would: seconds taken.
async fn build_index(pool: &sqlx::PgPool, dims: Dims, s: &CurveSettings) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut conn = pool.acquire().await?;
    sqlx::query("set maintenance_work_mem = '4GB'").execute(&mut *conn).await?;
    sqlx::query("set max_parallel_maintenance_workers = 1").execute(&mut *conn).await?;
    let index = dims.create_index("knowledge_base").replacen(
        " where ",
        &format!(" with (m = {}, ef_construction = {}) where ", s.m, s.ef_construction),
        1,
    );
    sqlx::query(sqlx::AssertSqlSafe(index)).execute(&mut *conn).await?;
    Ok(t.elapsed().as_secs_f64())
}

/// A standard normal sample (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
}

const SUBJECTS: &[&str] = &[
    "our salon",
    "the bike workshop",
    "the bakery",
    "your dentist",
    "the plumber",
    "our accountant",
    "the gym",
    "the restaurant",
    "the florist",
    "IT support",
    "the garage",
    "the pet groomer",
    "the yoga studio",
    "the hotel",
    "the pharmacy",
    "the bookshop",
    "the tailor",
    "the cleaning service",
    "the driving school",
    "the photographer",
    "the wedding planner",
    "the language school",
    "the print shop",
    "the electrician",
];
const ACTIONS: &[&str] = &[
    "offers",
    "cancels",
    "reschedules",
    "refunds",
    "delivers",
    "repairs",
    "books",
    "charges for",
    "recommends",
    "discounts",
    "includes",
    "guarantees",
    "checks",
    "replaces",
    "prepares",
    "installs",
    "cleans",
    "measures",
    "ships",
    "explains",
];
const OBJECTS: &[&str] = &[
    "haircuts",
    "flat tyres",
    "birthday cakes",
    "teeth whitening",
    "leaking pipes",
    "tax returns",
    "personal training",
    "table reservations",
    "wedding bouquets",
    "laptop repairs",
    "oil changes",
    "dog baths",
    "evening classes",
    "room upgrades",
    "prescriptions",
    "signed copies",
    "suit alterations",
    "deep cleans",
    "driving lessons",
    "family portraits",
    "venue visits",
    "exam courses",
    "business cards",
    "fuse boxes",
    "gift vouchers",
    "loyalty points",
    "late arrivals",
    "parking spaces",
    "invoices",
    "online bookings",
];
const DETAILS: &[&str] = &[
    "on weekends",
    "within 24 hours",
    "for new customers",
    "at no extra cost",
    "after a consultation",
    "by appointment only",
    "in the evening",
    "with a deposit",
    "for groups",
    "during the holidays",
    "for students",
    "with a written quote",
    "the same day",
    "for regular clients",
    "on public holidays",
    "before nine",
    "with free delivery",
    "for a small fee",
    "every month",
    "when it rains",
];

/// The `i`-th generated sentence; `i` is spread over all combinations so neighbours differ
/// in more than their last word.
fn sentence(i: usize) -> String {
    let total = SUBJECTS.len() * ACTIONS.len() * OBJECTS.len() * DETAILS.len();
    let k = (i.wrapping_mul(104_729) + 17) % total;
    let (s, rest) = (k % SUBJECTS.len(), k / SUBJECTS.len());
    let (a, rest) = (rest % ACTIONS.len(), rest / ACTIONS.len());
    let (o, d) = (rest % OBJECTS.len(), rest / OBJECTS.len());
    format!("{} {} {} {}.", SUBJECTS[s], ACTIONS[a], OBJECTS[o], DETAILS[d % DETAILS.len()])
}

fn question(i: usize) -> String {
    let k = i.wrapping_mul(7_919) + 3;
    format!(
        "Does {} handle {} {}?",
        SUBJECTS[k % SUBJECTS.len()],
        OBJECTS[(k / 7) % OBJECTS.len()],
        DETAILS[(k / 13) % DETAILS.len()]
    )
}

/// Where a data set's vectors come from.
enum Source {
    Sentences { bases: Vec<Vec<f32>>, noise: f32 },
    Clusters { centres: Vec<Vec<f32>> },
}

impl Source {
    fn vector(&self, rng: &mut StdRng) -> Vec<f32> {
        let mut v: Vec<f32> = match self {
            Self::Sentences { bases, noise } => {
                bases[rng.random_range(0..bases.len())].iter().map(|x| x + noise * gaussian(rng)).collect()
            }
            Self::Clusters { centres } => {
                let c = &centres[rng.random_range(0..centres.len())];
                c.iter().map(|x| x + (rng.random::<f32>() - 0.5) * 0.15).collect()
            }
        };
        unit(&mut v);
        v
    }
}

async fn source(
    name: &str,
    model: &MiniLm,
    vectors: usize,
    queries: usize,
    rng: &mut StdRng,
) -> anyhow::Result<(Source, Vec<Vec<f32>>)> {
    match name {
        "sentences" => {
            let texts: Vec<String> = (0..vectors.clamp(1, 20_000)).map(sentence).collect();
            eprintln!("embedding {} sentences for the data set…", texts.len());
            let mut bases = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(256) {
                bases.extend(model.embed_blocking(chunk)?);
            }
            let asked: Vec<String> = (0..queries).map(question).collect();
            // σ 0.025 per dimension: a stored vector keeps a cosine of about 0.9 with its
            // sentence, as paraphrases of one sentence do.
            Ok((Source::Sentences { bases, noise: 0.025 }, model.embed_blocking(&asked)?))
        }
        "clusters" => {
            let centres: Vec<Vec<f32>> = (0..64)
                .map(|_| {
                    let mut c: Vec<f32> = (0..384).map(|_| rng.random::<f32>() - 0.5).collect();
                    unit(&mut c);
                    c
                })
                .collect();
            let source = Source::Clusters { centres };
            let queries = (0..queries).map(|_| source.vector(rng)).collect();
            Ok((source, queries))
        }
        other => anyhow::bail!("unknown data set `{other}` (sentences or clusters)"),
    }
}

#[tracing::instrument(name = "bench.search.curves", skip_all)]
pub async fn measure(s: &CurveSettings, model: &MiniLm) -> anyhow::Result<Vec<Curve>> {
    let mut curves = Vec::new();
    for dataset in &s.datasets {
        let mut rng = StdRng::seed_from_u64(11);
        let (source, queries) = source(dataset, model, s.vectors, s.queries, &mut rng).await?;
        let db = crate::scratch(5).await?;
        let mut tenants = Vec::new();
        for i in 0..s.tenants.max(1) {
            tenants.push(tenancy::create(&db.pool, &format!("T{i}"), &Slug::parse(&format!("t{i}"))?).await?.id);
        }
        let qdrant = match &s.qdrant {
            Some(url) => Some(
                Qdrant::from_url(url)
                    .timeout(std::time::Duration::from_secs(600))
                    .skip_compatibility_check()
                    .build()?,
            ),
            None => None,
        };
        let collection = format!("fibbench_{dataset}_{}", Uuid::now_v7().simple());
        if let Some(q) = &qdrant {
            let hnsw = HnswConfigDiffBuilder::default().m(s.m).ef_construct(s.ef_construction);
            q.create_collection(
                CreateCollectionBuilder::new(&collection)
                    .vectors_config(VectorParamsBuilder::new(384, Distance::Cosine))
                    .hnsw_config(hnsw),
            )
            .await?;
            q.create_field_index(
                CreateFieldIndexCollectionBuilder::new(&collection, "tenant_id", FieldType::Keyword)
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                    .wait(true),
            )
            .await?;
        }
        let dims = Dims::new(384).expect("an indexable size");
        sqlx::query(sqlx::AssertSqlSafe(format!("drop index {}", dims.index_name("knowledge_base"))))
            .execute(&db.pool)
            .await?;
        eprintln!("{dataset}: inserting {} vectors in {} tenants…", s.vectors, tenants.len());
        let t = Instant::now();
        let per_tenant = s.vectors / tenants.len();
        let mut qdrant_load_s = 0.0;
        for &tenant in &tenants {
            let mut done = 0;
            while done < per_tenant {
                let n = (per_tenant - done).min(1000);
                let batch: Vec<(Uuid, Vec<f32>)> = (0..n).map(|_| (Uuid::now_v7(), source.vector(&mut rng))).collect();
                let mut tx = db::begin_tenant(&db.pool, tenant).await?;
                sqlx::query(
                    "insert into knowledge_base (id, tenant_id, title, content, embedding, embedding_model, embedding_status)
                     select i, $1, 'entry', 'synthetic', v::vector, 'synthetic', 'completed'
                     from unnest($2::uuid[], $3::text[]) as t(i, v)",
                )
                .bind(tenant)
                .bind(batch.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .bind(batch.iter().map(|(_, v)| pgvector_literal(v)).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                if let Some(q) = &qdrant {
                    let t = Instant::now();
                    let points: Vec<PointStruct> = batch
                        .into_iter()
                        .map(|(id, v)| {
                            let mut payload = Payload::new();
                            payload.insert("tenant_id", tenant.to_string());
                            PointStruct::new(id.to_string(), v, payload)
                        })
                        .collect();
                    q.upsert_points(UpsertPointsBuilder::new(&collection, points).wait(true)).await?;
                    qdrant_load_s += t.elapsed().as_secs_f64();
                }
                done += n;
            }
        }
        eprintln!(
            "{dataset}: inserted in {:.1}s (Qdrant upserts {qdrant_load_s:.1}s of it)",
            t.elapsed().as_secs_f64()
        );
        let pg_build_s = if s.pgvector { build_index(&db.pool, dims, s).await? } else { 0.0 };
        sqlx::query("analyze knowledge_base").execute(&db.pool).await?;
        eprintln!("{dataset}: pgvector HNSW built in {pg_build_s:.1}s");

        // Exact answers once per query: the tenant's rows scanned in full.
        let sql = bare_query(dims, "id");
        let (mut truth, mut exact_ms) = (Vec::new(), Vec::new());
        for (i, q) in queries.iter().enumerate() {
            let tenant: TenantId = tenants[i % tenants.len()];
            let mut tx = db::begin_tenant_with(&db.pool, tenant, QUERY_SETTINGS).await?;
            sqlx::query("select set_config('enable_indexscan', 'off', true)").execute(&mut *tx).await?;
            let t = Instant::now();
            let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(pgvector_literal(q))
                .fetch_all(&mut *tx)
                .await?;
            exact_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            tx.commit().await?;
            truth.push(ids);
        }
        exact_ms.sort_by(f64::total_cmp);
        let recall = |got: &[Uuid], want: &[Uuid]| {
            got.iter().filter(|id| want.contains(id)).count() as f64 / want.len().max(1) as f64
        };

        if s.pgvector {
            let mut pg = Curve::new(dataset, "pgvector", s, pg_build_s, Some(percentile(&exact_ms, 0.5)));
            for &ef in &s.ef {
                let (mut ms, mut total) = (Vec::new(), 0.0);
                for (i, q) in queries.iter().enumerate() {
                    let tenant = tenants[i % tenants.len()];
                    let mut tx = db::begin_tenant_with(&db.pool, tenant, QUERY_SETTINGS).await?;
                    sqlx::query("select set_config('hnsw.ef_search', $1, true)")
                        .bind(ef.to_string())
                        .execute(&mut *tx)
                        .await?;
                    let t = Instant::now();
                    let got: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(tenant)
                        .bind(pgvector_literal(q))
                        .fetch_all(&mut *tx)
                        .await?;
                    ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    tx.commit().await?;
                    total += recall(&got, &truth[i]);
                }
                pg.points.push(curve_point(&format!("{dataset} pgvector"), ef, ms, total, queries.len()));
            }
            curves.push(pg);
        }

        if let Some(q) = &qdrant {
            // Qdrant indexes in the background: its build time is from the last upsert
            // until its optimizers are done (status green). A last segment under the
            // indexing threshold (10 MB) stays unindexed and is scanned, as on a server.
            let t = Instant::now();
            loop {
                let info = q.collection_info(&collection).await?.result.unwrap_or_default();
                let green = info.status == qdrant_client::qdrant::CollectionStatus::Green as i32;
                if green && info.points_count() as usize >= per_tenant * tenants.len() {
                    eprintln!(
                        "{dataset}: Qdrant holds {} points, {} of them in HNSW graphs, in {} segments",
                        info.points_count(),
                        info.indexed_vectors_count(),
                        info.segments_count
                    );
                    break;
                }
                anyhow::ensure!(t.elapsed().as_secs() < 7200, "Qdrant did not finish indexing in two hours");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let mut qd = Curve::new(dataset, "qdrant", s, t.elapsed().as_secs_f64() + qdrant_load_s, None);
            eprintln!("{dataset}: Qdrant indexed {:.1}s after the last upsert", t.elapsed().as_secs_f64());
            for &ef in &s.ef {
                let (mut ms, mut total) = (Vec::new(), 0.0);
                for (i, v) in queries.iter().enumerate() {
                    let tenant = tenants[i % tenants.len()];
                    let t = Instant::now();
                    let found = q
                        .query(
                            QueryPointsBuilder::new(&collection)
                                .query(v.clone())
                                .filter(Filter::must([Condition::matches("tenant_id", tenant.to_string())]))
                                .limit(10)
                                .params(SearchParamsBuilder::default().hnsw_ef(ef)),
                        )
                        .await?;
                    ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    let got: Vec<Uuid> = found
                        .result
                        .iter()
                        .filter_map(|p| match p.id.as_ref()?.point_id_options.as_ref()? {
                            qdrant_client::qdrant::point_id::PointIdOptions::Uuid(u) => Uuid::parse_str(u).ok(),
                            _ => None,
                        })
                        .collect();
                    total += recall(&got, &truth[i]);
                }
                qd.points.push(curve_point(&format!("{dataset} qdrant"), ef, ms, total, queries.len()));
            }
            q.delete_collection(&collection).await?;
            curves.push(qd);
        }
    }
    Ok(curves)
}
