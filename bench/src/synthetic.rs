//! `fibonacco seed --customers N`: synthetic tenants with months of realistic activity,
//! written with `COPY` through the normal tables, so the change data capture sees them
//! like any other write.
//!
//! Every customer has a hidden propensity that drifts over the window: the same curve
//! drives how often they visit, read, open and click and how often they buy, so a model
//! that only sees behaviour before a cut-off has real signal about purchases after it.
//! Everything comes from one seeded RNG and the `--end` date: the same arguments give the
//! same rows, ids included.

use std::{collections::BTreeMap, fmt::Write as _};

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use fibonacco_delivery::ses_events::{BounceKind, EventKind, Milestones, SesEvent, Suppress};
use fibonacco_platform::{auth, tenancy};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::PgPool;
use uuid::Uuid;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    pub customers: u64,
    pub tenants: u32,
    pub days: u32,
    pub seed: u64,
    /// The last day of the window (exclusive end at its midnight, UTC).
    pub end: NaiveDate,
}

impl Plan {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.customers >= 1, "--customers must be at least 1");
        anyhow::ensure!(self.customers <= 50_000_000, "--customers above 50,000,000 is not supported");
        anyhow::ensure!(self.tenants >= 1 && self.tenants <= 1000, "--tenants must be between 1 and 1000");
        anyhow::ensure!(self.tenants as u64 <= self.customers, "--tenants must not exceed --customers");
        anyhow::ensure!(self.days >= 7 && self.days <= 3650, "--days must be between 7 and 3650");
        Ok(())
    }

    fn start(&self) -> DateTime<Utc> {
        self.end.and_hms_opt(0, 0, 0).expect("midnight").and_utc() - Duration::days(self.days as i64)
    }
}

/// What was written.
#[derive(Debug, Default)]
pub struct Summary {
    pub tenants: Vec<(Uuid, String)>,
    pub rows: BTreeMap<&'static str, u64>,
    /// A token with every ability for the first tenant.
    pub token: String,
}

impl Summary {
    pub fn describe(&self) -> String {
        let rows: Vec<String> = self.rows.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        let slugs: Vec<&str> = self.tenants.iter().map(|(_, s)| s.as_str()).collect();
        format!("seeded tenants {} ({})", slugs.join(", "), rows.join(", "))
    }

    pub fn events(&self) -> u64 {
        ["customer_activities", "outbound_campaign_recipients", "crm_conversation_messages", "orders"]
            .iter()
            .map(|t| self.rows.get(t).copied().unwrap_or(0))
            .sum()
    }
}

const SERVICE_CATEGORIES: &[&str] = &["Consulting", "Maintenance", "Training", "Software"];
const SERVICES: &[(&str, usize, i64)] = &[
    ("Strategy session", 0, 15_000),
    ("Growth plan", 0, 49_900),
    ("Monthly care plan", 1, 9_900),
    ("Emergency call-out", 1, 24_900),
    ("Team workshop", 2, 79_900),
    ("Online course", 2, 19_900),
    ("Booking software", 3, 4_900),
    ("Website package", 3, 129_900),
];
const KNOWLEDGE_CATEGORIES: &[&str] = &["billing", "booking", "general", "services", "account", "privacy"];
const ARTICLE_CATEGORIES: &[&str] = &["guides", "news", "case-studies", "tips"];
const KNOWLEDGE_PER_TENANT: usize = 24;
const ARTICLES_PER_TENANT: usize = 8;
/// Customers generated and written per transaction.
const CHUNK: u64 = 5_000;
/// Transactions writing chunks at once while the next chunk is generated: generation is
/// one core's work and Postgres' per-row work (foreign keys, indexes) another's.
const WRITERS: usize = 2;

