use thiserror::Error;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Analytics(#[from] fibonacco_analytics::AnalyticsError),
    #[error(transparent)]
    Ingest(#[from] fibonacco_ingest::IngestError),
    #[error("lake: {0}")]
    Lake(#[from] fibonacco_ingest::error::LakeError),
    #[error("query failed: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Input(String),
}
