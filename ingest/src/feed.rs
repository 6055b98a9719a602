//! The change feed: every batch of changes, in commit order, after it is durable in the
//! lake. Incremental pipelines subscribe to it in-process.

use std::sync::Arc;

use datafusion::arrow::{array::RecordBatch, error::ArrowError};
use tokio::sync::broadcast;

/// Changes of one table from one flush: the rows as written to the lake (table columns
/// plus `_lsn`, `_seq`, `_op`, `_commit_ts`, `_xid`, `_unchanged`).
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    pub table: String,
    /// Key (replica identity) column names.
    pub keys: Vec<String>,
    pub rows: RecordBatch,
    /// The manifest's durable LSN once this batch was written.
    pub durable_lsn: u64,
}

impl ChangeBatch {
    /// Only the key columns: which rows the changes touched.
    pub fn keys_touched(&self) -> Result<RecordBatch, ArrowError> {
        let schema = self.rows.schema();
        let indices = self.keys.iter().map(|k| schema.index_of(k)).collect::<Result<Vec<_>, _>>()?;
        self.rows.project(&indices)
    }
}

/// The sending side, cloned into the ingest loop. A subscriber that falls more than
/// `capacity` batches behind gets `RecvError::Lagged` and should recompute from the lake.
#[derive(Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Arc<ChangeBatch>>,
}

impl ChangeFeed {
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity.max(1)).0 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeBatch>> {
        self.sender.subscribe()
    }

    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub(crate) fn publish(&self, batch: ChangeBatch) {
        // No subscriber is not an error: the lake has the rows.
        let _ = self.sender.send(Arc::new(batch));
    }
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new(1024)
    }
}
