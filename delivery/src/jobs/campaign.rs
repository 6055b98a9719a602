//! Outbound campaigns: `DispatchCampaign` turns a running campaign's pending recipients
//! into send jobs of up to `SEND_BATCH_SIZE` recipients each (a job batch);
//! `SendEmailCampaign`, `SendSMS` and `MakePhoneCall` deliver to the recipients they name.
//!
//! A recipient is sent at most once however often its job runs: the send first claims its
//! recipients with one conditional update (only recipients without a provider message id,
//! not held by a live claim), commits that, then calls the provider for each, then records
//! the provider's answers in one statement. A claim is never retaken; a send that never
//! records its outcome leaves `sending`, which the sweep turns `unknown`.

use fibonacco_platform::{
    TenantId, db,
    queue::{
        JobError, JobPayload, Reserved, batch,
        jobs::{DispatchCampaign, Job, SendToRecipients},
        worker::data,
    },
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{JobContext, rate};
use crate::{
    campaigns::{
        Channel,
        store::{self, Finish},
    },
    links::{Links, RecipientRef, track_links},
    providers::{ProviderError, ses::OutgoingEmail, twilio},
    templates::render,
};

/// Send jobs pushed per round trip when dispatching.
const DISPATCH_JOBS: usize = 40;

/// Recipients per send job on `channel`: the configured size, but never more than the
/// channel's per-second cap (when there is one), since a job's recipients are claimed
/// before it waits for the cap and a claim must not age while it waits.
pub fn batch_size(settings: &crate::providers::DeliverySettings, channel: Channel) -> usize {
    let cap = match channel {
        Channel::Email => settings.ses_rate_per_sec,
        Channel::Sms | Channel::Phone => settings.twilio_rate_per_sec,
    };
    match cap {
        0 => settings.send_batch,
        cap => settings.send_batch.min(cap as usize),
    }
    .max(1)
}

/// Pushes send jobs for the pending recipients of a running campaign, then marks them
/// queued.
/// Re-running it only re-pushes recipients still pending; the claim makes a doubled job harmless.
#[tracing::instrument(name = "job.dispatch_campaign", skip_all)]
pub async fn dispatch(ctx: &JobContext, job: &Reserved) -> Result<(), JobError> {
    let r: DispatchCampaign = data(job)?;
    let tenant = TenantId::from_uuid(r.tenant_id);
    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    let row: Option<(String, String)> =
        sqlx::query_as("select type, status from outbound_campaigns where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(r.campaign_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((kind, status)) = row else { return Ok(()) };
    // A completed campaign can still have pending recipients: ones reconciliation found
    // were never received by the provider.
    if status != "running" && status != "completed" {
        return Ok(());
    }
    let channel =
        Channel::of_campaign_type(&kind).ok_or_else(|| JobError::fail(format!("unknown campaign type {kind}")))?;
    let pending = store::pending_count(&mut tx, tenant, r.campaign_id).await?;
    tx.commit().await?;
    if pending == 0 {
        store::complete_if_done(&ctx.pool, tenant, r.campaign_id).await?;
        return Ok(());
    }
    let size = batch_size(&ctx.settings, channel);
    // Recipients are read in chunks that are a whole number of jobs, so the batch's job
    // count is known before the first push.
    let jobs = (pending as usize).div_ceil(size);
    let batch_id = batch::create(
        &ctx.pool,
        tenant,
        &format!("campaign {} ({kind})", r.campaign_id),
        i32::try_from(jobs).unwrap_or(i32::MAX),
    )
    .await?;
    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    store::set_last_batch(&mut tx, tenant, r.campaign_id, batch_id).await?;
    tx.commit().await?;
    let mut after = Uuid::nil();
    loop {
        let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
        let ids = store::pending_after(&mut tx, tenant, r.campaign_id, after, (size * DISPATCH_JOBS) as i64).await?;
        let Some(last) = ids.last().copied() else { break };
        let payloads = ids
            .chunks(size)
            .map(|chunk| {
                let send = SendToRecipients::new(r.tenant_id, r.campaign_id, chunk.to_vec(), channel.send_job());
                let mut p = send.payload()?;
                p.batch_id = Some(batch_id);
                Ok(p)
            })
            .collect::<Result<Vec<JobPayload>, fibonacco_platform::queue::QueueError>>()?;
        // Push first, mark second: a crash in between leaves recipients pending, and the
        // next dispatch pushes them again (the claim stops a second send).
        ctx.queue.push_many(&payloads).await?;
        store::mark_queued(&mut tx, tenant, &ids).await?;
        tx.commit().await?;
        after = last;
    }
    tracing::info!(recipients = pending, jobs, %batch_id, "campaign dispatched");
    Ok(())
}

/// What a send needs about its recipient, read once the recipient is claimed.
#[derive(Clone, sqlx::FromRow)]
struct Target {
    customer_id: Uuid,
    customer_name: String,
    email: Option<String>,
    phone: Option<String>,
    business_context: serde_json::Value,
    metadata: serde_json::Value,
    unsubscribed: bool,
    /// Inside the channel's quiet hours for this customer until then.
    quiet_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The recipient's A/B variant, which picks its template.
    variant: Option<i16>,
}

impl Target {
    /// A claimed recipient and its customer, or `None` for the row that says nothing was
    /// claimed.
    fn claimed(c: store::ClaimedSend) -> Option<(Uuid, Self)> {
        let target = Self {
            customer_id: c.customer_id?,
            customer_name: c.customer_name.unwrap_or_default(),
            email: c.email,
            phone: c.phone,
            business_context: c.business_context.unwrap_or_default(),
            metadata: c.metadata.unwrap_or_default(),
            unsubscribed: c.unsubscribed.unwrap_or(false),
            quiet_until: c.quiet_until,
            variant: c.variant,
        };
        Some((c.recipient_id?, target))
    }
}

/// Templates by id, kept for a minute: a campaign sends the same one to every recipient,
/// and templates cannot be edited (no update route), so a send need not read it again.
/// Bounded: past [`Templates::CAPACITY`] entries the cache starts over.
#[derive(Default)]
pub struct Templates {
    map: std::sync::Mutex<std::collections::HashMap<(Uuid, Uuid), (std::time::Instant, Content)>>,
}

impl Templates {
    const CAPACITY: usize = 4096;
    const TTL: std::time::Duration = std::time::Duration::from_secs(60);

    fn get(&self, tenant: TenantId, template: Option<Uuid>) -> Option<Content> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.as_uuid(), template?))
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, content)| content.clone())
    }

    fn put(&self, tenant: TenantId, template: Option<Uuid>, content: &Content) {
        // A missing template is not cached: it is an error each send reports.
        let (Some(template), false) = (template, matches!(content, Content::Missing(_))) else { return };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert((tenant.as_uuid(), template), (std::time::Instant::now(), content.clone()));
    }
}

