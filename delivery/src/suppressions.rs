//! Who a tenant must not contact. Targets are kept normalised (an address lower-cased in
//! full, a phone number in E.164) so a send finds its entry however the address was typed.

use fibonacco_platform::{
    TenantId,
    domain::{Email, PhoneNumber},
};
use sqlx::PgConnection;

pub const CHANNELS: &[&str] = &["email", "phone"];
pub const REASONS: &[&str] = &["manual", "bounce", "complaint", "unsubscribe", "stop"];

/// `target` in the form entries are stored in, or why it is not one.
pub fn normalise(channel: &str, target: &str) -> Result<String, &'static str> {
    match channel {
        "email" => {
            Email::parse(target).map(|e| e.as_str().to_lowercase()).map_err(|_| "must be a valid e-mail address")
        }
        "phone" => PhoneNumber::parse(target)
            .map(|p| p.as_str().to_owned())
            .map_err(|_| "must be a phone number in international format (+ and the country code)"),
        _ => Err("unknown channel"),
    }
}

/// Why `target` (already normalised) is suppressed for the tenant, if it is.
#[tracing::instrument(name = "suppressions.reason", skip(conn, target), fields(tenant_id = %tenant), err)]
pub async fn reason(
    conn: &mut PgConnection,
    tenant: TenantId,
    channel: &str,
    target: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("select reason from outbound_suppressions where tenant_id = $1 and channel = $2 and target = $3")
        .bind(tenant)
        .bind(channel)
        .bind(target)
        .fetch_optional(conn)
        .await
}
