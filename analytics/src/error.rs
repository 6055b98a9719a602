use thiserror::Error;

/// Everything a metric computation can fail with.
#[derive(Debug, Error)]
pub enum AnalyticsError {
    #[error("query failed: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("frame operation failed: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("arrow conversion failed: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("model training failed: {0}")]
    Model(String),
    /// The input cannot support the computation (too little history, no positives, …).
    #[error("{0}")]
    Insufficient(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}
