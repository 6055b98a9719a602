//! The pipelines crate's one test binary: seed → capture → every pipeline, the API that
//! serves the results, the watch against a full recompute, the webhooks' outbox, and the
//! binary `COPY` every pipeline writes with.

mod ballista;
mod copy;
mod runs;
mod webhooks;
