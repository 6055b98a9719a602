//! Results on their way into Postgres: named Arrow columns ([`CopyBatch`]) written by
//! `COPY … FROM STDIN (FORMAT binary)` in the binary form of each target column's type.
//!
//! Binary rather than text because the values already are numbers, timestamps and uuids:
//! rendering a million rows as text for Postgres to parse back costs both processes CPU,
//! and a float goes over exactly as it was computed. The target's column types are read
//! from the catalog ([`ColumnType`]), and each Arrow column is cast once to the Arrow type
//! that type's binary form is written from; a value that does not fit its column (a
//! malformed uuid, 70,000 into a smallint) is an [`PipelineError::Input`] naming the
//! column, before Postgres sees a byte.

use chrono::{DateTime, Utc};
use datafusion::arrow::{
    array::{
        Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    },
    buffer::NullBuffer,
    compute::{CastOptions, cast_with_options},
    datatypes::{DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType},
};
use std::sync::Arc;

use crate::PipelineError;

/// Named columns in the target table's order of the caller's choosing: what one `COPY`
/// takes. Columns are Arrow arrays of any type the target column's type can be cast from.
#[derive(Default)]
pub struct CopyBatch {
    columns: Vec<(String, ArrayRef)>,
}

impl CopyBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: &str, values: ArrayRef) {
        self.columns.push((name.to_string(), values));
    }

    /// `batch`'s column `name`, as it is.
    pub fn push_column(&mut self, batch: &RecordBatch, name: &str) -> Result<(), PipelineError> {
        let column =
            batch.column_by_name(name).ok_or_else(|| PipelineError::Input(format!("result has no column {name}")))?;
        self.push(name, column.clone());
        Ok(())
    }

    pub fn push_floats(&mut self, name: &str, values: impl IntoIterator<Item = Option<f64>>) {
        self.push(name, Arc::new(values.into_iter().collect::<Float64Array>()));
    }

    pub fn push_texts<S: AsRef<str>>(&mut self, name: &str, values: impl IntoIterator<Item = Option<S>>) {
        self.push(name, Arc::new(values.into_iter().collect::<StringArray>()));
    }

    /// Every column of `batch`, then `as_of`: a result whose columns are the table's.
    pub fn of_batch(batch: &RecordBatch, as_of: DateTime<Utc>) -> Self {
        let mut out = Self::new();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            out.push(field.name(), column.clone());
        }
        out.push_as_of(batch.num_rows(), as_of);
        out
    }

    /// The same `as_of` on every row.
    pub fn push_as_of(&mut self, rows: usize, as_of: DateTime<Utc>) {
        let values = TimestampMicrosecondArray::from_value(as_of.timestamp_micros(), rows).with_timezone("UTC");
        self.push("as_of", Arc::new(values));
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map(|(_, c)| c.len()).unwrap_or(0)
    }

    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The binary `COPY` writer of this batch for a table whose columns have `types`
    /// (looked up by name): every column cast once, checked against its type as it is
    /// written.
    pub fn encoder(&self, types: &[(String, ColumnType)]) -> Result<Encoder, PipelineError> {
        let columns =
            self.columns
                .iter()
                .map(|(name, values)| {
                    let ty =
                        types.iter().find(|(n, _)| n == name).map(|(_, t)| *t).ok_or_else(|| {
                            PipelineError::Input(format!("the table being written has no column {name}"))
                        })?;
                    Named::new(name, ty, values)
                })
                .collect::<Result<_, _>>()?;
        Ok(Encoder { columns, rows: self.rows() })
    }
}

/// A Postgres column type the binary `COPY` writes, from `pg_attribute`'s type oid and
/// type modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float8,
    /// `numeric(p, s)`: written with exactly `scale` decimals.
    Numeric {
        scale: u16,
    },
    /// text, varchar, char(n): the string's bytes.
    Text,
    Jsonb,
    Uuid,
    Date,
    Timestamptz,
}

impl ColumnType {
    /// From `pg_type`'s oid and the column's `atttypmod`; None for a type this writer
    /// does not know.
    pub fn of_oid(oid: u32, typmod: i32) -> Option<Self> {
        Some(match oid {
            16 => Self::Bool,
            21 => Self::Int2,
            23 => Self::Int4,
            20 => Self::Int8,
            701 => Self::Float8,
            // A numeric typmod is ((precision << 16) | scale) + 4; -1 means unconstrained,
            // whose scale a float does not decide, so it is not written from one.
            1700 if typmod >= 4 => Self::Numeric { scale: ((typmod - 4) & 0xffff) as u16 },
            25 | 1043 | 1042 => Self::Text,
            3802 => Self::Jsonb,
            2950 => Self::Uuid,
            1082 => Self::Date,
            1184 => Self::Timestamptz,
            _ => return None,
        })
    }
}