/// Delivers the messages of a send job's recipients. See the module docs for the claim
/// protocol.
#[tracing::instrument(name = "job.send", skip_all, fields(channel = ?channel))]
pub async fn send(ctx: &JobContext, job: &Reserved, channel: Channel) -> Result<(), JobError> {
    let r: SendToRecipients = data(job)?;
    let tenant = TenantId::from_uuid(r.tenant_id);
    let recipients = r.recipients();
    // Each run claims under its own token: a claim is never taken over, so a retried job
    // (same uuid) cannot pass as the run that holds it.
    let claim = Uuid::now_v7();

    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    // The campaign check, the claims and the customer reads are one statement.
    let found = store::claim_sends(&mut tx, tenant, r.campaign_id, &recipients, claim).await?;
    let Some(campaign) = found.first().cloned() else { return Ok(()) };
    match campaign.campaign_status.as_str() {
        // A completed campaign only has recipients in final states; the ones a job retried
        // from failed_jobs may still send (they failed without a message id).
        "running" | "completed" => {}
        "paused" => {
            // Back to pending so `resume` dispatches them again.
            store::back_to_pending(&mut tx, tenant, &recipients).await?;
            tx.commit().await?;
            return Ok(());
        }
        // Cancelled (or a draft again): nothing more goes out.
        _ => return Ok(()),
    }
    let targets: Vec<(Uuid, Target)> = found.into_iter().filter_map(Target::claimed).collect();
    if targets.is_empty() {
        // Sent, being sent, unknown, or final: this run has nothing to do.
        tracing::debug!("no recipient claimable; skipping");
        return Ok(());
    }
    // Opted out or suppressed: never sent, each ends with the reason, the campaign moves on.
    let suppressed = suppressed(&mut tx, tenant, channel, &targets).await?;
    let (mut settled, mut to_send) = (Vec::new(), Vec::with_capacity(targets.len()));
    for (id, target) in targets {
        if target.unsubscribed {
            settled.push((id, Finish::Unsubscribed));
        } else if let Some(why) = suppressed.get(&id) {
            settled.push((id, Finish::Failed(format!("suppressed ({why})"))));
        } else {
            to_send.push((id, target));
        }
    }
    // The tenant's contact policy: consent first (without it nothing counts toward a
    // cap), then quiet hours (who must wait goes back to pending until the window ends,
    // counting toward nothing), then frequency caps across campaigns among those that
    // would go out now.
    let policy = campaign.policy_require_consent.map(|require_consent| crate::contact_policy::Policy {
        max_messages: campaign.policy_max_messages,
        window_hours: campaign.policy_window_hours,
        require_consent,
    });
    if let Some(policy) = policy {
        if policy.require_consent {
            let customers: Vec<Uuid> = to_send.iter().map(|(_, t)| t.customer_id).collect();
            let refused = crate::contact_policy::without_consent(&mut tx, tenant, channel.name(), &customers).await?;
            let reason = format!("no consent: the customer has not opted in to {} messages", channel.name());
            to_send.retain(|(id, t)| {
                let keep = !refused.contains(&t.customer_id);
                if !keep {
                    settled.push((*id, Finish::Failed(reason.clone())));
                }
                keep
            });
        }
        let mut waits = Vec::new();
        to_send.retain(|(id, t)| match t.quiet_until {
            Some(until) => {
                let at = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                waits.push((*id, until, format!("quiet hours in the customer's time zone: waits until {at}")));
                false
            }
            None => true,
        });
        store::defer(&mut tx, tenant, claim, &waits).await?;
        if let Some(cap) = policy.cap() {
            let pairs: Vec<(Uuid, Uuid)> = to_send.iter().map(|(id, t)| (*id, t.customer_id)).collect();
            let over = crate::contact_policy::over_cap(&mut tx, tenant, channel.name(), cap, &pairs).await?;
            if !over.is_empty() {
                to_send.retain(|(id, _)| !over.contains(id));
                settled.extend(over.into_iter().map(|id| (id, Finish::Failed(cap.reason(channel.name())))));
            }
        }
    }
    store::finish(&mut tx, tenant, claim, &settled).await?;
    if to_send.is_empty() {
        tx.commit().await?;
        store::complete_if_done(&ctx.pool, tenant, r.campaign_id).await?;
        return Ok(());
    }
    let template = match channel {
        Channel::Email => campaign.email_template_id,
        Channel::Sms => campaign.sms_template_id,
        Channel::Phone => campaign.phone_script_id,
    };
    // An A/B test's recipient gets its variant's template; everyone else the campaign's.
    let variants = crate::experiments::variant_templates(campaign.ab_test.as_ref());
    let mut contents = std::collections::HashMap::new();
    let mut to_send_templated = Vec::with_capacity(to_send.len());
    for (id, target) in to_send {
        let template = target.variant.and_then(|v| variants.get(usize::try_from(v).ok()?)).copied().or(template);
        if let std::collections::hash_map::Entry::Vacant(slot) = contents.entry(template) {
            let content = match ctx.templates.get(tenant, template) {
                Some(content) => content,
                None => {
                    let (email, sms, script) = match channel {
                        Channel::Email => (template, None, None),
                        Channel::Sms => (None, template, None),
                        Channel::Phone => (None, None, template),
                    };
                    let content = load_content(&mut tx, tenant, channel, email, sms, script).await?;
                    ctx.templates.put(tenant, template, &content);
                    content
                }
            };
            slot.insert(content);
        }
        to_send_templated.push((id, target, template));
    }
    // The attempts (`sending`) are durable from here: whatever happens next, these
    // recipients are never claimed again.
    tx.commit().await?;

    // The provider calls and the record of their outcomes run detached from the job: the
    // worker's timeout drops the handler, never the step between the provider's answers
    // and their record. A worker that dies here leaves `sending`, which the sweep turns
    // `unknown`.
    let last_try = job.attempts >= job.payload.max_tries;
    let attempt = Attempt { ctx: ctx.clone(), job: r, claim, channel, targets: to_send_templated, contents, last_try };
    tokio::spawn(attempt.run()).await.map_err(JobError::retry_because)?
}

