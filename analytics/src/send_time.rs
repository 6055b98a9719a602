//! Send-time optimisation's history: each customer's sends, responses and expected
//! responses by hour of the week in the customer's local time, and the tenant's totals
//! (its prior). The estimate made from them at send time is `app_best_send_times` in Postgres
//! (docs/metrics.md, "Send-time optimisation").
//!
//! A send's *expected* response is its campaign's response rate: an hour is judged by its
//! responses over what the campaigns sent in it would have drawn anyway, so an hour is not
//! credited for a campaign's channel or content (a call campaign answered more than an
//! e-mail one, sent at other hours) nor for when in the year it went out.
//!
//! A send is a recipient with `sent_at`; it is a response when a person opened, clicked or
//! replied (machine opens and clicks never set those). The slot is
//! `(ISO weekday − 1) · 24 + hour` of `sent_at` in the customer's `timezone`, or UTC for a
//! customer without one or with a zone the tz database lacks: the same zone the send-time
//! estimate reads, so the hour learned and the hour sent agree.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use datafusion::{dataframe::DataFrame as DfFrame, prelude::SessionContext};

use crate::{
    AnalyticsError,
    sql::{as_of_micros, micros},
};

/// Slots in a week.
pub const SLOTS: usize = 168;

/// One row per send up to `as_of`: `tenant_id`, `customer_id`, `timezone`, `sent_us`,
/// `responded` (0 or 1), `expected` (its campaign's response rate over those sends).
pub fn history_sql(as_of: DateTime<Utc>) -> String {
    format!(
        "WITH sends AS (
           SELECT r.tenant_id, r.customer_id, r.campaign_id, {sent} AS sent_us,
                  CASE WHEN r.opened_at IS NOT NULL OR r.clicked_at IS NOT NULL OR r.replied_at IS NOT NULL
                       THEN 1 ELSE 0 END AS responded
           FROM outbound_campaign_recipients r
           WHERE r.sent_at IS NOT NULL AND {sent} <= {as_of})
         SELECT s.tenant_id, s.customer_id, c.timezone, s.sent_us, s.responded,
                avg(CAST(s.responded AS DOUBLE)) OVER (PARTITION BY s.campaign_id) AS expected
         FROM sends s JOIN crm_customers c ON c.id = s.customer_id",
        sent = micros("r.sent_at"),
        as_of = as_of_micros(as_of),
    )
}

#[tracing::instrument(skip_all)]
pub async fn history(ctx: &SessionContext, as_of: DateTime<Utc>) -> Result<DfFrame, AnalyticsError> {
    Ok(ctx.sql(&history_sql(as_of)).await?)
}

/// The hour-of-week slot of an instant in `zone` (UTC when absent or unknown).
pub fn slot_of(at: DateTime<Utc>, zone: Option<&Tz>) -> u8 {
    let (weekday, hour) = match zone {
        Some(tz) => {
            let local = tz.from_utc_datetime(&at.naive_utc());
            (local.weekday().num_days_from_monday(), local.hour())
        }
        None => (at.weekday().num_days_from_monday(), at.hour()),
    };
    (weekday * 24 + hour) as u8
}

/// Pseudo-counts (in expected responses) of each broader level in the tenant's
/// estimates: its hour of day leans on its overall ratio with 20, a slot on its hour of
/// day with 30 (a slot needs about thirty expected responses before its own ratio weighs
/// as much as its hour's; with fewer, the noise of 168 small samples would pick the
/// hours). The customer's two levels (10 each) are in `app_best_send_times`.
pub const TENANT_HOUR_PRIOR: f64 = 20.0;
pub const TENANT_SLOT_PRIOR: f64 = 30.0;