/// Writes the plan's tenants and rows; refuses when a tenant of the same seed exists.
#[tracing::instrument(skip_all, fields(customers = plan.customers, tenants = plan.tenants, days = plan.days))]
pub async fn seed(pool: &PgPool, plan: &Plan, progress: bool) -> anyhow::Result<Summary> {
    plan.check()?;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut summary = Summary::default();
    let bar = if progress { ProgressBar::new(plan.customers) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("seeding {bar:40} {pos}/{len} customers {per_sec} eta {eta}")
            .expect("static template"),
    );
    let per_tenant = plan.customers / plan.tenants as u64;
    // Chunks go to WRITERS tasks through a short queue; the data is the same whatever
    // order they land in (ids are generated here, every chunk carries its own rows).
    let (chunks, queue) = tokio::sync::mpsc::channel::<Rows>(WRITERS);
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(queue));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (queue, pool) = (queue.clone(), pool.clone());
        writers.spawn(async move {
            let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
            loop {
                let next = queue.lock().await.recv().await;
                let Some(rows) = next else { break };
                for (table, n) in rows.write(&pool).await? {
                    *counts.entry(table).or_default() += n;
                }
            }
            anyhow::Ok(counts)
        });
    }
    'tenants: for t in 0..plan.tenants {
        let slug = format!("seed-{}-{}", plan.seed, t + 1);
        let exists: bool = sqlx::query_scalar("select exists (select 1 from tenants where slug = $1)")
            .bind(&slug)
            .fetch_one(pool)
            .await?;
        anyhow::ensure!(
            !exists,
            "tenant `{slug}` exists already: this seed was written before (drop it with `fibonacco tenant` tools or use another --seed)"
        );
        let customers = if t == 0 { per_tenant + plan.customers % plan.tenants as u64 } else { per_tenant };
        let tenant = TenantGen::new(&mut rng, plan, slug.clone(), customers);
        tenant.write_catalog(pool, &mut summary).await?;
        let mut done = 0;
        while done < customers {
            let n = CHUNK.min(customers - done);
            let mut rows = Rows::default();
            for i in done..done + n {
                tenant.customer(&mut rng, i, &mut rows);
            }
            if chunks.send(rows).await.is_err() {
                // Every writer stopped: one failed, its error is reported below.
                break 'tenants;
            }
            done += n;
            bar.inc(n);
        }
        summary.tenants.push((tenant.id, slug));
    }
    drop(chunks);
    while let Some(written) = writers.join_next().await {
        for (table, n) in written?? {
            *summary.rows.entry(table).or_default() += n;
        }
    }
    bar.finish_and_clear();
    let first = summary.tenants[0].0;
    summary.token = auth::issue_token(pool, tenancy::TenantId::from_uuid(first), "seed", &[], None).await?.plain_text;
    Ok(summary)
}

/// Rows of one chunk, as COPY text per table, in foreign-key order.
#[derive(Default)]
struct Rows {
    customers: String,
    conversations: String,
    messages: String,
    recipients: String,
    activities: String,
    orders: String,
    votes: String,
    suppressions: String,
    counts: BTreeMap<&'static str, u64>,
}

impl Rows {
    fn add(&mut self, table: &'static str) {
        *self.counts.entry(table).or_default() += 1;
    }

    /// Writes the chunk in one transaction; returns the rows written per table.
    async fn write(self, pool: &PgPool) -> anyhow::Result<BTreeMap<&'static str, u64>> {
        let mut tx = pool.begin().await?;
        sqlx::query("set local app.bypass_rls = 'on'").execute(&mut *tx).await?;
        for (table, columns, data) in [
            (
                "crm_customers",
                "id, tenant_id, name, slug, email, business_context, created_at, updated_at",
                self.customers,
            ),
            (
                "crm_conversations",
                "id, tenant_id, customer_id, channel, status, created_at, updated_at, ended_at",
                self.conversations,
            ),
            ("crm_conversation_messages", "id, tenant_id, conversation_id, role, content, created_at", self.messages),
            (
                "outbound_campaign_recipients",
                "id, tenant_id, campaign_id, customer_id, status, attempts, queued_at, sent_at, delivered_at, opened_at, clicked_at, replied_at, bounced_at, complained_at, error, created_at, updated_at",
                self.recipients,
            ),
            (
                "customer_activities",
                "id, tenant_id, customer_id, activity_type, channel, subject_type, subject_id, campaign_id, value_minor, currency, occurred_at, created_at",
                self.activities,
            ),
            (
                "orders",
                "id, tenant_id, customer_id, service_id, campaign_id, order_number, status, amount_minor, currency, quantity, paid_at, refunded_at, created_at, updated_at",
                self.orders,
            ),
            ("knowledge_votes", "id, tenant_id, knowledge_id, voter_key, helpful, created_at, updated_at", self.votes),
            ("outbound_suppressions", "id, tenant_id, channel, target, reason, created_at", self.suppressions),
        ] {
            if data.is_empty() {
                continue;
            }
            copy(&mut tx, table, columns, data).await?;
        }
        tx.commit().await?;
        Ok(self.counts)
    }
}

