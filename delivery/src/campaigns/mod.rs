//! Outbound campaigns as the senders see them: channels, the campaign and recipient
//! status sets with the one table of campaign moves, provider status mapping, and the
//! checks a campaign passes before it starts. [`store`] is the only code that writes a
//! campaign's or a recipient's status.

pub mod store;

use fibonacco_platform::{
    TenantId,
    queue::{self, JobKind, Queue, QueueError, jobs::DispatchCampaign},
};
use sqlx::PgConnection;
use uuid::Uuid;

/// How a campaign reaches its recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
    Phone,
}

impl Channel {
    pub fn of_campaign_type(kind: &str) -> Option<Self> {
        match kind {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            "phone" => Some(Self::Phone),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Phone => "phone",
        }
    }

    pub fn send_job(self) -> JobKind {
        match self {
            Self::Email => queue::SEND_EMAIL_CAMPAIGN,
            Self::Sms => queue::SEND_SMS,
            Self::Phone => queue::MAKE_PHONE_CALL,
        }
    }

    /// The dispatch job runs on the channel's own queue, so a worker for `sms` alone
    /// can run an SMS campaign from start to end.
    pub fn dispatch_job(self) -> JobKind {
        queue::DISPATCH_CAMPAIGN.on(self.send_job().queue)
    }
}

pub const CAMPAIGN_TYPES: &[&str] = &["email", "sms", "phone"];

/// A campaign's life: `draft` ⇄ `scheduled` → `running` ⇄ `paused`, then `completed`
/// (every recipient past queued) or `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

pub const CAMPAIGN_STATUSES: &[&str] = &["draft", "scheduled", "running", "paused", "completed", "cancelled"];

impl CampaignStatus {
    pub const ALL: [Self; 6] =
        [Self::Draft, Self::Scheduled, Self::Running, Self::Paused, Self::Completed, Self::Cancelled];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The one table of campaign moves: every status change goes through it.
    pub fn can_become(self, to: Self) -> bool {
        use CampaignStatus::*;
        matches!(
            (self, to),
            (Draft, Scheduled)
                | (Scheduled, Draft)
                | (Draft | Scheduled, Running)
                | (Running, Paused)
                | (Paused, Running)
                | (Running, Completed)
                | (Draft | Scheduled | Running | Paused, Cancelled)
        ) || (self == to && matches!(self, Draft | Scheduled))
    }

    /// Plans (recipients, content, schedule, costs) change only before the start.
    pub fn editable(self) -> bool {
        matches!(self, Self::Draft | Self::Scheduled)
    }
}

impl std::fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a recipient stands. Reports (provider callbacks, tracking links, reconciliation)
/// only move a recipient forward ([`RecipientStatus::advances_to`]):
///
/// `pending < queued < sending < unknown < sent < delivered = answered = voicemail <
/// opened < clicked < replied`; `failed`, `bounced` and `unsubscribed` are terminal.
/// `failed` and `bounced` follow only a recipient not yet known to be delivered (`sent` at
/// most); `unsubscribed` follows anything that is not terminal. A late or replayed report
/// changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientStatus {
    Pending,
    Queued,
    /// Claimed by a send that recorded its attempt and is calling the provider.
    Sending,
    /// The provider may or may not have sent it (a timeout after the request went out, an
    /// unreadable answer, a worker that died mid-call). Never re-sent automatically.
    Unknown,
    Sent,
    Delivered,
    Answered,
    Voicemail,
    Opened,
    Clicked,
    Replied,
    Failed,
    Bounced,
    Unsubscribed,
}

