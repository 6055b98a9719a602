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

/// Which of `targets` (already normalised) are suppressed for the tenant, with why: one
/// query for a whole send job.
#[tracing::instrument(name = "suppressions.reasons", skip(conn, targets), fields(tenant_id = %tenant, n = targets.len()), err)]
pub async fn reasons(
    conn: &mut PgConnection,
    tenant: TenantId,
    channel: &str,
    targets: &[String],
) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
    if targets.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select target, reason from outbound_suppressions where tenant_id = $1 and channel = $2 and target = any($3)",
    )
    .bind(tenant)
    .bind(channel)
    .bind(targets)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// What an inbound SMS asks for, by Twilio's opt-out and opt-in keywords (the whole
/// message, case and surrounding space ignored, as Twilio matches them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsKeyword {
    OptOut,
    OptIn,
}

pub fn sms_keyword(body: &str) -> Option<SmsKeyword> {
    match body.trim().to_ascii_uppercase().as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "OPTOUT" | "REVOKE" => {
            Some(SmsKeyword::OptOut)
        }
        "START" | "YES" | "UNSTOP" => Some(SmsKeyword::OptIn),
        _ => None,
    }
}

/// Applies a STOP or START from `phone` (E.164) to every tenant with a customer at that
/// number: the platform sends all SMS from one number, and Twilio itself blocks a number
/// that replied STOP for every sender of it, so the list follows what Twilio will do.
/// STOP suppresses the number (`stop`), marks the customer unsubscribed and records an
/// `unsubscribe` activity; START lifts `stop` entries (not manual ones), clears the mark
/// and records an `sms_reply`. Returns the customers touched. Runs in a system
/// transaction: the message names no tenant.
#[tracing::instrument(name = "suppressions.sms_keyword", skip(conn, phone), err)]
pub async fn apply_sms_keyword(conn: &mut PgConnection, phone: &str, keyword: SmsKeyword) -> Result<u64, sqlx::Error> {
    let customers: Vec<(TenantId, uuid::Uuid)> =
        sqlx::query_as("select tenant_id, id from crm_customers where phone = $1")
            .bind(phone)
            .fetch_all(&mut *conn)
            .await?;
    for (tenant, customer) in &customers {
        match keyword {
            SmsKeyword::OptOut => {
                sqlx::query(
                    "insert into outbound_suppressions (tenant_id, channel, target, reason, note)
                     values ($1, 'phone', $2, 'stop', 'replied STOP') on conflict do nothing",
                )
                .bind(tenant)
                .bind(phone)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "update crm_customers set unsubscribed_at = coalesce(unsubscribed_at, now()) where tenant_id = $1 and id = $2",
                )
                .bind(tenant)
                .bind(customer)
                .execute(&mut *conn)
                .await?;
            }
            SmsKeyword::OptIn => {
                sqlx::query(
                    "delete from outbound_suppressions where tenant_id = $1 and channel = 'phone' and target = $2 and reason = 'stop'",
                )
                .bind(tenant)
                .bind(phone)
                .execute(&mut *conn)
                .await?;
                sqlx::query("update crm_customers set unsubscribed_at = null where tenant_id = $1 and id = $2")
                    .bind(tenant)
                    .bind(customer)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        let activity = if keyword == SmsKeyword::OptOut { "unsubscribe" } else { "sms_reply" };
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel) values ($1, $2, $3, 'sms')",
        )
        .bind(tenant)
        .bind(customer)
        .bind(activity)
        .execute(&mut *conn)
        .await?;
    }
    Ok(customers.len() as u64)
}

/// What a Twilio error code on an SMS says about the number for good: `stop` (21610: it
/// replied STOP to this sender), `bounce` (21211 invalid, 21614 not a mobile number,
/// 30005 unknown handset, 30006 landline or unreachable carrier). Other codes (30003
/// unreachable right now, 30007 carrier filtering, …) may pass and suppress nothing.
pub fn twilio_permanent(code: &str) -> Option<&'static str> {
    match code.trim() {
        "21610" => Some("stop"),
        "21211" | "21614" | "30005" | "30006" => Some("bounce"),
        _ => None,
    }
}

/// Suppresses the phone of the recipient that Twilio message `sid` went to (in the
/// campaign's tenant), with `reason` and the code as the note.
#[tracing::instrument(name = "suppressions.from_sms_failure", skip(conn, sid), fields(tenant_id = %tenant), err)]
pub async fn suppress_sms_recipient(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: uuid::Uuid,
    sid: &str,
    reason: &str,
    code: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "insert into outbound_suppressions (tenant_id, channel, target, reason, note)
         select r.tenant_id, 'phone', c.phone, $4, 'Twilio error ' || $5
         from outbound_campaign_recipients r join crm_customers c on c.tenant_id = r.tenant_id and c.id = r.customer_id
         where r.tenant_id = $1 and r.campaign_id = $2 and r.provider_message_id = $3 and c.phone is not null
         on conflict do nothing",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(sid)
    .bind(reason)
    .bind(code)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_whole_messages_and_targets_are_normalised() {
        assert_eq!(sms_keyword(" stop\n"), Some(SmsKeyword::OptOut));
        assert_eq!(sms_keyword("Unsubscribe"), Some(SmsKeyword::OptOut));
        assert_eq!(sms_keyword("START"), Some(SmsKeyword::OptIn));
        assert_eq!(sms_keyword("stop it"), None);
        assert_eq!(sms_keyword(""), None);
        assert_eq!(normalise("email", " Ann.Lee@Example.COM "), Ok("ann.lee@example.com".to_owned()));
        assert_eq!(normalise("phone", "+1 (555) 010-7777"), Ok("+15550107777".to_owned()));
        assert!(normalise("phone", "555").is_err() && normalise("fax", "x").is_err());
    }
}