/// Which claimed recipients the tenant must not contact on `channel`, with why (see
/// `suppressions`): one query for the job.
async fn suppressed(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    channel: Channel,
    targets: &[(Uuid, Target)],
) -> Result<std::collections::HashMap<Uuid, String>, sqlx::Error> {
    let kind = match channel {
        Channel::Email => "email",
        _ => "phone",
    };
    let normal: Vec<(Uuid, String)> = targets
        .iter()
        .filter_map(|(id, t)| {
            let raw = if channel == Channel::Email { t.email.as_deref() } else { t.phone.as_deref() };
            Some((*id, crate::suppressions::normalise(kind, raw?).ok()?))
        })
        .collect();
    let list: Vec<String> = normal.iter().map(|(_, n)| n.clone()).collect();
    let reasons = crate::suppressions::reasons(conn, tenant, kind, &list).await?;
    Ok(normal.into_iter().filter_map(|(id, n)| Some((id, reasons.get(&n)?.clone()))).collect())
}

/// One run's claimed sends: the provider calls and the record of what they did.
struct Attempt {
    ctx: JobContext,
    job: SendToRecipients,
    claim: Uuid,
    channel: Channel,
    /// Each claimed recipient with the template it is sent.
    targets: Vec<(Uuid, Target, Option<Uuid>)>,
    /// The content of each of those templates.
    contents: std::collections::HashMap<Option<Uuid>, Content>,
    /// The job has no retry left: a retryable failure is recorded as failed.
    last_try: bool,
}