/// One column cast to the Arrow type its Postgres type is written from.
enum Column {
    Bool(BooleanArray),
    Int { values: datafusion::arrow::array::Int64Array, bytes: u8 },
    Float8(Float64Array),
    Numeric { values: Float64Array, scale: u16 },
    Text(StringArray),
    Jsonb(StringArray),
    Uuid(StringArray),
    Date(Date32Array),
    Timestamptz(TimestampMicrosecondArray),
}

struct Named {
    name: String,
    column: Column,
    /// Which rows are NULL (whatever the column's type).
    nulls: Option<NullBuffer>,
}

impl Named {
    fn new(name: &str, ty: ColumnType, values: &ArrayRef) -> Result<Self, PipelineError> {
        // Strict casts: a string that is no number or date, or a number out of the
        // target's range, is an error here (Arrow's default cast would make it NULL).
        let options = CastOptions { safe: false, ..CastOptions::default() };
        let to = |t: DataType| {
            cast_with_options(values, &t, &options)
                .map_err(|e| PipelineError::Input(format!("column {name} cannot be written as {ty:?}: {e}")))
        };
        // Arrow casts a float to an integer by truncating; an integer column is never
        // fed fractions.
        if matches!(ty, ColumnType::Int2 | ColumnType::Int4 | ColumnType::Int8) && values.data_type().is_floating() {
            return Err(PipelineError::Input(format!("column {name} holds floats; the table wants integers")));
        }
        let column = match ty {
            ColumnType::Bool => Column::Bool(to(DataType::Boolean)?.as_boolean().clone()),
            ColumnType::Int2 | ColumnType::Int4 | ColumnType::Int8 => Column::Int {
                values: to(DataType::Int64)?.as_primitive::<Int64Type>().clone(),
                bytes: match ty {
                    ColumnType::Int2 => 2,
                    ColumnType::Int4 => 4,
                    _ => 8,
                },
            },
            ColumnType::Float8 => Column::Float8(to(DataType::Float64)?.as_primitive::<Float64Type>().clone()),
            ColumnType::Numeric { scale } => {
                Column::Numeric { values: to(DataType::Float64)?.as_primitive::<Float64Type>().clone(), scale }
            }
            ColumnType::Text => Column::Text(to(DataType::Utf8)?.as_string::<i32>().clone()),
            ColumnType::Jsonb => Column::Jsonb(to(DataType::Utf8)?.as_string::<i32>().clone()),
            ColumnType::Uuid => Column::Uuid(to(DataType::Utf8)?.as_string::<i32>().clone()),
            ColumnType::Date => Column::Date(to(DataType::Date32)?.as_primitive::<Date32Type>().clone()),
            ColumnType::Timestamptz => Column::Timestamptz(
                to(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))?
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone(),
            ),
        };
        Ok(Self { name: name.to_string(), column, nulls: values.logical_nulls() })
    }
}

/// Writes a [`CopyBatch`] in `COPY`'s binary format, a slice of rows at a time (a million
/// rows are never rendered at once).
pub struct Encoder {
    columns: Vec<Named>,
    rows: usize,
}

/// Postgres' epoch (2000-01-01) in Unix microseconds and days.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;

