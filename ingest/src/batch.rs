//! Rows of one table accumulating into an Arrow record batch: the table's typed columns
//! plus the change metadata (`_lsn`, `_seq`, `_op`, `_commit_ts`, `_xid`, `_unchanged`).

use std::{collections::BTreeSet, sync::Arc};

use datafusion::arrow::{
    array::{ArrayRef, RecordBatch, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder},
    datatypes::SchemaRef,
};

use crate::{
    error::IngestError,
    pgtype::ColumnBuilder,
    schema::{Op, TableSchema},
};

/// One column value as the source gave it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Text(&'a str),
    /// An unchanged TOASTed value an update did not resend: stored as NULL with the column
    /// named in `_unchanged`, never as a made-up value.
    Unchanged,
}

/// Where a row sits in the change history.
#[derive(Debug, Clone, Copy)]
pub struct RowMeta {
    pub op: Op,
    /// The commit LSN of the row's transaction (the slot's consistent point for snapshot
    /// rows): with `seq`, a total order of every change and its identity.
    pub lsn: u64,
    pub seq: u32,
    /// Microseconds since the Unix epoch.
    pub commit_ts: i64,
    pub xid: Option<u32>,
}

pub struct TableBatch {
    pub schema: Arc<TableSchema>,
    arrow: SchemaRef,
    columns: Vec<ColumnBuilder>,
    lsn: UInt64Builder,
    seq: UInt32Builder,
    op: StringBuilder,
    commit_ts: TimestampMicrosecondBuilder,
    xid: UInt32Builder,
    unchanged: StringBuilder,
    rows: usize,
    bytes: usize,
    pub min_lsn: u64,
    pub max_lsn: u64,
    pub max_commit_ts: i64,
    /// Columns some row left unchanged (TOAST); the current-state view fills them.
    pub unchanged_columns: BTreeSet<String>,
    /// The last truncate in this batch, as (lsn, seq).
    pub truncated_at: Option<(u64, u32)>,
}

impl TableBatch {
    pub fn new(schema: Arc<TableSchema>) -> Self {
        let columns = schema.columns.iter().map(|c| ColumnBuilder::new(&c.kind)).collect();
        Self {
            arrow: schema.arrow_schema(),
            schema,
            columns,
            lsn: UInt64Builder::new(),
            seq: UInt32Builder::new(),
            op: StringBuilder::new(),
            commit_ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            xid: UInt32Builder::new(),
            unchanged: StringBuilder::new(),
            rows: 0,
            bytes: 0,
            min_lsn: u64::MAX,
            max_lsn: 0,
            max_commit_ts: i64::MIN,
            unchanged_columns: BTreeSet::new(),
            truncated_at: None,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate heap bytes held (values plus a fixed cost per cell).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends one row. `values` has one entry per column of the schema, in order. A value
    /// that cannot be read is an error after which the batch must be dropped.
    pub fn append<'a>(
        &mut self,
        meta: RowMeta,
        values: impl ExactSizeIterator<Item = Value<'a>>,
    ) -> Result<(), IngestError> {
        if values.len() != self.columns.len() {
            return Err(IngestError::Protocol(format!(
                "{}: a row has {} values for {} columns",
                self.schema.table,
                values.len(),
                self.columns.len()
            )));
        }
        let mut unchanged: Option<String> = None;
        for (i, value) in values.enumerate() {
            let column = &self.schema.columns[i];
            let builder = &mut self.columns[i];
            match value {
                Value::Null => builder.append_null(),
                Value::Unchanged => {
                    builder.append_null();
                    let list = unchanged.get_or_insert_with(|| ",".to_string());
                    list.push_str(&column.name);
                    list.push(',');
                    if !self.unchanged_columns.contains(&column.name) {
                        self.unchanged_columns.insert(column.name.clone());
                    }
                }
                Value::Text(text) => {
                    if let Err(source) = builder.append_text(&column.kind, text) {
                        // Arrow builders cannot take back this row's earlier cells, so the
                        // batch is unusable now: the error stops ingestion and the batch is
                        // dropped unacknowledged (a restart replays it).
                        return Err(IngestError::Value {
                            table: self.schema.table.clone(),
                            column: column.name.clone(),
                            source,
                        });
                    }
                    self.bytes += text.len();
                }
            }
        }
        self.bytes += 16 * self.columns.len() + 48;
        self.lsn.append_value(meta.lsn);
        self.seq.append_value(meta.seq);
        self.op.append_value(meta.op.code());
        self.commit_ts.append_value(meta.commit_ts);
        self.xid.append_option(meta.xid);
        self.unchanged.append_option(unchanged);
        self.rows += 1;
        self.min_lsn = self.min_lsn.min(meta.lsn);
        self.max_lsn = self.max_lsn.max(meta.lsn);
        self.max_commit_ts = self.max_commit_ts.max(meta.commit_ts);
        if meta.op == Op::Truncate {
            self.truncated_at = Some((meta.lsn, meta.seq));
        }
        Ok(())
    }

    /// The rows as a record batch.
    pub fn finish(mut self) -> Result<RecordBatch, IngestError> {
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|c| c.finish()).collect();
        arrays.push(Arc::new(self.lsn.finish()));
        arrays.push(Arc::new(self.seq.finish()));
        arrays.push(Arc::new(self.op.finish()));
        arrays.push(Arc::new(self.commit_ts.finish()));
        arrays.push(Arc::new(self.xid.finish()));
        arrays.push(Arc::new(self.unchanged.finish()));
        RecordBatch::try_new(self.arrow.clone(), arrays)
            .map_err(|e| IngestError::Lake(crate::error::LakeError::Arrow(e)))
    }
}

/// Whether every row of a written batch is a snapshot row or an insert.
pub fn inserts_only(record: &RecordBatch) -> bool {
    use datafusion::arrow::array::{Array, AsArray};
    let Some(ops) = record.column_by_name(crate::schema::OP) else { return false };
    let Some(ops) = ops.as_string_opt::<i32>() else { return false };
    (0..ops.len()).all(|i| ops.is_valid(i) && matches!(ops.value(i), "r" | "i"))
}
