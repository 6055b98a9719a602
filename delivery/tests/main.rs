//! The delivery crate's one test binary: campaigns sent through SES (moto) and a Twilio
//! stub by real workers, retries, failed jobs, the scheduler, TTS and embedding jobs.

mod sends;
