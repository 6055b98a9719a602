//! Small SQL helpers shared by the metric definitions.

use chrono::{DateTime, Utc};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A timestamp column as microseconds since the epoch (Int64), NULL stays NULL.
pub fn micros(column: &str) -> String {
    format!("CAST({column} AS BIGINT)")
}

/// The day (UTC) of a timestamp column, as a DATE.
pub fn day(column: &str) -> String {
    format!("CAST(date_trunc('day', {column}) AS DATE)")
}

pub fn as_of_micros(as_of: DateTime<Utc>) -> i64 {
    as_of.timestamp_micros()
}

/// A single-quoted SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `column IN ('a', 'b')`, or `TRUE` when `only` is None (no filter).
pub fn in_list(column: &str, only: Option<&[String]>) -> String {
    match only {
        None => "TRUE".into(),
        Some([]) => "FALSE".into(),
        Some(values) => format!("{column} IN ({})", values.iter().map(|v| literal(v)).collect::<Vec<_>>().join(", ")),
    }
}
