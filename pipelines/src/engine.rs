//! Where the DataFusion stages of a batch run execute: in this process (the default) or
//! on an Apache DataFusion Ballista cluster (`PIPELINES_ENGINE=ballista://host:port`).
//!
//! Either way the session is built here, over the same lake views
//! ([`fibonacco_ingest::view`]) and the same SQL: with Ballista the session's planner
//! sends each query's plan to the scheduler, whose executors read the lake's Parquet
//! files themselves (so the lake must be where they can reach it: S3, or a directory they
//! share) and hand the result back as Arrow. What follows the DataFusion stages (the
//! Polars feature step, training, the write-back to Postgres) stays in this process: it
//! needs the whole frame at once, and its inputs are one row per customer, not the events.

use std::{fmt, str::FromStr, sync::Arc};

use ballista::prelude::SessionContextExt;
use datafusion::{
    execution::{
        SessionStateBuilder,
        runtime_env::{RuntimeEnv, RuntimeEnvBuilder},
    },
    prelude::SessionContext,
};
use fibonacco_ingest::{Lake, lake::Manifest, view};

use crate::error::PipelineError;

/// The scheduler port Ballista's own binaries listen on when none is given.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// A Ballista scheduler's address, as `PIPELINES_ENGINE` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduler {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ballista://{}:{}", self.host, self.port)
    }
}

/// Where a batch run's DataFusion stages run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// DataFusion in this process.
    #[default]
    Local,
    /// A Ballista cluster, through its scheduler.
    Ballista(Scheduler),
}

impl FromStr for Engine {
    type Err = PipelineError;

    /// `local` (or nothing) or `ballista://host[:port]`: the scheme is required, so a
    /// host name alone cannot be mistaken for a setting.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| PipelineError::Input(format!("PIPELINES_ENGINE {text:?}: {why}"));
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("local") {
            return Ok(Self::Local);
        }
        let rest = text.strip_prefix("ballista://").ok_or_else(|| bad("expected `local` or `ballista://host:port`"))?;
        let url = url::Url::parse(&format!("http://{rest}")).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
            return Err(bad("only a host and a port"));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        let port = url.port().unwrap_or(DEFAULT_SCHEDULER_PORT);
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(Self::Ballista(Scheduler { host: host.to_string(), port }))
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Ballista(s) => s.fmt(f),
        }
    }
}

impl Engine {
    /// `PIPELINES_ENGINE` through `lookup` (the environment in production).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        lookup("PIPELINES_ENGINE").map_or(Ok(Self::Local), |v| v.parse())
    }

    /// A session over the lake as its manifest lists it now, planned here and executed
    /// where this engine says.
    #[tracing::instrument(skip(lake), fields(engine = %self))]
    pub async fn session(&self, lake: &Lake) -> Result<(SessionContext, Manifest), PipelineError> {
        match self {
            Self::Local => Ok(view::session(lake).await?),
            Self::Ballista(scheduler) => {
                let mut config = view::session_config()?;
                // Plain strings, not string views: a sort's or join's output views point
                // into every buffer of its input, and Ballista writes each stage's batches
                // to shuffle files as they are, so every batch carried the column's whole
                // data (a 100,000-row, four-column result was a 192 MB file, fetched in
                // about 24 s). In process nothing is written and views stay faster.
                config.options_mut().execution.parquet.schema_force_view_types = false;
                config.options_mut().sql_parser.map_string_types_to_utf8view = false;
                let state = SessionStateBuilder::new()
                    .with_config(config)
                    .with_runtime_env(lake_runtime(lake, RuntimeEnvBuilder::new())?)
                    .with_default_features()
                    .build();
                let url = format!("df://{}:{}", scheduler.host, scheduler.port);
                let ctx = SessionContext::remote_with_state(&url, state).await?;
                Ok(view::open(ctx, lake).await?)
            }
        }
    }
}

/// A runtime that reads `lake` wherever it is: a local directory through the default
/// file store, an object store (S3) through the lake's own client and its settings.
pub fn lake_runtime(lake: &Lake, builder: RuntimeEnvBuilder) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let runtime = builder.build()?;
    if lake.base_url().scheme() != "file" {
        runtime.register_object_store(lake.base_url(), lake.store());
    }
    Ok(Arc::new(runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ballista(host: &str, port: u16) -> Engine {
        Engine::Ballista(Scheduler { host: host.into(), port })
    }

    #[test]
    fn engines_parse_from_their_setting() {
        assert_eq!("".parse::<Engine>().unwrap(), Engine::Local);
        assert_eq!(" LOCAL ".parse::<Engine>().unwrap(), Engine::Local);
        assert_eq!("ballista://sched.internal:50070".parse::<Engine>().unwrap(), ballista("sched.internal", 50070));
        assert_eq!("ballista://10.0.0.5".parse::<Engine>().unwrap(), ballista("10.0.0.5", DEFAULT_SCHEDULER_PORT));
        assert_eq!("ballista://[::1]:7000".parse::<Engine>().unwrap(), ballista("[::1]", 7000));
        assert_eq!(ballista("h", 1).to_string(), "ballista://h:1");
        assert_eq!(Engine::from_lookup(|_| None).unwrap(), Engine::Local);
    }

    #[test]
    fn bad_engines_are_refused_with_the_setting_named() {
        for bad in [
            "sched:50050",
            "df://sched:50050",
            "ballista://",
            "ballista://:50050",
            "ballista://h:99999",
            "ballista://h:0",
            "ballista://h:1/path",
            "ballista://user@h:1",
            "ballista://h:1?x=1",
            "ballista://h\r\nX: y",
        ] {
            let err = bad.parse::<Engine>().expect_err(bad).to_string();
            assert!(err.starts_with("PIPELINES_ENGINE"), "{bad}: {err}");
        }
    }
}
