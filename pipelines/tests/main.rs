//! The pipelines crate's one test binary: seed → capture → every pipeline, the API that
//! serves the results, and the watch against a full recompute.

mod runs;
