//! Send-time optimisation's history: each customer's sends, responses and expected
//! responses by hour of the week in the customer's local time, and the tenant's totals
//! (its prior). The estimate made from them at send time is `app_best_send_times` in Postgres
//! (docs/metrics.md, "Send-time optimisation").
//!
//! A send's *expected* response is its campaign's own response rate with the hours' effect
//! taken out ([`Exposure::campaign_rates`]): an hour is judged by its responses over what
//! the campaigns sent in it would have drawn anyway, so an hour is not credited for a
//! campaign's channel or content (a call campaign answered more than an e-mail one, sent
//! at other hours) nor for when in the year it went out.
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

/// One row per send up to `as_of`: `tenant_id`, `customer_id`, `campaign_id`, `timezone`,
/// `sent_us`, `responded` (0 or 1).
pub fn history_sql(as_of: DateTime<Utc>) -> String {
    format!(
        "SELECT r.tenant_id, r.customer_id, r.campaign_id, c.timezone, {sent} AS sent_us,
                CASE WHEN r.opened_at IS NOT NULL OR r.clicked_at IS NOT NULL OR r.replied_at IS NOT NULL
                     THEN 1 ELSE 0 END AS responded
         FROM outbound_campaign_recipients r JOIN crm_customers c ON c.id = r.customer_id
         WHERE r.sent_at IS NOT NULL AND {sent} <= {as_of}",
        sent = micros("r.sent_at"),
        as_of = as_of_micros(as_of),
    )
}

/// Sends and responses per campaign and local hour of the day: what the campaigns' own
/// rates are fitted on ([`Exposure::campaign_rates`]).
#[derive(Debug, Default)]
pub struct Exposure {
    campaigns: HashMap<String, usize>,
    tenants: HashMap<String, usize>,
    /// Per campaign: its tenant, and sends and responses per hour of the day.
    cells: Vec<(usize, [(f64, f64); 24])>,
}

impl Exposure {
    pub fn add(&mut self, tenant: &str, campaign: &str, hour: u8, responded: bool) {
        let next = self.tenants.len();
        let t = *self.tenants.entry(tenant.to_owned()).or_insert(next);
        let next = self.cells.len();
        let k = *self.campaigns.entry(campaign.to_owned()).or_insert(next);
        if k == self.cells.len() {
            self.cells.push((t, [(0.0, 0.0); 24]));
        }
        let cell = &mut self.cells[k].1[usize::from(hour % 24)];
        cell.0 += 1.0;
        cell.1 += f64::from(u8::from(responded));
    }

    /// Each campaign's own response rate with the hours' effect taken out: the two-factor
    /// fit `P(response) = c(campaign) · θ(tenant, hour of day)` by iterative proportional
    /// fitting (the Poisson maximum-likelihood fit of that model), θ scaled to a
    /// send-weighted mean of 1 per tenant. Dividing by a campaign's plain mean instead
    /// would measure a campaign sent around the peak hours against its own raised bar.
    pub fn campaign_rates(&self, iterations: usize) -> HashMap<String, f64> {
        let tenants = self.tenants.len();
        let mut theta = vec![[1.0f64; 24]; tenants];
        let mut c = vec![0.0f64; self.cells.len()];
        for _ in 0..iterations {
            for (k, (t, cells)) in self.cells.iter().enumerate() {
                let responses: f64 = cells.iter().map(|x| x.1).sum();
                let exposure: f64 = cells.iter().zip(&theta[*t]).map(|(x, th)| x.0 * th).sum();
                c[k] = if exposure > 0.0 { responses / exposure } else { 0.0 };
            }
            let mut sums = vec![[(0.0f64, 0.0f64); 24]; tenants];
            for (k, (t, cells)) in self.cells.iter().enumerate() {
                for (h, x) in cells.iter().enumerate() {
                    sums[*t][h].0 += x.1;
                    sums[*t][h].1 += x.0 * c[k];
                }
            }
            for (t, hours) in sums.iter().enumerate() {
                for (h, (r, e)) in hours.iter().enumerate() {
                    theta[t][h] = if *e > 0.0 { r / e } else { 1.0 };
                }
            }
            // Only c · θ is determined: θ's send-weighted mean is 1 in every tenant (one
            // pass over the campaigns, not one per tenant).
            let mut weights = vec![(0.0f64, 0.0f64); tenants];
            for (t, cells) in &self.cells {
                for (h, x) in cells.iter().enumerate() {
                    weights[*t].0 += x.0 * theta[*t][h];
                    weights[*t].1 += x.0;
                }
            }
            for (t, (weighted, sends)) in weights.into_iter().enumerate() {
                if weighted > 0.0 {
                    let scale = sends / weighted;
                    theta[t].iter_mut().for_each(|th| *th *= scale);
                }
            }
        }
        self.campaigns.iter().map(|(id, k)| (id.clone(), c[*k])).collect()
    }
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
    zones: Zones,
}

/// Zones parsed so far (`None`: unknown to the tz database, read as UTC).
#[derive(Debug, Default)]
pub struct Zones(HashMap<String, Option<Tz>>);

impl Zones {
    pub fn get(&mut self, zone: Option<&str>) -> Option<Tz> {
        let zone = zone?;
        match self.0.get(zone) {
            Some(parsed) => *parsed,
            None => {
                let parsed = zone.parse::<Tz>().ok();
                self.0.insert(zone.to_owned(), parsed);
                parsed
            }
        }
    }
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
        let slot = slot_of(at, self.zones.get(zone).as_ref());
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
    fn campaign_rates_take_the_hours_out_of_each_campaign() {
        // Both campaigns draw 0.2 at an ordinary hour; 17:00, 18:00 and 19:00 draw 1.5,
        // 1.8 and 2 times that. One went out 10:00-18:00, the other 18:00-20:00, around the
        // peak: its plain mean (0.32) is higher, and against it 19:00 (400 / 320 = 1.25)
        // would rank below 18:00 (720 / (229 + 320) = 1.31). The fit finds the same rate
        // for both, so 19:00 ranks first.
        let theta = |h: u8| match h {
            17 => 1.5,
            18 => 1.8,
            19 => 2.0,
            _ => 1.0,
        };
        let mut e = Exposure::default();
        for (campaign, hours) in [("early", 10..=18u8), ("peak", 18..=20u8)] {
            for h in hours {
                let responses = (1000.0 * 0.2 * theta(h)) as usize;
                for i in 0..1000 {
                    e.add("t", campaign, h, i < responses);
                }
            }
        }
        let c = e.campaign_rates(200);
        assert!((c["early"] / c["peak"] - 1.0).abs() < 1e-3, "{c:?}");
        let ratio = |h: u8, campaigns: &[&str]| {
            let r: f64 = campaigns.iter().map(|_| 1000.0 * 0.2 * theta(h)).sum();
            r / campaigns.iter().map(|k| 1000.0 * c[*k]).sum::<f64>()
        };
        let (r17, r18, r19) = (ratio(17, &["early"]), ratio(18, &["early", "peak"]), ratio(19, &["peak"]));
        assert!(r19 > r18 && r18 > r17, "{r17} {r18} {r19}");
        assert!((r19 / ratio(10, &["early"]) - 2.0).abs() < 1e-3);
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
