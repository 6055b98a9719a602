//! The API crate's one test binary: every resource family end to end through the full
//! router (in process) against the real Postgres and Redis, the schema's migrations, and
//! the platform around the routes. `fibonacco_api::testing` is the harness.

mod ads;
mod articles;
mod auth;
mod commerce;
mod content;
mod conversations;
mod customers;
mod fairness;
mod generation;
mod hostile;
mod imports;
mod knowledge;
mod learning;
mod migrations;
mod outbound;
mod personalities;
mod platform;
mod presentations;
mod segments;
mod surveys;
mod tenancy;
mod webhooks;
