//! Turning query results into the rows the analytics tables take: every column rendered
//! as text for `COPY`, plus the derived columns (JSON components, ROI ratios) computed
//! here from exact integers.

use chrono::{DateTime, Utc};
use datafusion::arrow::{
    array::{Array, AsArray, RecordBatch, StringArray, StringBuilder},
    compute::cast,
    datatypes::DataType,
};

use crate::PipelineError;

/// A column of any type as text (NULL stays NULL).
pub fn text(batch: &RecordBatch, name: &str) -> Result<StringArray, PipelineError> {
    let column =
        batch.column_by_name(name).ok_or_else(|| PipelineError::Input(format!("result has no column {name}")))?;
    Ok(cast(column, &DataType::Utf8)?.as_string::<i32>().clone())
}

pub fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, PipelineError> {
    let column =
        batch.column_by_name(name).ok_or_else(|| PipelineError::Input(format!("result has no column {name}")))?;
    let c = cast(column, &DataType::Float64)?;
    let a = c.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))).collect())
}

pub fn ints(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>, PipelineError> {
    let column =
        batch.column_by_name(name).ok_or_else(|| PipelineError::Input(format!("result has no column {name}")))?;
    let c = cast(column, &DataType::Int64)?;
    let a = c.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))).collect())
}

/// A batch of named text columns: what `COPY` takes.
pub struct TextBatch {
    pub columns: Vec<(String, StringArray)>,
}

impl TextBatch {
    pub fn new() -> Self {
        Self { columns: Vec::new() }
    }

    pub fn push(&mut self, name: &str, values: StringArray) {
        self.columns.push((name.to_string(), values));
    }

    pub fn push_iter<I, S>(&mut self, name: &str, values: I)
    where
        I: IntoIterator<Item = Option<S>>,
        S: AsRef<str>,
    {
        let mut b = StringBuilder::new();
        for v in values {
            match v {
                Some(v) => b.append_value(v.as_ref()),
                None => b.append_null(),
            }
        }
        self.push(name, b.finish());
    }

    /// Every column of `batch` as text, then `as_of`: a result whose columns are the
    /// table's, in its order.
    pub fn of_batch(batch: &RecordBatch, as_of: DateTime<Utc>) -> Result<Self, PipelineError> {
        let mut out = Self::new();
        for field in batch.schema().fields() {
            out.push(field.name(), text(batch, field.name())?);
        }
        out.push_as_of(batch.num_rows(), as_of);
        Ok(out)
    }

    /// The same `as_of` on every row.
    pub fn push_as_of(&mut self, rows: usize, as_of: DateTime<Utc>) {
        let t = as_of.to_rfc3339();
        self.push_iter("as_of", std::iter::repeat_n(Some(t.as_str()), rows));
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map(|(_, c)| c.len()).unwrap_or(0)
    }

    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The `COPY … FROM STDIN` text of `rows`: a million-row result is sent in slices,
    /// never rendered whole (that would be another copy of every column at once).
    pub fn copy_text_of(&self, rows: std::ops::Range<usize>) -> String {
        let mut out = String::with_capacity(rows.len() * 64);
        for row in rows {
            for (i, (_, column)) in self.columns.iter().enumerate() {
                if i > 0 {
                    out.push('\t');
                }
                fibonacco_platform::db::copy_field(&mut out, column.is_valid(row).then(|| column.value(row)));
            }
            out.push('\n');
        }
        out
    }
}

impl Default for TextBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// A float with at most `decimals` decimals, as text.
pub fn rounded(v: f64, decimals: i32) -> String {
    let f = 10f64.powi(decimals);
    let r = (v * f).round() / f;
    // -0.00 reads oddly on a dashboard.
    if r == 0.0 { "0".into() } else { r.to_string() }
}
