//! Postgres column types as Arrow types, and the text form of a value as an Arrow value.
//!
//! Both sources of rows speak Postgres text output: pgoutput (text mode) and `COPY … TO
//! STDOUT` (after its escapes are undone). The sessions pin `TimeZone=UTC`,
//! `DateStyle=ISO`, `IntervalStyle=postgres`, `extra_float_digits=3` and
//! `bytea_output=hex`, so one parser serves both and reads exactly what Postgres wrote.
//! A type without an exact Arrow counterpart is kept as its text (`Utf8`): a value is
//! never rounded or guessed.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use datafusion::arrow::{
    array::{
        ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
        Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, Time64MicrosecondBuilder,
        TimestampMicrosecondBuilder,
    },
    datatypes::{DataType, Field, TimeUnit},
};

/// The session settings every reading connection pins (see the module comment).
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("timezone", "UTC"),
    ("datestyle", "ISO, YMD"),
    ("intervalstyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
];

/// How a column is stored in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// `numeric(p, s)` with p ≤ 38; unconstrained numeric is [`Kind::Text`].
    Decimal {
        precision: u8,
        scale: i8,
    },
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Bytea,
    /// text, varchar, uuid, json(b), enums and every type without an exact Arrow twin.
    Text,
    /// One-dimensional arrays of the scalar kinds above.
    List(Box<Kind>),
    /// pgvector's `vector`: `[1,2,3]` as a list of f32.
    Vector,
}

/// What the catalog says about a type Postgres did not build in.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub name: String,
    /// `pg_type.typtype`: b base, d domain, e enum, c composite, …
    pub typtype: char,
    /// Element type of an array type (0 otherwise).
    pub elem: u32,
    /// Base type of a domain (0 otherwise).
    pub base: u32,
}

/// The kind of a built-in type OID, or `None` when the catalog must be asked.
pub fn builtin_kind(oid: u32, typmod: i32) -> Option<Kind> {
    Some(match oid {
        16 => Kind::Bool,
        17 => Kind::Bytea,
        21 => Kind::Int16,
        23 => Kind::Int32,
        20 | 26 => Kind::Int64,
        700 => Kind::Float32,
        701 => Kind::Float64,
        1700 => numeric_kind(typmod),
        1082 => Kind::Date,
        1083 => Kind::Time,
        1114 => Kind::Timestamp,
        1184 => Kind::TimestampTz,
        18 | 19 | 25 | 114 | 1042 | 1043 | 2950 | 3802 | 869 | 650 | 1186 | 1266 | 790 => Kind::Text,
        1000 => Kind::List(Box::new(Kind::Bool)),
        1005 => Kind::List(Box::new(Kind::Int16)),
        1007 => Kind::List(Box::new(Kind::Int32)),
        1016 => Kind::List(Box::new(Kind::Int64)),
        1021 => Kind::List(Box::new(Kind::Float32)),
        1022 => Kind::List(Box::new(Kind::Float64)),
        1009 | 1015 | 1014 | 2951 | 199 | 3807 => Kind::List(Box::new(Kind::Text)),
        _ => return None,
    })
}

/// The kind of a type the catalog described (`info`), resolving domains and arrays
/// through `lookup`.
pub fn catalog_kind(info: &TypeInfo, lookup: &dyn Fn(u32) -> Option<Kind>) -> Kind {
    match info.typtype {
        'd' => lookup(info.base).unwrap_or(Kind::Text),
        'b' if info.name == "vector" => Kind::Vector,
        'b' if info.elem != 0 && info.name.starts_with('_') => match lookup(info.elem) {
            Some(k @ (Kind::Bool | Kind::Int16 | Kind::Int32 | Kind::Int64 | Kind::Float32 | Kind::Float64)) => {
                Kind::List(Box::new(k))
            }
            Some(Kind::Text) => Kind::List(Box::new(Kind::Text)),
            _ => Kind::Text,
        },
        _ => Kind::Text,
    }
}