impl RecipientStatus {
    pub const ALL: [Self; 14] = [
        Self::Pending,
        Self::Queued,
        Self::Sending,
        Self::Unknown,
        Self::Sent,
        Self::Delivered,
        Self::Answered,
        Self::Voicemail,
        Self::Opened,
        Self::Clicked,
        Self::Replied,
        Self::Failed,
        Self::Bounced,
        Self::Unsubscribed,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Unknown => "unknown",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Answered => "answered",
            Self::Voicemail => "voicemail",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
            Self::Replied => "replied",
            Self::Failed => "failed",
            Self::Bounced => "bounced",
            Self::Unsubscribed => "unsubscribed",
        }
    }

    /// The place in the forward order; `None` for the terminal statuses.
    fn rank(self) -> Option<u8> {
        Some(match self {
            Self::Pending => 0,
            Self::Queued => 1,
            Self::Sending => 2,
            Self::Unknown => 3,
            Self::Sent => 4,
            Self::Delivered | Self::Answered | Self::Voicemail => 5,
            Self::Opened => 6,
            Self::Clicked => 7,
            Self::Replied => 8,
            Self::Failed | Self::Bounced | Self::Unsubscribed => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        self.rank().is_none()
    }

    /// Whether a report may move a recipient from `self` to `to`.
    pub fn advances_to(self, to: Self) -> bool {
        match (self.rank(), to.rank()) {
            (None, _) => false,
            (Some(from), Some(to)) => to > from,
            (Some(from), None) => match to {
                Self::Unsubscribed => true,
                _ => from <= 4,
            },
        }
    }
}

impl std::fmt::Display for RecipientStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const RECIPIENT_STATUSES: &[&str] = &[
    "pending",
    "queued",
    "sending",
    "unknown",
    "sent",
    "delivered",
    "answered",
    "voicemail",
    "opened",
    "clicked",
    "replied",
    "failed",
    "bounced",
    "unsubscribed",
];

/// Maps Twilio's message statuses to recipient statuses; `None` for states that change nothing.
pub fn sms_recipient_status(twilio: &str) -> Option<Option<&'static str>> {
    Some(match twilio {
        "accepted" | "scheduled" | "queued" | "sending" => Some("queued"),
        "sent" => Some("sent"),
        "delivered" => Some("delivered"),
        "undelivered" | "failed" | "canceled" => Some("failed"),
        "received" => Some("replied"),
        "read" => Some("opened"),
        _ => return None,
    })
}

/// Maps Twilio's call statuses to recipient statuses.
pub fn call_recipient_status(twilio: &str, answered_by: Option<&str>) -> Option<Option<&'static str>> {
    Some(match twilio {
        "queued" | "initiated" => Some("queued"),
        "ringing" | "in-progress" => Some("sent"),
        "completed" if answered_by.is_some_and(|a| a.starts_with("machine")) => Some("voicemail"),
        "completed" => Some("answered"),
        "busy" | "no-answer" | "failed" | "canceled" => Some("failed"),
        _ => return None,
    })
}

/// Queues the campaign's dispatch (after `start`, `resume`, or the scheduler's sweep).
#[tracing::instrument(name = "campaign.enqueue_dispatch", skip(queue), err)]
pub async fn enqueue_dispatch(queue: &Queue, tenant: TenantId, campaign: Uuid, kind: &str) -> Result<Uuid, QueueError> {
    let channel = Channel::of_campaign_type(kind).unwrap_or(Channel::Email);
    queue
        .enqueue(&DispatchCampaign {
            tenant_id: tenant.as_uuid(),
            campaign_id: campaign,
            on: Some(channel.dispatch_job()),
        })
        .await
}

/// What stands between a campaign and its start: the checks `start` and the scheduler
/// share. The campaign row stays locked for the caller's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub kind: String,
    pub status: String,
    pub has_recipients: bool,
    pub content: ContentState,
    /// The campaign takes its recipients from a segment: how many it selected now.
    pub segment_selected: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentState {
    /// The campaign names no template or script.
    Unset,
    /// It names one that no longer exists.
    Gone,
    Present,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.has_recipients && self.content == ContentState::Present
    }
}