impl Encoder {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The signature, flags and header extension that open a binary `COPY` stream.
    pub fn header() -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out
    }

    /// The field count -1 that closes it.
    pub fn trailer() -> [u8; 2] {
        (-1i16).to_be_bytes()
    }

    /// Appends `rows` to `out`.
    pub fn encode(&self, rows: std::ops::Range<usize>, out: &mut Vec<u8>) -> Result<(), PipelineError> {
        let fields = i16::try_from(self.columns.len())
            .map_err(|_| PipelineError::Input(format!("{} columns is more than COPY takes", self.columns.len())))?;
        for row in rows {
            out.extend_from_slice(&fields.to_be_bytes());
            for named in &self.columns {
                encode_value(named, row, out)?;
            }
        }
        Ok(())
    }
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), PipelineError> {
    let len = i32::try_from(bytes.len()).map_err(|_| PipelineError::Input("a value over 2 GB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn encode_value(named: &Named, row: usize, out: &mut Vec<u8>) -> Result<(), PipelineError> {
    let Named { name, column, nulls } = named;
    if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    match column {
        Column::Bool(a) => field(out, &[u8::from(a.value(row))]),
        Column::Int { values, bytes } => {
            let v = values.value(row);
            match bytes {
                2 => field(out, &i16::try_from(v).map_err(|_| out_of_range(name, v, "smallint"))?.to_be_bytes()),
                4 => field(out, &i32::try_from(v).map_err(|_| out_of_range(name, v, "integer"))?.to_be_bytes()),
                _ => field(out, &v.to_be_bytes()),
            }
        }
        Column::Float8(a) => field(out, &a.value(row).to_be_bytes()),
        Column::Numeric { values, scale } => field(out, &numeric(name, values.value(row), *scale)?),
        Column::Text(a) => field(out, a.value(row).as_bytes()),
        Column::Jsonb(a) => {
            // jsonb's binary form is a version byte (1) and the JSON text.
            let text = a.value(row).as_bytes();
            let len = i32::try_from(text.len() + 1).map_err(|_| PipelineError::Input("a value over 2 GB".into()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.push(1);
            out.extend_from_slice(text);
            Ok(())
        }
        Column::Uuid(a) => {
            let id = uuid::Uuid::parse_str(a.value(row))
                .map_err(|_| PipelineError::Input(format!("column {name}, row {row}: not a uuid")))?;
            field(out, id.as_bytes())
        }
        Column::Date(a) => field(out, &(a.value(row) - PG_EPOCH_DAYS).to_be_bytes()),
        Column::Timestamptz(a) => field(out, &(a.value(row) - PG_EPOCH_MICROS).to_be_bytes()),
    }
}

fn out_of_range(name: &str, value: i64, ty: &str) -> PipelineError {
    PipelineError::Input(format!("column {name}: {value} does not fit a {ty}"))
}

/// `value` rounded half away from zero to `scale` decimals, in numeric's binary form:
/// digit count, weight (the power of 10,000 of the first digit), sign, display scale, then
/// base-10,000 digits with the decimal point on a digit boundary.
fn numeric(name: &str, value: f64, scale: u16) -> Result<Vec<u8>, PipelineError> {
    // 10^18 fits an i64 with room; a dashboard figure near it is a bug upstream.
    let scaled = value * 10f64.powi(i32::from(scale));
    if !scaled.is_finite() || scaled.abs() >= 1e18 {
        return Err(PipelineError::Input(format!(
            "column {name}: {value} does not fit a numeric with {scale} decimals"
        )));
    }
    let scaled = scaled.round() as i64;
    let negative = scaled < 0;
    // Pad the fraction to whole base-10,000 digits.
    let pad = (4 - scale % 4) % 4;
    let mut unscaled = u128::from(scaled.unsigned_abs()) * 10u128.pow(u32::from(pad));
    let fraction_digits = i32::from((scale + pad) / 4);
    let mut digits = Vec::new();
    while unscaled > 0 {
        digits.push((unscaled % 10_000) as i16);
        unscaled /= 10_000;
    }
    digits.reverse();
    let mut weight = digits.len() as i32 - fraction_digits - 1;
    // Postgres stores no leading or trailing zero digits (the weight places the rest).
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= leading as i32;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&(if digits.is_empty() { 0 } else { weight as i16 }).to_be_bytes());
    out.extend_from_slice(&(if negative && !digits.is_empty() { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&scale.to_be_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits_of(bytes: &[u8]) -> (i16, i16, u16, u16, Vec<i16>) {
        let word = |i: usize| [bytes[i], bytes[i + 1]];
        let n = i16::from_be_bytes(word(0));
        let digits = (0..n as usize).map(|k| i16::from_be_bytes(word(8 + 2 * k))).collect();
        (n, i16::from_be_bytes(word(2)), u16::from_be_bytes(word(4)), u16::from_be_bytes(word(6)), digits)
    }

    #[test]
    fn numerics_land_on_base_ten_thousand_digits() {
        assert_eq!(digits_of(&numeric("n", 12.34, 2).unwrap()), (2, 0, 0, 2, vec![12, 3400]));
        assert_eq!(digits_of(&numeric("n", 0.05, 2).unwrap()), (1, -1, 0, 2, vec![500]));
        assert_eq!(digits_of(&numeric("n", -100.0, 2).unwrap()), (1, 0, 0x4000, 2, vec![100]));
        assert_eq!(digits_of(&numeric("n", 10_000.5, 2).unwrap()), (3, 1, 0, 2, vec![1, 0, 5000]));
        assert_eq!(digits_of(&numeric("n", 0.0, 2).unwrap()), (0, 0, 0, 2, vec![]));
        assert_eq!(digits_of(&numeric("n", -0.001, 2).unwrap()), (0, 0, 0, 2, vec![]));
        assert_eq!(digits_of(&numeric("n", 1.23456, 5).unwrap()), (3, 0, 0, 5, vec![1, 2345, 6000]));
        assert!(numeric("n", f64::NAN, 2).is_err());
        assert!(numeric("n", 1e300, 2).is_err());
    }
}
