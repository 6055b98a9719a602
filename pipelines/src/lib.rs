//! How and when the analytics run.
