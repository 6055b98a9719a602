//! What SES tells about a message it sent (event publishing through SNS, or the older
//! identity notifications), and what that does to the recipient: [`SesEvent::parse`]
//! reads the event, [`effect`] decides (pure: the synthetic generator runs the same
//! decisions), [`apply`] records it.
//!
//! | SES event | recipient | activity | suppression |
//! |---|---|---|---|
//! | Send | — | — | — |
//! | Delivery | `delivered` | — | — |
//! | Bounce, Permanent, the address is gone (`NoEmail`, `Suppressed`, `OnAccountSuppressionList`) | `bounced` | `email_bounce` | the address, in every tenant that has it |
//! | Bounce, Permanent, other (`General`, content refused, …) | `bounced` | `email_bounce` | the address, in the tenant |
//! | Bounce, Transient / Undetermined | `bounced` | `email_bounce` | after N in a window, in the tenant |
//! | Complaint | `complained_at` | `email_complaint` | the address, in the sending tenant |
//! | Reject, Rendering Failure | `failed` | — | — |
//! | DeliveryDelay | — | `email_delayed` | — |
//! | Open, Click | as the tracking links record them (human or machine) | | |
//!
//! Statuses only move forward ([`crate::campaigns::RecipientStatus::advances_to`]): a
//! late Delivery after an Open changes nothing, a Bounce after a Delivery leaves the
//! status but still suppresses the address.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    campaigns::{
        RecipientStatus,
        store::{self as campaign_store, Engagement},
    },
    links::RecipientRef,
};

/// How a bounce is classed by SES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceKind {
    /// The address does not exist or refuses mail for good.
    Permanent,
    /// A full mailbox, a message too large, a greylisting server: may pass later.
    Transient,
    /// SES could not tell.
    Undetermined,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permanent => "Permanent",
            Self::Transient => "Transient",
            Self::Undetermined => "Undetermined",
        }
    }
}

/// The part of an SES event this platform acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Send,
    Delivery,
    Bounce {
        kind: BounceKind,
        sub_type: String,
        addresses: Vec<String>,
        diagnostic: Option<String>,
    },
    /// `feedback` is the ARF feedback type (`abuse`, `not-spam`, …) when the mailbox
    /// provider sent one.
    Complaint {
        addresses: Vec<String>,
        feedback: Option<String>,
    },
    Reject {
        reason: String,
    },
    RenderingFailure {
        error: String,
    },
    DeliveryDelay {
        delay_type: String,
    },
    Open {
        user_agent: Option<String>,
    },
    Click {
        user_agent: Option<String>,
        link: String,
    },
    /// Any other type (`Subscription`, future ones): counted, nothing changes.
    Other(String),
}

