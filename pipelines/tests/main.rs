//! The pipelines crate's one test binary: seed → capture → every pipeline, the API that
//! serves the results, the watch against a full recompute, and the webhooks' outbox.

mod ballista;
mod runs;
mod webhooks;