/// Locks the campaign and reads what its start depends on; `None` if it does not exist.
/// A draft or scheduled campaign with a segment gets the segment's customers as its
/// recipients first (in the caller's transaction, so a start refused rolls it back).
#[tracing::instrument(name = "campaign.readiness", skip(conn), err)]
pub async fn readiness(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<Readiness>, sqlx::Error> {
    let Some((kind, status)) = store::lock(conn, tenant, id).await? else { return Ok(None) };
    // A segment's audience is resolved at the start (and only for a campaign that may
    // start): its recipients become who the segment selects now.
    let mut segment_selected = None;
    if status == "draft" || status == "scheduled" {
        let segment: Option<Uuid> =
            sqlx::query_scalar("select segment_id from outbound_campaigns where tenant_id = $1 and id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
        if let Some(segment) = segment {
            // A rule that no longer parses selects nobody.
            segment_selected = Some(match crate::segments::load(conn, tenant, segment).await? {
                Some(rule) => crate::segments::resolve_into(conn, tenant, id, &rule).await?,
                None => 0,
            });
        }
    }
    let has_recipients = store::recipient_count(conn, tenant, id).await? > 0;
    let mut content = match store::content_id(conn, tenant, id).await? {
        None => ContentState::Unset,
        Some(t) if store::content_exists(conn, tenant, &kind, t).await? => ContentState::Present,
        Some(_) => ContentState::Gone,
    };
    // An A/B test sends every variant's template: each must still exist.
    if content == ContentState::Present {
        let test: Option<serde_json::Value> =
            sqlx::query_scalar("select ab_test from outbound_campaigns where tenant_id = $1 and id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
        for template in crate::experiments::variant_templates(test.as_ref()) {
            if !store::content_exists(conn, tenant, &kind, template).await? {
                content = ContentState::Gone;
            }
        }
    }
    Ok(Some(Readiness { kind, status, has_recipients, content, segment_selected }))
}

#[cfg(test)]
mod tests {
    use super::CampaignStatus::{self, *};

    #[test]
    fn the_whole_table_of_campaign_moves() {
        let allowed = [
            (Draft, Draft),
            (Draft, Scheduled),
            (Draft, Running),
            (Draft, Cancelled),
            (Scheduled, Draft),
            (Scheduled, Scheduled),
            (Scheduled, Running),
            (Scheduled, Cancelled),
            (Running, Paused),
            (Running, Completed),
            (Running, Cancelled),
            (Paused, Running),
            (Paused, Cancelled),
        ];
        for from in CampaignStatus::ALL {
            for to in CampaignStatus::ALL {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} → {to}");
            }
        }
    }

    #[test]
    fn recipient_statuses_only_move_forward() {
        use super::RecipientStatus as R;
        assert!(R::Sent.advances_to(R::Delivered));
        assert!(!R::Delivered.advances_to(R::Sent), "a late `sent` changes nothing");
        assert!(!R::Clicked.advances_to(R::Opened));
        assert!(R::Unknown.advances_to(R::Sent), "reconciliation settles an unknown");
        assert!(R::Sent.advances_to(R::Failed) && R::Unknown.advances_to(R::Failed));
        assert!(!R::Delivered.advances_to(R::Failed), "no failure after delivery");
        assert!(R::Opened.advances_to(R::Unsubscribed));
        for terminal in [R::Failed, R::Bounced, R::Unsubscribed] {
            assert!(terminal.is_terminal());
            for to in R::ALL {
                assert!(!terminal.advances_to(to), "{terminal} is final, not → {to}");
            }
        }
        for s in R::ALL {
            assert!(!s.advances_to(s), "{s} → {s} is no move");
            assert_eq!(R::parse(s.as_str()), Some(s));
        }
        assert_eq!(super::RECIPIENT_STATUSES.len(), R::ALL.len());
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for s in CampaignStatus::ALL {
            assert_eq!(CampaignStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(super::CAMPAIGN_STATUSES.len(), CampaignStatus::ALL.len());
        assert_eq!(CampaignStatus::parse("Running"), None);
    }
}
