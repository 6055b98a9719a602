//! The service catalog and orders (`/api/v1/services`, `/api/v1/orders`). Payment state
//! changes arrive through the Stripe webhook (`crate::stripe`).

pub mod orders;
pub mod services;

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
}

/// ISO 4217 shape: three ASCII letters, upper-cased.
pub fn currency(raw: &str, e: &mut crate::error::FieldErrors) -> String {
    let c = raw.trim().to_ascii_uppercase();
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        e.add("currency", "must be a three-letter ISO 4217 code");
    }
    c
}