/// One SES event about one sent message.
#[derive(Debug, Clone, PartialEq)]
pub struct SesEvent {
    /// SES's message id (what `SendEmail` answered, kept as `provider_message_id`).
    pub message_id: String,
    /// When it happened at SES or at the recipient (the event's own timestamp, else the
    /// mail's); the milestones and activities carry this time, not the arrival's.
    pub at: DateTime<Utc>,
    pub kind: EventKind,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    event_type: Option<String>,
    notification_type: Option<String>,
    mail: RawMail,
    bounce: Option<RawBounce>,
    complaint: Option<RawComplaint>,
    delivery: Option<RawTimed>,
    reject: Option<RawReject>,
    failure: Option<RawFailure>,
    delivery_delay: Option<RawDelay>,
    open: Option<RawEngagement>,
    click: Option<RawEngagement>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMail {
    message_id: String,
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecipient {
    email_address: String,
    diagnostic_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBounce {
    bounce_type: String,
    #[serde(default)]
    bounce_sub_type: String,
    #[serde(default)]
    bounced_recipients: Vec<RawRecipient>,
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawComplaint {
    #[serde(default)]
    complained_recipients: Vec<RawRecipient>,
    complaint_feedback_type: Option<String>,
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawTimed {
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawReject {
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFailure {
    #[serde(default)]
    error_message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDelay {
    #[serde(default)]
    delay_type: String,
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEngagement {
    user_agent: Option<String>,
    link: Option<String>,
    timestamp: Option<String>,
}

/// Text from SES kept in errors and activity metadata: bounded, without control characters.
fn clean(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn time(raw: Option<&str>) -> Option<DateTime<Utc>> {
    raw.and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

impl SesEvent {
    /// Reads an SES event (`eventType`, as configuration-set event publishing sends it,
    /// or `notificationType`, as identity notifications do).
    pub fn parse(json: &str) -> Result<Self, String> {
        let raw: RawEvent = serde_json::from_str(json).map_err(|e| format!("not an SES event: {e}"))?;
        let name = raw.event_type.or(raw.notification_type).ok_or("neither eventType nor notificationType")?;
        let message_id = raw.mail.message_id.trim().to_owned();
        // It is looked up as a key: a NUL would fail the whole batch it lands in.
        if message_id.is_empty() || message_id.len() > 200 || message_id.chars().any(char::is_control) {
            return Err("mail.messageId is empty, too long or has control characters".into());
        }
        let mail_at = time(raw.mail.timestamp.as_deref());
        let addresses =
            |list: &[RawRecipient]| list.iter().map(|r| clean(r.email_address.trim(), 320)).collect::<Vec<_>>();
        let missing = |part: &str| format!("a {name} event without its `{part}` part");
        let (kind, at) = match name.as_str() {
            "Send" => (EventKind::Send, None),
            "Delivery" => (EventKind::Delivery, raw.delivery.and_then(|d| time(d.timestamp.as_deref()))),
            "Bounce" => {
                let b = raw.bounce.ok_or_else(|| missing("bounce"))?;
                let kind = match b.bounce_type.as_str() {
                    "Permanent" => BounceKind::Permanent,
                    "Transient" => BounceKind::Transient,
                    _ => BounceKind::Undetermined,
                };
                let diagnostic =
                    b.bounced_recipients.iter().find_map(|r| r.diagnostic_code.as_deref()).map(|d| clean(d, 300));
                (
                    EventKind::Bounce {
                        kind,
                        sub_type: clean(&b.bounce_sub_type, 60),
                        addresses: addresses(&b.bounced_recipients),
                        diagnostic,
                    },
                    time(b.timestamp.as_deref()),
                )
            }
            "Complaint" => {
                let c = raw.complaint.ok_or_else(|| missing("complaint"))?;
                (
                    EventKind::Complaint {
                        addresses: addresses(&c.complained_recipients),
                        feedback: c.complaint_feedback_type.map(|f| clean(&f, 60)),
                    },
                    time(c.timestamp.as_deref()),
                )
            }
            "Reject" => {
                (EventKind::Reject { reason: clean(&raw.reject.map(|r| r.reason).unwrap_or_default(), 300) }, None)
            }
            "Rendering Failure" => (
                EventKind::RenderingFailure {
                    error: clean(&raw.failure.map(|f| f.error_message).unwrap_or_default(), 300),
                },
                None,
            ),
            "DeliveryDelay" => {
                let d = raw.delivery_delay.ok_or_else(|| missing("deliveryDelay"))?;
                (EventKind::DeliveryDelay { delay_type: clean(&d.delay_type, 60) }, time(d.timestamp.as_deref()))
            }
            "Open" => {
                let o = raw.open.ok_or_else(|| missing("open"))?;
                (EventKind::Open { user_agent: o.user_agent.map(|u| clean(&u, 300)) }, time(o.timestamp.as_deref()))
            }
            "Click" => {
                let c = raw.click.ok_or_else(|| missing("click"))?;
                (
                    EventKind::Click {
                        user_agent: c.user_agent.map(|u| clean(&u, 300)),
                        link: clean(&c.link.unwrap_or_default(), 2000),
                    },
                    time(c.timestamp.as_deref()),
                )
            }
            other => (EventKind::Other(clean(other, 40)), None),
        };
        Ok(Self { message_id, at: at.or(mail_at).unwrap_or_else(Utc::now), kind })
    }

    /// The event's type as SES names it (for counters and the record of messages).
    pub fn type_name(&self) -> &str {
        match &self.kind {
            EventKind::Send => "Send",
            EventKind::Delivery => "Delivery",
            EventKind::Bounce { .. } => "Bounce",
            EventKind::Complaint { .. } => "Complaint",
            EventKind::Reject { .. } => "Reject",
            EventKind::RenderingFailure { .. } => "Rendering Failure",
            EventKind::DeliveryDelay { .. } => "DeliveryDelay",
            EventKind::Open { .. } => "Open",
            EventKind::Click { .. } => "Click",
            EventKind::Other(name) => name,
        }
    }
}

/// What one event does, decided without a database.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// Where the recipient should move (only if that is forward), with the error kept.
    pub status: Option<(RecipientStatus, Option<String>)>,
    /// The customer activity written, with its metadata.
    pub activity: Option<(&'static str, Value)>,
    /// An open or a click, recorded as the tracking links record them.
    pub engagement: Option<(Engagement, Value)>,
    pub suppress: Option<Suppress>,
    /// A complaint stamps `complained_at`.
    pub complained: bool,
}

/// Which addresses stop receiving mail, and how far.
#[derive(Debug, Clone, PartialEq)]
pub enum Suppress {
    /// The address does not exist (or SES itself will not mail it): nobody can reach it.
    Everywhere { addresses: Vec<String>, note: String },
    /// A complaint (this sender's mail is unwanted there) or a permanent bounce that may be
    /// about the sender or its content rather than the address: in the sending tenant only,
    /// so one tenant's mail cannot silence an address for the others.
    Tenant { addresses: Vec<String>, reason: &'static str, note: String },
    /// A transient bounce counts towards the limit ([`Policy`]).
    CountTransient { addresses: Vec<String> },
}

/// Permanent bounce sub types that say the address itself cannot receive mail.
const ADDRESS_GONE: &[&str] = &["NoEmail", "Suppressed", "OnAccountSuppressionList"];

/// Decides what `event` does to its recipient.
pub fn effect(event: &SesEvent) -> Effect {
    let mut out = Effect { status: None, activity: None, engagement: None, suppress: None, complained: false };
    match &event.kind {
        EventKind::Send | EventKind::Other(_) => {}
        EventKind::Delivery => out.status = Some((RecipientStatus::Delivered, None)),
        EventKind::Bounce { kind, sub_type, addresses, diagnostic } => {
            let mut error = format!("{} bounce ({sub_type})", kind.as_str().to_lowercase());
            if let Some(d) = diagnostic {
                error.push_str(": ");
                error.push_str(d);
            }
            out.status = Some((RecipientStatus::Bounced, Some(error)));
            out.activity = Some(("email_bounce", json!({"bounce_type": kind.as_str(), "bounce_sub_type": sub_type})));
            let note = format!("permanent bounce ({sub_type})");
            out.suppress = Some(match kind {
                BounceKind::Permanent if ADDRESS_GONE.contains(&sub_type.as_str()) => {
                    Suppress::Everywhere { addresses: addresses.clone(), note }
                }
                BounceKind::Permanent => Suppress::Tenant { addresses: addresses.clone(), reason: "bounce", note },
                BounceKind::Transient | BounceKind::Undetermined => {
                    Suppress::CountTransient { addresses: addresses.clone() }
                }
            });
        }
        EventKind::Complaint { addresses, feedback } => {
            // `not-spam` is the person taking a message out of the spam folder.
            if feedback.as_deref() != Some("not-spam") {
                out.complained = true;
                out.activity = Some(("email_complaint", json!({"feedback_type": feedback})));
                out.suppress = Some(Suppress::Tenant {
                    addresses: addresses.clone(),
                    reason: "complaint",
                    note: format!("complaint ({})", feedback.as_deref().unwrap_or("unspecified")),
                });
            }
        }
        EventKind::Reject { reason } => {
            out.status = Some((RecipientStatus::Failed, Some(format!("rejected by SES: {reason}"))))
        }
        EventKind::RenderingFailure { error } => {
            out.status = Some((RecipientStatus::Failed, Some(format!("SES could not render the template: {error}"))))
        }
        EventKind::DeliveryDelay { delay_type } => {
            out.activity = Some(("email_delayed", json!({"delay_type": delay_type})))
        }
        EventKind::Open { user_agent } => {
            let what = if campaign_store::is_machine("GET", user_agent.as_deref()) {
                Engagement::MachineOpen
            } else {
                Engagement::Open
            };
            out.engagement = Some((what, json!({"source": "ses", "user_agent": user_agent})));
        }
        EventKind::Click { user_agent, link } => {
            let what = if campaign_store::is_machine("GET", user_agent.as_deref()) {
                Engagement::MachineClick
            } else {
                Engagement::Click
            };
            out.engagement = Some((what, json!({"source": "ses", "url": link, "user_agent": user_agent})));
        }
    }
    out
}

/// A recipient's milestones as SES events leave them: the one place the forward-only
/// moves of an event are decided. [`apply`] loads them from the recipient's row and
/// writes back what changed; the synthetic generator keeps them in memory. Opens and
/// clicks move `opened_at`/`clicked_at` here as a person's would; [`apply`] records them
/// through [`campaign_store::engage`] instead, which adds the rules that need the
/// message's click history (too soon after delivery, a burst over its links).
#[derive(Debug, Clone, PartialEq)]
pub struct Milestones {
    pub status: RecipientStatus,
    pub delivered_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
    pub bounced_at: Option<DateTime<Utc>>,
    pub complained_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

impl Milestones {
    /// A message SES accepted.
    pub fn sent() -> Self {
        Self {
            status: RecipientStatus::Sent,
            delivered_at: None,
            opened_at: None,
            clicked_at: None,
            bounced_at: None,
            complained_at: None,
            error: None,
        }
    }

    /// Applies `event`; returns what else it asks for (activity, engagement, suppression).
    pub fn apply(&mut self, event: &SesEvent) -> Effect {
        let decided = effect(event);
        let at = event.at;
        if let Some((to, error)) = &decided.status
            && self.status.advances_to(*to)
        {
            self.status = *to;
            match to {
                RecipientStatus::Delivered => {
                    self.delivered_at.get_or_insert(at);
                }
                RecipientStatus::Bounced => {
                    self.bounced_at.get_or_insert(at);
                }
                _ => {}
            }
            if error.is_some() {
                self.error = error.clone();
            }
        }
        if decided.complained {
            self.complained_at.get_or_insert(at);
            self.delivered_at.get_or_insert(at);
        }
        match decided.engagement {
            Some((Engagement::Open, _)) => {
                self.delivered_at.get_or_insert(at);
                self.opened_at.get_or_insert(at);
                if matches!(self.status, RecipientStatus::Sent | RecipientStatus::Delivered) {
                    self.status = RecipientStatus::Opened;
                }
            }
            Some((Engagement::Click, _)) => {
                self.delivered_at.get_or_insert(at);
                self.opened_at.get_or_insert(at);
                self.clicked_at.get_or_insert(at);
                if matches!(self.status, RecipientStatus::Sent | RecipientStatus::Delivered | RecipientStatus::Opened) {
                    self.status = RecipientStatus::Clicked;
                }
            }
            _ => {}
        }
        decided
    }
}

/// When transient bounces turn into a suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `SES_TRANSIENT_BOUNCE_LIMIT` (default 3; 0 never suppresses for them).
    pub transient_limit: u32,
    /// `SES_TRANSIENT_BOUNCE_WINDOW_DAYS` (default 7).
    pub transient_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self { transient_limit: 3, transient_window: Duration::from_secs(7 * 86_400) }
    }
}

/// One SNS notification carrying an SES event.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// SNS's MessageId: the unit applied once.
    pub sns_id: String,
    pub topic_arn: String,
    pub event: SesEvent,
}

/// What became of one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded on the recipient of the tenant (a move, an activity, a suppression, or
    /// nothing when the event changes nothing, e.g. a late delivery).
    Applied(TenantId),
    /// No recipient has the message id (another platform's mail, or one long deleted):
    /// counted and dropped.
    UnknownMessage,
    /// This SNS message was applied before (a retry or a replay): nothing changes.
    Duplicate,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied(_) => "applied",
            Self::UnknownMessage => "unknown_message",
            Self::Duplicate => "duplicate",
        }
    }
}

/// Applies notifications, in order, in the caller's system transaction: the events name
/// messages, not tenants; each recipient row gives its tenant and every write names it.
/// Each SNS message is recorded in `sns_messages` before any write: one seen before (or
/// twice in `items`) is a [`Outcome::Duplicate`]; a concurrent copy waits for this
/// transaction (on the recipient's lock or the message's key) and then finds it. The work
/// is set-based (one statement each for the recipients, the record, their moves, the
/// activities), so a batch costs a few round trips whatever its size; opens, clicks and
/// suppressions go one by one (their rules read history), after the moves.
#[tracing::instrument(name = "ses_events.apply_batch", skip_all, fields(n = items.len()), err)]
pub async fn apply_batch(
    conn: &mut PgConnection,
    items: &[Incoming],
    policy: Policy,
) -> Result<Vec<Outcome>, sqlx::Error> {
    // The recipients first: locked (in id order) where the event may change them, only
    // looked up where it cannot (Send and unknown types, half of SES's events), so those
    // cost no row lock. The lock also makes a concurrent copy of an event wait here.
    let changes = |i: &&Incoming| !matches!(i.event.kind, EventKind::Send | EventKind::Other(_));
    let locked: Vec<&str> = items.iter().filter(changes).map(|i| i.event.message_id.as_str()).collect();
    let peeked: Vec<&str> = items.iter().filter(|i| !changes(i)).map(|i| i.event.message_id.as_str()).collect();
    let mut recipients = campaign_store::milestones_by_messages(&mut *conn, &locked, &peeked).await?;
    let original = recipients.clone();
    // Then the record of SNS messages, with what became of each: one seen before (or twice
    // in `items`) is not fresh, and is a duplicate.
    let ids: Vec<&str> = items.iter().map(|i| i.sns_id.as_str()).collect();
    let topics: Vec<&str> = items.iter().map(|i| i.topic_arn.as_str()).collect();
    let types: Vec<&str> = items.iter().map(|i| i.event.type_name()).collect();
    let tenants: Vec<Option<Uuid>> =
        items.iter().map(|i| recipients.get(&i.event.message_id).map(|(r, _)| r.tenant.as_uuid())).collect();
    let fresh: std::collections::HashSet<String> = sqlx::query_scalar(
        "insert into sns_messages (message_id, topic_arn, type, event_type, outcome, tenant_id)
         select id, topic, 'Notification', kind, case when tenant is null then 'unknown_message' else 'applied' end, tenant
         from unnest($1::text[], $2::text[], $3::text[], $4::uuid[]) u(id, topic, kind, tenant)
         on conflict do nothing returning message_id",
    )
    .bind(&ids)
    .bind(&topics)
    .bind(&types)
    .bind(&tenants)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    // The first copy of a fresh id in `items` is applied; any other is a duplicate.
    let mut claimed = std::collections::HashSet::new();
    let applies: Vec<bool> =
        items.iter().map(|i| fresh.contains(&i.sns_id) && claimed.insert(i.sns_id.as_str())).collect();

    let mut outcomes = Vec::with_capacity(items.len());
    let mut activities = Activities::default();
    let mut later: Vec<(campaign_store::MessageRecipient, Effect, DateTime<Utc>)> = Vec::new();
    for (item, applies) in items.iter().zip(applies) {
        if !applies {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let Some((found, milestones)) = recipients.get_mut(&item.event.message_id) else {
            outcomes.push(Outcome::UnknownMessage);
            continue;
        };
        let mut decided = if matches!(item.event.kind, EventKind::Open { .. } | EventKind::Click { .. }) {
            // Recorded by `engage` below, which knows the message's click history.
            effect(&item.event)
        } else {
            milestones.apply(&item.event)
        };
        if let Some((activity, metadata)) = decided.activity.take() {
            activities.push(found, activity, metadata, item.event.at);
        }
        if decided.engagement.is_some() || decided.suppress.is_some() {
            later.push((*found, decided, item.event.at));
        }
        outcomes.push(Outcome::Applied(found.tenant));
    }
    let moved: Vec<(campaign_store::MessageRecipient, Milestones)> = recipients
        .into_iter()
        .filter(|(message, (_, m))| original.get(message).is_some_and(|(_, before)| before != m))
        .map(|(_, r)| r)
        .collect();
    campaign_store::set_milestones_many(&mut *conn, &moved).await?;
    activities.insert(&mut *conn).await?;
    for (found, decided, at) in later {
        if let Some((what, metadata)) = decided.engagement {
            let who = RecipientRef { tenant: found.tenant, recipient: found.recipient };
            campaign_store::engage(&mut *conn, who, what, at, metadata).await?;
        }
        if let Some(rule) = &decided.suppress {
            suppress(&mut *conn, found.tenant, found.customer, rule, policy).await?;
        }
    }
    Ok(outcomes)
}

/// Activity rows gathered for one insert.
#[derive(Default)]
struct Activities {
    tenants: Vec<Uuid>,
    customers: Vec<Uuid>,
    kinds: Vec<&'static str>,
    campaigns: Vec<Uuid>,
    metadata: Vec<Value>,
    at: Vec<DateTime<Utc>>,
}

impl Activities {
    fn push(&mut self, r: &campaign_store::MessageRecipient, kind: &'static str, metadata: Value, at: DateTime<Utc>) {
        self.tenants.push(r.tenant.as_uuid());
        self.customers.push(r.customer);
        self.kinds.push(kind);
        self.campaigns.push(r.campaign);
        self.metadata.push(metadata);
        self.at.push(at);
    }

    async fn insert(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.tenants.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into customer_activities (tenant_id, customer_id, activity_type, channel, subject_type, subject_id,
                campaign_id, metadata, occurred_at)
             select t, c, k, 'email', 'outbound_campaign', g, g, m, a
             from unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::jsonb[], $6::timestamptz[]) u(t, c, k, g, m, a)",
        )
        .bind(&self.tenants)
        .bind(&self.customers)
        .bind(&self.kinds)
        .bind(&self.campaigns)
        .bind(&self.metadata)
        .bind(&self.at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

async fn suppress(
    conn: &mut PgConnection,
    tenant: TenantId,
    customer: Uuid,
    rule: &Suppress,
    policy: Policy,
) -> Result<u64, sqlx::Error> {
    let normalised = |addresses: &[String]| -> Vec<String> {
        addresses.iter().filter_map(|a| crate::suppressions::normalise("email", a).ok()).collect()
    };
    let (addresses, reason, note, everywhere) = match rule {
        Suppress::Everywhere { addresses, note } => (normalised(addresses), "bounce", note.clone(), true),
        Suppress::Tenant { addresses, reason, note } => (normalised(addresses), *reason, note.clone(), false),
        Suppress::CountTransient { addresses } => {
            if policy.transient_limit == 0 {
                return Ok(0);
            }
            let window = format!("{} seconds", policy.transient_window.as_secs());
            let count: i64 = sqlx::query_scalar(
                "select count(*) from customer_activities
                 where tenant_id = $1 and customer_id = $2 and activity_type = 'email_bounce'
                   and metadata->>'bounce_type' <> 'Permanent' and occurred_at > now() - $3::interval",
            )
            .bind(tenant)
            .bind(customer)
            .bind(&window)
            .fetch_one(&mut *conn)
            .await?;
            if count < i64::from(policy.transient_limit) {
                return Ok(0);
            }
            let days = policy.transient_window.as_secs() / 86_400;
            (normalised(addresses), "bounce", format!("{count} transient bounces within {days} days"), false)
        }
    };
    if addresses.is_empty() {
        return Ok(0);
    }
    // The sending tenant always; for an address that is gone also every tenant with a
    // customer at it (whoever writes to it bounces, and all tenants send through one SES
    // account whose bounce rate they share).
    let n = sqlx::query(
        "insert into outbound_suppressions (tenant_id, channel, target, reason, note)
         select t, 'email', a, $4, $5 from unnest($2::text[]) a,
           lateral (select $1::uuid as t
                    union select c.tenant_id from crm_customers c where $3 and lower(c.email) = a) ts(t)
         on conflict do nothing",
    )
    .bind(tenant)
    .bind(&addresses)
    .bind(everywhere)
    .bind(reason)
    .bind(note)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: Value) -> SesEvent {
        SesEvent::parse(&json.to_string()).unwrap()
    }

    const MAIL: &str = r#"{"messageId": "0100-abc", "timestamp": "2026-11-30T10:00:00.000Z"}"#;

    fn with_mail(mut v: Value) -> Value {
        v["mail"] = serde_json::from_str(MAIL).unwrap();
        v
    }

    #[test]
    fn event_types_become_effects() {
        let delivery =
            event(with_mail(json!({"eventType": "Delivery", "delivery": {"timestamp": "2026-11-30T10:00:02Z"}})));
        assert_eq!(delivery.at.to_rfc3339(), "2026-11-30T10:00:02+00:00");
        assert_eq!(effect(&delivery).status, Some((RecipientStatus::Delivered, None)));

        let hard = event(with_mail(json!({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent",
            "bounceSubType": "NoEmail", "bouncedRecipients": [{"emailAddress": "Gone@Example.com",
            "diagnosticCode": "smtp; 550 5.1.1 user unknown\r\nInjected: yes"}]}})));
        let e = effect(&hard);
        let (status, error) = e.status.unwrap();
        assert_eq!(status, RecipientStatus::Bounced);
        assert!(!error.unwrap().contains('\n'), "control characters are dropped from provider text");
        assert!(
            matches!(e.suppress, Some(Suppress::Everywhere { ref addresses, .. }) if addresses == &["Gone@Example.com"])
        );
        // Refused for its content or its sender: only the sending tenant stops.
        let refused = event(with_mail(json!({"eventType": "Bounce", "bounce": {"bounceType": "Permanent",
            "bounceSubType": "General", "bouncedRecipients": [{"emailAddress": "x@example.com",
            "diagnosticCode": "smtp; 550 5.7.1 message rejected as spam"}]}})));
        assert!(matches!(effect(&refused).suppress, Some(Suppress::Tenant { reason: "bounce", .. })));

        let soft = event(with_mail(json!({"eventType": "Bounce", "bounce": {"bounceType": "Transient",
            "bounceSubType": "MailboxFull", "bouncedRecipients": [{"emailAddress": "full@example.com"}]}})));
        assert!(matches!(effect(&soft).suppress, Some(Suppress::CountTransient { .. })));

        let complaint = event(with_mail(json!({"eventType": "Complaint", "complaint": {"complainedRecipients":
            [{"emailAddress": "angry@example.com"}], "complaintFeedbackType": "abuse"}})));
        let e = effect(&complaint);
        assert!(e.complained && matches!(e.suppress, Some(Suppress::Tenant { .. })));
        let not_spam = event(with_mail(json!({"eventType": "Complaint", "complaint": {"complainedRecipients":
            [{"emailAddress": "a@example.com"}], "complaintFeedbackType": "not-spam"}})));
        assert_eq!(effect(&not_spam).suppress, None);

        let scanner = event(with_mail(json!({"eventType": "Click", "click": {"link": "https://x.example/",
            "userAgent": "Mozilla/5.0 (compatible; Barracuda)"}})));
        assert!(matches!(effect(&scanner).engagement, Some((Engagement::MachineClick, _))));
        let person = event(with_mail(json!({"eventType": "Open", "open": {"userAgent": "Mozilla/5.0 (iPhone)"}})));
        assert!(matches!(effect(&person).engagement, Some((Engagement::Open, _))));

        let reject = event(with_mail(json!({"eventType": "Reject", "reject": {"reason": "Bad content"}})));
        assert!(matches!(effect(&reject).status, Some((RecipientStatus::Failed, _))));
        let other = event(with_mail(json!({"eventType": "Subscription", "subscription": {}})));
        assert_eq!(
            effect(&other),
            Effect { status: None, activity: None, engagement: None, suppress: None, complained: false }
        );
    }

    #[test]
    fn milestones_only_move_forward() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut m = Milestones::sent();
        let open = event(with_mail(
            json!({"eventType": "Open", "open": {"userAgent": "Mozilla/5.0", "timestamp": "2026-11-30T10:05:00Z"}}),
        ));
        m.apply(&open);
        assert_eq!(
            (m.status, m.delivered_at, m.opened_at),
            (RecipientStatus::Opened, Some(at("2026-11-30T10:05:00Z")), Some(at("2026-11-30T10:05:00Z")))
        );
        // A late Delivery, and a Bounce after it, leave the status; the bounce still suppresses.
        let late =
            event(with_mail(json!({"eventType": "Delivery", "delivery": {"timestamp": "2026-11-30T10:00:02Z"}})));
        m.apply(&late);
        assert_eq!((m.status, m.delivered_at), (RecipientStatus::Opened, Some(at("2026-11-30T10:05:00Z"))));
        let bounce = event(with_mail(
            json!({"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "a@b.example"}]}}),
        ));
        assert!(m.apply(&bounce).suppress.is_some());
        assert_eq!((m.status, m.bounced_at), (RecipientStatus::Opened, None));
        let mut fresh = Milestones::sent();
        fresh.apply(&bounce);
        assert_eq!(fresh.status, RecipientStatus::Bounced);
        assert!(fresh.bounced_at.is_some() && fresh.error.as_deref().unwrap().starts_with("permanent bounce"));
    }

    #[test]
    fn malformed_events_are_refused_with_a_reason() {
        assert!(SesEvent::parse("not json").is_err());
        assert!(SesEvent::parse(&json!({"mail": {"messageId": "x"}}).to_string()).is_err());
        assert!(
            SesEvent::parse(&with_mail(json!({"eventType": "Bounce"})).to_string()).unwrap_err().contains("bounce")
        );
        assert!(SesEvent::parse(&json!({"eventType": "Send", "mail": {"messageId": ""}}).to_string()).is_err());
        assert!(SesEvent::parse(&json!({"eventType": "Send", "mail": {"messageId": "a\u{0}b"}}).to_string()).is_err());
    }
}