/// `COPY` into a staging copy of `table`, then one `INSERT … SELECT`: Postgres refuses
/// `COPY FROM` into a table with row-level security.
#[tracing::instrument(skip(conn, columns, data), fields(bytes = data.len()))]
async fn copy(conn: &mut sqlx::PgConnection, table: &str, columns: &str, data: String) -> anyhow::Result<()> {
    let stage = format!("seed_{table}");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "create temp table if not exists {stage} (like {table} including defaults) on commit delete rows"
    )))
    .execute(&mut *conn)
    .await?;
    let mut sink = conn.copy_in_raw(&format!("copy {stage} ({columns}) from stdin")).await?;
    sink.send(data.into_bytes()).await?;
    sink.finish().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("insert into {table} ({columns}) select {columns} from {stage}")))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn line(out: &mut String, values: &[Option<&str>]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        fibonacco_platform::db::copy_field(out, *v);
    }
    out.push('\n');
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// A v7 id whose time part is the row's own time, random bits from the seeded RNG.
fn id_at(rng: &mut StdRng, t: DateTime<Utc>) -> Uuid {
    let bytes: [u8; 10] = rng.random();
    uuid::Builder::from_unix_timestamp_millis(t.timestamp_millis().max(0) as u64, &bytes).into_uuid()
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box-Muller; one of the pair is enough here.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as u32;
    }
    // Knuth: multiply uniforms until the product drops below e^-λ.
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// FNV-1a: a hash that stays the same across Rust versions (the hidden best hours must).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The hour of the day (UTC: the synthetic customers have no time zone) at which a
/// customer responds best. Hidden from the platform, which must learn it from sends and
/// responses; `bench send-time` checks what it learned against it. Six customers in ten
/// keep near their business's peak (10:00, 13:00 or 19:00, by tenant; an hour either
/// side), the rest anywhere between 07:00 and 22:00.
pub fn best_hour(tenant: &Uuid, customer: &str) -> u32 {
    let h = fnv(customer);
    let peak = [10, 13, 19][(fnv(&tenant.to_string()) % 3) as usize];
    if h % 10 < 6 { (peak + 23 + ((h / 10) % 3) as u32) % 24 } else { 7 + ((h / 10) % 16) as u32 }
}

/// How much likelier a response is to a message sent at `hour` than on average, for a
/// customer whose best hour is `best`: 1.54 at the best hour, 1.30 an hour off, 0.94 far
/// from it (mean over the day about 1.0, so the overall response rates stay as they were).
pub fn timing_factor(best: u32, hour: u32) -> f64 {
    let d = (best as i32 - hour as i32).rem_euclid(24);
    let d = f64::from(d.min(24 - d));
    0.94 + 0.6 * (-d * d / 2.0).exp()
}

/// The user agent of the people in the synthetic data (a mail client, never a scanner).
const PERSON_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15";

struct Campaign {
    id: Uuid,
    channel: &'static str,
    /// Days after the window start when sending began.
    day: f64,
}

struct Service {
    id: Uuid,
    price: i64,
}