fn numeric_kind(typmod: i32) -> Kind {
    if typmod < 4 {
        return Kind::Text;
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    let scale = (typmod - 4) & 0xffff;
    // Negative scales (PG 15+) are stored as 11 bits two's complement; keep those as text.
    if precision == 0 || precision > 38 || scale > precision {
        return Kind::Text;
    }
    Kind::Decimal { precision: precision as u8, scale: scale as i8 }
}

impl Kind {
    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int16 => DataType::Int16,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Bytea => DataType::Binary,
            Kind::Text => DataType::Utf8,
            Kind::List(inner) => DataType::List(Arc::new(Field::new("item", inner.data_type(), true))),
            Kind::Vector => DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
        }
    }

    /// Whether Postgres may store a value of this kind out of line (TOAST), so an update
    /// can leave it unchanged in the stream.
    pub fn toastable(&self) -> bool {
        matches!(self, Kind::Text | Kind::Bytea | Kind::List(_) | Kind::Vector | Kind::Decimal { .. })
    }
}

/// A value that cannot be stored as its column's kind: the text is not what the type's
/// output function writes, or it has no place in the Arrow type (numeric NaN in a decimal,
/// `infinity` in a date).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {text:?} as {kind:?}: {reason}")]
pub struct ValueError {
    pub kind: Kind,
    pub text: String,
    pub reason: &'static str,
}

fn bad(kind: &Kind, text: &str, reason: &'static str) -> ValueError {
    let shown: String = text.chars().take(80).collect();
    ValueError { kind: kind.clone(), text: shown, reason }
}

/// An Arrow builder for one column, appending Postgres text values.
pub enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    TimestampTz(TimestampMicrosecondBuilder),
    Bytea(BinaryBuilder),
    Text(StringBuilder),
    ListBool(ListBuilder<BooleanBuilder>),
    ListInt16(ListBuilder<Int16Builder>),
    ListInt32(ListBuilder<Int32Builder>),
    ListInt64(ListBuilder<Int64Builder>),
    ListFloat32(ListBuilder<Float32Builder>),
    ListFloat64(ListBuilder<Float64Builder>),
    ListText(ListBuilder<StringBuilder>),
}

