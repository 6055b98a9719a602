//! `fibonacco outbound reconcile`: settles sends whose outcome is `unknown`. Twilio keeps
//! every message and call it created, so an SMS or call is looked up by the number it went
//! to: found (from our number, created after the attempt began) → its sid and status are
//! recorded; not found → Twilio never created it, so the recipient goes back to pending
//! and its campaign is dispatched again (one send, not two). SES has no such lookup (and
//! no idempotency key): e-mails stay `unknown` and are counted.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use fibonacco_platform::{TenantId, db, queue::Queue};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    campaigns::{self, Channel, RecipientStatus, call_recipient_status, sms_recipient_status, store},
    providers::{Providers, twilio::Record},
};

/// What a reconciliation did, per campaign.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub campaign_id: Uuid,
    pub channel: String,
    /// Found at the provider: sid and status recorded.
    pub settled: u64,
    /// Certainly never created at the provider: pending again, dispatched once more.
    pub released: u64,
    /// Still unknown: e-mail (no lookup exists), or the lookup failed.
    pub unknown: u64,
}

#[derive(sqlx::FromRow)]
struct Unknown {
    id: Uuid,
    tenant_id: Uuid,
    campaign_id: Uuid,
    kind: String,
    phone: Option<String>,
    attempted_at: Option<DateTime<Utc>>,
}

/// Reconciles the `unknown` recipients of one campaign, or of every campaign.
#[tracing::instrument(name = "outbound.reconcile", skip(pool, queue, providers), err)]
pub async fn reconcile(
    pool: &PgPool,
    queue: &Queue,
    providers: &Providers,
    campaign: Option<Uuid>,
) -> anyhow::Result<Vec<Report>> {
    let mut tx = db::begin_system(pool).await?;
    let rows: Vec<Unknown> = sqlx::query_as(
        "select r.id, r.tenant_id, r.campaign_id, c.type as kind, cu.phone, r.attempted_at
         from outbound_campaign_recipients r
         join outbound_campaigns c on c.id = r.campaign_id
         join crm_customers cu on cu.id = r.customer_id
         where r.status = 'unknown' and ($1::uuid is null or r.campaign_id = $1)
         order by r.campaign_id, r.id",
    )
    .bind(campaign)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    // One report per campaign, with the tenant it belongs to.
    let mut reports: Vec<(TenantId, Report)> = Vec::new();
    // Sids already recorded on a recipient cannot settle another one.
    let mut taken: HashSet<String> = HashSet::new();
    for row in rows {
        let tenant = TenantId::from_uuid(row.tenant_id);
        let index = match reports.iter().position(|(_, r)| r.campaign_id == row.campaign_id) {
            Some(i) => i,
            None => {
                let report = Report { campaign_id: row.campaign_id, channel: row.kind.clone(), ..Report::default() };
                reports.push((tenant, report));
                reports.len() - 1
            }
        };
        let report = &mut reports[index].1;
        let channel = Channel::of_campaign_type(&row.kind).unwrap_or(Channel::Email);
        let (Some(twilio), Some(phone), Some(attempted), false) =
            (providers.twilio.as_ref(), row.phone.as_deref(), row.attempted_at, channel == Channel::Email)
        else {
            report.unknown += 1;
            continue;
        };
        let found = match channel {
            Channel::Sms => twilio.find_messages(phone).await,
            _ => twilio.find_calls(phone).await,
        };
        let records = match found {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "Twilio lookup failed; the recipient stays unknown");
                report.unknown += 1;
                continue;
            }
        };
        match ours(&records, twilio.from_number(), attempted, &taken) {
            Some(record) => {
                let status = match channel {
                    Channel::Sms => sms_recipient_status(&record.status),
                    _ => call_recipient_status(&record.status, record.answered_by.as_deref()),
                }
                .flatten()
                .and_then(RecipientStatus::parse)
                .filter(|s| !matches!(s, RecipientStatus::Queued))
                .unwrap_or(RecipientStatus::Sent);
                let mut tx = db::begin_tenant(pool, tenant).await?;
                let settled = store::settle_unknown(&mut tx, tenant, row.id, &record.sid, status).await?;
                tx.commit().await?;
                taken.insert(record.sid.clone());
                if settled {
                    report.settled += 1;
                } else {
                    report.unknown += 1;
                }
            }
            None => {
                let mut tx = db::begin_tenant(pool, tenant).await?;
                let released = store::release_unknown(&mut tx, tenant, row.id).await?;
                tx.commit().await?;
                if released {
                    report.released += 1;
                } else {
                    report.unknown += 1;
                }
            }
        }
    }
    for (tenant, report) in &reports {
        if report.released > 0 {
            campaigns::enqueue_dispatch(queue, *tenant, report.campaign_id, &report.channel).await?;
        }
        store::complete_if_done(pool, *tenant, report.campaign_id).await?;
    }
    Ok(reports.into_iter().map(|(_, r)| r).collect())
}

/// The record of our attempt: from our number, created no earlier than a minute before the
/// attempt began (clock skew), not already recorded elsewhere; the earliest such.
fn ours<'a>(
    records: &'a [Record],
    from: &str,
    attempted: DateTime<Utc>,
    taken: &HashSet<String>,
) -> Option<&'a Record> {
    let not_before = attempted - Duration::seconds(60);
    records
        .iter()
        .filter(|r| r.from.as_deref().is_none_or(|f| f == from))
        .filter(|r| r.created().is_some_and(|c| c >= not_before))
        .filter(|r| !taken.contains(&r.sid))
        .min_by_key(|r| r.created())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sid: &str, from: &str, created: &str) -> Record {
        Record {
            sid: sid.into(),
            status: "delivered".into(),
            from: Some(from.into()),
            date_created: Some(created.into()),
            answered_by: None,
        }
    }

    #[test]
    fn picks_the_earliest_of_ours_after_the_attempt() {
        let attempted: DateTime<Utc> = "2026-11-30T11:00:00Z".parse().unwrap();
        let records = [
            record("SM3", "+15550000", "Mon, 30 Nov 2026 11:05:00 +0000"),
            record("SM2", "+15550000", "Mon, 30 Nov 2026 11:00:01 +0000"),
            record("SM1", "+15550000", "Mon, 30 Nov 2026 09:00:00 +0000"),
            record("SMx", "+19999999", "Mon, 30 Nov 2026 11:00:00 +0000"),
        ];
        let none = HashSet::new();
        assert_eq!(ours(&records, "+15550000", attempted, &none).map(|r| r.sid.as_str()), Some("SM2"));
        let taken: HashSet<String> = ["SM2".to_owned()].into();
        assert_eq!(ours(&records, "+15550000", attempted, &taken).map(|r| r.sid.as_str()), Some("SM3"));
        assert!(ours(&records[2..3], "+15550000", attempted, &none).is_none(), "an older message is not ours");
    }
}
