//! The ingest crate's one test binary: change data capture end to end against the real
//! Postgres (the tests of the `fibonacco ingest` process live with the binary's, in the
//! workspace root).

mod capture;
mod support;
mod tls;
mod wal;