/// The tenant's estimated response ratio (responses over expected responses; 1 is what
/// the campaigns drew on average) in each of the 168 slots: its ratio in the slot, shrunk
/// toward its ratio at that hour of day on any weekday, shrunk toward its overall ratio
/// (with one pseudo-response expected and drawn, so a tenant without history is at 1).
pub fn tenant_rates(counts: &[Counts]) -> Vec<f64> {
    let (r, e) = counts.iter().fold((0.0, 0.0), |(r, e), c| (r + f64::from(c.responses), e + c.expected));
    let overall = (r + 1.0) / (e + 1.0);
    let mut hours = [(0.0, 0.0); 24];
    for (slot, c) in counts.iter().enumerate() {
        hours[slot % 24].0 += f64::from(c.responses);
        hours[slot % 24].1 += c.expected;
    }
    // Response curves over the day are smooth: each hour pools its neighbours (weights
    // 1-2-1, wrapping at midnight), which halves the noise of a single hour's counts.
    let hour_rate: [f64; 24] = std::array::from_fn(|h| {
        let (before, after) = (hours[(h + 23) % 24], hours[(h + 1) % 24]);
        let r = (before.0 + 2.0 * hours[h].0 + after.0) / 4.0;
        let e = (before.1 + 2.0 * hours[h].1 + after.1) / 4.0;
        (r + TENANT_HOUR_PRIOR * overall) / (e + TENANT_HOUR_PRIOR)
    });
    counts
        .iter()
        .enumerate()
        .map(|(slot, c)| {
            (f64::from(c.responses) + TENANT_SLOT_PRIOR * hour_rate[slot % 24]) / (c.expected + TENANT_SLOT_PRIOR)
        })
        .collect()
}

/// Sends, responses and expected responses in a slot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub sends: u32,
    pub responses: u32,
    pub expected: f64,
}

/// The history folded into slots: per customer only the slots it has, per tenant all.
#[derive(Debug, Default)]
pub struct SendSlots {
    /// Tenant ids, indexed by the customers' `tenant`.
    pub tenants: Vec<String>,
    tenant_index: HashMap<String, u32>,
    /// Per tenant, 168 slots.
    pub tenant_counts: Vec<Vec<Counts>>,
    /// Per customer id: its tenant's index and its slots.
    pub customers: HashMap<String, (u32, Vec<(u8, Counts)>)>,
    /// Zones parsed so far (`None`: unknown, read as UTC).
    zones: HashMap<String, Option<Tz>>,
}

