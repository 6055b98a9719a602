//! Outbound campaigns over e-mail, SMS and phone (`/api/v1/outbound/...`): campaigns and
//! their recipients (`campaigns`), request parsing (`input`), templates and scripts
//! (`templates`), Twilio status callbacks (`callbacks`) and inbound SMS (`inbound`), SES
//! events over SNS (`ses`), who must not be contacted (`suppressions`) and the SQL of plans and reads
//! (`store`). Sending is the delivery crate's: `start` moves the campaign and queues its
//! dispatch.

pub mod callbacks;
pub mod campaigns;
pub mod contact_policy;
pub mod inbound;
pub mod input;
pub mod ses;
pub mod store;
pub mod suppressions;
pub mod templates;

use axum::{
    Router,
    routing::{get, post},
};

pub use callbacks::*;
pub use campaigns::*;

use crate::state::AppState;

pub const READ: &str = "outbound:read";
pub const WRITE: &str = "outbound:write";
const RESOURCE: &str = "campaign";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/outbound/campaigns", get(campaigns::list).post(campaigns::create))
        .route("/outbound/campaigns/{id}", get(campaigns::show).put(campaigns::update).delete(campaigns::destroy))
        .route("/outbound/campaigns/{id}/recipients", get(campaigns::recipients))
        .route("/outbound/campaigns/{id}/start", post(campaigns::start))
        .route("/outbound/campaigns/{id}/pause", post(campaigns::pause))
        .route("/outbound/campaigns/{id}/resume", post(campaigns::resume))
        .route("/outbound/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/outbound/campaigns/{id}/analytics", get(campaigns::analytics))
        .route("/outbound/email/campaigns", get(campaigns::list_email).post(campaigns::create_email))
        .route("/outbound/email/templates", get(templates::list_email).post(templates::create_email))
        .route("/outbound/sms/campaigns", get(campaigns::list_sms).post(campaigns::create_sms))
        .route("/outbound/sms/templates", get(templates::list_sms).post(templates::create_sms))
        .route("/outbound/sms/campaigns/{id}/sms-status", post(callbacks::sms_status))
        .route("/outbound/phone/campaigns", get(campaigns::list_phone).post(campaigns::create_phone))
        .route("/outbound/phone/scripts", get(templates::list_scripts).post(templates::create_script))
        .route("/outbound/phone/campaigns/{id}/call-status", post(callbacks::call_status))
        .route("/outbound/suppressions", get(suppressions::list).post(suppressions::create))
        .route("/outbound/suppressions/{id}", axum::routing::delete(suppressions::destroy))
        .route("/outbound/contact-policy", get(contact_policy::list))
        .route(
            "/outbound/contact-policy/{channel}",
            axum::routing::put(contact_policy::set).delete(contact_policy::remove),
        )
}
