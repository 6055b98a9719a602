//! How and when the analytics run: a batch run recomputes everything from the lake at an
//! `as_of` instant; the watch run follows the change feed and recomputes only the
//! customers and campaigns it touched. Results replace rows of the analytics tables in
//! Postgres (what the API reads) and land as Parquet under `lake/_derived/` for data
//! teams; every run is recorded in `pipeline_runs` with its as-of, the lake's durable LSN
//! it read and its duration. The webhooks' outbox (`webhooks`) turns the same lake's
//! changes into events and deliveries for the tenants' endpoints.

pub mod batch;
pub mod cluster;
pub mod copy;
pub mod engine;
pub mod error;
pub mod output;
pub mod stages;
pub mod store;
pub mod watch;
pub mod webhooks;

pub use batch::{Pipeline, Pipelines, RunReport};
pub use engine::Engine;
pub use error::PipelineError;
