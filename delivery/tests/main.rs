//! The delivery crate's one test binary: campaigns sent through SES (moto) and a Twilio
//! stub by real workers, retries, failed jobs, the scheduler, TTS and embedding jobs, and
//! the send protocol's fault matrix, A/B tests and send-time optimisation, and webhook
//! deliveries.

mod architecture;
mod deliverability;
mod experiments;
mod protocol;
mod sends;
mod support;
mod webhooks;
