//! DataFusion → Polars: the record batches of a query, written as one Arrow IPC stream
//! and read by Polars' IPC reader. Rows are never converted one by one, and no `unsafe`
//! FFI is needed (the workspace forbids it; the C data interface would save one copy).
//!
//! Two things keep the hand-over's memory in proportion to the result:
//! - **Batches are streamed** into the IPC buffer as DataFusion produces them, never
//!   collected first: at most the IPC bytes and Polars' frame exist at once.
//! - **View columns are compacted.** DataFusion reads Parquet strings as `Utf8View`, whose
//!   arrays point into the decoded pages they came from, shared by many batches. IPC
//!   writes every buffer a batch points into, whole, for every batch: 200,000 customer ids
//!   (7 MB of text) became 1.1 GB of IPC, growing with the square of the table (the
//!   out-of-memory kill at 1 M customers in issue #18). Casting each batch's view columns
//!   to plain `Utf8`/`Binary` copies only the bytes its rows use.

use std::sync::Arc;

use datafusion::{
    arrow::{
        compute::cast,
        datatypes::{DataType, Field, Schema, SchemaRef},
        ipc::writer::StreamWriter,
        record_batch::RecordBatch,
    },
    execution::SendableRecordBatchStream,
    prelude::{DataFrame as DfFrame, SessionContext},
};
use futures_util::StreamExt;
use polars::prelude::{DataFrame, IpcStreamReader, SerReader};

use crate::AnalyticsError;

/// Runs `sql` in `ctx` and returns the result as a Polars frame.
#[tracing::instrument(skip_all)]
pub async fn query_frame(ctx: &SessionContext, sql: &str) -> Result<DataFrame, AnalyticsError> {
    let df = ctx.sql(sql).await?;
    frame_of(df).await
}

/// A DataFusion frame's rows as a Polars frame, streamed batch by batch.
pub async fn frame_of(df: DfFrame) -> Result<DataFrame, AnalyticsError> {
    let stream = df.execute_stream().await?;
    stream_to_polars(stream).await
}

async fn stream_to_polars(mut stream: SendableRecordBatchStream) -> Result<DataFrame, AnalyticsError> {
    let plain = plain_schema(&stream.schema());
    let mut bytes = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut bytes, &plain)?;
        while let Some(batch) = stream.next().await {
            writer.write(&compact(&batch?, &plain)?)?;
        }
        writer.finish()?;
    }
    Ok(IpcStreamReader::new(std::io::Cursor::new(bytes)).finish()?)
}

/// Batches already in memory as a Polars frame (tests, small results).
pub fn to_polars(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<DataFrame, AnalyticsError> {
    let plain = plain_schema(schema);
    let mut bytes = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut bytes, &plain)?;
        for batch in batches {
            writer.write(&compact(batch, &plain)?)?;
        }
        writer.finish()?;
    }
    Ok(IpcStreamReader::new(std::io::Cursor::new(bytes)).finish()?)
}

/// `schema` with view types replaced by their plain twins.
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
            DataType::BinaryView => f.as_ref().clone().with_data_type(DataType::Binary),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with its view columns copied into plain arrays of `plain`'s types.
fn compact(batch: &RecordBatch, plain: &SchemaRef) -> Result<RecordBatch, AnalyticsError> {
    let columns =
        batch
            .columns()
            .iter()
            .zip(plain.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    cast(column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(plain.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringViewArray;

    use super::*;

    #[test]
    fn view_columns_are_handed_over_without_the_buffers_they_share() {
        // One large buffer, many small slices of it: what Parquet decoding produces.
        let long: Vec<String> = (0..20_000).map(|i| format!("{i:036}")).collect();
        let all = StringViewArray::from_iter_values(long.iter().map(String::as_str));
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8View, false)]));
        let batches: Vec<RecordBatch> = (0..100)
            .map(|i| RecordBatch::try_new(schema.clone(), vec![Arc::new(all.slice(i * 10, 10))]).unwrap())
            .collect();
        let plain = plain_schema(&schema);
        let mut bytes = Vec::new();
        {
            let mut writer = StreamWriter::try_new(&mut bytes, &plain).unwrap();
            for b in &batches {
                writer.write(&compact(b, &plain).unwrap()).unwrap();
            }
            writer.finish().unwrap();
        }
        // 1,000 ids of 36 bytes, not 100 copies of the 720 kB buffer.
        assert!(bytes.len() < 200_000, "{} bytes of IPC for 36 kB of text", bytes.len());
        let frame = to_polars(&schema, &batches).unwrap();
        assert_eq!(frame.height(), 1000);
        let ids = frame.column("id").unwrap().str().unwrap().clone();
        assert_eq!(ids.get(0), Some(long[0].as_str()));
        assert_eq!(ids.get(999), Some(long[999].as_str()));
    }
}
