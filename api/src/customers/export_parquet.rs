//! The customer export as Parquet: the same rows as the CSV, typed (timestamps as
//! timestamps, tags as a list, the JSON objects as JSON text), one row group per
//! [`ROW_GROUP`] customers. The file is written as it is read: each finished row group
//! leaves as a chunk of the response, then the footer, so memory is one row group.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use arrow_array::{
    ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray,
    builder::{ListBuilder, StringBuilder},
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};

use super::store::Customer;

/// Customers per row group (and per chunk of the response).
pub const ROW_GROUP: usize = 10_000;

pub fn schema() -> SchemaRef {
    let utc = Some("UTC".into());
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("slug", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("phone", DataType::Utf8, true),
        Field::new("tags", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false),
        Field::new("business_context", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, false),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, utc.clone()), false),
        Field::new("updated_at", DataType::Timestamp(TimeUnit::Microsecond, utc), false),
    ]))
}

/// Where the writer's bytes wait until the response takes them.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<Vec<u8>>>);

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned: no panics while held").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A Parquet file being written in pieces.
pub struct Writer {
    inner: ArrowWriter<Pending>,
    out: Pending,
    buffered: usize,
}

impl Writer {
    pub fn new() -> Result<Self, parquet::errors::ParquetError> {
        let out = Pending::default();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .build();
        Ok(Self { inner: ArrowWriter::try_new(out.clone(), schema(), Some(props))?, out, buffered: 0 })
    }

    /// Adds customers; returns the bytes of the row groups they completed (often none).
    pub fn push(&mut self, customers: &[Customer]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
        if !customers.is_empty() {
            self.inner.write(&batch(customers)?)?;
            self.buffered += customers.len();
        }
        if self.buffered >= ROW_GROUP {
            self.inner.flush()?;
            self.buffered = 0;
        }
        Ok(self.take())
    }

    /// The last row group and the footer.
    pub fn finish(mut self) -> Result<Vec<u8>, parquet::errors::ParquetError> {
        self.inner.finish()?;
        Ok(self.take())
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.0.lock().expect("not poisoned"))
    }
}

fn batch(customers: &[Customer]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let text = |f: &dyn Fn(&Customer) -> Option<String>| -> ArrayRef {
        Arc::new(customers.iter().map(f).collect::<StringArray>())
    };
    let mut tags = ListBuilder::new(StringBuilder::new());
    for c in customers {
        match c.metadata.get("tags") {
            Some(serde_json::Value::Array(a)) => {
                a.iter().filter_map(|t| t.as_str()).for_each(|t| tags.values().append_value(t))
            }
            Some(serde_json::Value::String(s)) => tags.values().append_value(s),
            _ => {}
        }
        tags.append(true);
    }
    let stamps = |f: &dyn Fn(&Customer) -> i64| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(customers.iter().map(f).collect::<Vec<_>>()).with_timezone("UTC"))
    };
    RecordBatch::try_new(
        schema(),
        vec![
            text(&|c| Some(c.id.to_string())),
            text(&|c| Some(c.name.clone())),
            text(&|c| Some(c.slug.clone())),
            text(&|c| c.email.clone()),
            text(&|c| c.phone.clone()),
            Arc::new(tags.finish()),
            text(&|c| Some(serde_json::Value::Object(c.business_context.0.clone()).to_string())),
            text(&|c| Some(serde_json::Value::Object(c.metadata.0.clone()).to_string())),
            stamps(&|c| c.created_at.timestamp_micros()),
            stamps(&|c| c.updated_at.timestamp_micros()),
        ],
    )
}