impl SendSlots {
    pub fn add(
        &mut self,
        tenant: &str,
        customer: &str,
        zone: Option<&str>,
        at: DateTime<Utc>,
        responded: bool,
        expected: f64,
    ) {
        let t = match self.tenant_index.get(tenant) {
            Some(t) => *t,
            None => {
                let t = self.tenants.len() as u32;
                self.tenants.push(tenant.to_owned());
                self.tenant_index.insert(tenant.to_owned(), t);
                self.tenant_counts.push(vec![Counts::default(); SLOTS]);
                t
            }
        };
        let tz = zone.and_then(|z| match self.zones.get(z) {
            Some(parsed) => *parsed,
            None => {
                let parsed = z.parse::<Tz>().ok();
                self.zones.insert(z.to_owned(), parsed);
                parsed
            }
        });
        let slot = slot_of(at, tz.as_ref());
        let bump = |c: &mut Counts| {
            c.sends += 1;
            c.responses += u32::from(responded);
            c.expected += expected;
        };
        bump(&mut self.tenant_counts[t as usize][slot as usize]);
        let (_, slots) = self.customers.entry(customer.to_owned()).or_insert_with(|| (t, Vec::new()));
        match slots.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, c)) => bump(c),
            None => {
                let mut c = Counts::default();
                bump(&mut c);
                slots.push((slot, c));
            }
        }
    }

    /// Sends counted in all.
    pub fn sends(&self) -> u64 {
        self.tenant_counts.iter().flatten().map(|c| u64::from(c.sends)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_local_hours_of_the_week_across_dst() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // Monday 2026-03-02 14:00 UTC = 09:00 EST: Monday (0) hour 9.
        assert_eq!(slot_of(at("2026-03-02T14:00:00Z"), Some(&ny)), 9);
        // Monday 2026-03-09 14:00 UTC = 10:00 EDT after the change.
        assert_eq!(slot_of(at("2026-03-09T14:00:00Z"), Some(&ny)), 10);
        // Sunday 2026-03-08 06:30 UTC = 01:30 EST... and 07:30 UTC = 03:30 EDT (02:xx skipped).
        assert_eq!(slot_of(at("2026-03-08T06:30:00Z"), Some(&ny)), 6 * 24 + 1);
        assert_eq!(slot_of(at("2026-03-08T07:30:00Z"), Some(&ny)), 6 * 24 + 3);
        // No zone: UTC. Sunday 23:00 UTC is the last slot.
        assert_eq!(slot_of(at("2026-03-08T23:00:00Z"), None), 167);
        // Tokyo, a day ahead: Monday 2026-03-02 01:00 JST = Sunday 16:00 UTC.
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(slot_of(at("2026-03-01T16:00:00Z"), Some(&tokyo)), 1);
    }

    #[test]
    fn the_history_folds_into_customer_and_tenant_slots() {
        let mut s = SendSlots::default();
        s.add("t1", "c1", Some("America/New_York"), at("2026-03-02T14:00:00Z"), true, 0.5);
        s.add("t1", "c1", Some("America/New_York"), at("2026-03-09T14:00:00Z"), false, 0.25);
        s.add("t1", "c1", Some("America/New_York"), at("2026-03-16T13:00:00Z"), false, 0.25);
        s.add("t1", "c2", Some("Mars/Base"), at("2026-03-02T09:00:00Z"), true, 0.5);
        s.add("t2", "c3", None, at("2026-03-02T09:00:00Z"), false, 0.5);
        assert_eq!(s.sends(), 5);
        let (t, mut slots) = s.customers["c1"].clone();
        slots.sort_by_key(|(slot, _)| *slot);
        assert_eq!(t, 0);
        // 09:00 EST once (a response), 10:00 EDT once, then 09:00 EDT again.
        let counts = |sends, responses, expected| Counts { sends, responses, expected };
        assert_eq!(slots, vec![(9, counts(2, 1, 0.75)), (10, counts(1, 0, 0.25))]);
        // An unknown zone is UTC: Monday 09:00.
        assert_eq!(s.customers["c2"].1, vec![(9, counts(1, 1, 0.5))]);
        assert_eq!(s.tenant_counts[0][9], counts(3, 2, 1.25));
        assert_eq!((s.tenants.clone(), s.tenant_counts[1][9].sends), (vec!["t1".to_string(), "t2".to_string()], 1));
    }

    #[test]
    fn tenant_rates_shrink_toward_the_hour_then_the_tenant() {
        // No history: every slot at 1 (what the campaigns draw).
        let none = tenant_rates(&vec![Counts::default(); SLOTS]);
        assert!(none.iter().all(|r| (r - 1.0).abs() < 1e-12), "{none:?}");
        // 19:00 answered twice what its campaigns drew on Mondays (slot 19) and Tuesdays
        // (43): 19:00 on a Wednesday (67), never sent, still ranks above any hour never
        // sent, and 10:00 (answered a tenth of it) below.
        let mut counts = vec![Counts::default(); SLOTS];
        counts[19] = Counts { sends: 40, responses: 30, expected: 15.0 };
        counts[43] = Counts { sends: 40, responses: 30, expected: 15.0 };
        counts[10] = Counts { sends: 40, responses: 2, expected: 20.0 };
        let rates = tenant_rates(&counts);
        assert!(rates[19] > rates[67] && rates[67] > rates[58] && rates[58] > rates[10], "{rates:?}");
        // Hand-worked: overall (62 + 1) / (50 + 1) = 1.23529; hour 19 pools 18 and 20
        // (nothing) with itself twice: (30 + 20 · 1.23529) / (15 + 20) = 1.56303; slot 19:
        // (30 + 30 · 1.56303) / (15 + 30) = 1.70869. Hour 20 gets a quarter of 19's:
        // (15 + 24.70588) / (7.5 + 20) = 1.44385, above an hour far from any answer.
        assert!((rates[19] - 1.708_69).abs() < 1e-5, "{}", rates[19]);
        assert!((rates[67] - 1.563_03).abs() < 1e-5, "{}", rates[67]);
        assert!((rates[20] - 1.443_85).abs() < 1e-5 && rates[20] > rates[3], "{}", rates[20]);
    }
}
