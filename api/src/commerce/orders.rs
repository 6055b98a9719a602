//! Orders: placed for a service, paid (or not) through Stripe.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use fibonacco_platform::{TenantId, db};
use rand::{Rng, distr::Alphanumeric};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json as SqlJson};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{READ, WRITE, services};
use crate::{
    ApiError, customers,
    envelope::{Envelope, PageQuery},
    error::{ErrorEnvelope, FieldErrors},
    extract::{Auth, JsonBody, QueryParams, resource_id},
    state::AppState,
    validate,
};

const RESOURCE: &str = "order";
pub const STATUSES: &[&str] = &["pending", "paid", "failed", "refunded", "cancelled"];

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Order {
    pub id: Uuid,
    pub order_number: String,
    pub customer_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    /// The subscription this order renews (one order per paid subscription invoice).
    pub subscription_id: Option<Uuid>,
    /// pending, paid, failed, refunded or cancelled.
    pub status: String,
    /// Minor units of `currency`.
    pub amount_minor: i64,
    pub currency: String,
    pub quantity: i32,
    pub stripe_payment_intent_id: Option<String>,
    pub stripe_checkout_session_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    /// Minor units refunded so far (Stripe refunds, partial or full); the order is
    /// `refunded` once this reaches `amount_minor`.
    pub refunded_minor: i64,
    /// When the order became fully refunded.
    pub refunded_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub metadata: SqlJson<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, order_number, customer_id, service_id, campaign_id, subscription_id, status, amount_minor, trim(currency) as currency,
    quantity, stripe_payment_intent_id, stripe_checkout_session_id, paid_at, refunded_minor, refunded_at, metadata,
    created_at, updated_at";

pub async fn get_one(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from orders where tenant_id = $1 and id = $2")))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    pub status: Option<String>,
    pub customer_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "commerce", params(PageQuery, OrderListQuery),
    responses((status = 200, body = inline(Envelope<Vec<Order>>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(query): QueryParams<OrderListQuery>,
) -> Result<Json<Envelope<Vec<Order>>>, ApiError> {
    auth.require(READ)?;
    super::page_filtered(&state, &auth, page, query.status, query.customer_id, STATUSES, "orders", COLUMNS).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    pub service_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    /// 1 to 10000 (default 1).
    pub quantity: Option<i32>,
    /// The campaign that brought the customer, when known (for ROI).
    pub campaign_id: Option<Uuid>,
    /// The Stripe PaymentIntent or Checkout Session created for this order, if any.
    pub stripe_payment_intent_id: Option<String>,
    pub stripe_checkout_session_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Place an order for an active service. The amount is the service's price times the
/// quantity, in the service's currency; the order starts `pending` until Stripe reports.
#[utoipa::path(post, path = "/api/v1/orders", tag = "commerce", request_body = CreateOrderRequest,
    responses((status = 201, body = inline(Envelope<Order>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateOrderRequest>,
) -> Result<(StatusCode, Json<Envelope<Order>>), ApiError> {
    auth.require(WRITE)?;
    let mut e = FieldErrors::default();
    let quantity = body.quantity.unwrap_or(1);
    if !(1..=10_000).contains(&quantity) {
        e.add("quantity", "must be between 1 and 10000");
    }
    let Some(service_id) = body.service_id else {
        e.add("service_id", "is required");
        return Err(ApiError::Validation(e));
    };
    let stripe_id = |v: Option<String>, prefix: &str, field: &str, e: &mut FieldErrors| {
        v.map(|s| {
            let s = s.trim().to_owned();
            if !s.starts_with(prefix) || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                e.add(field, format!("must be a Stripe id starting with {prefix}"));
            }
            s
        })
    };
    let intent = stripe_id(body.stripe_payment_intent_id, "pi_", "stripe_payment_intent_id", &mut e);
    let session = stripe_id(body.stripe_checkout_session_id, "cs_", "stripe_checkout_session_id", &mut e);
    let metadata = validate::object(body.metadata, "metadata", &mut e);
    e.into_result()?;

    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let mut e = FieldErrors::default();
    let service = services::get_one(&mut tx, tenant, service_id).await?;
    match &service {
        None => e.add("service_id", "no such service"),
        Some(s) if !s.is_active => e.add("service_id", "the service is not available"),
        Some(_) => {}
    }
    if let Some(c) = body.customer_id
        && !customers::store::exists(&mut tx, tenant, c).await?
    {
        e.add("customer_id", "no such customer");
    }
    if let Some(c) = body.campaign_id {
        let found: bool =
            sqlx::query_scalar("select exists (select 1 from outbound_campaigns where tenant_id = $1 and id = $2)")
                .bind(tenant)
                .bind(c)
                .fetch_one(&mut *tx)
                .await?;
        if !found {
            e.add("campaign_id", "no such campaign");
        }
    }
    e.into_result()?;
    let service = service.ok_or(ApiError::NotFound("service"))?;
    let amount = service
        .price_minor
        .checked_mul(i64::from(quantity))
        .ok_or_else(|| ApiError::Validation(FieldErrors::single("quantity", "the total amount is too large")))?;
    let order_number = new_order_number();
    let id: Uuid = sqlx::query_scalar(
        "insert into orders (tenant_id, customer_id, service_id, campaign_id, order_number, amount_minor, currency, quantity,
            stripe_payment_intent_id, stripe_checkout_session_id, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id",
    )
    .bind(tenant)
    .bind(body.customer_id)
    .bind(service_id)
    .bind(body.campaign_id)
    .bind(order_number)
    .bind(amount)
    .bind(&service.currency)
    .bind(quantity)
    .bind(intent)
    .bind(session)
    .bind(SqlJson(metadata))
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| match db::unique_violation(&err) {
        Some("orders_stripe_payment_intent_key") => ApiError::Conflict {
            message: "Another order already uses this PaymentIntent.".into(),
            field: Some("stripe_payment_intent_id"),
        },
        Some("orders_stripe_checkout_session_key") => ApiError::Conflict {
            message: "Another order already uses this Checkout Session.".into(),
            field: Some("stripe_checkout_session_id"),
        },
        _ => err.into(),
    })?;
    let order = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Envelope::with_message(order, "Order placed."))))
}

/// `ORD-<day>-<8 random letters and digits>`: unique per tenant by a unique index.
pub fn new_order_number() -> String {
    format!(
        "ORD-{}-{}",
        Utc::now().format("%Y%m%d"),
        rand::rng().sample_iter(&Alphanumeric).take(8).map(|b| char::from(b).to_ascii_uppercase()).collect::<String>()
    )
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "commerce", params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = inline(Envelope<Order>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Order>>, ApiError> {
    auth.require(READ)?;
    let id = resource_id(&id, RESOURCE)?;
    let mut tx = db::begin_tenant(&state.pool, auth.0.tenant_id).await?;
    let order = get_one(&mut tx, auth.0.tenant_id, id).await?;
    tx.commit().await?;
    order.map(|o| Json(Envelope::data(o))).ok_or(ApiError::NotFound(RESOURCE))
}

/// Cancel a pending order (409 for any other status).
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "commerce", params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = inline(Envelope<Order>)), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<Order>>, ApiError> {
    auth.require(WRITE)?;
    let id = resource_id(&id, RESOURCE)?;
    let tenant = auth.0.tenant_id;
    let mut tx = db::begin_tenant(&state.pool, tenant).await?;
    let status: Option<String> =
        sqlx::query_scalar("select status from orders where tenant_id = $1 and id = $2 for update")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    match status.as_deref() {
        None => return Err(ApiError::NotFound(RESOURCE)),
        Some("pending") => {}
        Some(other) => {
            return Err(ApiError::Conflict {
                message: format!("The order is {other}; only pending orders can be cancelled."),
                field: None,
            });
        }
    }
    sqlx::query("update orders set status = 'cancelled' where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let order = get_one(&mut tx, tenant, id).await?.ok_or(ApiError::NotFound(RESOURCE))?;
    tx.commit().await?;
    Ok(Json(Envelope::with_message(order, "Order cancelled.")))
}
