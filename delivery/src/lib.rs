//! Outbound delivery: everything that makes a message leave the platform or records what
//! became of it. Campaign status moves and recipient claims (`campaigns`, whose `store` is
//! the only writer of those statuses), signed tracking links (`links`), the merge language
//! of templates (`templates`), the content publishing workflow (`publishing`), Twilio
//! signatures (`providers::twilio`), webhook signatures and targets (`webhooks`) — and, with
//! the `runtime` feature, the job handlers (`jobs`), the SES/ElevenLabs/storage clients,
//! webhook deliveries and the scheduler.
//!
//! It never depends on the API crate or on a web framework; the API depends on it for the
//! moves its endpoints make, and enqueues jobs through the typed payloads of
//! `fibonacco_platform::queue::jobs`.

pub mod campaigns;
pub mod contact_policy;
pub mod experiments;
#[cfg(feature = "runtime")]
pub mod jobs;
pub mod links;
pub mod providers;
pub mod publishing;
#[cfg(feature = "runtime")]
pub mod reconcile;
#[cfg(feature = "runtime")]
pub mod scheduler;
pub mod segments;
pub mod ses_events;
pub mod ses_sink;
pub mod sns;
pub mod suppressions;
pub mod templates;
pub mod webhooks;

#[cfg(feature = "runtime")]
pub use jobs::JobContext;
pub use providers::{DeliverySettings, ProviderError};
