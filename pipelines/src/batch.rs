//! `fibonacco pipelines run`: recompute from the lake at an `as_of` instant.

use std::{collections::BTreeMap, time::Instant};

use chrono::{DateTime, Utc};
use datafusion::{
    arrow::{
        array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray},
        datatypes::{DataType, Field, Schema},
    },
    prelude::SessionContext,
};
use fibonacco_analytics::{AnalyticsConfig, dashboard, engagement, predictive, roi, send_time};
use fibonacco_ingest::{Lake, slot::format_lsn};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sqlx::PgPool;
use std::sync::Arc;

use crate::{
    Engine, PipelineError,
    copy::CopyBatch,
    output::{floats, ints, round_to, rounded, text},
    stages::Stages,
    store::{self, Replace, RunRecord, Summaries},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pipeline {
    Engagement,
    Roi,
    Predictive,
    Analytics,
    SendTimes,
}

impl Pipeline {
    pub const ALL: [Pipeline; 5] =
        [Pipeline::Engagement, Pipeline::Roi, Pipeline::Predictive, Pipeline::Analytics, Pipeline::SendTimes];

    /// The order in which `run` computes them, for time and memory. Analytics first:
    /// its read models take the most memory after predictive (1.6 GiB at 1 M customers)
    /// and write almost nothing, so no other pipeline's results are held while it
    /// computes. Then predictive, the largest computation with a large write, so that its
    /// write and those after it overlap each other and the small computations left.
    const EXECUTION: [Pipeline; 5] =
        [Pipeline::Analytics, Pipeline::Predictive, Pipeline::SendTimes, Pipeline::Engagement, Pipeline::Roi];

    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Engagement => "engagement",
            Pipeline::Roi => "roi",
            Pipeline::Predictive => "predictive",
            Pipeline::Analytics => "analytics",
            Pipeline::SendTimes => "send_times",
        }
    }

    /// The lake tables the pipeline reads.
    pub fn inputs(self) -> &'static [&'static str] {
        match self {
            Pipeline::Engagement => &["crm_customers", "customer_activities"],
            Pipeline::Roi => &["outbound_campaigns", "outbound_campaign_recipients", "orders"],
            Pipeline::Predictive => &["crm_customers", "customer_activities", "orders", "outbound_campaign_recipients"],
            Pipeline::Analytics => &[
                "crm_customers",
                "crm_conversations",
                "crm_conversation_messages",
                "customer_activities",
                "outbound_campaigns",
                "outbound_campaign_recipients",
                "orders",
                "services",
                "service_categories",
                "knowledge_base",
                "knowledge_votes",
                "articles",
            ],
            Pipeline::SendTimes => &["crm_customers", "outbound_campaign_recipients"],
        }
    }

    /// `engagement`, `roi`, `predictive`, `analytics`, `send_times` or `all`.
    pub fn parse_list(text: &str) -> Result<Vec<Pipeline>, PipelineError> {
        match text {
            "all" => Ok(Self::ALL.to_vec()),
            other => Self::ALL.into_iter().find(|p| p.name() == other).map(|p| vec![p]).ok_or_else(|| {
                PipelineError::Input(format!(
                    "unknown pipeline {other:?}: expected engagement, roi, predictive, analytics, send_times or all"
                ))
            }),
        }
    }
}

/// Each score's top features as the JSON the API serves (`[{"contribution", "feature",
/// "value"}, …]`, numbers to four decimals), written into one buffer: building a JSON
/// value per feature and a string per name took seconds at a million customers. The
/// names are escaped once.
fn top_features_json(scores: &[predictive::Score], features: &[String]) -> Result<StringArray, PipelineError> {
    use datafusion::arrow::array::StringBuilder;
    let json = |e: serde_json::Error| PipelineError::Input(format!("top features: {e}"));
    let names: Vec<String> = features.iter().map(serde_json::to_string).collect::<Result<_, _>>().map_err(json)?;
    let mut out = StringBuilder::with_capacity(scores.len(), scores.len() * 200);
    let mut row = Vec::with_capacity(256);
    for score in scores {
        row.clear();
        row.push(b'[');
        for (i, (feature, contribution, value)) in score.top_features.iter().enumerate() {
            let name = names.get(*feature).ok_or_else(|| PipelineError::Input(format!("no feature {feature}")))?;
            if i > 0 {
                row.push(b',');
            }
            row.extend_from_slice(b"{\"contribution\":");
            // serde_json writes a non-finite number as null, as `json!` did.
            serde_json::to_writer(&mut row, &((contribution * 1e4).round() / 1e4)).map_err(json)?;
            row.extend_from_slice(b",\"feature\":");
            row.extend_from_slice(name.as_bytes());
            row.extend_from_slice(b",\"value\":");
            serde_json::to_writer(&mut row, &((value * 1e4).round() / 1e4)).map_err(json)?;
            row.push(b'}');
        }
        row.push(b']');
        out.append_value(std::str::from_utf8(&row).map_err(|e| PipelineError::Input(e.to_string()))?);
    }
    Ok(out.finish())
}

