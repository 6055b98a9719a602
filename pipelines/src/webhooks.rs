//! The outbox of outgoing webhooks: changes in the lake become events, and events become
//! one delivery per subscribed endpoint (`delivery::webhooks` sends them).
//!
//! Built from the lake rather than from the API, so a row changed by SQL, an import or a
//! pipeline is announced like one changed through the API. A durable cursor
//! (`webhook_outbox_cursor`, an LSN) says how far the lake has been turned into events;
//! a round reads the changes after it (up to the lake's durable position, whole files at
//! a time up to about [`ROUND_ROWS`] rows) and commits the events, their deliveries and the
//! new cursor in one transaction, advanced with a compare-and-set. A crash before the
//! commit repeats the round; event ids come from the change's place in the lake (LSN,
//! sequence, type), so nothing is announced twice or missed, and the in-process change
//! feed only wakes the builder: a lagging or restarted feed loses nothing.
//!
//! An erased customer's changes that the lake still held when a round read it are not
//! stored (the erasure deletes the events stored before it, by `customer_id`, and writes
//! the one `customer.deleted` its subscribers get: `api::customers::erasure`).
//!
//! Only what someone listens to is built: a round reads only the tables whose event types
//! an enabled endpoint subscribes to, and stores an event only for a tenant with such an
//! endpoint (a bulk load with no subscriber costs a cursor move).
//!
//! The first round of a new deployment starts at the lake's current position: history
//! before webhooks existed is not replayed. An endpoint receives the events that happened
//! after it was created.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use datafusion::{
    arrow::{
        array::{Array, RecordBatch},
        json::{ArrayWriter, WriterBuilder, writer::JsonArray},
    },
    prelude::SessionContext,
};
use fibonacco_ingest::{ChangeFeed, Lake, Manifest, view};
use fibonacco_platform::{
    db,
    queue::{Job, Queue, jobs::DeliverWebhooks},
    supervise,
    webhooks::EventType,
};
use serde_json::{Map, Value};
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::{PipelineError, output::text};

/// The builder's name among the process's supervised parts.
pub const PART: &str = "webhooks_outbox";
/// About how many changed rows one round turns into events (whole lake files are taken,
/// so a round may hold one file more).
pub const ROUND_ROWS: u64 = 50_000;
/// A round runs at least this often without a wake-up from the feed (another process's
/// capture, a missed wake-up).
const POLL: Duration = Duration::from_secs(2);

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// The cursor before and after (equal when there was nothing to do).
    pub from_lsn: u64,
    pub to_lsn: u64,
    pub events: u64,
    pub deliveries: u64,
}

pub struct Outbox {
    pub pool: PgPool,
    pub lake: Lake,
    /// Where `DeliverWebhooks` jobs go right after a round's commit (the scheduler's
    /// `webhooks:deliver` finds the same work within seconds when this is `None` or a push
    /// fails).
    pub queue: Option<Queue>,
}

/// One event before it is stored.
#[derive(Debug)]
struct Event {
    id: String,
    tenant_id: Uuid,
    kind: EventType,
    customer_id: Option<Uuid>,
    payload: Value,
    occurred_at: DateTime<Utc>,
}

/// The captured tables events come from, and what each row change announces.
const SOURCES: &[&str] = &["crm_customers", "crm_conversation_messages", "outbound_campaign_recipients", "orders"];

