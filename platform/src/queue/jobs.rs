//! The typed payloads of the platform's jobs: the contract between who enqueues (the API,
//! the scheduler, a dispatch) and who runs (the delivery crate's handlers). A field
//! renamed here is renamed on both sides at once; the JSON shape is what jobs already on
//! the queues carry, so it changes only with a migration of queued data.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    GENERATE_EMBEDDING, GENERATE_TTS, IMPORT_CUSTOMERS, JobKind, JobPayload, Queue, QueueError, SEND_SALES_NOTIFICATION,
};
use crate::TenantId;

/// A payload that knows the kind of job it is.
pub trait Job: Serialize {
    /// The kind (name, queue, tries, backoff) this payload runs as.
    fn kind(&self) -> JobKind;

    /// The payload as it goes onto the queue.
    fn payload(&self) -> Result<JobPayload, QueueError> {
        Ok(JobPayload::new(self.kind(), serde_json::to_value(self)?))
    }
}

/// `DispatchCampaign`: turn a running campaign's pending recipients into send jobs. It
/// runs on the channel's queue (`kind` is [`super::DISPATCH_CAMPAIGN`] moved there).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DispatchCampaign {
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    #[serde(skip)]
    pub on: Option<JobKind>,
}

impl Job for DispatchCampaign {
    fn kind(&self) -> JobKind {
        self.on.unwrap_or(super::DISPATCH_CAMPAIGN)
    }
}

/// `SendEmailCampaign`, `SendSMS`, `MakePhoneCall`: recipients of one campaign, sent by
/// one job (claimed in one statement, sent concurrently, recorded in one statement).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SendToRecipients {
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    /// The one recipient of a job queued before sends were batched; read, never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_ids: Vec<Uuid>,
    #[serde(skip)]
    pub on: Option<JobKind>,
}

impl SendToRecipients {
    pub fn new(tenant_id: Uuid, campaign_id: Uuid, recipient_ids: Vec<Uuid>, on: JobKind) -> Self {
        Self { tenant_id, campaign_id, recipient_id: None, recipient_ids, on: Some(on) }
    }

    /// Every recipient the job names, each once, in order.
    pub fn recipients(&self) -> Vec<Uuid> {
        let mut out: Vec<Uuid> = Vec::with_capacity(self.recipient_ids.len() + 1);
        for id in self.recipient_id.iter().chain(&self.recipient_ids) {
            if !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }

    /// The same job without `gone`; `None` when no recipient is left.
    pub fn without(&self, gone: &[Uuid]) -> Option<Self> {
        let left: Vec<Uuid> = self.recipients().into_iter().filter(|id| !gone.contains(id)).collect();
        (!left.is_empty()).then(|| Self { recipient_id: None, recipient_ids: left, ..self.clone() })
    }
}

impl Job for SendToRecipients {
    fn kind(&self) -> JobKind {
        self.on.unwrap_or(super::SEND_EMAIL_CAMPAIGN)
    }
}

/// `GenerateTTS`: speak one TTS request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateTts {
    pub tenant_id: Uuid,
    pub tts_request_id: Uuid,
}

impl Job for GenerateTts {
    fn kind(&self) -> JobKind {
        GENERATE_TTS
    }
}

/// `GenerateEmbedding`: embed a knowledge entry or an article (exactly one is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateEmbedding {
    pub tenant_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article_id: Option<Uuid>,
}

impl GenerateEmbedding {
    pub fn knowledge(tenant: TenantId, id: Uuid) -> Self {
        Self { tenant_id: tenant.as_uuid(), knowledge_id: Some(id), article_id: None }
    }

    pub fn article(tenant: TenantId, id: Uuid) -> Self {
        Self { tenant_id: tenant.as_uuid(), knowledge_id: None, article_id: Some(id) }
    }
}

impl Job for GenerateEmbedding {
    fn kind(&self) -> JobKind {
        GENERATE_EMBEDDING
    }
}

/// `SendSalesNotification`: tell the sales team about a learning-center lead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendSalesNotification {
    pub tenant_id: Uuid,
    pub sales_contact_id: Uuid,
}

impl Job for SendSalesNotification {
    fn kind(&self) -> JobKind {
        SEND_SALES_NOTIFICATION
    }
}

/// `ImportCustomers`: run (or resume) one customer import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportCustomers {
    pub tenant_id: Uuid,
    pub import_id: Uuid,
}

impl Job for ImportCustomers {
    fn kind(&self) -> JobKind {
        IMPORT_CUSTOMERS
    }
}

/// `ExportCustomers`: write one customer export's file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportCustomers {
    pub tenant_id: Uuid,
    pub export_id: Uuid,
}

impl Job for ExportCustomers {
    fn kind(&self) -> JobKind {
        super::EXPORT_CUSTOMERS
    }
}

/// `DeliverWebhooks`: send one endpoint's due webhook deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverWebhooks {
    pub tenant_id: Uuid,
    pub endpoint_id: Uuid,
}

impl Job for DeliverWebhooks {
    fn kind(&self) -> JobKind {
        super::DELIVER_WEBHOOKS
    }
}

impl Queue {
    /// Appends a typed job and returns its uuid.
    pub async fn enqueue(&self, job: &impl Job) -> Result<Uuid, QueueError> {
        let payload = job.payload()?;
        self.push_payload(&payload, None).await?;
        Ok(payload.uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_keep_the_json_shape_of_queued_jobs() {
        let t = Uuid::now_v7();
        let k = Uuid::now_v7();
        let job = GenerateEmbedding { tenant_id: t, knowledge_id: Some(k), article_id: None };
        assert_eq!(serde_json::to_value(&job).unwrap(), serde_json::json!({"tenant_id": t, "knowledge_id": k}));
        let send = SendToRecipients::new(t, k, vec![t, k], super::super::SEND_SMS);
        let p = send.payload().unwrap();
        assert_eq!(p.job, "SendSMS");
        assert_eq!(p.queue, "sms");
        assert_eq!(p.data, serde_json::json!({"tenant_id": t, "campaign_id": k, "recipient_ids": [t, k]}));
        // A job queued before sends were batched names one recipient.
        let old: SendToRecipients =
            serde_json::from_value(serde_json::json!({"tenant_id": t, "campaign_id": k, "recipient_id": k})).unwrap();
        assert_eq!(old.recipients(), vec![k]);
        assert_eq!(send.without(&[t]).map(|s| s.recipients()), Some(vec![k]));
        assert!(send.without(&[t, k]).is_none());
    }
}
