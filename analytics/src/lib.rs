//! What is computed: the metric and score definitions behind the dashboards, as
//! DataFusion SQL over the lake's current-state tables and Polars frames.
//!
//! Every function takes a [`datafusion::prelude::SessionContext`] that has the source
//! tables registered under their Postgres names (`customer_activities`, `orders`, …) and
//! an `as_of` instant: rows after it are invisible, so a run for a past date computes
//! what was knowable then. Where the data comes from (the lake, in-memory fixtures) and
//! where results go is the caller's business (`fibonacco-pipelines`).

pub mod bridge;
pub mod config;
pub mod dashboard;
pub mod engagement;
pub mod error;
pub mod predictive;
pub mod roi;
pub mod send_time;
pub mod sql;

pub use config::{AnalyticsConfig, EngagementConfig, PredictiveConfig, RoiConfig};
pub use error::AnalyticsError;
