//! The event types of outgoing webhooks: what the API lets a tenant subscribe to, what the
//! outbox builder (`pipelines::webhooks`) produces from the change feed, and what the
//! deliveries carry as `type`. One list, so a type cannot be subscribable and never sent.

/// One event type, named as receivers see it (`resource.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    CustomerCreated,
    CustomerUpdated,
    CustomerDeleted,
    ConversationMessageCreated,
    CampaignRecipientStatusChanged,
    OrderCreated,
    OrderPaid,
    OrderRefunded,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::CustomerCreated,
        EventType::CustomerUpdated,
        EventType::CustomerDeleted,
        EventType::ConversationMessageCreated,
        EventType::CampaignRecipientStatusChanged,
        EventType::OrderCreated,
        EventType::OrderPaid,
        EventType::OrderRefunded,
    ];

    /// Every name, for the API document's rules.
    pub const NAMES: [&'static str; 8] = [
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "conversation.message.created",
        "campaign_recipient.status_changed",
        "order.created",
        "order.paid",
        "order.refunded",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CustomerCreated => "customer.created",
            EventType::CustomerUpdated => "customer.updated",
            EventType::CustomerDeleted => "customer.deleted",
            EventType::ConversationMessageCreated => "conversation.message.created",
            EventType::CampaignRecipientStatusChanged => "campaign_recipient.status_changed",
            EventType::OrderCreated => "order.created",
            EventType::OrderPaid => "order.paid",
            EventType::OrderRefunded => "order.refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// What it means, for the API's list of types.
    pub fn description(self) -> &'static str {
        match self {
            EventType::CustomerCreated => "a customer was created (by the API, an import or SQL)",
            EventType::CustomerUpdated => "a customer's row changed",
            EventType::CustomerDeleted => "a customer was deleted or erased (`data` holds only the id)",
            EventType::ConversationMessageCreated => "a message was added to a conversation",
            EventType::CampaignRecipientStatusChanged => {
                "a campaign recipient's status changed (queued, sent, delivered, failed, …)"
            }
            EventType::OrderCreated => "an order was created",
            EventType::OrderPaid => "an order's status became paid",
            EventType::OrderRefunded => "an order's status became refunded",
        }
    }
}

/// The body every delivery carries (`type`, `timestamp`, `data`): built here only, so the
/// outbox, the erasure's `customer.deleted` and the test event cannot drift apart.
pub fn envelope(kind: &str, at: chrono::DateTime<chrono::Utc>, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "type": kind,
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": data,
    })
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::NAMES.to_vec(), EventType::ALL.map(|t| t.as_str()).to_vec());
        assert_eq!(EventType::parse("customer.*"), None);
        assert_eq!(EventType::parse("Customer.Created"), None);
    }
}
