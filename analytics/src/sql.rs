//! Small SQL helpers shared by the metric definitions.

use chrono::{DateTime, Utc};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A timestamp column as microseconds since the epoch (Int64), NULL stays NULL.
pub fn micros(column: &str) -> String {
    Dialect::DataFusion.micros(column)
}

/// Where a metric's SQL runs. The pipelines use DataFusion; the benchmark runs the very
/// same definitions inside Postgres and in DuckDB, which spell two things differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DataFusion,
    Postgres,
    DuckDb,
}

impl Dialect {
    pub fn micros(self, column: &str) -> String {
        match self {
            Dialect::DataFusion => format!("CAST({column} AS BIGINT)"),
            Dialect::Postgres => format!("CAST(extract(epoch from {column}) * 1000000 AS BIGINT)"),
            Dialect::DuckDb => format!("epoch_us({column})"),
        }
    }

    /// Integer division of two BIGINT expressions (DuckDB's `/` gives a float).
    pub fn int_div(self, a: &str, b: &str) -> String {
        match self {
            Dialect::DuckDb => format!("(({a}) // ({b}))"),
            _ => format!("(({a}) / ({b}))"),
        }
    }

    /// The 64-bit float type's name.
    pub fn double(self) -> &'static str {
        match self {
            Dialect::Postgres => "DOUBLE PRECISION",
            _ => "DOUBLE",
        }
    }

    /// A string column as plain text. DataFusion reads Parquet strings as views into the
    /// decoded pages, and a join's output views keep every page it read alive: sorting and
    /// partitioning them for a window carried that weight along (docs/benchmarks.md). The
    /// other engines have one string type.
    pub fn plain_text(self, column: &str) -> String {
        match self {
            Dialect::DataFusion => format!("arrow_cast({column}, 'Utf8')"),
            _ => column.to_string(),
        }
    }
}

/// The day (UTC) of a timestamp column, as a DATE. A plain cast: the lake's timestamps
/// are UTC, and DataFusion 55's `date_trunc('day', …)` on a zoned timestamp converts
/// every row through the time-zone database (1.4 s against 0.45 s over 8 M activities,
/// docs/benchmarks.md).
pub fn day(column: &str) -> String {
    format!("CAST({column} AS DATE)")
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