impl Attempt {
    async fn run(self) -> Result<(), JobError> {
        let (ctx, this) = (&self.ctx, &self);
        let sends = self
            .targets
            .iter()
            .map(|(id, target, template)| async move { (*id, this.deliver(*id, target, *template).await) });
        let results = futures_util::future::join_all(sends).await;
        let (mut ends, mut retry, mut failed) = (Vec::with_capacity(results.len()), None, None);
        for (id, result) in results {
            let end = match result {
                Ok(message_id) => Finish::Sent(message_id),
                Err(e) if e.may_have_been_sent() => {
                    // Counted and shown (`unknown`), never retried: a retry could send twice.
                    tracing::warn!(error = %e, "send outcome unknown; the recipient will not be retried");
                    metrics::counter!("campaign_sends_unknown_total", "channel" => self.channel.name()).increment(1);
                    Finish::Unknown(e.to_string())
                }
                Err(e @ ProviderError::Retryable { .. }) if !self.last_try => {
                    let end = Finish::Release(e.to_string());
                    retry.get_or_insert(e);
                    end
                }
                Err(e) => {
                    let end = Finish::Failed(e.to_string());
                    failed.get_or_insert((0usize, e)).0 += 1;
                    end
                }
            };
            ends.push((id, end));
        }
        record(ctx, &self.job, self.claim, &ends).await?;
        // After the commit, not in it: two sends finishing together would each see the
        // other's recipients still open inside their own transactions.
        store::complete_if_done(&ctx.pool, TenantId::from_uuid(self.job.tenant_id), self.job.campaign_id).await?;
        // A retry re-claims only what was released (and what failed: certainly not sent,
        // so trying again cannot double it); what was sent or is unknown stays.
        if let Some(e) = retry {
            return Err(JobError::from(e));
        }
        match failed {
            Some((n, e)) => Err(JobError::fail_because(
                anyhow::Error::new(e).context(format!("{n} of {} recipients failed", ends.len())),
            )),
            None => Ok(()),
        }
    }