/// What one pipeline did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: Pipeline,
    pub as_of: DateTime<Utc>,
    pub input_lsn: String,
    pub rows_written: u64,
    pub duration_ms: u64,
    pub derived: Vec<String>,
    pub details: serde_json::Value,
}

/// Rows written, derived files, details: what a pipeline reports.
pub type Outcome = (u64, Vec<String>, serde_json::Value);

/// What is left of a pipeline once its results are computed: writing them (Postgres,
/// then the lake).
pub type Finish<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, PipelineError>> + Send + 'a>>;

/// A pipeline under way in [`Pipelines::run`].
struct Started {
    pipeline: Pipeline,
    at: DateTime<Utc>,
    clock: Instant,
    bar: ProgressBar,
}

pub struct Pipelines {
    pub pool: PgPool,
    pub lake: Lake,
    pub config: AnalyticsConfig,
    /// Show progress bars (a terminal is attached).
    pub progress: bool,
    /// Where a batch run's DataFusion stages execute (the watch's small incremental
    /// reads stay in this process: a cluster's job start costs more than they do).
    pub engine: Engine,
}

fn spinner(show: bool, name: &str) -> ProgressBar {
    let bar = if show { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{spinner} {prefix:12} {msg} {elapsed}").expect("static template"));
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

impl Pipelines {
    /// Runs `pipelines` over one snapshot of the lake; the reports come in the order asked.
    ///
    /// Results are computed one pipeline at a time (each computation uses every core, and
    /// the largest need most of the memory budget), and each one's writing (Postgres,
    /// then the lake) proceeds while the next computes: a `MERGE` keeps one Postgres
    /// backend busy for seconds while this process would otherwise wait. The order is
    /// `Pipeline::EXECUTION`'s. A failure stops further computations; the writes
    /// already under way finish (each in its own transaction) and are recorded before the
    /// first error is returned.
    #[tracing::instrument(skip(self), fields(as_of = %as_of))]
    pub async fn run(&self, pipelines: &[Pipeline], as_of: DateTime<Utc>) -> Result<Vec<RunReport>, PipelineError> {
        use futures_util::{StreamExt, stream::FuturesUnordered};
        let (ctx, manifest) = self.engine.session(&self.lake).await?;
        let missing: Vec<&str> = pipelines
            .iter()
            .flat_map(|p| p.inputs().iter().copied())
            .filter(|t| !manifest.tables.contains_key(*t))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            return Err(PipelineError::Input(format!(
                "the lake at {} has no {}: add them to INGEST_TABLES and run `fibonacco ingest --resnapshot`",
                self.lake.display(),
                missing.join(", ")
            )));
        }
        let input_lsn = format_lsn(manifest.durable_lsn);
        let mut order: Vec<Pipeline> = pipelines.to_vec();
        order.sort_by_key(|p| Pipeline::EXECUTION.iter().position(|e| e == p));
        let mut reports = Vec::new();
        let mut failure: Option<PipelineError> = None;
        let mut writing = FuturesUnordered::new();
        for p in order {
            let started =
                Started { pipeline: p, at: Utc::now(), clock: Instant::now(), bar: spinner(self.progress, p.name()) };
            started.bar.set_message("computing");
            let computed = {
                let compute = self.compute(p, &ctx, as_of, &started.bar);
                tokio::pin!(compute);
                loop {
                    tokio::select! {
                        computed = &mut compute => break computed,
                        Some((done, outcome)) = writing.next(), if !writing.is_empty() => {
                            if let Err(e) = self.settle(done, outcome, as_of, &input_lsn, &mut reports).await {
                                failure.get_or_insert(e);
                            }
                        }
                    }
                }
            };
            match computed {
                Ok(finish) => writing.push(async move { (started, finish.await) }),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
            if failure.is_some() {
                break;
            }
        }
        while let Some((done, outcome)) = writing.next().await {
            if let Err(e) = self.settle(done, outcome, as_of, &input_lsn, &mut reports).await {
                failure.get_or_insert(e);
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        reports.sort_by_key(|r| pipelines.iter().position(|p| *p == r.pipeline));
        Ok(reports)
    }

    /// Computes `p`'s results; what it returns writes them.
    async fn compute<'a>(
        &'a self,
        p: Pipeline,
        ctx: &SessionContext,
        as_of: DateTime<Utc>,
        bar: &ProgressBar,
    ) -> Result<Finish<'a>, PipelineError> {
        match p {
            Pipeline::Engagement => self.compute_engagement(ctx, as_of, None, Replace::All, bar).await,
            Pipeline::Roi => self.compute_roi(ctx, as_of, None, Replace::All, bar).await,
            Pipeline::Predictive => self.predictive(ctx, as_of, bar).await,
            Pipeline::Analytics => self.analytics(ctx, as_of, bar).await,
            Pipeline::SendTimes => self.send_times(ctx, as_of, bar).await,
        }
    }

    /// Records a pipeline whose writing ended, and reports it.
    async fn settle(
        &self,
        started: Started,
        outcome: Result<Outcome, PipelineError>,
        as_of: DateTime<Utc>,
        input_lsn: &str,
        reports: &mut Vec<RunReport>,
    ) -> Result<(), PipelineError> {
        let (rows, derived, details) = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                started.bar.abandon_with_message("failed");
                return Err(e);
            }
        };
        let duration_ms = started.clock.elapsed().as_millis() as u64;
        let record = RunRecord {
            pipeline: started.pipeline.name(),
            mode: "batch",
            as_of,
            input_lsn: input_lsn.to_owned(),
            started_at: started.at,
            duration_ms: duration_ms as i64,
            rows_written: rows as i64,
            details: details.clone(),
        };
        let mut conn = self.pool.acquire().await?;
        store::record_run(&mut conn, &record).await?;
        started.bar.finish_with_message(format!("{rows} rows in {duration_ms} ms"));
        reports.push(RunReport {
            pipeline: started.pipeline,
            as_of,
            input_lsn: input_lsn.to_owned(),
            rows_written: rows,
            duration_ms,
            derived,
            details,
        });
        Ok(())
    }

    /// Writes typed result batches under `_derived/<name>/as_of=<date>/`.
    async fn derive(
        &self,
        name: &str,
        as_of: DateTime<Utc>,
        batches: &[RecordBatch],
    ) -> Result<Vec<String>, PipelineError> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let path = format!(
            "{}{name}/as_of={}/{}.parquet",
            fibonacco_ingest::lake::DERIVED,
            as_of.format("%Y-%m-%d"),
            as_of.format("%Y%m%dT%H%M%S%.6fZ")
        );
        self.lake.write_parquet(&path, batches).await?;
        Ok(vec![path])
    }

    /// Engagement scores for every customer, or only `customers`.
    pub async fn engagement(
        &self,
        ctx: &SessionContext,
        as_of: DateTime<Utc>,
        customers: Option<&[String]>,
        mode: Replace,
        bar: &ProgressBar,
    ) -> Result<Outcome, PipelineError> {
        self.compute_engagement(ctx, as_of, customers, mode, bar).await?.await
    }

    async fn compute_engagement(
        &self,
        ctx: &SessionContext,
        as_of: DateTime<Utc>,
        customers: Option<&[String]>,
        mode: Replace,
        bar: &ProgressBar,
    ) -> Result<Finish<'_>, PipelineError> {
        let config = &self.config.engagement;
        let mut stages = Stages::start();
        // In customer order, as the table's heap is (see send_times).
        let batches = engagement::scores(ctx, config, as_of, customers)
            .await?
            .sort(vec![datafusion::prelude::col("customer_id").sort(true, false)])?
            .collect()
            .await?;
        stages.lap("compute");
        bar.set_message("writing");
        let mut tenants = std::collections::BTreeSet::new();
        let components = config.components();
        let mut rows = Vec::with_capacity(batches.len());
        let mut scored = 0usize;
        let mut total = 0.0;
        for batch in &batches {
            let mut out = CopyBatch::new();
            if mode == Replace::Keys {
                tenants.extend(text(batch, "tenant_id")?.iter().flatten().map(str::to_string));
            }
            out.push_column(batch, "tenant_id")?;
            out.push_column(batch, "customer_id")?;
            let scores = floats(batch, "score")?;
            total += scores.iter().flatten().sum::<f64>();
            scored += scores.len();
            // numeric(5,2): the binary COPY rounds to the column's two decimals.
            out.push_floats("score", scores);
            let parts: Vec<Vec<Option<f64>>> =
                components.iter().map(|c| floats(batch, &format!("s_{c}"))).collect::<Result<_, _>>()?;
            let json = (0..batch.num_rows()).map(|i| {
                let map: BTreeMap<&str, f64> = components
                    .iter()
                    .zip(&parts)
                    .filter_map(|(c, v)| v[i].filter(|x| *x > 0.0).map(|x| (*c, (x * 100.0).round() / 100.0)))
                    .collect();
                Some(serde_json::to_string(&map).unwrap_or_else(|_| "{}".into()))
            });
            out.push_texts("components", json);
            out.push_as_of(batch.num_rows(), as_of);
            rows.push(out);
        }
        stages.lap("prepare");
        Ok(Box::pin(async move {
            let mut tx = store::begin(&self.pool).await?;
            let written = store::replace_scores(
                &mut tx,
                "customer_engagement_scores",
                "customer_id",
                "crm_customers",
                &rows,
                mode,
            )
            .await?;
            stages.lap("write");
            if mode == Replace::All {
                store::refresh_score_summaries(&mut tx, Summaries::Engagement).await?;
                tx.commit().await?;
            } else {
                // The watch shows the scores first and sums the touched tenants right after, in
                // a transaction of its own: a large tenant's sums read its updated rows from the
                // heap (tens of milliseconds at 250,000 customers), which the score need not
                // wait for.
                tx.commit().await?;
                let tenants: Vec<String> = tenants.into_iter().collect();
                let mut tx = store::begin(&self.pool).await?;
                store::refresh_score_summaries(&mut tx, Summaries::EngagementOf(&tenants)).await?;
                tx.commit().await?;
            }
            stages.lap("summaries");
            let derived =
                if mode == Replace::All { self.derive("engagement", as_of, &batches).await? } else { Vec::new() };
            stages.lap("derive");
            let mean = if scored > 0 { total / scored as f64 } else { 0.0 };
            let details = serde_json::json!({"customers": scored, "mean_score": rounded(mean, 2)});
            Ok((written, derived, stages.into_details(details)))
        }))
    }

    /// ROI for every campaign, or only `campaigns`.
    pub async fn roi(
        &self,
        ctx: &SessionContext,
        as_of: DateTime<Utc>,
        campaigns: Option<&[String]>,
        mode: Replace,
        bar: &ProgressBar,
    ) -> Result<Outcome, PipelineError> {
        self.compute_roi(ctx, as_of, campaigns, mode, bar).await?.await
    }

    async fn compute_roi(
        &self,
        ctx: &SessionContext,
        as_of: DateTime<Utc>,
        campaigns: Option<&[String]>,
        mode: Replace,
        bar: &ProgressBar,
    ) -> Result<Finish<'_>, PipelineError> {
        let config = &self.config.roi;
        let mut stages = Stages::start();
        let batches = roi::roi(ctx, config, as_of, campaigns).await?.collect().await?;
        stages.lap("compute");
        bar.set_message("writing");
        let mut rows = Vec::new();
        let mut campaigns_seen = 0;
        for batch in &batches {
            let mut out = CopyBatch::new();
            for c in [
                "tenant_id",
                "campaign_id",
                "channel",
                "currency",
                "sends",
                "unit_cost_minor",
                "send_cost_minor",
                "fixed_cost_minor",
                "cost_minor",
                "last_touch_orders",
                "last_touch_revenue_minor",
            ] {
                out.push_column(batch, c)?;
            }
            let cost = ints(batch, "cost_minor")?;
            let lt = ints(batch, "last_touch_revenue_minor")?;
            let lin = ints(batch, "linear_revenue_minor")?;
            let ratio = |rev: &Vec<Option<i64>>| {
                cost.iter().zip(rev).map(|(c, r)| roi::ratio(r.unwrap_or(0), c.unwrap_or(0))).collect::<Vec<_>>()
            };
            out.push_floats("last_touch_roi", ratio(&lt));
            out.push_floats(
                "linear_orders",
                floats(batch, "linear_orders")?.into_iter().map(|v| v.map(|v| round_to(v, 6))),
            );
            out.push_column(batch, "linear_revenue_minor")?;
            out.push_floats("linear_roi", ratio(&lin));
            let first = ints(batch, "first_touch_revenue_minor")?;
            let decay = ints(batch, "time_decay_revenue_minor")?;
            let position = ints(batch, "position_revenue_minor")?;
            out.push_column(batch, "first_touch_orders")?;
            out.push_column(batch, "first_touch_revenue_minor")?;
            out.push_floats("first_touch_roi", ratio(&first));
            for (orders, revenue, roi, values) in [
                ("time_decay_orders", "time_decay_revenue_minor", "time_decay_roi", &decay),
                ("position_orders", "position_revenue_minor", "position_roi", &position),
            ] {
                out.push_floats(orders, floats(batch, orders)?.into_iter().map(|v| v.map(|v| round_to(v, 6))));
                out.push_column(batch, revenue)?;
                out.push_floats(roi, ratio(values));
            }
            out.push_floats(
                "decay_half_life_days",
                std::iter::repeat_n(Some(config.decay_half_life_days), batch.num_rows()),
            );
            out.push("window_days", Arc::new(Int64Array::from_value(i64::from(config.window_days), batch.num_rows())));
            out.push_as_of(batch.num_rows(), as_of);
            campaigns_seen += batch.num_rows();
            rows.push(out);
        }
        stages.lap("prepare");
        let window_days = config.window_days;
        Ok(Box::pin(async move {
            let mut tx = store::begin(&self.pool).await?;
            let written =
                store::replace_scores(&mut tx, "campaign_roi", "campaign_id", "outbound_campaigns", &rows, mode)
                    .await?;
            tx.commit().await?;
            stages.lap("write");
            let derived = if mode == Replace::All { self.derive("roi", as_of, &batches).await? } else { Vec::new() };
            stages.lap("derive");
            let details = serde_json::json!({"campaigns": campaigns_seen, "window_days": window_days});
            Ok((written, derived, stages.into_details(details)))
        }))
    }

    async fn predictive(
        &self,
        ctx: &SessionContext,
        as_of: DateTime<Utc>,
        bar: &ProgressBar,
    ) -> Result<Finish<'_>, PipelineError> {
        let config = &self.config;
        let mut stages = Stages::start();
        bar.set_message("reading features");
        let inputs = predictive::inputs(ctx, &config.engagement).await?;
        stages.lap("inputs");
        bar.set_message("training");
        let (engagement, predictive_config) = (config.engagement.clone(), config.predictive.clone());
        // Training and scoring are CPU-bound Polars and ndarray work: off the async threads.
        let (model, scores, train_time) = tokio::task::spawn_blocking(move || -> Result<_, PipelineError> {
            let clock = Instant::now();
            let model = predictive::train(&inputs, &engagement, &predictive_config, as_of)?;
            let train_time = clock.elapsed();
            let scores = predictive::score(&inputs, &engagement, &predictive_config, &model)?;
            Ok((model, scores, train_time))
        })
        .await
        .map_err(|e| PipelineError::Input(format!("training task failed: {e}")))??;
        stages.lap("train_and_score");
        stages.record("train", train_time);
        bar.set_message("writing");
        // Each column is built once, as an Arrow array shared by the COPY and the
        // derived Parquet (clones share the buffers), and the scores are dropped before the
        // write: at 1 M customers every copy of these columns is hundreds of MB.
        let tenant_ids: ArrayRef = Arc::new(StringArray::from_iter_values(scores.iter().map(|s| s.tenant_id.as_str())));
        let customer_ids: ArrayRef =
            Arc::new(StringArray::from_iter_values(scores.iter().map(|s| s.customer_id.as_str())));
        let probabilities: ArrayRef = Arc::new(Float64Array::from_iter_values(scores.iter().map(|s| s.probability)));
        let top_features: ArrayRef = Arc::new(top_features_json(&scores, &model.features)?);
        let rows = scores.len();
        drop(scores);
        let versions: ArrayRef =
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(model.version.as_str(), rows)));
        let mut out = CopyBatch::new();
        out.push("tenant_id", tenant_ids.clone());
        out.push("customer_id", customer_ids.clone());
        out.push("probability", probabilities.clone());
        out.push("top_features", top_features.clone());
        out.push("model_version", versions.clone());
        out.push_as_of(rows, as_of);
        stages.lap("prepare");
        Ok(Box::pin(async move {
            let mut tx = store::begin(&self.pool).await?;
            sqlx::query(
            "insert into predictive_models (version, as_of, horizon_days, features, coefficients, intercept, metrics)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (version) do update set trained_at = now(), metrics = excluded.metrics",
        )
        .bind(&model.version)
        .bind(model.as_of)
        .bind(model.horizon_days as i32)
        .bind(serde_json::json!(model.features))
        .bind(serde_json::json!({
            "coefficients": model.features.iter().zip(&model.coefficients).map(|(f, c)| (f.clone(), *c)).collect::<BTreeMap<_, _>>(),
            "means": model.means, "deviations": model.deviations,
        }))
        .bind(model.intercept)
        .bind(serde_json::to_value(&model.metrics).unwrap_or_default())
        .execute(&mut *tx)
        .await?;
            let written = store::replace_scores(
                &mut tx,
                "customer_predictive_scores",
                "customer_id",
                "crm_customers",
                std::slice::from_ref(&out),
                Replace::All,
            )
            .await?;
            stages.lap("write");
            store::refresh_score_summaries(&mut tx, Summaries::Predictive).await?;
            tx.commit().await?;
            stages.lap("summaries");
            drop(out);
            let schema = Arc::new(Schema::new(vec![
                Field::new("tenant_id", DataType::Utf8, false),
                Field::new("customer_id", DataType::Utf8, false),
                Field::new("probability", DataType::Float64, false),
                Field::new("top_features", DataType::Utf8, false),
                Field::new("model_version", DataType::Utf8, false),
            ]));
            let typed =
                RecordBatch::try_new(schema, vec![tenant_ids, customer_ids, probabilities, top_features, versions])?;
            let mut derived = self.derive("predictive", as_of, &[typed]).await?;
            let validation = RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("probability", DataType::Float64, false),
                    Field::new("label", DataType::Boolean, false),
                ])),
                vec![
                    Arc::new(Float64Array::from_iter_values(model.validation.iter().map(|v| v.0))) as ArrayRef,
                    Arc::new(BooleanArray::from(model.validation.iter().map(|v| v.1).collect::<Vec<_>>())),
                ],
            )?;
            derived.extend(self.derive("predictive_validation", as_of, &[validation]).await?);
            let model_path = format!("{}models/{}.json", fibonacco_ingest::lake::DERIVED, model.version);
            let model_json = serde_json::to_vec_pretty(&model).map_err(|e| PipelineError::Input(e.to_string()))?;
            self.lake.put_bytes(&model_path, model_json).await?;
            derived.push(model_path);
            stages.lap("derive");
            let m = &model.metrics;
            Ok((
                written,
                derived,
                stages.into_details(serde_json::json!({
                    "model_version": model.version,
                    "auc_validation": m.auc_validation,
                    "auc_train": m.auc_train,
                    "baseline_auc_recent_buyer": m.baseline_auc_recent_buyer,
                    "base_rate_validation": m.base_rate_validation,
                    "brier_validation": m.brier_validation,
                    "train_rows": m.train_rows,
                    "validation_rows": m.validation_rows,
                })),
            ))
        }))
    }

    /// Each customer's sends and responses per local hour of the week, and each tenant's
    /// (send-time optimisation's history, `fibonacco_analytics::send_time`). The history is
    /// streamed and folded; only the slots are held.
    async fn send_times(
        &self,
        ctx: &SessionContext,
        as_of: DateTime<Utc>,
        bar: &ProgressBar,
    ) -> Result<Finish<'_>, PipelineError> {
        use datafusion::arrow::array::Array;
        use futures_util::StreamExt;
        let mut stages = Stages::start();
        // Two passes over the streamed history: the campaigns' own rates (hours taken out),
        // then each send folded into its slots with that rate as its expected response.
        let mut exposure = send_time::Exposure::default();
        let mut zones_seen = send_time::Zones::default();
        let mut stream = send_time::history(ctx, as_of).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let (tenants, campaigns, zones) =
                (text(&batch, "tenant_id")?, text(&batch, "campaign_id")?, text(&batch, "timezone")?);
            let (sent, responded) = (ints(&batch, "sent_us")?, ints(&batch, "responded")?);
            for i in 0..batch.num_rows() {
                let (Some(sent), false, false) = (sent[i], tenants.is_null(i), campaigns.is_null(i)) else { continue };
                let Some(at) = DateTime::from_timestamp_micros(sent) else { continue };
                let zone = (!zones.is_null(i)).then(|| zones.value(i));
                let hour = send_time::slot_of(at, zones_seen.get(zone).as_ref()) % 24;
                exposure.add(tenants.value(i), campaigns.value(i), hour, responded[i].unwrap_or(0) > 0);
            }
        }
        let rates = exposure.campaign_rates(50);
        drop(exposure);
        stages.lap("campaign_rates");
        let mut slots = send_time::SendSlots::default();
        let mut stream = send_time::history(ctx, as_of).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let (tenants, customers, zones) =
                (text(&batch, "tenant_id")?, text(&batch, "customer_id")?, text(&batch, "timezone")?);
            let campaigns = text(&batch, "campaign_id")?;
            let (sent, responded) = (ints(&batch, "sent_us")?, ints(&batch, "responded")?);
            for i in 0..batch.num_rows() {
                let (Some(sent), false, false) = (sent[i], tenants.is_null(i), customers.is_null(i)) else { continue };
                let Some(at) = DateTime::from_timestamp_micros(sent) else { continue };
                let zone = (!zones.is_null(i)).then(|| zones.value(i));
                let expected =
                    if campaigns.is_null(i) { 0.0 } else { rates.get(campaigns.value(i)).copied().unwrap_or(0.0) };
                slots.add(tenants.value(i), customers.value(i), zone, at, responded[i].unwrap_or(0) > 0, expected);
            }
        }
        stages.lap("compute");
        bar.set_message("writing");
        // Customer slots in Arrow batches of 100,000 rows: the derived Parquet for data
        // teams, and the COPY into `customer_send_slots`.
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("customer_id", DataType::Utf8, false),
            Field::new("slot", DataType::Int64, false),
            Field::new("sends", DataType::Int64, false),
            Field::new("responses", DataType::Int64, false),
            Field::new("expected", DataType::Float64, false),
        ]));
        let mut batches = Vec::new();
        let (mut tenant_ids, mut customer_ids) = (Vec::new(), Vec::new());
        let mut counts: [Vec<i64>; 3] = Default::default();
        let mut expected = Vec::new();
        let mut flush = |t: &mut Vec<&str>, c: &mut Vec<&str>, counts: &mut [Vec<i64>; 3], e: &mut Vec<f64>| {
            let [s, n, r] = counts;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(std::mem::take(t))),
                Arc::new(StringArray::from(std::mem::take(c))),
                Arc::new(Int64Array::from(std::mem::take(s))),
                Arc::new(Int64Array::from(std::mem::take(n))),
                Arc::new(Int64Array::from(std::mem::take(r))),
                Arc::new(Float64Array::from(std::mem::take(e))),
            ];
            RecordBatch::try_new(schema.clone(), columns).map(|b| batches.push(b))
        };
        // In key order (customer, slot), run after run: the heap then holds the rows in that
        // order and the write's MERGE updates them in it, each page read and dirtied once.
        // In the hash map's order it evicted and re-read pages of a table larger than the
        // buffer pool at every row: 34.6 s against 13.1 s at 2.65 M rows (docs/benchmarks.md).
        let mut customers: Vec<_> = slots.customers.iter_mut().collect();
        customers.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (customer, (tenant, customer_slots)) in customers {
            customer_slots.sort_unstable_by_key(|(slot, _)| *slot);
            for (slot, c) in customer_slots.iter() {
                tenant_ids.push(slots.tenants[*tenant as usize].as_str());
                customer_ids.push(customer.as_str());
                for (column, value) in
                    counts.iter_mut().zip([i64::from(*slot), i64::from(c.sends), i64::from(c.responses)])
                {
                    column.push(value);
                }
                expected.push(c.expected);
            }
            if tenant_ids.len() >= 100_000 {
                flush(&mut tenant_ids, &mut customer_ids, &mut counts, &mut expected)?;
            }
        }
        if !tenant_ids.is_empty() {
            flush(&mut tenant_ids, &mut customer_ids, &mut counts, &mut expected)?;
        }
        let rows: Vec<CopyBatch> = batches.iter().map(|b| CopyBatch::of_batch(b, as_of)).collect();
        let customers = slots.customers.len();
        // Every slot of a tenant with history: its rate is the prior of each customer.
        let (mut tenant, mut slot, mut sends, mut responses, mut expected, mut rate) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (t, counts) in slots.tenants.iter().zip(&slots.tenant_counts) {
            for (s, (c, r)) in counts.iter().zip(send_time::tenant_rates(counts)).enumerate() {
                tenant.push(t.as_str());
                slot.push(s as i64);
                sends.push(c.sends as i64);
                responses.push(c.responses as i64);
                expected.push(c.expected);
                rate.push(r);
            }
        }
        let len = tenant.len();
        let mut tenant_rows = CopyBatch::new();
        tenant_rows.push("tenant_id", Arc::new(StringArray::from(tenant)));
        tenant_rows.push("slot", Arc::new(Int64Array::from(slot)));
        tenant_rows.push("sends", Arc::new(Int64Array::from(sends)));
        tenant_rows.push("responses", Arc::new(Int64Array::from(responses)));
        tenant_rows.push("expected", Arc::new(Float64Array::from(expected)));
        tenant_rows.push("rate", Arc::new(Float64Array::from(rate)));
        tenant_rows.push_as_of(len, as_of);
        let details = serde_json::json!({
            "sends": slots.sends(),
            "customers": customers,
            "tenants": slots.tenants.len(),
        });
        drop(slots);
        stages.lap("prepare");
        Ok(Box::pin(async move {
            let mut tx = store::begin(&self.pool).await?;
            let written =
                store::replace_customer_rows(&mut tx, "customer_send_slots", &["customer_id", "slot"], &rows).await?;
            let tenant_written = store::replace_all(&mut tx, "tenant_send_slots", &[tenant_rows]).await?;
            tx.commit().await?;
            stages.lap("write");
            drop(rows);
            let derived = self.derive("send_slots", as_of, &batches).await?;
            stages.lap("derive");
            Ok((written + tenant_written, derived, stages.into_details(details)))
        }))
    }

    async fn analytics(
        &self,
        ctx: &SessionContext,
        as_of: DateTime<Utc>,
        bar: &ProgressBar,
    ) -> Result<Finish<'_>, PipelineError> {
        // Computed first, written in one transaction, then written to the lake: no pooled
        // connection waits on the lake's reads and writes (object storage, in production).
        let mut stages = Stages::start();
        let mut computed = Vec::new();
        for model in dashboard::MODELS {
            bar.set_message(format!("computing {model}"));
            let batches = dashboard::read_model(ctx, model, &self.config.roi, as_of).await?.collect().await?;
            let rows: Vec<CopyBatch> = batches.iter().map(|b| CopyBatch::of_batch(b, as_of)).collect();
            stages.lap(model);
            computed.push((*model, batches, rows));
        }
        bar.set_message("writing");
        Ok(Box::pin(async move {
            let mut tx = store::begin(&self.pool).await?;
            let mut total = 0;
            let mut per_model = serde_json::Map::new();
            for (model, _, rows) in &computed {
                let table = if *model == "content" {
                    "analytics_content".to_string()
                } else {
                    format!("analytics_daily_{model}")
                };
                let n = store::replace_all(&mut tx, &table, rows).await?;
                per_model.insert(table, n.into());
                total += n;
            }
            tx.commit().await?;
            stages.lap("write");
            let mut derived = Vec::new();
            for (model, batches, _) in &computed {
                derived.extend(self.derive(&format!("analytics_{model}"), as_of, batches).await?);
            }
            stages.lap("derive");
            Ok((total, derived, stages.into_details(serde_json::Value::Object(per_model))))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer-built JSON is the JSON a `json!` value per feature gave: hostile names
    /// escaped, numbers to four decimals, a non-finite number as null, no features as [].
    #[test]
    fn top_features_are_the_json_the_api_served() {
        let features: Vec<String> = vec!["days_since_order".into(), "say \"hi\"\n\u{0}é".into(), "orders_90d".into()];
        let score = |top: Vec<(usize, f64, f64)>| predictive::Score {
            tenant_id: "t".into(),
            customer_id: "c".into(),
            probability: 0.5,
            top_features: top,
        };
        let scores =
            vec![score(vec![(1, 0.123456, 3.0), (0, -2.5, 1e21), (2, f64::NAN, f64::INFINITY)]), score(vec![])];
        let built = top_features_json(&scores, &features).unwrap();
        for (i, s) in scores.iter().enumerate() {
            let expected = serde_json::Value::Array(
                s.top_features
                    .iter()
                    .map(|(f, c, v)| {
                        serde_json::json!({
                            "feature": features[*f],
                            "contribution": (c * 1e4).round() / 1e4,
                            "value": (v * 1e4).round() / 1e4,
                        })
                    })
                    .collect(),
            )
            .to_string();
            assert_eq!(built.value(i), expected);
        }
        assert!(top_features_json(&[score(vec![(3, 0.0, 0.0)])], &features).is_err());
    }
}