impl Outbox {
    /// One round (see the module's doc).
    #[tracing::instrument(name = "webhooks.outbox_round", skip_all)]
    pub async fn round(&self) -> Result<Round, PipelineError> {
        let Some(manifest) = self.lake.read_manifest().await? else { return Ok(Round::default()) };
        let mut tx = db::begin_system(&self.pool).await?;
        let cursor: Option<i64> =
            sqlx::query_scalar("select lsn from webhook_outbox_cursor").fetch_optional(&mut *tx).await?;
        let Some(cursor) = cursor.map(|c| c as u64) else {
            // The first round ever: announce from here on.
            let start = manifest.durable_lsn as i64;
            sqlx::query("insert into webhook_outbox_cursor (lsn) values ($1) on conflict do nothing")
                .bind(start)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Round { from_lsn: manifest.durable_lsn, to_lsn: manifest.durable_lsn, ..Round::default() });
        };
        let upper = upper_bound(&manifest, cursor);
        if upper <= cursor {
            tx.commit().await?;
            return Ok(Round { from_lsn: cursor, to_lsn: cursor, ..Round::default() });
        }
        // Only tables some enabled endpoint listens to are read: with no subscriber the
        // cursor just moves (a bulk load costs nothing here).
        let subscribed: Vec<String> =
            sqlx::query_scalar("select distinct unnest(event_types) from webhook_endpoints where enabled")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let events = self.events(&manifest, cursor, upper, &subscribed).await?;
        let (stored, endpoints) = self.commit(cursor, upper, &events).await?;
        let Some(deliveries) = stored else {
            // Another builder committed this round first.
            return Ok(Round { from_lsn: cursor, to_lsn: cursor, ..Round::default() });
        };
        if let Some(queue) = &self.queue {
            let jobs = endpoints
                .iter()
                .map(|(tenant_id, endpoint_id)| {
                    DeliverWebhooks { tenant_id: *tenant_id, endpoint_id: *endpoint_id }.payload()
                })
                .collect::<Result<Vec<_>, _>>();
            let pushed = match jobs {
                Ok(jobs) => queue.push_many(&jobs).await,
                Err(e) => Err(e),
            };
            if let Err(e) = pushed {
                // The deliveries are stored; the scheduler queues them instead.
                tracing::warn!(error = %e, "could not queue webhook deliveries; the scheduler will");
            }
        }
        Ok(Round { from_lsn: cursor, to_lsn: upper, events: events.len() as u64, deliveries })
    }

    /// The events of the changes in `(after, upto]`.
    async fn events(
        &self,
        manifest: &Manifest,
        after: u64,
        upto: u64,
        subscribed: &[String],
    ) -> Result<Vec<Event>, PipelineError> {
        let heard = |table: &str| {
            let prefix = match table {
                "crm_customers" => "customer.",
                "crm_conversation_messages" => "conversation.",
                "outbound_campaign_recipients" => "campaign_recipient.",
                _ => "order.",
            };
            subscribed.iter().any(|t| t.starts_with(prefix))
        };
        let touched: BTreeSet<&str> = manifest
            .files
            .iter()
            .filter(|f| f.max_lsn > after && f.min_lsn <= upto && SOURCES.contains(&f.table.as_str()))
            .filter(|f| heard(&f.table))
            .map(|f| f.table.as_str())
            .collect();
        if touched.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = SessionContext::new();
        // The sources with changes, and conversations (a message's customer).
        let mut needed: Vec<&str> = touched.iter().copied().collect();
        needed.push("crm_conversations");
        view::register_only(&ctx, &self.lake, manifest, Some(&needed)).await?;
        let json_columns = self.json_columns(&touched).await?;
        let mut events = Vec::new();
        for table in touched {
            let sql = source_sql(table, after, upto);
            let batches = ctx.sql(&sql).await?.collect().await?;
            let no_json = BTreeSet::new();
            let json = json_columns.get(table).unwrap_or(&no_json);
            for batch in &batches {
                rows_to_events(table, batch, json, &mut events)?;
            }
        }
        Ok(events)
    }

    /// Which columns of `tables` hold JSON (the lake keeps them as text; payloads carry
    /// them as JSON again).
    async fn json_columns(&self, tables: &BTreeSet<&str>) -> Result<BTreeMap<String, BTreeSet<String>>, PipelineError> {
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select table_name::text, column_name::text from information_schema.columns
             where table_schema = current_schema() and table_name = any($1) and data_type in ('json', 'jsonb')",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (table, column) in rows {
            out.entry(table).or_default().insert(column);
        }
        Ok(out)
    }

    /// Stores the events and their deliveries and moves the cursor from `from` to `to`;
    /// `None` when the cursor was no longer at `from`. Returns the endpoints that got
    /// deliveries.
    async fn commit(
        &self,
        from: u64,
        to: u64,
        events: &[Event],
    ) -> Result<(Option<u64>, BTreeSet<(Uuid, Uuid)>), PipelineError> {
        let mut tx = db::begin_system(&self.pool).await?;
        let moved = sqlx::query("update webhook_outbox_cursor set lsn = $2, updated_at = now() where lsn = $1")
            .bind(from as i64)
            .bind(to as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved == 0 {
            return Ok((None, BTreeSet::new()));
        }
        let mut endpoints = BTreeSet::new();
        let mut deliveries = 0u64;
        for chunk in events.chunks(5_000) {
            let ids: Vec<&str> = chunk.iter().map(|e| e.id.as_str()).collect();
            let tenants: Vec<Uuid> = chunk.iter().map(|e| e.tenant_id).collect();
            let kinds: Vec<&str> = chunk.iter().map(|e| e.kind.as_str()).collect();
            let customers: Vec<Option<Uuid>> = chunk.iter().map(|e| e.customer_id).collect();
            let payloads: Vec<String> = chunk.iter().map(|e| e.payload.to_string()).collect();
            let at: Vec<DateTime<Utc>> = chunk.iter().map(|e| e.occurred_at).collect();
            sqlx::query(
                "insert into webhook_events (id, tenant_id, type, customer_id, payload, occurred_at)
                 select u.id, u.tenant_id, u.type, u.customer_id, u.payload::jsonb, u.occurred_at
                 from unnest($1::text[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::timestamptz[])
                   as u (id, tenant_id, type, customer_id, payload, occurred_at)
                 where exists (select 1 from webhook_endpoints p where p.tenant_id = u.tenant_id and p.enabled
                                 and u.type = any(p.event_types))
                   and (u.customer_id is null
                    or not exists (select 1 from erasures r where r.tenant_id = u.tenant_id and r.customer_id = u.customer_id))
                 on conflict (id) do nothing",
            )
            .bind(&ids)
            .bind(&tenants)
            .bind(&kinds)
            .bind(&customers)
            .bind(&payloads)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            // Subscribed, enabled endpoints that existed when the change happened. A
            // tenant deleted since has no endpoints left (and its events none to match).
            let got: Vec<(Uuid, Uuid)> = sqlx::query_as(
                "insert into webhook_deliveries (tenant_id, endpoint_id, event_id)
                 select e.tenant_id, p.id, e.id from webhook_events e
                 join webhook_endpoints p on p.tenant_id = e.tenant_id and p.enabled
                   and e.type = any(p.event_types) and p.created_at <= e.occurred_at
                 where e.id = any($1)
                 on conflict (endpoint_id, event_id) do nothing
                 returning tenant_id, endpoint_id",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            deliveries += got.len() as u64;
            endpoints.extend(got);
        }
        tx.commit().await?;
        Ok((Some(deliveries), endpoints))
    }

    /// Rounds until `stop`, woken by the change feed or every [`POLL`], under supervision
    /// (a failed round is retried after a backoff; the cursor makes the retry exact).
    pub async fn follow(self: Arc<Self>, feed: &ChangeFeed, stop: watch::Receiver<bool>) -> Result<(), PipelineError> {
        supervise::supervise(PART, supervise::Backoff::default(), stop.clone(), || {
            let mut rx = feed.subscribe();
            let (outbox, stop) = (Arc::clone(&self), stop.clone());
            async move {
                supervise::running(PART);
                let stopped = supervise::stopped(stop);
                tokio::pin!(stopped);
                loop {
                    // Drain: a round is bounded, a backlog takes several.
                    loop {
                        let round = outbox.round().await?;
                        if round.to_lsn == round.from_lsn {
                            break;
                        }
                    }
                    tokio::select! {
                        _ = &mut stopped => return Ok(()),
                        got = rx.recv() => if let Err(broadcast::error::RecvError::Closed) = got {
                            // The capture stopped; keep polling for another process's.
                            rx = feed.subscribe();
                            tokio::time::sleep(POLL).await;
                        },
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
            }
        })
        .await
    }
}

/// The cursor's next position: the lake's durable position, or less so that the round
/// reads about [`ROUND_ROWS`] rows (files in LSN order, whole files at a time).
fn upper_bound(manifest: &Manifest, cursor: u64) -> u64 {
    let mut files: Vec<_> =
        manifest.files.iter().filter(|f| f.max_lsn > cursor && f.max_lsn <= manifest.durable_lsn).collect();
    files.sort_by_key(|f| f.max_lsn);
    let mut rows = 0u64;
    for f in files {
        rows += f.rows;
        if rows >= ROUND_ROWS {
            return f.max_lsn;
        }
    }
    manifest.durable_lsn
}

/// The changes of `table` in `(after, upto]` with what the events need from the version
/// before each (its status, and its tenant for a delete, whose row holds only the key).
fn source_sql(table: &str, after: u64, upto: u64) -> String {
    let window = "OVER (PARTITION BY id ORDER BY _lsn, _seq)";
    let in_range = format!("_lsn > {after} AND _lsn <= {upto} AND _op IN ('i', 'u', 'd')");
    let prev_status = match table {
        "outbound_campaign_recipients" | "orders" => format!("LAG(status) {window}"),
        _ => "CAST(NULL AS VARCHAR)".to_owned(),
    };
    let base = format!(
        "SELECT t.*, {prev_status} AS _prev_status, CAST(LAG(tenant_id) {window} AS VARCHAR) AS _prev_tenant_id
         FROM {table}_changes t
         WHERE id IN (SELECT id FROM {table}_changes WHERE {in_range}) AND _op IN ('r', 'i', 'u', 'd')"
    );
    if table == "crm_conversation_messages" {
        // A message's customer is its conversation's (for erasure).
        format!(
            "SELECT m.*, CAST(c.customer_id AS VARCHAR) AS _customer_id FROM ({base}) m
             LEFT JOIN crm_conversations c ON c.id = m.conversation_id
             WHERE m._lsn > {after} AND m._lsn <= {upto} AND m._op = 'i'"
        )
    } else {
        format!("SELECT * FROM ({base}) WHERE {in_range} ORDER BY _lsn, _seq")
    }
}

/// Turns a source's rows into events.
fn rows_to_events(
    table: &str,
    batch: &RecordBatch,
    json_columns: &BTreeSet<String>,
    out: &mut Vec<Event>,
) -> Result<(), PipelineError> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(());
    }
    let ops = text(batch, "_op")?;
    let lsns = text(batch, "_lsn")?;
    let seqs = text(batch, "_seq")?;
    let tenants = text(batch, "tenant_id")?;
    let prev_tenants = text(batch, "_prev_tenant_id")?;
    let prev_status = text(batch, "_prev_status")?;
    let commit_ts = text(batch, "_commit_ts")?;
    let unchanged = batch.column_by_name("_unchanged").map(|_| text(batch, "_unchanged")).transpose()?;
    let status = batch.column_by_name("status").map(|_| text(batch, "status")).transpose()?;
    let customer_col = match table {
        "crm_customers" => Some(text(batch, "id")?),
        "crm_conversation_messages" => Some(text(batch, "_customer_id")?),
        _ => batch.column_by_name("customer_id").map(|_| text(batch, "customer_id")).transpose()?,
    };
    let data = row_objects(batch, json_columns)?;
    let get = |a: &datafusion::arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
    for (i, mut data) in data.into_iter().enumerate() {
        let op = ops.value(i);
        let (Some(lsn), Some(seq)) = (get(&lsns, i), get(&seqs, i)) else { continue };
        let Some(tenant) = get(&tenants, i).or_else(|| get(&prev_tenants, i)).and_then(|t| t.parse::<Uuid>().ok())
        else {
            continue;
        };
        let status_now = status.as_ref().and_then(|s| get(s, i));
        let status_before = get(&prev_status, i);
        let changed_to = |to: &str| status_now.as_deref() == Some(to) && status_before.as_deref() != Some(to);
        let kinds: Vec<EventType> = match (table, op) {
            ("crm_customers", "i") => vec![EventType::CustomerCreated],
            ("crm_customers", "u") => vec![EventType::CustomerUpdated],
            ("crm_customers", "d") => vec![EventType::CustomerDeleted],
            ("crm_conversation_messages", "i") => vec![EventType::ConversationMessageCreated],
            ("outbound_campaign_recipients", "i" | "u") if status_now != status_before => {
                vec![EventType::CampaignRecipientStatusChanged]
            }
            ("orders", "i" | "u") => {
                let mut k = Vec::new();
                if op == "i" {
                    k.push(EventType::OrderCreated);
                }
                if changed_to("paid") {
                    k.push(EventType::OrderPaid);
                }
                if changed_to("refunded") {
                    k.push(EventType::OrderRefunded);
                }
                k
            }
            _ => Vec::new(),
        };
        if kinds.is_empty() {
            continue;
        }
        // A value Postgres did not resend (TOASTed and unchanged) is absent, not null.
        if let Some(u) = unchanged.as_ref().and_then(|u| get(u, i)) {
            for column in u.split(',').filter(|c| !c.is_empty()) {
                data.remove(column);
            }
        }
        if op == "d" {
            data.retain(|k, _| k == "id");
        }
        data.remove("tenant_id");
        if kinds.contains(&EventType::CampaignRecipientStatusChanged) {
            data.insert("previous_status".into(), status_before.clone().map(Value::String).unwrap_or(Value::Null));
        }
        let occurred_at = get(&commit_ts, i).and_then(|t| parse_timestamp(&t)).unwrap_or_else(Utc::now);
        let customer_id = customer_col.as_ref().and_then(|c| get(c, i)).and_then(|c| c.parse::<Uuid>().ok());
        for kind in kinds {
            let payload =
                fibonacco_platform::webhooks::envelope(kind.as_str(), occurred_at, Value::Object(data.clone()));
            out.push(Event {
                id: format!("msg_{lsn:0>16}_{seq}_{}", kind.as_str()),
                tenant_id: tenant,
                kind,
                customer_id,
                payload,
                occurred_at,
            });
        }
    }
    Ok(())
}

fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| raw.parse::<chrono::NaiveDateTime>().ok().map(|t| t.and_utc()))
}