    /// One recipient's provider call.
    async fn deliver(&self, recipient: Uuid, target: &Target, template: Option<Uuid>) -> Result<String, ProviderError> {
        let (ctx, r) = (&self.ctx, &self.job);
        let fields = merge_fields(target);
        let to = Recipient { tenant: TenantId::from_uuid(r.tenant_id), campaign: r.campaign_id, id: recipient };
        let missing = Content::Missing("the campaign's template was not loaded".into());
        match (self.contents.get(&template).unwrap_or(&missing), self.channel) {
            (Content::Email { subject, html, text }, Channel::Email) => {
                send_email(ctx, to, target, &fields, subject, html, text.as_deref()).await
            }
            (Content::Sms(body), Channel::Sms) => send_sms(ctx, to, target, &fields, body).await,
            (Content::Script(script), Channel::Phone) => call(ctx, to, target, &fields, script).await,
            (Content::Missing(what), _) => {
                Err(ProviderError::Rejected { provider: "campaign", reason: what.clone(), source: None })
            }
            _ => Err(ProviderError::Rejected {
                provider: "campaign",
                reason: "template does not match the channel".into(),
                source: None,
            }),
        }
    }
}

/// Who one provider call is for.
#[derive(Clone, Copy)]
struct Recipient {
    tenant: TenantId,
    campaign: Uuid,
    id: Uuid,
}

