//! DataFusion → Polars: the record batches of a query, written as one Arrow IPC stream
//! and read by Polars' IPC reader. Buffers are copied once, rows are never converted one
//! by one, and no `unsafe` FFI is needed (the workspace forbids it; the C data interface
//! would save that one copy).

use datafusion::{
    arrow::{ipc::writer::StreamWriter, record_batch::RecordBatch},
    prelude::{DataFrame as DfFrame, SessionContext},
};
use polars::prelude::{DataFrame, IpcStreamReader, SerReader};

use crate::AnalyticsError;

/// Runs `sql` in `ctx` and returns the result as a Polars frame.
#[tracing::instrument(skip_all)]
pub async fn query_frame(ctx: &SessionContext, sql: &str) -> Result<DataFrame, AnalyticsError> {
    let df = ctx.sql(sql).await?;
    frame_of(df).await
}

pub async fn frame_of(df: DfFrame) -> Result<DataFrame, AnalyticsError> {
    let schema = df.schema().inner().clone();
    let batches = df.collect().await?;
    to_polars(&schema, &batches)
}

pub fn to_polars(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<DataFrame, AnalyticsError> {
    let mut bytes = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut bytes, schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    Ok(IpcStreamReader::new(std::io::Cursor::new(bytes)).finish()?)
}
