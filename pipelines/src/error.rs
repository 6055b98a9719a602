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
    #[error("queue: {0}")]
    Queue(#[from] fibonacco_platform::queue::QueueError),
    #[error("ballista: {0}")]
    Cluster(#[from] ballista_core::error::BallistaError),
    #[error("{0}")]
    Input(String),
}

impl fibonacco_platform::supervise::Fault for PipelineError {
    /// Only bad input (a pipeline name, a setting) waits for an operator; the rest is
    /// storage, queries over it and the database, which a later round may find well.
    fn transient(&self) -> bool {
        match self {
            Self::Ingest(e) => e.transient(),
            Self::Input(_) => false,
            _ => true,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Analytics(_) => "analytics",
            Self::Ingest(e) => e.kind(),
            Self::Lake(_) => "lake",
            Self::DataFusion(_) | Self::Arrow(_) => "query",
            Self::Database(_) => "database",
            Self::Queue(_) => "queue",
            Self::Cluster(_) => "cluster",
            Self::Input(_) => "input",
        }
    }
}