impl ColumnBuilder {
    pub fn new(kind: &Kind) -> Self {
        match kind {
            Kind::Bool => Self::Bool(BooleanBuilder::new()),
            Kind::Int16 => Self::Int16(Int16Builder::new()),
            Kind::Int32 => Self::Int32(Int32Builder::new()),
            Kind::Int64 => Self::Int64(Int64Builder::new()),
            Kind::Float32 => Self::Float32(Float32Builder::new()),
            Kind::Float64 => Self::Float64(Float64Builder::new()),
            Kind::Decimal { precision, scale } => Self::Decimal(
                Decimal128Builder::new().with_precision_and_scale(*precision, *scale).expect("checked in numeric_kind"),
                *scale,
            ),
            Kind::Date => Self::Date(Date32Builder::new()),
            Kind::Time => Self::Time(Time64MicrosecondBuilder::new()),
            Kind::Timestamp => Self::Timestamp(TimestampMicrosecondBuilder::new()),
            Kind::TimestampTz => Self::TimestampTz(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            Kind::Bytea => Self::Bytea(BinaryBuilder::new()),
            Kind::Text => Self::Text(StringBuilder::new()),
            Kind::Vector => Self::ListFloat32(ListBuilder::new(Float32Builder::new())),
            Kind::List(inner) => match **inner {
                Kind::Bool => Self::ListBool(ListBuilder::new(BooleanBuilder::new())),
                Kind::Int16 => Self::ListInt16(ListBuilder::new(Int16Builder::new())),
                Kind::Int32 => Self::ListInt32(ListBuilder::new(Int32Builder::new())),
                Kind::Int64 => Self::ListInt64(ListBuilder::new(Int64Builder::new())),
                Kind::Float32 => Self::ListFloat32(ListBuilder::new(Float32Builder::new())),
                Kind::Float64 => Self::ListFloat64(ListBuilder::new(Float64Builder::new())),
                _ => Self::ListText(ListBuilder::new(StringBuilder::new())),
            },
        }
    }

    pub fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Decimal(b, _) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Timestamp(b) | Self::TimestampTz(b) => b.append_null(),
            Self::Bytea(b) => b.append_null(),
            Self::Text(b) => b.append_null(),
            Self::ListBool(b) => b.append_null(),
            Self::ListInt16(b) => b.append_null(),
            Self::ListInt32(b) => b.append_null(),
            Self::ListInt64(b) => b.append_null(),
            Self::ListFloat32(b) => b.append_null(),
            Self::ListFloat64(b) => b.append_null(),
            Self::ListText(b) => b.append_null(),
        }
    }

    /// Appends the value whose Postgres text output is `text`. On error nothing is
    /// appended.
    pub fn append_text(&mut self, kind: &Kind, text: &str) -> Result<(), ValueError> {
        match self {
            Self::Bool(b) => b.append_value(parse_bool(text).ok_or_else(|| bad(kind, text, "not t or f"))?),
            Self::Int16(b) => b.append_value(text.parse().map_err(|_| bad(kind, text, "not a smallint"))?),
            Self::Int32(b) => b.append_value(text.parse().map_err(|_| bad(kind, text, "not an integer"))?),
            Self::Int64(b) => b.append_value(text.parse().map_err(|_| bad(kind, text, "not a bigint"))?),
            Self::Float32(b) => b.append_value(parse_float(text).ok_or_else(|| bad(kind, text, "not a float"))? as f32),
            Self::Float64(b) => b.append_value(parse_float(text).ok_or_else(|| bad(kind, text, "not a float"))?),
            Self::Decimal(b, scale) => {
                b.append_value(parse_decimal(text, *scale).ok_or_else(|| bad(kind, text, "not a finite decimal"))?)
            }
            Self::Date(b) => b.append_value(parse_date(text).ok_or_else(|| bad(kind, text, "not a finite date"))?),
            Self::Time(b) => b.append_value(parse_time(text).ok_or_else(|| bad(kind, text, "not a time"))?),
            Self::Timestamp(b) => {
                b.append_value(parse_timestamp(text).ok_or_else(|| bad(kind, text, "not a finite timestamp"))?)
            }
            Self::TimestampTz(b) => {
                b.append_value(parse_timestamptz(text).ok_or_else(|| bad(kind, text, "not a finite timestamptz"))?)
            }
            Self::Bytea(b) => b.append_value(parse_bytea(text).ok_or_else(|| bad(kind, text, "not hex bytea"))?),
            Self::Text(b) => b.append_value(text),
            Self::ListBool(b) => append_list(b, kind, text, parse_bool)?,
            Self::ListInt16(b) => append_list(b, kind, text, |s| s.parse::<i16>().ok())?,
            Self::ListInt32(b) => append_list(b, kind, text, |s| s.parse::<i32>().ok())?,
            Self::ListInt64(b) => append_list(b, kind, text, |s| s.parse::<i64>().ok())?,
            Self::ListFloat32(b) => append_list(b, kind, text, |s| parse_float(s).map(|f| f as f32))?,
            Self::ListFloat64(b) => append_list(b, kind, text, parse_float)?,
            Self::ListText(b) => append_list(b, kind, text, |s| Some(s.to_string()))?,
        }
        Ok(())
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal(b, _) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Timestamp(b) | Self::TimestampTz(b) => Arc::new(b.finish()),
            Self::Bytea(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::ListBool(b) => Arc::new(b.finish()),
            Self::ListInt16(b) => Arc::new(b.finish()),
            Self::ListInt32(b) => Arc::new(b.finish()),
            Self::ListInt64(b) => Arc::new(b.finish()),
            Self::ListFloat32(b) => Arc::new(b.finish()),
            Self::ListFloat64(b) => Arc::new(b.finish()),
            Self::ListText(b) => Arc::new(b.finish()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Bool(b) => b.len(),
            Self::Int16(b) => b.len(),
            Self::Int32(b) => b.len(),
            Self::Int64(b) => b.len(),
            Self::Float32(b) => b.len(),
            Self::Float64(b) => b.len(),
            Self::Decimal(b, _) => b.len(),
            Self::Date(b) => b.len(),
            Self::Time(b) => b.len(),
            Self::Timestamp(b) | Self::TimestampTz(b) => b.len(),
            Self::Bytea(b) => b.len(),
            Self::Text(b) => b.len(),
            Self::ListBool(b) => b.len(),
            Self::ListInt16(b) => b.len(),
            Self::ListInt32(b) => b.len(),
            Self::ListInt64(b) => b.len(),
            Self::ListFloat32(b) => b.len(),
            Self::ListFloat64(b) => b.len(),
            Self::ListText(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends one array value: `{a,"b c",NULL}` (Postgres array output) or `[1,2]`
/// (pgvector). Every element is parsed before any is appended, so a refused value leaves
/// the column as it was. Multi-dimensional arrays and explicit bounds are refused.
fn append_list<T, B: ArrayBuilder + Extend<Option<T>>>(
    list: &mut ListBuilder<B>,
    kind: &Kind,
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<(), ValueError> {
    let elements = if let Some(body) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        // pgvector: plain comma-separated numbers, never NULL.
        if body.is_empty() { Vec::new() } else { body.split(',').map(|s| Some(s.to_string())).collect() }
    } else {
        split_array(text).ok_or_else(|| bad(kind, text, "not a one-dimensional array"))?
    };
    let parsed = elements
        .iter()
        .map(|e| match e {
            None => Ok(None),
            Some(s) => parse(s).map(Some).ok_or_else(|| bad(kind, text, "an element is not of the array's type")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    list.values().extend(parsed);
    list.append(true);
    Ok(())
}

/// Splits Postgres array output into elements (`None` for NULL), undoing quoting.
pub fn split_array(text: &str) -> Option<Vec<Option<String>>> {
    let body = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if body.is_empty() {
        return Some(out);
    }
    let mut chars = body.chars().peekable();
    loop {
        match chars.peek() {
            Some('"') => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '\\' => s.push(chars.next()?),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                out.push(Some(s));
            }
            Some('{') => return None,
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(if s == "NULL" { None } else { Some(s) });
            }
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "t" => Some(true),
        "f" => Some(false),
        _ => None,
    }
}

fn parse_float(text: &str) -> Option<f64> {
    // Rust reads NaN, inf and infinity case-insensitively, which covers Postgres' NaN,
    // Infinity and -Infinity.
    text.parse::<f64>().ok()
}

/// `-12.340` at scale 3 → -12340. The text must have at most `scale` fraction digits
/// (Postgres prints exactly `scale` for a constrained numeric).
pub fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    if frac_part.len() > scale || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: i128 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    for _ in frac_part.len()..scale {
        value = value.checked_mul(10)?;
    }
    Some(if negative { -value } else { value })
}

const UNIX_EPOCH_DATE: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");

fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    i32::try_from(date.signed_duration_since(UNIX_EPOCH_DATE).num_days()).ok()
}

fn parse_time(text: &str) -> Option<i64> {
    let t = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").ok()?;
    Some(i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1_000))
}

fn parse_timestamp(text: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|t| t.and_utc().timestamp_micros())
}

/// `2026-11-25 10:00:00.123456+00` (with TimeZone pinned to UTC; any offset is honoured).
fn parse_timestamptz(text: &str) -> Option<i64> {
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z").ok().map(|t| t.timestamp_micros())
}

fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// Undoes COPY text-format escapes in one field; `None` for `\N` (NULL).
pub fn copy_field(raw: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if raw == b"\\N" {
        return None;
    }
    if !raw.contains(&b'\\') {
        return Some(std::borrow::Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = raw[i + 1];
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(next - b'0');
                let mut n = 1;
                while n < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    v = v * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    Some(std::borrow::Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Float32Type, Int32Type, TimestampMicrosecondType};

    use super::*;

    fn one(kind: Kind, text: &str) -> ArrayRef {
        let mut b = ColumnBuilder::new(&kind);
        b.append_text(&kind, text).unwrap();
        b.finish()
    }

    #[test]
    fn timestamptz_reads_postgres_output_exactly() {
        let a = one(Kind::TimestampTz, "2026-11-25 10:00:01.123456+00");
        let v = a.as_primitive::<TimestampMicrosecondType>().value(0);
        assert_eq!(v, 1_795_600_801_123_456);
        let a = one(Kind::TimestampTz, "2026-11-25 12:00:01+02");
        assert_eq!(a.as_primitive::<TimestampMicrosecondType>().value(0), 1_795_600_801_000_000);
        let mut b = ColumnBuilder::new(&Kind::TimestampTz);
        assert!(b.append_text(&Kind::TimestampTz, "infinity").is_err());
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(parse_decimal("-12.34", 3), Some(-12340));
        assert_eq!(
            parse_decimal("99999999999999999999999999999999.999999", 6),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal("1.2345", 2), None, "more digits than the scale would be rounded");
        assert_eq!(parse_decimal("NaN", 2), None);
        let a = one(Kind::Decimal { precision: 5, scale: 2 }, "123.45");
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 12345);
    }

    #[test]
    fn arrays_and_vectors() {
        assert_eq!(
            split_array(r#"{a,"b c","x\"y",NULL,"NULL"}"#).unwrap(),
            vec![Some("a".into()), Some("b c".into()), Some("x\"y".into()), None, Some("NULL".into())]
        );
        assert_eq!(split_array("{}").unwrap(), Vec::<Option<String>>::new());
        assert!(split_array("{{1,2},{3,4}}").is_none());
        let a = one(Kind::List(Box::new(Kind::Int32)), "{1,NULL,3}");
        let list = a.as_list::<i32>();
        let inner = list.value(0);
        let ints = inner.as_primitive::<Int32Type>();
        assert_eq!((ints.value(0), ints.is_null(1), ints.value(2)), (1, true, 3));
        let a = one(Kind::Vector, "[0.5,-1,2e-3]");
        let inner = a.as_list::<i32>().value(0);
        let f = inner.as_primitive::<Float32Type>();
        assert_eq!((f.len(), f.value(0), f.value(1), f.value(2)), (3, 0.5, -1.0, 0.002));
    }

    #[test]
    fn dates_bytea_bool_and_copy_escapes() {
        let a = one(Kind::Date, "1970-01-11");
        assert_eq!(a.as_primitive::<Date32Type>().value(0), 10);
        assert_eq!(parse_bytea("\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(parse_bool("t"), Some(true));
        assert_eq!(copy_field(b"\\N"), None);
        assert_eq!(copy_field(b"a\\tb\\\\c\\nd").unwrap().as_ref(), b"a\tb\\c\nd");
        assert_eq!(copy_field(b"\\101\\x42").unwrap().as_ref(), b"AB");
    }

    #[test]
    fn numeric_typmods() {
        // numeric(5,2): typmod = (5 << 16 | 2) + 4
        assert_eq!(builtin_kind(1700, (5 << 16 | 2) + 4), Some(Kind::Decimal { precision: 5, scale: 2 }));
        assert_eq!(builtin_kind(1700, -1), Some(Kind::Text));
        assert_eq!(builtin_kind(1700, (60 << 16) + 4), Some(Kind::Text));
    }
}