/// Records sends' outcomes, retrying the write (not the sends) with backoff for about six
/// seconds: a provider's answer is never lost to a short database outage. If Postgres stays
/// away longer, the recipients stay `sending` and the sweep makes them `unknown` (the one
/// gap of the protocol: a message SES accepted can end `unknown`, never sent twice).
async fn record(ctx: &JobContext, r: &SendToRecipients, claim: Uuid, ends: &[(Uuid, Finish)]) -> Result<(), JobError> {
    let tenant = TenantId::from_uuid(r.tenant_id);
    let mut wait = std::time::Duration::from_millis(50);
    let mut tries = 0;
    loop {
        let result = async {
            let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
            let recorded = store::finish(&mut tx, tenant, claim, ends).await?;
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(recorded)
        }
        .await;
        match result {
            Ok(n) => {
                if n < ends.len() as u64 {
                    tracing::warn!(
                        recorded = n,
                        outcomes = ends.len(),
                        "claims had expired before outcomes were recorded"
                    );
                }
                return Ok(());
            }
            Err(e) if tries < 7 => {
                tries += 1;
                tracing::warn!(error = %e, tries, "outcomes not recorded yet; retrying the write");
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            Err(e) => {
                for (_, end) in ends {
                    if let Finish::Sent(id) = end {
                        tracing::error!(provider_message_id = id, "accepted by the provider but not recorded");
                    }
                }
                return Err(JobError::retry_because(anyhow::Error::new(e).context("recording the sends' outcomes")));
            }
        }
    }
}

#[derive(Clone)]
pub enum Content {
    Email { subject: String, html: String, text: Option<String> },
    Sms(String),
    Script(String),
    Missing(String),
}

async fn load_content(
    conn: &mut PgConnection,
    tenant: TenantId,
    channel: Channel,
    email: Option<Uuid>,
    sms: Option<Uuid>,
    script: Option<Uuid>,
) -> Result<Content, sqlx::Error> {
    Ok(match channel {
        Channel::Email => {
            let row: Option<(String, String, Option<String>)> = sqlx::query_as(
                "select subject, html_body, text_body from email_templates where tenant_id = $1 and id = $2",
            )
            .bind(tenant)
            .bind(email)
            .fetch_optional(conn)
            .await?;
            row.map(|(subject, html, text)| Content::Email { subject, html, text })
                .unwrap_or_else(|| Content::Missing("the campaign's e-mail template no longer exists".into()))
        }
        Channel::Sms => {
            let row: Option<String> =
                sqlx::query_scalar("select body from sms_templates where tenant_id = $1 and id = $2")
                    .bind(tenant)
                    .bind(sms)
                    .fetch_optional(conn)
                    .await?;
            row.map(Content::Sms)
                .unwrap_or_else(|| Content::Missing("the campaign's SMS template no longer exists".into()))
        }
        Channel::Phone => {
            let row: Option<String> =
                sqlx::query_scalar("select script from phone_scripts where tenant_id = $1 and id = $2")
                    .bind(tenant)
                    .bind(script)
                    .fetch_optional(conn)
                    .await?;
            row.map(Content::Script)
                .unwrap_or_else(|| Content::Missing("the campaign's phone script no longer exists".into()))
        }
    })
}

/// Merge fields for `{{ name }}` placeholders: the customer's name, first name, e-mail and
/// phone, then every string or number in its business context and metadata.
fn merge_fields(t: &Target) -> Vec<(String, String)> {
    let mut fields = vec![
        ("name".to_owned(), t.customer_name.clone()),
        ("first_name".to_owned(), t.customer_name.split_whitespace().next().unwrap_or_default().to_owned()),
        ("email".to_owned(), t.email.clone().unwrap_or_default()),
        ("phone".to_owned(), t.phone.clone().unwrap_or_default()),
    ];
    for source in [&t.business_context, &t.metadata] {
        if let Some(map) = source.as_object() {
            for (k, v) in map {
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                if !fields.iter().any(|(name, _)| name == k) {
                    fields.push((k.clone(), value));
                }
            }
        }
    }
    fields
}

/// Escapes the five HTML-significant characters, so a merge value stays text inside an
/// element or an attribute quoted either way.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"")
}

/// The first character that would end or fold a mail header line (CR, LF, NUL and the
/// other C0 controls but tab), named for the error.
pub fn header_break(value: &str) -> Option<&'static str> {
    value.chars().find(|c| c.is_control() && *c != '\t').map(|c| match c {
        '\r' => "carriage return",
        '\n' => "line feed",
        '\0' => "NUL",
        _ => "control character",
    })
}