/// One tenant's fixed parts (catalog, content, campaigns) and its customer generator.
struct TenantGen {
    id: Uuid,
    slug: String,
    start: DateTime<Utc>,
    days: f64,
    categories: Vec<(Uuid, &'static str)>,
    services: Vec<Service>,
    knowledge: Vec<(Uuid, &'static str)>,
    articles: Vec<(Uuid, &'static str)>,
    campaigns: Vec<Campaign>,
    /// Chance that a given customer receives a given campaign.
    reach: f64,
}

impl TenantGen {
    fn new(rng: &mut StdRng, plan: &Plan, slug: String, customers: u64) -> Self {
        let start = plan.start();
        let at = start - Duration::days(90);
        let id = id_at(rng, at);
        let categories = SERVICE_CATEGORIES.iter().map(|c| (id_at(rng, at), *c)).collect::<Vec<_>>();
        let services = SERVICES.iter().map(|(_, _, price)| Service { id: id_at(rng, at), price: *price }).collect();
        let knowledge = (0..KNOWLEDGE_PER_TENANT)
            .map(|i| (id_at(rng, at), KNOWLEDGE_CATEGORIES[i % KNOWLEDGE_CATEGORIES.len()]))
            .collect();
        let articles = (0..ARTICLES_PER_TENANT)
            .map(|i| (id_at(rng, at), ARTICLE_CATEGORIES[i % ARTICLE_CATEGORIES.len()]))
            .collect();
        // About one campaign per 5,000 customers, between 4 and 40, spread over the window.
        let n = (customers / 5_000).clamp(4, 40) as usize;
        let campaigns = (0..n)
            .map(|k| {
                // Each campaign starts at another hour (7 hours apart), so its 12-hour
                // send window and the others' cover every hour of the day: send-time
                // optimisation has every hour to learn from.
                let day = (plan.days as f64 * (k as f64 + 0.5) / n as f64 + ((k * 7) % 24) as f64 / 24.0)
                    .min(plan.days as f64 - 0.5);
                let channel = ["email", "email", "sms", "phone"][k % 4];
                Campaign { id: id_at(rng, start + Duration::seconds((day * 86_400.0) as i64)), channel, day }
            })
            .collect();
        TenantGen {
            id,
            slug,
            start,
            days: plan.days as f64,
            categories,
            services,
            knowledge,
            articles,
            campaigns,
            // Each customer gets about four campaigns over the window.
            reach: (4.0 / n as f64).min(1.0),
        }
    }

    fn at(&self, day: f64) -> DateTime<Utc> {
        self.start + Duration::milliseconds((day * 86_400_000.0) as i64)
    }

    #[tracing::instrument(skip_all, fields(tenant = %self.slug))]
    async fn write_catalog(&self, pool: &PgPool, summary: &mut Summary) -> anyhow::Result<()> {
        let mut tx = pool.begin().await?;
        sqlx::query("set local app.bypass_rls = 'on'").execute(&mut *tx).await?;
        let created = self.start - Duration::days(90);
        sqlx::query("insert into tenants (id, name, slug, created_at) values ($1, $2, $3, $4)")
            .bind(self.id)
            .bind(format!("Seeded business {}", self.slug))
            .bind(&self.slug)
            .bind(created)
            .execute(&mut *tx)
            .await?;
        for (id, name) in &self.categories {
            sqlx::query(
                "insert into service_categories (id, tenant_id, name, slug, created_at) values ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(self.id)
            .bind(name)
            .bind(name.to_lowercase())
            .bind(created)
            .execute(&mut *tx)
            .await?;
        }
        for (service, (name, category, _)) in self.services.iter().zip(SERVICES) {
            sqlx::query(
                "insert into services (id, tenant_id, category_id, name, slug, price_minor, created_at)
                 values ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(service.id)
            .bind(self.id)
            .bind(self.categories[*category].0)
            .bind(name)
            .bind(name.to_lowercase().replace(' ', "-"))
            .bind(service.price)
            .bind(created)
            .execute(&mut *tx)
            .await?;
        }
        for (i, (id, category)) in self.knowledge.iter().enumerate() {
            sqlx::query(
                "insert into knowledge_base (id, tenant_id, title, content, category, source, validation_status, created_at)
                 values ($1, $2, $3, $4, $5, 'manual', 'validated', $6)",
            )
            .bind(id)
            .bind(self.id)
            .bind(format!("Question {} about {category}", i + 1))
            .bind(format!("The answer to question {} about {category}.", i + 1))
            .bind(category)
            .bind(created)
            .execute(&mut *tx)
            .await?;
        }
        for (i, (id, category)) in self.articles.iter().enumerate() {
            sqlx::query(
                "insert into articles (id, tenant_id, slug, title, body, category, status, published_at, created_at)
                 values ($1, $2, $3, $4, $5, $6, 'published', $7, $7)",
            )
            .bind(id)
            .bind(self.id)
            .bind(format!("article-{}", i + 1))
            .bind(format!("Article {} in {category}", i + 1))
            .bind("Body text.")
            .bind(category)
            .bind(created)
            .execute(&mut *tx)
            .await?;
        }
        for (k, c) in self.campaigns.iter().enumerate() {
            let fixed: i64 = match c.channel {
                "email" => 5_000,
                "sms" => 10_000,
                _ => 25_000,
            };
            sqlx::query(
                "insert into outbound_campaigns (id, tenant_id, name, type, status, started_at, completed_at, fixed_cost_minor, created_at)
                 values ($1, $2, $3, $4, 'completed', $5, $6, $7, $5)",
            )
            .bind(c.id)
            .bind(self.id)
            .bind(format!("{} campaign {}", c.channel, k + 1))
            .bind(c.channel)
            .bind(self.at(c.day))
            .bind(self.at(c.day + 1.0))
            .bind(fixed)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for (table, n) in [
            ("tenants", 1),
            ("service_categories", self.categories.len()),
            ("services", self.services.len()),
            ("knowledge_base", self.knowledge.len()),
            ("articles", self.articles.len()),
            ("outbound_campaigns", self.campaigns.len()),
        ] {
            *summary.rows.entry(table).or_default() += n as u64;
        }
        Ok(())
    }

    /// One customer and everything they did.
    fn customer(&self, rng: &mut StdRng, n: u64, rows: &mut Rows) {
        let tenant = self.id.to_string();
        let born = rng.random_range(-60.0..self.days * 0.9);
        let created = self.at(born);
        let id = id_at(rng, created);
        let cid = id.to_string();
        let best = best_hour(&self.id, &cid);
        // Hidden propensity: a level and a drift over the window.
        let level = -1.2 + 1.1 * normal(rng);
        let drift = 1.3 * normal(rng);
        let days = self.days;
        let p = |t: f64| sigmoid(level + drift * (t / days - 0.5));
        let industry = ["retail", "food", "health", "trades", "fitness", "legal"][(n % 6) as usize];
        let email = format!("c{}@{}.example", n + 1, self.slug);
        // Why this address is no longer mailed, once SES said so.
        let mut suppressed: Option<&'static str> = None;
        line(
            &mut rows.customers,
            &[
                Some(&cid),
                Some(&tenant),
                Some(&format!("Customer {} of {}", n + 1, self.slug)),
                Some(&format!("customer-{}", n + 1)),
                Some(&email),
                Some(&format!("{{\"industry\": \"{industry}\"}}")),
                Some(&ts(created)),
                Some(&ts(created)),
            ],
        );
        rows.add("crm_customers");
        let first = born.max(0.0);
        let span = days - first;

        // Self-directed activity: candidates at 0.15/day, each kept with the propensity
        // at its time (thinning), so busy periods follow the drift.
        let mut voted = std::collections::HashSet::new();
        for _ in 0..poisson(rng, 0.15 * span) {
            let t = first + rng.random::<f64>() * span;
            if rng.random::<f64>() > p(t) {
                continue;
            }
            let roll: f64 = rng.random();
            let (kind, channel, subject): (&str, &str, Option<(&str, Uuid)>) = if roll < 0.40 {
                ("page_view", "web", None)
            } else if roll < 0.58 {
                let a = self.articles[rng.random_range(0..self.articles.len())].0;
                ("article_read", "web", Some(("article", a)))
            } else if roll < 0.70 {
                let k = self.knowledge[rng.random_range(0..self.knowledge.len())].0;
                ("faq_read", "web", Some(("knowledge", k)))
            } else if roll < 0.82 {
                let k = self.knowledge[rng.random_range(0..self.knowledge.len())].0;
                ("knowledge_view", "web", Some(("knowledge", k)))
            } else if roll < 0.90 {
                ("presentation_view", "web", None)
            } else if roll < 0.96 {
                ("survey_response", "survey", None)
            } else {
                ("sales_contact", "web", None)
            };
            let at = self.at(t);
            self.activity(rng, rows, &cid, kind, channel, subject, None, None, at);
            if let Some(("knowledge", k)) = subject
                && rng.random::<f64>() < 0.2
                && voted.insert(k)
            {
                let helpful = rng.random::<f64>() < 0.5 + 0.4 * p(t);
                let vid = id_at(rng, at).to_string();
                line(
                    &mut rows.votes,
                    &[
                        Some(&vid),
                        Some(&tenant),
                        Some(&k.to_string()),
                        Some(&cid),
                        Some(if helpful { "t" } else { "f" }),
                        Some(&ts(at)),
                        Some(&ts(at)),
                    ],
                );
                rows.add("knowledge_votes");
            }
        }

        // Conversations: more for engaged customers.
        for _ in 0..poisson(rng, 0.02 * span * p(days / 2.0) + 0.1) {
            let t = first + rng.random::<f64>() * span;
            let at = self.at(t);
            let conv = id_at(rng, at).to_string();
            let channel = ["chat", "email", "sms", "phone"][rng.random_range(0..4)];
            let ended = self.at((t + 0.02).min(days - 0.001));
            line(
                &mut rows.conversations,
                &[
                    Some(&conv),
                    Some(&tenant),
                    Some(&cid),
                    Some(channel),
                    Some("ended"),
                    Some(&ts(at)),
                    Some(&ts(ended)),
                    Some(&ts(ended)),
                ],
            );
            rows.add("crm_conversations");
            for m in 0..rng.random_range(2..7) {
                let mt = at + Duration::seconds(30 * m as i64);
                let role = if m % 2 == 0 { "customer" } else { "assistant" };
                let mid = id_at(rng, mt).to_string();
                line(
                    &mut rows.messages,
                    &[
                        Some(&mid),
                        Some(&tenant),
                        Some(&conv),
                        Some(role),
                        Some(if m % 2 == 0 { "A question about our plan." } else { "Here is what we offer." }),
                        Some(&ts(mt)),
                    ],
                );
                rows.add("crm_conversation_messages");
                if role == "customer" {
                    self.activity(rng, rows, &cid, "chat_message", "chat", None, None, None, mt);
                }
            }
        }

        // Campaigns reached this customer with the tenant's reach; responses follow the
        // propensity at send time, and a response can lead to an order.
        for campaign in &self.campaigns {
            if campaign.day < born || rng.random::<f64>() >= self.reach {
                continue;
            }
            let t = campaign.day + rng.random::<f64>() * 0.5;
            let pt = p(t);
            let sent = self.at(t);
            // Responses are likelier near the customer's hidden best hour.
            let timing = timing_factor(best, sent.hour());
            let mut delivered = None;
            let mut opened = None;
            let mut clicked = None;
            let mut replied = None;
            let mut bounced = None;
            let mut complained = None;
            let mut unsubscribed = None;
            let mut error: Option<String> = None;
            let mut skipped = false;
            let mut responded = false;
            let mut status;
            match campaign.channel {
                "email" if suppressed.is_some() => {
                    // An address that bounced for good or complained is skipped, as a
                    // real send skips a suppressed target.
                    status = "failed";
                    error = suppressed.map(|r| format!("suppressed ({r})"));
                    skipped = true;
                }
                "email" => {
                    // SES reports each message's fate: the generator makes the events SES
                    // would publish and folds them through `ses_events::Milestones`, the
                    // decisions the SNS endpoint applies to real events.
                    let mut events = Vec::new();
                    let ses = |at: DateTime<Utc>, kind: EventKind| SesEvent { message_id: String::new(), at, kind };
                    let fate = rng.random::<f64>();
                    if fate < 0.96 {
                        events.push(ses(sent + Duration::seconds(5), EventKind::Delivery));
                        if rng.random::<f64>() < (0.15 + 0.6 * pt) * timing {
                            let at = sent + Duration::minutes(rng.random_range(5..2880));
                            events.push(ses(at, EventKind::Open { user_agent: Some(PERSON_AGENT.into()) }));
                            if rng.random::<f64>() < 0.15 + 0.5 * pt {
                                let link = "https://example.com/offer".to_owned();
                                events.push(ses(
                                    at + Duration::minutes(1),
                                    EventKind::Click { user_agent: Some(PERSON_AGENT.into()), link },
                                ));
                                responded = true;
                            }
                            if rng.random::<f64>() < 0.03 + 0.15 * pt {
                                let at = at + Duration::minutes(30);
                                replied = Some(at);
                                responded = true;
                                self.activity(
                                    rng,
                                    rows,
                                    &cid,
                                    "email_reply",
                                    "email",
                                    None,
                                    Some(campaign.id),
                                    None,
                                    at,
                                );
                            }
                        }
                        if !responded {
                            let u = rng.random::<f64>();
                            if u < 0.01 {
                                unsubscribed = Some(sent + Duration::hours(3));
                                // One in ten who leave also report the message as spam.
                                if u < 0.001 {
                                    events.push(ses(
                                        sent + Duration::hours(3),
                                        EventKind::Complaint {
                                            addresses: vec![email.clone()],
                                            feedback: Some("abuse".into()),
                                        },
                                    ));
                                }
                            }
                        }
                    } else {
                        let kind = if fate < 0.99 { BounceKind::Permanent } else { BounceKind::Transient };
                        let sub_type = if kind == BounceKind::Permanent { "NoEmail" } else { "MailboxFull" };
                        events.push(ses(
                            sent + Duration::seconds(5),
                            EventKind::Bounce {
                                kind,
                                sub_type: sub_type.into(),
                                addresses: vec![email.clone()],
                                diagnostic: None,
                            },
                        ));
                    }
                    let mut m = Milestones::sent();
                    for event in &events {
                        let effect = m.apply(event);
                        let activity =
                            effect.activity.map(|(a, _)| a).or(effect.engagement.map(|(what, _)| what.activity()));
                        if let Some(activity) = activity {
                            self.activity(rng, rows, &cid, activity, "email", None, Some(campaign.id), None, event.at);
                        }
                        let reason = match effect.suppress {
                            Some(Suppress::Everywhere { .. }) => Some("bounce"),
                            Some(Suppress::Tenant { reason, .. }) => Some(reason),
                            _ => None,
                        };
                        if let Some(reason) = reason.filter(|_| suppressed.is_none()) {
                            suppressed = Some(reason);
                            let sid = id_at(rng, event.at).to_string();
                            line(
                                &mut rows.suppressions,
                                &[
                                    Some(&sid),
                                    Some(&tenant),
                                    Some("email"),
                                    Some(&email),
                                    Some(reason),
                                    Some(&ts(event.at)),
                                ],
                            );
                            rows.add("outbound_suppressions");
                        }
                    }
                    delivered = m.delivered_at;
                    opened = m.opened_at;
                    clicked = m.clicked_at;
                    bounced = m.bounced_at;
                    complained = m.complained_at;
                    error = m.error;
                    status = m.status.as_str();
                    if replied.is_some() {
                        status = "replied";
                    } else if let Some(at) = unsubscribed {
                        status = "unsubscribed";
                        self.activity(rng, rows, &cid, "unsubscribe", "email", None, Some(campaign.id), None, at);
                    }
                }
                "sms" => {
                    if rng.random::<f64>() < 0.97 {
                        delivered = Some(sent + Duration::seconds(3));
                        status = "delivered";
                        if rng.random::<f64>() < (0.05 + 0.3 * pt) * timing {
                            let at = sent + Duration::minutes(rng.random_range(1..600));
                            clicked = Some(at);
                            status = "clicked";
                            responded = true;
                        }
                        if rng.random::<f64>() < 0.03 + 0.2 * pt {
                            let at = sent + Duration::minutes(rng.random_range(1..600));
                            replied = Some(at);
                            status = "replied";
                            responded = true;
                            self.activity(rng, rows, &cid, "sms_reply", "sms", None, Some(campaign.id), None, at);
                        }
                    } else {
                        status = "failed";
                    }
                }
                _ => {
                    // A call that rang through counts as delivered; an answered one as a reply.
                    delivered = Some(sent + Duration::seconds(20));
                    if rng.random::<f64>() < (0.3 + 0.4 * pt) * timing {
                        status = "answered";
                        responded = true;
                        let at = sent + Duration::minutes(1);
                        replied = Some(at);
                        self.activity(rng, rows, &cid, "call_answered", "phone", None, Some(campaign.id), None, at);
                    } else {
                        status = "voicemail";
                    }
                }
            }
            let rid = id_at(rng, sent).to_string();
            let last =
                [delivered, opened, clicked, replied, bounced, complained].into_iter().flatten().max().unwrap_or(sent);
            let opt = |t: Option<DateTime<Utc>>| t.map(ts);
            let sent_at = (!skipped).then(|| ts(sent));
            line(
                &mut rows.recipients,
                &[
                    Some(&rid),
                    Some(&tenant),
                    Some(&campaign.id.to_string()),
                    Some(&cid),
                    Some(status),
                    Some(if skipped { "0" } else { "1" }),
                    Some(&ts(sent)),
                    sent_at.as_deref(),
                    opt(delivered).as_deref(),
                    opt(opened).as_deref(),
                    opt(clicked).as_deref(),
                    opt(replied).as_deref(),
                    opt(bounced).as_deref(),
                    opt(complained).as_deref(),
                    error.as_deref(),
                    Some(&ts(sent)),
                    Some(&ts(last)),
                ],
            );
            rows.add("outbound_campaign_recipients");
            if responded && rng.random::<f64>() < 0.1 + 0.4 * pt {
                let ot = t + rng.random_range(0.2..20.0);
                if ot < days {
                    self.order(rng, rows, &cid, Some(campaign.id), ot);
                }
            }
        }

        // Purchases on their own: rarer, and concentrated on high propensity (p²).
        for _ in 0..poisson(rng, 0.02 * span) {
            let t = first + rng.random::<f64>() * span;
            let pt = p(t);
            if rng.random::<f64>() < pt * pt {
                self.order(rng, rows, &cid, None, t);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn activity(
        &self,
        rng: &mut StdRng,
        rows: &mut Rows,
        customer: &str,
        kind: &str,
        channel: &str,
        subject: Option<(&str, Uuid)>,
        campaign: Option<Uuid>,
        value: Option<i64>,
        at: DateTime<Utc>,
    ) {
        let id = id_at(rng, at).to_string();
        let subject_id = subject.map(|(_, s)| s.to_string());
        let campaign = campaign.map(|c| c.to_string());
        let value = value.map(|v| v.to_string());
        line(
            &mut rows.activities,
            &[
                Some(&id),
                Some(&self.id.to_string()),
                Some(customer),
                Some(kind),
                Some(channel),
                subject.map(|(t, _)| t),
                subject_id.as_deref(),
                campaign.as_deref(),
                value.as_deref(),
                value.as_ref().map(|_| "USD"),
                Some(&ts(at)),
                Some(&ts(at)),
            ],
        );
        rows.add("customer_activities");
    }

    fn order(&self, rng: &mut StdRng, rows: &mut Rows, customer: &str, campaign: Option<Uuid>, t: f64) {
        let service = &self.services[rng.random_range(0..self.services.len())];
        let quantity: i64 = if rng.random::<f64>() < 0.85 { 1 } else { rng.random_range(2..5) };
        let amount = service.price * quantity;
        let at = self.at(t);
        let id = id_at(rng, at);
        let roll: f64 = rng.random();
        let status = if roll < 0.88 {
            "paid"
        } else if roll < 0.92 {
            "refunded"
        } else if roll < 0.96 {
            "failed"
        } else {
            "cancelled"
        };
        let paid = matches!(status, "paid" | "refunded").then(|| at + Duration::minutes(2));
        let refunded = (status == "refunded").then(|| at + Duration::days(3));
        let mut number = String::new();
        let _ = write!(number, "ORD-{}", &id.simple().to_string()[..20]);
        line(
            &mut rows.orders,
            &[
                Some(&id.to_string()),
                Some(&self.id.to_string()),
                Some(customer),
                Some(&service.id.to_string()),
                campaign.map(|c| c.to_string()).as_deref(),
                Some(&number),
                Some(status),
                Some(&amount.to_string()),
                Some("USD"),
                Some(&quantity.to_string()),
                paid.map(ts).as_deref(),
                refunded.map(ts).as_deref(),
                Some(&ts(at)),
                Some(&ts(refunded.or(paid).unwrap_or(at))),
            ],
        );
        rows.add("orders");
        if let Some(paid) = paid {
            self.activity(
                rng,
                rows,
                customer,
                "purchase",
                "web",
                Some(("service", service.id)),
                campaign,
                Some(amount),
                paid,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_reserved_characters() {
        let mut out = String::new();
        line(&mut out, &[Some("a\tb"), None, Some("c\\d\ne")]);
        assert_eq!(out, "a\\tb\t\\N\tc\\\\d\\ne\n");
    }

    #[test]
    fn poisson_mean_is_close_to_lambda() {
        let mut rng = StdRng::seed_from_u64(7);
        for lambda in [0.5, 4.0, 50.0] {
            let n = 20_000;
            let mean = (0..n).map(|_| poisson(&mut rng, lambda) as f64).sum::<f64>() / n as f64;
            assert!((mean - lambda).abs() < lambda * 0.05 + 0.05, "λ={lambda} mean={mean}");
        }
    }

    #[test]
    fn same_seed_same_customers() {
        let plan =
            Plan { customers: 10, tenants: 1, days: 90, seed: 3, end: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap() };
        let gen_rows = || {
            let mut rng = StdRng::seed_from_u64(plan.seed);
            let tenant = TenantGen::new(&mut rng, &plan, "s".into(), 10);
            let mut rows = Rows::default();
            for i in 0..10 {
                tenant.customer(&mut rng, i, &mut rows);
            }
            (rows.customers, rows.activities, rows.orders)
        };
        let a = gen_rows();
        assert!(!a.1.is_empty());
        assert_eq!(a, gen_rows());
    }
}
