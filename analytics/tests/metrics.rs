//! Each metric on a small hand-computed fixture: exact expected numbers, and the
//! DataFusion and Polars engagement computations agreeing.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use datafusion::{
    arrow::{
        array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray},
        datatypes::{DataType, Field, Schema, TimeUnit},
    },
    datasource::MemTable,
    prelude::SessionContext,
};
use fibonacco_analytics::{AnalyticsConfig, bridge, dashboard, engagement, roi};
use polars::prelude::IntoLazy;

/// A column of a fixture table.
enum Col {
    Text(Vec<Option<&'static str>>),
    /// Days relative to the as-of instant.
    Day(Vec<Option<f64>>),
    Int(Vec<Option<i64>>),
}

fn t0() -> DateTime<Utc> {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

fn at(days: f64) -> DateTime<Utc> {
    t0() + Duration::microseconds((days * 86_400_000_000.0) as i64)
}

fn table(ctx: &SessionContext, name: &str, columns: Vec<(&str, Col)>) {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (n, c) in columns {
        let (field, array): (Field, ArrayRef) = match c {
            Col::Text(v) => (Field::new(n, DataType::Utf8, true), Arc::new(StringArray::from(v))),
            Col::Day(v) => (
                Field::new(n, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        v.into_iter().map(|d| d.map(|d| at(d).timestamp_micros())).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            Col::Int(v) => (Field::new(n, DataType::Int64, true), Arc::new(Int64Array::from(v))),
        };
        fields.push(field);
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())).unwrap();
}

use Col::*;

fn engagement_fixture() -> SessionContext {
    let ctx = SessionContext::new();
    table(
        &ctx,
        "crm_customers",
        vec![
            ("id", Text(vec![Some("a"), Some("b"), Some("c"), Some("d"), Some("e")])),
            ("tenant_id", Text(vec![Some("t1"); 5])),
            ("created_at", Day(vec![Some(-400.0), Some(-400.0), Some(-1.0), Some(-400.0), Some(2.0)])),
        ],
    );
    table(
        &ctx,
        "customer_activities",
        vec![
            ("id", Text(vec![Some("1"), Some("2"), Some("3"), Some("4"), Some("5"), Some("6"), Some("7")])),
            ("customer_id", Text(vec![Some("a"), Some("a"), Some("a"), Some("b"), Some("d"), Some("d"), Some("e")])),
            (
                "activity_type",
                Text(vec![
                    Some("page_view"),
                    Some("email_click"),
                    Some("page_view"),
                    Some("unsubscribe"),
                    Some("presentation_view"),
                    Some("purchase"),
                    Some("page_view"),
                ]),
            ),
            (
                "occurred_at",
                Day(vec![Some(0.0), Some(-30.0), Some(1.0), Some(0.0), Some(-60.0), Some(-90.0), Some(2.5)]),
            ),
        ],
    );
    ctx
}

type Scores = Vec<(String, f64, Vec<(String, f64)>)>;

async fn datafusion_scores(ctx: &SessionContext) -> Scores {
    let config = AnalyticsConfig::default().engagement;
    let frame = bridge::frame_of(engagement::scores(ctx, &config, t0(), None).await.unwrap()).await.unwrap();
    let frame = frame.sort(["customer_id"], Default::default()).unwrap();
    let ids = frame.column("customer_id").unwrap().str().unwrap().clone();
    let scores = frame.column("score").unwrap().f64().unwrap().clone();
    (0..frame.height())
        .map(|i| {
            let parts = config
                .components()
                .iter()
                .map(|c| (c.to_string(), frame.column(&format!("s_{c}")).unwrap().f64().unwrap().get(i).unwrap()))
                .filter(|(_, v)| *v != 0.0)
                .collect();
            (ids.get(i).unwrap().to_string(), scores.get(i).unwrap(), parts)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn engagement_on_a_hand_computed_fixture() {
    let ctx = engagement_fixture();
    let got = datafusion_scores(&ctx).await;
    let ids: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    // e was created after the as-of instant: not scored.
    assert_eq!(ids, ["a", "b", "c", "d"]);
    // a: page view now (1 point) + e-mail click 30 days ago (5 · 0.5) = 3.5 raw points;
    // the page view tomorrow is after as_of and ignored.
    assert!(close(got[0].1, 16.054297923079265), "{got:?}");
    assert_eq!(got[0].2.len(), 2);
    assert!(close(got[0].2[0].1, 4.586942263736932) && got[0].2[0].0 == "web");
    assert!(close(got[0].2[1].1, 11.467355659342331) && got[0].2[1].0 == "email");
    // b: only an unsubscribe (−10): clipped at 0.
    assert_eq!(got[1].1, 0.0);
    assert!(got[1].2.is_empty());
    // c: nothing.
    assert_eq!(got[2].1, 0.0);
    // d: presentation 60 days ago (4 · 0.25) + purchase 90 days ago (10 · 0.125) = 2.25.
    assert!(close(got[3].1, 10.64026528914843), "{got:?}");
    assert!(close(got[3].2[0].1, 4.729006795177081));
    assert!(close(got[3].2[1].1, 5.91125849397135) && got[3].2[1].0 == "commerce");
}

// Polars runs its own async engine, which needs the multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polars_engagement_equals_datafusion() {
    let ctx = engagement_fixture();
    let config = AnalyticsConfig::default().engagement;
    let events = bridge::query_frame(&ctx, &engagement::events_sql(&config, "a.customer_id")).await.unwrap();
    let raw = engagement::decayed_components(events.lazy(), &config, t0().timestamp_micros());
    let polars = engagement::score_frame(raw, &config).sort(["key"], Default::default()).collect().unwrap();
    let datafusion = datafusion_scores(&ctx).await;
    // Polars sees only customers with events at or before as_of: a, b, d.
    let keys = polars.column("key").unwrap().str().unwrap().clone();
    let scores = polars.column("score").unwrap().f64().unwrap().clone();
    assert_eq!(polars.height(), 3);
    for i in 0..polars.height() {
        let key = keys.get(i).unwrap();
        let expected = datafusion.iter().find(|d| d.0 == key).unwrap().1;
        assert!(close(scores.get(i).unwrap(), expected), "{key}: polars {:?} datafusion {expected}", scores.get(i));
    }
}

/// A frame column as integers (any integer type).
fn ints(frame: &polars::prelude::DataFrame, name: &str) -> Vec<i64> {
    let column = frame.column(name).unwrap().cast(&polars::prelude::DataType::Int64).unwrap();
    column.i64().unwrap().iter().map(|v| v.unwrap()).collect()
}

/// A column as text (dates as `YYYY-MM-DD`).
fn texts(frame: &polars::prelude::DataFrame, name: &str) -> Vec<String> {
    let column = frame.column(name).unwrap().cast(&polars::prelude::DataType::String).unwrap();
    column.str().unwrap().iter().map(|v| v.unwrap().to_string()).collect()
}

/// One customer `v` of tenant `t1`, sent each campaign of `sent` (id, day) once, paying
/// the `orders` (id, net amount, day); e-mail campaigns in USD at no fixed cost.
fn one_customer(sent: &[(&'static str, f64)], orders: &[(&'static str, i64, f64)]) -> SessionContext {
    const RECIPIENTS: [&str; 8] = ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"];
    let ctx = SessionContext::new();
    let n = sent.len();
    let ids: Vec<Option<&'static str>> = sent.iter().map(|(id, _)| Some(*id)).collect();
    table(
        &ctx,
        "outbound_campaigns",
        vec![
            ("id", Text(ids.clone())),
            ("tenant_id", Text(vec![Some("t1"); n])),
            ("name", Text(vec![Some("c"); n])),
            ("type", Text(vec![Some("email"); n])),
            ("currency", Text(vec![Some("USD"); n])),
            ("fixed_cost_minor", Int(vec![Some(0); n])),
            ("created_at", Day(vec![Some(-30.0); n])),
        ],
    );
    table(
        &ctx,
        "outbound_campaign_recipients",
        vec![
            ("id", Text(RECIPIENTS[..n].iter().map(|r| Some(*r)).collect())),
            ("tenant_id", Text(vec![Some("t1"); n])),
            ("campaign_id", Text(ids)),
            ("customer_id", Text(vec![Some("v"); n])),
            ("status", Text(vec![Some("delivered"); n])),
            ("sent_at", Day(sent.iter().map(|(_, day)| Some(*day)).collect())),
        ],
    );
    let m = orders.len();
    table(
        &ctx,
        "orders",
        vec![
            ("id", Text(orders.iter().map(|(id, _, _)| Some(*id)).collect())),
            ("tenant_id", Text(vec![Some("t1"); m])),
            ("customer_id", Text(vec![Some("v"); m])),
            ("status", Text(vec![Some("paid"); m])),
            ("amount_minor", Int(orders.iter().map(|(_, amount, _)| Some(*amount)).collect())),
            ("refunded_minor", Int(vec![Some(0); m])),
            ("currency", Text(vec![Some("USD"); m])),
            ("paid_at", Day(orders.iter().map(|(_, _, day)| Some(*day)).collect())),
        ],
    );
    ctx
}

fn roi_fixture() -> SessionContext {
    let ctx = SessionContext::new();
    table(
        &ctx,
        "outbound_campaigns",
        vec![
            ("id", Text(vec![Some("k1"), Some("k2"), Some("k3")])),
            ("tenant_id", Text(vec![Some("t1"); 3])),
            ("name", Text(vec![Some("Spring e-mail"), Some("SMS blast"), Some("Future calls")])),
            ("type", Text(vec![Some("email"), Some("sms"), Some("phone")])),
            ("currency", Text(vec![Some("USD"); 3])),
            ("fixed_cost_minor", Int(vec![Some(500), Some(0), Some(0)])),
            ("created_at", Day(vec![Some(-60.0), Some(-30.0), Some(1.0)])),
        ],
    );
    table(
        &ctx,
        "outbound_campaign_recipients",
        vec![
            ("id", Text(vec![Some("r1"), Some("r2"), Some("r3"), Some("r4"), Some("r5"), Some("r6")])),
            ("tenant_id", Text(vec![Some("t1"); 6])),
            ("campaign_id", Text(vec![Some("k1"), Some("k1"), Some("k1"), Some("k2"), Some("k2"), Some("k1")])),
            ("customer_id", Text(vec![Some("x"), Some("y"), Some("z"), Some("x"), Some("y"), Some("w")])),
            (
                "status",
                Text(vec![
                    Some("opened"),
                    Some("delivered"),
                    Some("bounced"),
                    Some("delivered"),
                    Some("replied"),
                    Some("pending"),
                ]),
            ),
            ("sent_at", Day(vec![Some(-40.0), Some(-20.0), Some(-10.0), Some(-5.0), Some(-15.0), None])),
            ("delivered_at", Day(vec![Some(-40.0), Some(-20.0), None, Some(-5.0), Some(-15.0), None])),
            ("opened_at", Day(vec![Some(-39.0), None, None, None, None, None])),
            ("clicked_at", Day(vec![None; 6])),
            ("replied_at", Day(vec![None, None, None, None, Some(-14.5), None])),
            ("updated_at", Day(vec![Some(-39.0), Some(-20.0), Some(-10.0), Some(-5.0), Some(-14.5), Some(-50.0)])),
        ],
    );
    table(
        &ctx,
        "orders",
        vec![
            ("id", Text(vec![Some("o1"), Some("o2"), Some("o3"), Some("o4"), Some("o5"), Some("o6")])),
            ("tenant_id", Text(vec![Some("t1"); 6])),
            ("customer_id", Text(vec![Some("x"), Some("y"), Some("z"), Some("z"), Some("z"), Some("y")])),
            (
                "status",
                Text(vec![Some("paid"), Some("paid"), Some("refunded"), Some("paid"), Some("paid"), Some("paid")]),
            ),
            ("amount_minor", Int(vec![Some(1000), Some(1001), Some(700), Some(300), Some(5000), Some(200)])),
            // o2 was refunded 1 in part; o3 in full.
            ("refunded_minor", Int(vec![Some(0), Some(1), Some(700), Some(0), Some(0), Some(0)])),
            ("currency", Text(vec![Some("USD"), Some("USD"), Some("USD"), Some("USD"), Some("USD"), Some("EUR")])),
            ("paid_at", Day(vec![Some(-2.0), Some(-1.0), Some(-5.0), Some(-12.0), Some(1.0), Some(-16.0)])),
        ],
    );
    // y complained about k1 twice (two reports), z once after as_of; x opened k1, and a
    // scanner clicked its links twice on arrival.
    table(
        &ctx,
        "customer_activities",
        vec![
            ("id", Text(vec![Some("a1"), Some("a2"), Some("a3"), Some("a4"), Some("a5"), Some("a6")])),
            ("tenant_id", Text(vec![Some("t1"); 6])),
            ("customer_id", Text(vec![Some("y"), Some("y"), Some("z"), Some("x"), Some("x"), Some("x")])),
            (
                "activity_type",
                Text(vec![
                    Some("email_complaint"),
                    Some("email_complaint"),
                    Some("email_complaint"),
                    Some("email_open"),
                    Some("machine_click"),
                    Some("machine_click"),
                ]),
            ),
            ("campaign_id", Text(vec![Some("k1"); 6])),
            ("occurred_at", Day(vec![Some(-19.0), Some(-18.0), Some(2.0), Some(-39.0), Some(-40.0), Some(-40.0)])),
        ],
    );
    ctx
}

#[tokio::test]
async fn roi_last_touch_and_linear_on_a_hand_computed_fixture() {
    let ctx = roi_fixture();
    let config = AnalyticsConfig::default().roi;
    let frame = bridge::frame_of(roi::roi(&ctx, &config, t0(), None).await.unwrap()).await.unwrap();
    let frame = frame.sort(["campaign_id"], Default::default()).unwrap();
    let col = |name: &str| ints(&frame, name);
    let ids: Vec<String> =
        frame.column("campaign_id").unwrap().str().unwrap().iter().map(|v| v.unwrap().to_string()).collect();
    // k3 starts tomorrow: not yet a campaign at as_of.
    assert_eq!(ids, ["k1", "k2"]);
    // k1: three sends (w's was never sent) at 1 minor unit + 500 fixed.
    assert_eq!(col("sends"), [3, 2]);
    assert_eq!(col("send_cost_minor"), [3, 16]);
    assert_eq!(col("cost_minor"), [503, 16]);
    // o1 (x, 1000): only k2's send 3 days before is in the window (k1's was 38 days
    // before). o2 (y, 1001 less 1 refunded: revenue is net of partial refunds): k1 (19
    // days before) and k2 (14 days before): last touch k2, linear 500 to each. o3
    // refunded, o4 paid before z's send, o5 after as_of, o6 in another currency: no credit.
    assert_eq!(col("last_touch_orders"), [0, 2]);
    assert_eq!(col("last_touch_revenue_minor"), [0, 2000]);
    assert_eq!(col("linear_revenue_minor"), [500, 1500]);
    let linear_orders: Vec<f64> =
        frame.column("linear_orders").unwrap().f64().unwrap().iter().map(|v| v.unwrap()).collect();
    assert_eq!(linear_orders, [0.5, 1.5]);
    assert_eq!(roi::ratio(0, 503), Some(-1.0));
    assert_eq!(roi::ratio(501, 503), Some(-2.0 / 503.0));
    assert_eq!(roi::ratio(2001, 16), Some(124.0625));
    assert_eq!(roi::ratio(1500, 16), Some(92.75));

    // A 10-day window keeps only k2's send to x (3 days before o1): both touches of o2
    // (19 and 14 days before) fall out.
    let mut narrow = config.clone();
    narrow.window_days = 10;
    let frame = bridge::frame_of(roi::roi(&ctx, &narrow, t0(), None).await.unwrap()).await.unwrap();
    let frame = frame.sort(["campaign_id"], Default::default()).unwrap();
    let linear = ints(&frame, "linear_revenue_minor");
    assert_eq!(linear, [0, 1000]);
}

#[tokio::test]
async fn first_touch_time_decay_and_position_based_on_hand_worked_orders() {
    // The same fixture: o2 (1000 net) was touched by k1 19 days before and k2 14 days
    // before; o1 (1000) by k2 alone.
    let ctx = roi_fixture();
    let config = AnalyticsConfig::default().roi;
    let frame = bridge::frame_of(roi::roi(&ctx, &config, t0(), None).await.unwrap()).await.unwrap();
    let frame = frame.sort(["campaign_id"], Default::default()).unwrap();
    // First touch: o2 to k1, o1 to k2.
    assert_eq!(ints(&frame, "first_touch_revenue_minor"), [1000, 1000]);
    assert_eq!(ints(&frame, "first_touch_orders"), [1, 1]);
    // Time decay, half-life 7 days: weights round(10⁶·0.5^(19/7)) = 152,377 and
    // round(10⁶·0.5^(14/7)) = 250,000; o2 splits ⌊1000·w/Σw⌋ = 378 and 621, and the one
    // unit left goes to the larger remainder (k1): 379 + 621, plus o1's 1000 to k2.
    assert_eq!(ints(&frame, "time_decay_revenue_minor"), [379, 1621]);
    // Position-based with two touches: half each; o1's single touch takes all.
    assert_eq!(ints(&frame, "position_revenue_minor"), [500, 1500]);

    // Four touches of one order of 1001 (sent 10, 8, 6 and 2 days before it).
    let ctx = one_customer(&[("c1", -10.0), ("c2", -8.0), ("c3", -6.0), ("c4", -2.0)], &[("o1", 1001, 0.0)]);
    let frame = bridge::frame_of(roi::roi(&ctx, &config, t0(), None).await.unwrap()).await.unwrap();
    let frame = frame.sort(["campaign_id"], Default::default()).unwrap();
    // Linear: 250 each, the earliest one more.
    assert_eq!(ints(&frame, "linear_revenue_minor"), [251, 250, 250, 250]);
    assert_eq!(ints(&frame, "first_touch_revenue_minor"), [1001, 0, 0, 0]);
    assert_eq!(ints(&frame, "last_touch_revenue_minor"), [0, 0, 0, 1001]);
    // 40/20/40: weights 4, 1, 1, 4 of 10: 400.4, 100.1, 100.1, 400.4 → 400, 100, 100, 400;
    // the unit left goes to the largest remainder, the first and last tie, the earlier wins.
    assert_eq!(ints(&frame, "position_revenue_minor"), [401, 100, 100, 400]);
    // Time decay: weights 371,499, 452,862, 552,045, 820,335 → 169, 206, 251, 373 and
    // the two units left to the two largest remainders (the last two touches).
    assert_eq!(ints(&frame, "time_decay_revenue_minor"), [169, 206, 252, 374]);
    for model in ["linear", "first_touch", "last_touch", "position", "time_decay"] {
        let total: i64 = ints(&frame, &format!("{model}_revenue_minor")).iter().sum();
        assert_eq!(total, 1001, "{model}: the parts sum to the order");
    }
    let orders: f64 = frame.column("position_orders").unwrap().f64().unwrap().iter().map(|v| v.unwrap()).sum();
    assert!((orders - 1.0).abs() < 1e-9, "one order, shared: {orders}");
}

/// Position-based on three touches of an order of 8: weights 2, 1, 2 of 5 give 3.2, 1.6,
/// 3.2 → 3, 1, 3, and the unit left goes to the largest remainder, the middle's (0.6).
#[tokio::test]
async fn position_gives_the_unit_left_to_a_middle_touch_with_the_larger_remainder() {
    // o2 (5: 2, 1, 2 exactly) leaves nothing over.
    let ctx = one_customer(&[("c1", -3.0), ("c2", -2.0), ("c3", -1.0)], &[("o1", 8, 0.0), ("o2", 5, -0.5)]);
    let config = AnalyticsConfig::default().roi;
    let frame = bridge::frame_of(roi::roi(&ctx, &config, t0(), None).await.unwrap()).await.unwrap();
    let frame = frame.sort(["campaign_id"], Default::default()).unwrap();
    assert_eq!(ints(&frame, "position_revenue_minor"), [3 + 2, 2 + 1, 3 + 2]);
    let orders: f64 = frame.column("position_orders").unwrap().f64().unwrap().iter().map(|v| v.unwrap()).sum();
    assert!((orders - 2.0).abs() < 1e-9, "two orders, shared: {orders}");
}

/// Two campaigns sent at the same instant: the first touch is the smaller campaign id,
/// the last the larger (the last touch is the n-th in (sent, campaign) order, not a
/// second ranking of its own).
#[tokio::test]
async fn simultaneous_touches_split_first_and_last_by_campaign_id() {
    let ctx = one_customer(&[("c2", -3.0), ("c1", -3.0)], &[("o1", 999, 0.0)]);
    let config = AnalyticsConfig::default().roi;
    let frame = bridge::frame_of(roi::roi(&ctx, &config, t0(), None).await.unwrap()).await.unwrap();
    let frame = frame.sort(["campaign_id"], Default::default()).unwrap();
    assert_eq!(ints(&frame, "first_touch_revenue_minor"), [999, 0]);
    assert_eq!(ints(&frame, "last_touch_revenue_minor"), [0, 999]);
    assert_eq!(ints(&frame, "last_touch_orders"), [0, 1]);
    // Linear: 499 each and the earlier (c1) the unit left.
    assert_eq!(ints(&frame, "linear_revenue_minor"), [500, 499]);
}

/// `amount` split by integer `weights`: each part ⌊amount·w/Σw⌋, the units left over one
/// each to the largest remainders, ties to the earlier touch. The models' definition,
/// written out in Rust to check the SQL against.
fn largest_remainder(amount: i64, weights: &[i64]) -> Vec<i64> {
    let total: i64 = weights.iter().sum();
    let mut parts: Vec<i64> = weights.iter().map(|w| amount * w / total).collect();
    let left = amount - parts.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(amount * weights[i] % total), i));
    for &i in order.iter().take(left as usize) {
        parts[i] += 1;
    }
    parts
}

/// Every weighted split for one to six touches and 120 amounts against
/// [`largest_remainder`]: the position-based ranks are computed from `n` and `k` alone, so
/// each of their cases (the ends' remainder larger, smaller, equal; units left to one
/// group or to both) has to come out as the sorted remainders would.
#[tokio::test]
async fn weighted_splits_equal_the_largest_remainder_method_for_up_to_six_touches() {
    let config = AnalyticsConfig::default().roi;
    let half_life_us = config.decay_half_life_days * 86_400_000_000.0;
    const CAMPAIGNS: [&str; 6] = ["c1", "c2", "c3", "c4", "c5", "c6"];
    let amounts: Vec<i64> = (0..100).chain([101, 997, 1001, 1002, 4999, 99_999, 123_457, 1_000_003]).collect();
    for n in 1..=6usize {
        let sent: Vec<(&'static str, f64)> =
            (0..n).map(|i| (CAMPAIGNS[i], -28.0 + 3.0 * i as f64 + 0.3 * (i * i) as f64)).collect();
        let orders: Vec<(&'static str, i64, f64)> = amounts
            .iter()
            .enumerate()
            .map(|(j, &a)| (&*Box::leak(format!("o{j}").into_boxed_str()), a, -0.1 * (j % 7) as f64))
            .collect();
        let (mut position, mut decay, mut linear) = (vec![0i64; n], vec![0i64; n], vec![0i64; n]);
        for &(_, amount, paid) in &orders {
            let ends = if n <= 2 { 1 } else { 2 * (n as i64 - 2) };
            let w_pos: Vec<i64> = (0..n).map(|i| if i == 0 || i == n - 1 { ends } else { 1 }).collect();
            let w_decay: Vec<i64> = sent
                .iter()
                .map(|&(_, day)| {
                    let age = (at(paid).timestamp_micros() - at(day).timestamp_micros()) as f64;
                    ((1_000_000.0 * 0.5f64.powf(age / half_life_us)).round() as i64).max(1)
                })
                .collect();
            for (i, part) in largest_remainder(amount, &w_pos).into_iter().enumerate() {
                position[i] += part;
            }
            for (i, part) in largest_remainder(amount, &w_decay).into_iter().enumerate() {
                decay[i] += part;
            }
            for (i, part) in largest_remainder(amount, &vec![1; n]).into_iter().enumerate() {
                linear[i] += part;
            }
        }
        let ctx = one_customer(&sent, &orders);
        let frame = bridge::frame_of(roi::roi(&ctx, &config, t0(), None).await.unwrap()).await.unwrap();
        let frame = frame.sort(["campaign_id"], Default::default()).unwrap();
        assert_eq!(ints(&frame, "position_revenue_minor"), position, "position-based, {n} touches");
        assert_eq!(ints(&frame, "time_decay_revenue_minor"), decay, "time decay, {n} touches");
        assert_eq!(ints(&frame, "linear_revenue_minor"), linear, "linear, {n} touches");
    }
}

#[tokio::test]
async fn campaign_read_model_counts_milestones_and_conversions_on_their_days() {
    let ctx = roi_fixture();
    let config = AnalyticsConfig::default().roi;
    let frame = bridge::frame_of(dashboard::read_model(&ctx, "campaigns", &config, t0()).await.unwrap()).await.unwrap();
    let frame = frame.sort(["campaign_id", "day"], Default::default()).unwrap();
    let ids = texts(&frame, "campaign_id");
    let total = |campaign: &str, name: &str| -> i64 {
        let values = ints(&frame, name);
        (0..frame.height()).filter(|i| ids[*i] == campaign).map(|i| values[i]).sum()
    };
    assert_eq!(total("k1", "sent"), 3);
    assert_eq!(total("k1", "delivered"), 2);
    assert_eq!(total("k1", "opened"), 1);
    assert_eq!(total("k1", "bounced"), 1);
    assert_eq!(total("k1", "complained"), 1, "once per recipient, never after as_of");
    assert_eq!((total("k1", "machine_clicks"), total("k1", "clicked"), total("k1", "opened")), (2, 0, 1));
    assert_eq!(total("k1", "conversions"), 0);
    assert_eq!(total("k2", "sent"), 2);
    assert_eq!(total("k2", "replied"), 1);
    assert_eq!(total("k2", "conversions"), 2);
    assert_eq!(total("k2", "revenue_minor"), 2000, "net of o2's partial refund");
}

/// The read models' day of a UTC timestamp, at the edges of days, before 1970 included:
/// the day `chrono` gives for the same instant.
#[tokio::test]
async fn a_timestamp_falls_on_its_utc_day_at_the_edges() {
    let instants: Vec<i64> = [
        "2026-10-31T23:59:59.999999Z",
        "2026-11-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "1960-02-29T00:00:00.000001Z",
    ]
    .iter()
    .map(|t| t.parse::<DateTime<Utc>>().unwrap().timestamp_micros())
    .collect();
    let ctx = SessionContext::new();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "t",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )]));
    let column: ArrayRef = Arc::new(TimestampMicrosecondArray::from(instants.clone()).with_timezone("UTC"));
    let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
    ctx.register_table("instants", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())).unwrap();
    let sql = format!("SELECT arrow_cast({}, 'Utf8') AS day FROM instants", fibonacco_analytics::sql::day("t"));
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let days: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let column = datafusion::arrow::array::cast::AsArray::as_string::<i32>(b.column(0)).clone();
            (0..b.num_rows()).map(move |i| column.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<String> = instants
        .iter()
        .map(|us| DateTime::<Utc>::from_timestamp_micros(*us).unwrap().date_naive().to_string())
        .collect();
    assert_eq!(days, expected);
    assert_eq!(days, ["2026-10-31", "2026-11-01", "1969-12-31", "1960-02-29"]);
}

/// The customers read model: a customer active twice on a day is one active customer
/// that day, tenants apart, nothing after `as_of`.
#[tokio::test]
async fn customers_read_model_counts_each_active_customer_once_a_day() {
    let ctx = SessionContext::new();
    table(
        &ctx,
        "crm_customers",
        vec![
            ("tenant_id", Text(vec![Some("t1"), Some("t1"), Some("t2")])),
            ("id", Text(vec![Some("a"), Some("b"), Some("c")])),
            ("created_at", Day(vec![Some(-3.5), Some(-3.2), Some(0.5)])),
        ],
    );
    table(
        &ctx,
        "customer_activities",
        vec![
            ("tenant_id", Text(vec![Some("t1"), Some("t1"), Some("t1"), Some("t1"), Some("t2"), Some("t1")])),
            ("customer_id", Text(vec![Some("a"), Some("a"), Some("b"), Some("a"), Some("c"), Some("b")])),
            ("occurred_at", Day(vec![Some(-1.9), Some(-1.1), Some(-1.5), Some(-0.5), Some(-0.5), Some(0.2)])),
        ],
    );
    table(
        &ctx,
        "crm_conversations",
        vec![("tenant_id", Text(vec![Some("t1")])), ("created_at", Day(vec![Some(-0.5)]))],
    );
    table(
        &ctx,
        "crm_conversation_messages",
        vec![("tenant_id", Text(vec![Some("t1"), Some("t1")])), ("created_at", Day(vec![Some(-0.5), Some(-0.4)]))],
    );
    let config = AnalyticsConfig::default().roi;
    let frame = bridge::frame_of(dashboard::read_model(&ctx, "customers", &config, t0()).await.unwrap()).await.unwrap();
    let frame = frame.sort(["tenant_id", "day"], Default::default()).unwrap();
    let (tenants, days) = (texts(&frame, "tenant_id"), texts(&frame, "day"));
    let counts = ["new_customers", "active_customers", "conversations", "messages"].map(|c| ints(&frame, c));
    let rows: Vec<(&str, &str, i64, i64, i64, i64)> = (0..frame.height())
        .map(|i| (tenants[i].as_str(), days[i].as_str(), counts[0][i], counts[1][i], counts[2][i], counts[3][i]))
        .collect();
    assert_eq!(
        rows,
        [
            ("t1", "2026-10-28", 2, 0, 0, 0),
            ("t1", "2026-10-30", 0, 2, 0, 0),
            ("t1", "2026-10-31", 0, 1, 1, 2),
            ("t2", "2026-10-31", 0, 1, 0, 0),
        ]
    );
}
