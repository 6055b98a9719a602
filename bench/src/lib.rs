//! The benchmarks behind `fibonacco bench <area>` and the synthetic generator behind
//! `fibonacco seed --customers`. Each bench prints its figure and, from the same run, a
//! baseline to read it against; `--json` ends with one JSON object. Benchmarks work in
//! scratch databases of their own (`fibtest_*`), never in the application's.

pub mod api;
pub mod deliverability;
pub mod import;
pub mod ingest;
pub mod pipelines;
pub mod queue;
mod recall;
pub mod search;
pub mod send_time;
pub mod synthetic;

use clap::{Args, Subcommand};
use fibonacco_platform::{config::env_lookup, scratch::ScratchDatabase};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    area: BenchArea,
}

#[derive(Subcommand)]
pub enum BenchArea {
    /// Customer reads over HTTP: `GET /api/v1/customers/{id}` and the first list page.
    Api(api::ApiBench),
    /// SES events/s through the SNS endpoint (signature checked, certificate cached)
    /// against the same events applied without HTTP or signature.
    Deliverability(deliverability::DeliverabilityBench),
    /// Jobs/s through the Redis queue (no-op handler) and sends/s of an e-mail campaign.
    Queue(queue::QueueBench),
    /// Rows/s of a customer CSV import (new, unchanged, changed) against COPY of the file.
    Import(import::ImportBench),
    /// Embedding throughput, and vector search latency and recall@10 with a tenant filter.
    Search(search::SearchBench),
    /// Changes/s from the WAL into the Parquet lake vs `pg_recvlogical`, peak RSS, and
    /// commit-to-durable lag under a steady transaction rate.
    Ingest(ingest::IngestBench),
    /// Full recompute of every score over a seeded lake, against the same engagement and
    /// ROI SQL inside Postgres and in DuckDB; peak RSS, API latency, watch latency.
    Pipelines(pipelines::PipelinesBench),
    /// Send-time optimisation offline: the response factor of the moments it picks from
    /// the lake's history, against sending at once and the synthetic customers' hidden
    /// best hours.
    SendTime(send_time::SendTimeBench),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.area {
        BenchArea::Api(a) => api::run(a).await,
        BenchArea::Deliverability(a) => deliverability::run(a).await,
        BenchArea::Queue(a) => queue::run(a).await,
        BenchArea::Import(a) => import::run(a).await,
        BenchArea::Search(a) => search::run(a).await,
        BenchArea::Ingest(a) => ingest::run(a).await,
        BenchArea::Pipelines(a) => pipelines::run(a).await,
        BenchArea::SendTime(a) => send_time::run(a).await,
    }
}

/// A setting the benchmarks need from the environment (`make bench` loads `.stack/env`).
pub fn setting(name: &str) -> anyhow::Result<String> {
    env_lookup()(name).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!("{name} is not set: run the bench through `make bench` (it loads .stack/env) or export it")
    })
}

/// A fresh, migrated database on the server of `DATABASE_URL` with a pool of `max`.
pub async fn scratch(max: u32) -> anyhow::Result<ScratchDatabase> {
    Ok(ScratchDatabase::create(&setting("DATABASE_URL")?, max).await?)
}