/// Builds the MIME message of one campaign e-mail: merged, links tracked, open pixel,
/// unsubscribe footer and the `List-Unsubscribe` headers (RFC 2369 and one-click RFC 8058).
pub fn build_email(
    from: &str,
    to: &str,
    links: &Links,
    fields: &[(String, String)],
    subject: &str,
    html: &str,
    text: Option<&str>,
) -> Result<Vec<u8>, ProviderError> {
    let escaped: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.clone(), html_escape(v))).collect();
    let subject = render(subject, fields);
    if let Some(bad) = header_break(&subject) {
        return Err(ProviderError::Rejected {
            provider: "campaign",
            reason: format!("the subject holds a {bad} after merging the recipient's fields; nothing was sent"),
            source: None,
        });
    }
    let unsubscribe = links.unsubscribe();
    // Links are tracked in the template as written, before merging: only the template's
    // own links are signed, never one a merge value brought in.
    let mut html_body = render(&track_links(html, links), &escaped);
    html_body.push_str(&format!(
        "\n<p style=\"font-size:12px;color:#888\"><a href=\"{}\">Unsubscribe</a></p>\n<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:none\">",
        html_escape(&unsubscribe),
        html_escape(&links.open_pixel())
    ));
    let mut text_body = match text {
        Some(t) => render(t, fields),
        None => html_to_text(&render(html, fields)),
    };
    text_body.push_str(&format!("\n\n--\nUnsubscribe: {unsubscribe}\n"));
    let message = mail_builder::MessageBuilder::new()
        .from(from)
        .to(to)
        .subject(subject)
        .header("List-Unsubscribe", mail_builder::headers::raw::Raw::new(format!("<{unsubscribe}>")))
        .header("List-Unsubscribe-Post", mail_builder::headers::raw::Raw::new("List-Unsubscribe=One-Click"))
        .text_body(text_body)
        .html_body(html_body);
    message.write_to_vec().map_err(|e| ProviderError::Rejected {
        provider: "SES",
        reason: format!("cannot build the message: {e}"),
        source: Some(std::sync::Arc::new(e)),
    })
}

async fn send_email(
    ctx: &JobContext,
    r: Recipient,
    target: &Target,
    fields: &[(String, String)],
    subject: &str,
    html: &str,
    text: Option<&str>,
) -> Result<String, ProviderError> {
    let ses = ctx.providers.ses.as_ref().ok_or(ProviderError::NotConfigured("SES (AWS_ACCESS_KEY_ID)"))?;
    let to = target.email.as_deref().filter(|e| !e.is_empty()).ok_or(ProviderError::Rejected {
        provider: "campaign",
        reason: "the customer has no e-mail address".into(),
        source: None,
    })?;
    let who = RecipientRef { tenant: r.tenant, recipient: r.id };
    let links = Links::new(&ctx.settings.app_url, ctx.settings.app_key.expose(), who);
    let mime = build_email(&ctx.settings.mail_from, to, &links, fields, subject, html, text)?;
    rate::acquire(&ctx.queue, "ses", ctx.settings.ses_rate_per_sec).await;
    ses.send(OutgoingEmail { from: &ctx.settings.mail_from, to, mime }).await
}

/// The Twilio client and the customer's number, or why an SMS or call cannot go out.
fn twilio_to<'a>(ctx: &'a JobContext, target: &'a Target) -> Result<(&'a twilio::Twilio, &'a str), ProviderError> {
    let client = ctx.providers.twilio.as_ref().ok_or(ProviderError::NotConfigured("Twilio (TWILIO_ACCOUNT_SID)"))?;
    let to = target.phone.as_deref().filter(|p| !p.is_empty()).ok_or(ProviderError::Rejected {
        provider: "campaign",
        reason: "the customer has no phone number".into(),
        source: None,
    })?;
    Ok((client, to))
}

async fn send_sms(
    ctx: &JobContext,
    r: Recipient,
    target: &Target,
    fields: &[(String, String)],
    body: &str,
) -> Result<String, ProviderError> {
    let (client, to) = twilio_to(ctx, target)?;
    let callback = format!("{}/api/v1/outbound/sms/campaigns/{}/sms-status", ctx.settings.app_url, r.campaign);
    rate::acquire(&ctx.queue, "twilio", ctx.settings.twilio_rate_per_sec).await;
    client.send_sms(to, &render(body, fields), &callback).await
}

