//! The analytics routes (`/api/v1/crm/...`): dashboards read what the pipelines computed
//! (`fibonacco pipelines run|watch`), never raw events. `meta.as_of` says which instant
//! the numbers describe and `meta.freshness` how old that is; a tenant nothing was
//! computed for yet gets zeros with `freshness.status = "missing"`.

pub mod input;
pub mod store;

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{
    db,
    envelope::{Envelope, Period},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    ApiError,
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, QueryParams, resource_id},
    state::AppState,
};
use input::{CAMPAIGN_CHANNELS, CHANNELS, Filters, Range, RangeQuery};
use store::{
    Breakdown, CampaignCounts, CampaignRow, ContentRow, CustomerTotals, DashboardDay, DayCount, EngagementRow,
    OrderGroup, PredictiveRow, ScoreSummary,
};

pub const READ: &str = "analytics:read";

/// Activities that show what customers are interested in.
pub const INTEREST_TYPES: &[&str] = &[
    "page_view",
    "article_read",
    "faq_read",
    "knowledge_view",
    "presentation_view",
    "survey_response",
    "sales_contact",
];
/// Activities of the learning center.
pub const LEARNING_TYPES: &[&str] = &["article_read", "faq_read", "knowledge_view", "presentation_view"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/crm/dashboard/analytics", get(dashboard))
        .route("/crm/analytics/interest", get(interest))
        .route("/crm/analytics/purchases", get(purchases))
        .route("/crm/analytics/learning", get(learning))
        .route("/crm/analytics/campaign-performance", get(campaign_performance))
        .route("/crm/customers/{id}/engagement-score", get(engagement_score))
        .route("/crm/campaigns/{id}/roi", get(campaign_roi))
        .route("/crm/customers/{id}/predictive-score", get(predictive_score))
}

/// Rates over a campaign's counts; null when the denominator is 0.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rates {
    /// delivered / sent
    pub delivery_rate: Option<f64>,
    /// opened / delivered
    pub open_rate: Option<f64>,
    /// clicked / delivered
    pub click_rate: Option<f64>,
    /// replied / delivered
    pub reply_rate: Option<f64>,
    /// bounced / sent
    pub bounce_rate: Option<f64>,
    /// unsubscribed / delivered
    pub unsubscribe_rate: Option<f64>,
    /// complained / delivered (e-mail spam complaints)
    pub complaint_rate: Option<f64>,
    /// last-touch conversions / sent
    pub conversion_rate: Option<f64>,
}

fn share(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| ((n as f64 / d as f64) * 1e4).round() / 1e4)
}

impl Rates {
    pub fn of(c: &CampaignCounts) -> Self {
        Self {
            delivery_rate: share(c.delivered, c.sent),
            open_rate: share(c.opened, c.delivered),
            click_rate: share(c.clicked, c.delivered),
            reply_rate: share(c.replied, c.delivered),
            bounce_rate: share(c.bounced, c.sent),
            unsubscribe_rate: share(c.unsubscribed, c.delivered),
            complaint_rate: share(c.complained, c.delivered),
            conversion_rate: share(c.conversions, c.sent),
        }
    }
}

/// Resolves the range against the tenant's latest computation in `table`.
async fn period(
    conn: &mut sqlx::PgConnection,
    auth: &Auth,
    table: &'static str,
    query: &RangeQuery,
    channels: &[&str],
) -> Result<(Option<DateTime<Utc>>, Range, Filters), ApiError> {
    let as_of = store::latest_as_of(conn, auth.0.tenant_id, table).await?;
    // The day of the newest data: as_of is an exclusive instant at midnight for a dated run.
    let latest =
        as_of.map(|t| (t - chrono::Duration::microseconds(1)).date_naive()).unwrap_or_else(|| Utc::now().date_naive());
    let (range, filters) = query.resolve(latest, channels)?;
    Ok((as_of, range, filters))
}