/// Each row's table columns as a JSON object (the `_` change columns left out; JSON
/// columns parsed back into JSON).
fn row_objects(batch: &RecordBatch, json_columns: &BTreeSet<String>) -> Result<Vec<Map<String, Value>>, PipelineError> {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len()).filter(|i| !schema.field(*i).name().starts_with('_')).collect();
    let data = batch.project(&keep)?;
    let mut buf = Vec::new();
    {
        let mut writer: ArrayWriter<&mut Vec<u8>> =
            WriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(&mut buf);
        writer.write(&data)?;
        writer.finish()?;
    }
    let rows: Vec<Map<String, Value>> = if buf.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&buf).map_err(|e| PipelineError::Input(format!("webhook payload: {e}")))?
    };
    Ok(rows
        .into_iter()
        .map(|mut row| {
            for column in json_columns {
                if let Some(Value::String(raw)) = row.get(column)
                    && let Ok(parsed) = serde_json::from_str::<Value>(raw)
                {
                    row.insert(column.clone(), parsed);
                }
            }
            row
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_stop_at_whole_files_near_the_row_budget() {
        let mut m = Manifest::new("s", "p", 10);
        m.durable_lsn = 500;
        for (min, max, rows) in [(11, 100, 30_000), (101, 200, 30_000), (201, 300, 10)] {
            let path = m.allocate_path("orders", "2026-12-01", min);
            m.files.push(fibonacco_ingest::lake::FileEntry {
                table: "orders".into(),
                path,
                date: "2026-12-01".into(),
                rows,
                bytes: 1,
                min_lsn: min,
                max_lsn: max,
                merged: 0,
                inserts_only: false,
            });
        }
        assert_eq!(upper_bound(&m, 10), 200, "two files make the budget");
        assert_eq!(upper_bound(&m, 200), 500, "the rest is small: up to the durable position");
        assert_eq!(upper_bound(&m, 500), 500);
    }

    #[test]
    fn every_source_names_its_range() {
        let sql = source_sql("orders", 5, 9);
        assert!(sql.contains("_lsn > 5 AND _lsn <= 9"), "{sql}");
        assert!(sql.contains("LAG(status)"), "{sql}");
        assert!(source_sql("crm_conversation_messages", 5, 9).contains("LEFT JOIN crm_conversations"));
    }
}