async fn call(
    ctx: &JobContext,
    r: Recipient,
    target: &Target,
    fields: &[(String, String)],
    script: &str,
) -> Result<String, ProviderError> {
    let (client, to) = twilio_to(ctx, target)?;
    let callback = format!("{}/api/v1/outbound/phone/campaigns/{}/call-status", ctx.settings.app_url, r.campaign);
    rate::acquire(&ctx.queue, "twilio", ctx.settings.twilio_rate_per_sec).await;
    client.make_call(to, &twilio::say_twiml(&render(script, fields)), &callback).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibonacco_platform::TenantId;

    fn target() -> Target {
        Target {
            customer_id: Uuid::now_v7(),
            customer_name: "Ada Lovelace".into(),
            email: Some("ada@example.com".into()),
            phone: None,
            business_context: serde_json::json!({"company": "Engines <Ltd>", "employees": 12}),
            metadata: serde_json::json!({"name": "ignored: the column wins"}),
            unsubscribed: false,
            quiet_until: None,
            variant: None,
        }
    }

    #[test]
    fn merge_fields_cover_customer_and_context() {
        let f = merge_fields(&target());
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("first_name"), Some("Ada"));
        assert_eq!(get("company"), Some("Engines <Ltd>"));
        assert_eq!(get("employees"), Some("12"));
        assert_eq!(get("name"), Some("Ada Lovelace"));
    }

    #[test]
    fn merge_values_cannot_bring_signed_links_or_break_attributes() {
        let links = Links::new(
            "https://app.test",
            "key-0123456789abcdef",
            RecipientRef { tenant: TenantId::from_uuid(Uuid::now_v7()), recipient: Uuid::now_v7() },
        );
        let mut t = target();
        t.customer_name = "x' href='https://evil.example/a' data-x='".into();
        let mime = build_email(
            "campaigns@shop.test",
            "ada@example.com",
            &links,
            &merge_fields(&t),
            "Hello",
            "<p title='{{ name }}'>Hi</p><a href=\"https://shop.test/offer\">Offer</a>",
            None,
        )
        .unwrap();
        let text = String::from_utf8(mime).unwrap();
        assert!(!text.contains("evil.example%2Fa") && !text.contains("href='https://evil"), "{text}");
        assert!(text.contains("&#39;"), "single quotes are escaped: {text}");
        assert_eq!(text.matches("/t/click/").count(), 1, "only the template's own link is tracked");
    }

    #[test]
    fn a_line_break_merged_into_the_subject_refuses_the_send() {
        let links = Links::new(
            "https://app.test",
            "key-0123456789abcdef",
            RecipientRef { tenant: TenantId::from_uuid(Uuid::now_v7()), recipient: Uuid::now_v7() },
        );
        let mut t = target();
        t.business_context = serde_json::json!({"company": "Acme\r\nBcc: all@evil.example"});
        let err = build_email(
            "c@shop.test",
            "ada@example.com",
            &links,
            &merge_fields(&t),
            "Hi {{ company }}",
            "<p>x</p>",
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ProviderError::Rejected { .. }), "{err}");
        assert!(err.to_string().contains("carriage return"), "{err}");
        assert_eq!(header_break("fine\tsubject"), None);
        assert_eq!(header_break("a\nb"), Some("line feed"));
        assert_eq!(header_break("a\0b"), Some("NUL"));
    }

    #[test]
    fn email_has_unsubscribe_headers_pixel_and_tracked_links() {
        let links = Links::new(
            "https://app.test",
            "key-0123456789abcdef",
            RecipientRef { tenant: TenantId::from_uuid(Uuid::now_v7()), recipient: Uuid::now_v7() },
        );
        let mime = build_email(
            "campaigns@shop.test",
            "ada@example.com",
            &links,
            &merge_fields(&target()),
            "Hi {{ first_name }}",
            "<p>Hello {{ company }}</p><a href=\"https://shop.test/offer\">Offer</a>",
            None,
        )
        .unwrap();
        let text = String::from_utf8(mime).unwrap();
        assert!(text.contains("List-Unsubscribe: <https://app.test/t/unsubscribe/"), "{text}");
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(text.contains("Subject: Hi Ada"));
        assert!(text.contains("Engines &lt;Ltd&gt;"), "merged values are escaped in HTML");
        assert!(text.contains("/t/open/"));
        assert!(text.contains("/t/click/"));
    }
}
