//! Reading query results' columns for the rows the analytics tables take, and the
//! derived values (JSON components, ROI ratios) computed here from exact integers.

use datafusion::arrow::{
    array::{Array, AsArray, RecordBatch, StringArray},
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

/// `v` rounded to `decimals` decimals: the float nearest that decimal, as Postgres would
/// parse it from text (the rounded integer divided by an exact power of ten is correctly
/// rounded).
pub fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    // + 0.0 turns -0.0 into 0: "-0" reads oddly on a dashboard.
    (v * f).round() / f + 0.0
}

/// A float with at most `decimals` decimals, as text.
pub fn rounded(v: f64, decimals: i32) -> String {
    round_to(v, decimals).to_string()
}