fn meta_period(range: Range, filters: &Filters) -> Option<Period> {
    Some(Period { from: range.from, to: range.to, filters: filters.json() })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardAnalytics {
    pub scores: ScoreSummary,
    pub customers: CustomerTotals,
    /// Orders per currency.
    pub orders: Vec<OrderGroup>,
    /// Monthly recurring revenue per currency, as of now (not limited to the range).
    pub recurring: Vec<store::RecurringRevenue>,
    pub campaigns: CampaignCounts,
    pub campaign_rates: Rates,
    pub series: Vec<DashboardDay>,
}

/// KPIs over a date range: customers, engagement and purchase propensity, orders and
/// revenue, campaign delivery and response, and a daily series.
#[utoipa::path(get, path = "/api/v1/crm/dashboard/analytics", tag = "analytics", params(RangeQuery),
    responses((status = 200, body = inline(Envelope<DashboardAnalytics>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn dashboard(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<RangeQuery>,
) -> Result<Json<Envelope<DashboardAnalytics>>, ApiError> {
    auth.require(READ)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (as_of, range, filters) = period(&mut tx, &auth, "analytics_daily_customers", &query, CHANNELS).await?;
    let scores = store::score_summary(&mut tx, tenant).await?;
    let customers = store::customer_totals(&mut tx, tenant, range).await?;
    let orders = store::orders(&mut tx, tenant, range, &filters, "currency").await?;
    let campaigns = store::campaign_totals(&mut tx, tenant, range, &filters).await?;
    let series = store::dashboard_series(&mut tx, tenant, range).await?;
    let recurring = store::recurring_revenue(&mut tx, tenant).await?;
    tx.commit().await?;
    let campaign_rates = Rates::of(&campaigns);
    Ok(Json(Envelope::computed(
        DashboardAnalytics { scores, customers, orders, recurring, campaigns, campaign_rates, series },
        as_of,
        meta_period(range, &filters),
    )))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityAnalytics {
    pub total_events: i64,
    pub by_activity_type: Vec<Breakdown>,
    pub by_category: Vec<Breakdown>,
    pub by_channel: Vec<Breakdown>,
    pub series: Vec<DayCount>,
    /// Learning only: the most read knowledge entries and articles (all time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_content: Option<Vec<ContentRow>>,
}

async fn activity(
    state: &AppState,
    auth: &Auth,
    query: &RangeQuery,
    types: &[&str],
    with_content: bool,
) -> Result<Json<Envelope<ActivityAnalytics>>, ApiError> {
    auth.require(READ)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (as_of, range, filters) = period(&mut tx, auth, "analytics_daily_activity", query, CHANNELS).await?;
    let by_activity_type = store::activity_breakdown(&mut tx, tenant, range, &filters, types, "activity_type").await?;
    let by_category = store::activity_breakdown(&mut tx, tenant, range, &filters, types, "category").await?;
    let by_channel = store::activity_breakdown(&mut tx, tenant, range, &filters, types, "channel").await?;
    let series = store::activity_series(&mut tx, tenant, range, &filters, types).await?;
    let top_content = if with_content { Some(store::top_content(&mut tx, tenant, &filters).await?) } else { None };
    tx.commit().await?;
    let total_events = by_activity_type.iter().map(|b| b.events).sum();
    Ok(Json(Envelope::computed(
        ActivityAnalytics { total_events, by_activity_type, by_category, by_channel, series, top_content },
        as_of,
        meta_period(range, &filters),
    )))
}

/// What customers look at: page, article, FAQ, knowledge and presentation views, survey
/// responses and sales contacts, by type, category and channel, with a daily series.
#[utoipa::path(get, path = "/api/v1/crm/analytics/interest", tag = "analytics", params(RangeQuery),
    responses((status = 200, body = inline(Envelope<ActivityAnalytics>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn interest(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<RangeQuery>,
) -> Result<Json<Envelope<ActivityAnalytics>>, ApiError> {
    activity(&state, &auth, &query, INTEREST_TYPES, false).await
}

/// Learning-center reads (articles, FAQs, knowledge entries, presentations) by type and
/// category, a daily series, and the most read content with its helpfulness votes.
#[utoipa::path(get, path = "/api/v1/crm/analytics/learning", tag = "analytics", params(RangeQuery),
    responses((status = 200, body = inline(Envelope<ActivityAnalytics>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn learning(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<RangeQuery>,
) -> Result<Json<Envelope<ActivityAnalytics>>, ApiError> {
    activity(&state, &auth, &query, LEARNING_TYPES, true).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PurchaseAnalytics {
    /// Per currency.
    pub totals: Vec<OrderGroup>,
    pub by_service: Vec<OrderGroup>,
    pub by_category: Vec<OrderGroup>,
    pub series: Vec<OrderGroup>,
}

/// Orders, paid orders, refunds and revenue (minor units, per currency) by service,
/// service category and day.
#[utoipa::path(get, path = "/api/v1/crm/analytics/purchases", tag = "analytics", params(RangeQuery),
    responses((status = 200, body = inline(Envelope<PurchaseAnalytics>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn purchases(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<RangeQuery>,
) -> Result<Json<Envelope<PurchaseAnalytics>>, ApiError> {
    auth.require(READ)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (as_of, range, filters) = period(&mut tx, &auth, "analytics_daily_orders", &query, CHANNELS).await?;
    let totals = store::orders(&mut tx, tenant, range, &filters, "currency").await?;
    let by_service = store::orders(&mut tx, tenant, range, &filters, "service").await?;
    let by_category = store::orders(&mut tx, tenant, range, &filters, "category").await?;
    let series = store::orders(&mut tx, tenant, range, &filters, "day").await?;
    tx.commit().await?;
    Ok(Json(Envelope::computed(
        PurchaseAnalytics { totals, by_service, by_category, series },
        as_of,
        meta_period(range, &filters),
    )))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoiSummary {
    pub cost_minor: i64,
    pub last_touch_roi: Option<f64>,
    pub linear_roi: Option<f64>,
    /// The attribution model of `roi` (`?model=`, default `last_touch`).
    pub model: &'static str,
    pub roi: Option<f64>,
}

/// How a paid order's revenue is split among the campaigns that touched its customer
/// (docs/metrics.md, "Campaign ROI").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributionModel {
    LastTouch,
    FirstTouch,
    Linear,
    TimeDecay,
    PositionBased,
}

pub const ATTRIBUTION_MODELS: &[&str] = &["last_touch", "first_touch", "linear", "time_decay", "position_based"];

impl AttributionModel {
    fn parse(raw: Option<&str>, errors: &mut FieldErrors) -> Self {
        match raw {
            None | Some("") | Some("last_touch") => Self::LastTouch,
            Some("first_touch") => Self::FirstTouch,
            Some("linear") => Self::Linear,
            Some("time_decay") => Self::TimeDecay,
            Some("position_based") => Self::PositionBased,
            Some(_) => {
                errors.add("model", format!("must be one of {}", ATTRIBUTION_MODELS.join(", ")));
                Self::LastTouch
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::LastTouch => "last_touch",
            Self::FirstTouch => "first_touch",
            Self::Linear => "linear",
            Self::TimeDecay => "time_decay",
            Self::PositionBased => "position_based",
        }
    }

    fn roi_column(self) -> &'static str {
        match self {
            Self::LastTouch => "last_touch_roi",
            Self::FirstTouch => "first_touch_roi",
            Self::Linear => "linear_roi",
            Self::TimeDecay => "time_decay_roi",
            Self::PositionBased => "position_roi",
        }
    }
}

/// `?model=`: the attribution model a route reports.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelQuery {
    /// `last_touch` (default), `first_touch`, `linear`, `time_decay` or `position_based`.
    pub model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPerformanceRow {
    #[serde(flatten)]
    pub campaign: CampaignRow,
    pub rates: Rates,
    /// All-time ROI as of the last ROI run; null before one.
    pub roi: Option<RoiSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPerformance {
    pub totals: CampaignCounts,
    pub rates: Rates,
    pub campaigns: Vec<CampaignPerformanceRow>,
}

/// Per campaign: sends, deliveries, opens, clicks, replies, bounces, unsubscribes and
/// last-touch conversions in the range, their rates, and the campaign's ROI.
#[utoipa::path(get, path = "/api/v1/crm/analytics/campaign-performance", tag = "analytics", params(RangeQuery, ModelQuery),
    responses((status = 200, body = inline(Envelope<CampaignPerformance>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn campaign_performance(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<RangeQuery>,
    QueryParams(model): QueryParams<ModelQuery>,
) -> Result<Json<Envelope<CampaignPerformance>>, ApiError> {
    auth.require(READ)?;
    let mut errors = FieldErrors::default();
    let model = AttributionModel::parse(model.model.as_deref(), &mut errors);
    errors.into_result()?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let (as_of, range, filters) =
        period(&mut tx, &auth, "analytics_daily_campaigns", &query, CAMPAIGN_CHANNELS).await?;
    let totals = store::campaign_totals(&mut tx, tenant, range, &filters).await?;
    let rows = store::campaigns(&mut tx, tenant, range, &filters).await?;
    let roi: std::collections::HashMap<Uuid, RoiSummary> = store::roi_by_campaign(&mut tx, tenant, model)
        .await?
        .into_iter()
        .map(|r| {
            let summary = RoiSummary {
                cost_minor: r.cost_minor,
                last_touch_roi: r.last_touch_roi,
                linear_roi: r.linear_roi,
                model: model.name(),
                roi: r.roi,
            };
            (r.campaign_id, summary)
        })
        .collect();
    tx.commit().await?;
    let mut roi = roi;
    let campaigns = rows
        .into_iter()
        .map(|campaign| {
            let rates = Rates::of(&campaign.counts);
            let roi = roi.remove(&campaign.campaign_id);
            CampaignPerformanceRow { campaign, rates, roi }
        })
        .collect();
    let rates = Rates::of(&totals);
    Ok(Json(Envelope::computed(CampaignPerformance { totals, rates, campaigns }, as_of, meta_period(range, &filters))))
}

/// What a per-id analytics route reads: the parent row, and what a missing result is.
#[derive(Clone, Copy)]
enum Subject {
    Customer,
    Campaign,
}

impl Subject {
    fn table(self) -> &'static str {
        match self {
            Subject::Customer => "crm_customers",
            Subject::Campaign => "outbound_campaigns",
        }
    }

    fn resource(self) -> &'static str {
        match self {
            Subject::Customer => "customer",
            Subject::Campaign => "campaign",
        }
    }
}

/// One precomputed row of a customer or campaign of the caller's tenant: 404 naming the
/// subject when the id is unknown there, naming the result when no run computed it yet.
async fn computed_row<T>(
    state: &AppState,
    auth: &Auth,
    raw_id: &str,
    subject: Subject,
    result: &'static str,
    fetch: impl AsyncFnOnce(&mut sqlx::PgConnection, fibonacco_platform::TenantId, Uuid) -> Result<Option<T>, sqlx::Error>,
) -> Result<T, ApiError> {
    auth.require(READ)?;
    let id = resource_id(raw_id, subject.resource())?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let row = fetch(&mut tx, tenant, id).await?;
    let found = row.is_some() || store::exists(&mut tx, tenant, subject.table(), id).await?;
    tx.commit().await?;
    match row {
        Some(r) => Ok(r),
        None if found => Err(ApiError::NotFound(result)),
        None => Err(ApiError::NotFound(subject.resource())),
    }
}

/// A customer's engagement score (0-100) and its per-channel components.
#[utoipa::path(get, path = "/api/v1/crm/customers/{id}/engagement-score", tag = "analytics",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, body = inline(Envelope<EngagementRow>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn engagement_score(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<EngagementRow>>, ApiError> {
    let row = computed_row(&state, &auth, &id, Subject::Customer, "engagement score", store::engagement).await?;
    let as_of = Some(row.as_of);
    Ok(Json(Envelope::computed(row, as_of, None)))
}

/// A customer's probability of a paid order in the next 90 days, its top contributing
/// features, and the model version with its validation metrics.
#[utoipa::path(get, path = "/api/v1/crm/customers/{id}/predictive-score", tag = "analytics",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses((status = 200, body = inline(Envelope<PredictiveRow>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn predictive_score(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<PredictiveRow>>, ApiError> {
    let row = computed_row(&state, &auth, &id, Subject::Customer, "predictive score", store::predictive).await?;
    let as_of = Some(row.as_of);
    Ok(Json(Envelope::computed(row, as_of, None)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cost {
    pub sends: i64,
    pub unit_cost_minor: i64,
    pub send_cost_minor: i64,
    pub fixed_cost_minor: i64,
    pub total_minor: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Attribution {
    /// Orders credited (fractional under the linear, time-decay and position-based models).
    pub orders: f64,
    pub revenue_minor: i64,
    /// (revenue − cost) / cost; null when the campaign cost nothing.
    pub roi: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignRoi {
    pub campaign_id: Uuid,
    pub channel: String,
    pub currency: String,
    pub cost: Cost,
    pub last_touch: Attribution,
    pub linear: Attribution,
    pub first_touch: Attribution,
    pub time_decay: Attribution,
    pub position_based: Attribution,
    /// The model `?model=` asked for (default `last_touch`), and its figures.
    pub model: &'static str,
    pub selected: Attribution,
    pub attribution_window_days: i32,
    /// Time decay: a touch this many days before the order weighs half.
    pub decay_half_life_days: f64,
    pub as_of: DateTime<Utc>,
    pub computed_at: DateTime<Utc>,
}

/// A campaign's cost (per-send and fixed) against the revenue of the paid orders
/// attributed to it, under five attribution models (last touch, first touch, linear, time
/// decay, position-based), each in integer minor units that sum to every order.
#[utoipa::path(get, path = "/api/v1/crm/campaigns/{id}/roi", tag = "analytics",
    params(("id" = Uuid, Path, description = "Campaign id"), ModelQuery),
    responses((status = 200, body = inline(Envelope<CampaignRoi>)), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn campaign_roi(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(model): QueryParams<ModelQuery>,
) -> Result<Json<Envelope<CampaignRoi>>, ApiError> {
    let mut errors = FieldErrors::default();
    let model = AttributionModel::parse(model.model.as_deref(), &mut errors);
    errors.into_result()?;
    let r = computed_row(&state, &auth, &id, Subject::Campaign, "campaign ROI", store::roi).await?;
    let as_of = Some(r.as_of);
    let last_touch = Attribution {
        orders: r.last_touch_orders as f64,
        revenue_minor: r.last_touch_revenue_minor,
        roi: r.last_touch_roi,
    };
    let linear = Attribution { orders: r.linear_orders, revenue_minor: r.linear_revenue_minor, roi: r.linear_roi };
    let first_touch = Attribution {
        orders: r.first_touch_orders as f64,
        revenue_minor: r.first_touch_revenue_minor,
        roi: r.first_touch_roi,
    };
    let time_decay =
        Attribution { orders: r.time_decay_orders, revenue_minor: r.time_decay_revenue_minor, roi: r.time_decay_roi };
    let position_based =
        Attribution { orders: r.position_orders, revenue_minor: r.position_revenue_minor, roi: r.position_roi };
    let selected = match model {
        AttributionModel::LastTouch => last_touch.clone(),
        AttributionModel::FirstTouch => first_touch.clone(),
        AttributionModel::Linear => linear.clone(),
        AttributionModel::TimeDecay => time_decay.clone(),
        AttributionModel::PositionBased => position_based.clone(),
    };
    let roi = CampaignRoi {
        campaign_id: r.campaign_id,
        channel: r.channel,
        currency: r.currency,
        cost: Cost {
            sends: r.sends,
            unit_cost_minor: r.unit_cost_minor,
            send_cost_minor: r.send_cost_minor,
            fixed_cost_minor: r.fixed_cost_minor,
            total_minor: r.cost_minor,
        },
        last_touch,
        linear,
        first_touch,
        time_decay,
        position_based,
        model: model.name(),
        selected,
        attribution_window_days: r.window_days,
        decay_half_life_days: r.decay_half_life_days,
        as_of: r.as_of,
        computed_at: r.computed_at,
    };
    Ok(Json(Envelope::computed(roi, as_of, None)))
}
