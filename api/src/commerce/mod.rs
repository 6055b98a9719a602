//! The service catalog, orders, payments and subscriptions (`/api/v1/services`,
//! `/api/v1/orders`, `/api/v1/subscriptions`). Payments, refunds and subscriptions are
//! made through Stripe; their state changes arrive through the Stripe webhook
//! (`crate::stripe`).

pub mod orders;
pub mod payments;
pub mod services;
pub mod subscriptions;

use axum::{
    Router,
    routing::{get, post},
};

use crate::state::AppState;

pub const READ: &str = "commerce:read";
pub const WRITE: &str = "commerce:write";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/services", get(services::list).post(services::create))
        .route("/services/categories", get(services::list_categories).post(services::create_category))
        .route("/services/{id}", get(services::show).put(services::update).delete(services::destroy))
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::show))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/orders/{id}/pay", post(payments::pay))
        .route("/orders/{id}/refund", post(payments::refund))
        .route("/subscriptions", get(subscriptions::list).post(subscriptions::create))
        .route("/subscriptions/{id}", get(subscriptions::show))
        .route("/subscriptions/{id}/cancel", post(subscriptions::cancel))
}

/// ISO 4217 shape: three ASCII letters, upper-cased.
pub fn currency(raw: &str, e: &mut crate::error::FieldErrors) -> String {
    let c = raw.trim().to_ascii_uppercase();
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        e.add("currency", "must be a three-letter ISO 4217 code");
    }
    c
}
