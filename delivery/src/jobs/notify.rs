//! `SendSalesNotification`: tells the sales team (by e-mail, through SES) about a lead
//! from the learning center's contact form.

use fibonacco_platform::{
    TenantId, db,
    queue::{JobError, Reserved, jobs::SendSalesNotification, worker::data},
};

use super::JobContext;
use crate::providers::{ProviderError, ses::OutgoingEmail};

#[derive(sqlx::FromRow)]
struct Lead {
    name: String,
    email: String,
    phone: Option<String>,
    company: Option<String>,
    message: Option<String>,
    tenant_name: String,
}

#[tracing::instrument(name = "job.sales_notification", skip_all)]
pub async fn sales_notification(ctx: &JobContext, job: &Reserved) -> Result<(), JobError> {
    let j: SendSalesNotification = data(job)?;
    let Some(to) = ctx.settings.sales_email.as_deref() else {
        // The lead is stored either way; without an address there is nobody to tell.
        tracing::info!("SALES_NOTIFICATION_EMAIL is not set; lead kept without notification");
        return Ok(());
    };
    let tenant = TenantId::from_uuid(j.tenant_id);
    let mut tx = db::begin_tenant(&ctx.pool, tenant).await?;
    let lead: Option<Lead> = sqlx::query_as(
        "select l.name, l.email, l.phone, l.company, l.message, t.name as tenant_name
         from learning_sales_contacts l join tenants t on t.id = l.tenant_id
         where l.tenant_id = $1 and l.id = $2",
    )
    .bind(tenant)
    .bind(j.sales_contact_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some(lead) = lead else { return Ok(()) };
    let ses = ctx.providers.ses.as_ref().ok_or(ProviderError::NotConfigured("SES (AWS_ACCESS_KEY_ID)"))?;
    // The API refuses such names; a row written before that rule must not inject headers.
    if let Some(bad) = super::campaign::header_break(&lead.name) {
        return Err(JobError::fail(format!("the lead's name holds a {bad}; it cannot go into a subject")));
    }
    let body = format!(
        "New lead for {}\n\nName: {}\nE-mail: {}\nPhone: {}\nCompany: {}\n\n{}\n",
        lead.tenant_name,
        lead.name,
        lead.email,
        lead.phone.as_deref().unwrap_or("-"),
        lead.company.as_deref().unwrap_or("-"),
        lead.message.as_deref().unwrap_or("")
    );
    let mime = mail_builder::MessageBuilder::new()
        .from(ctx.settings.mail_from.as_str())
        .to(to)
        .reply_to(lead.email.as_str())
        .subject(format!("New sales lead: {}", lead.name))
        .text_body(body)
        .write_to_vec()
        .map_err(|e| JobError::fail_because(anyhow::Error::new(e).context("cannot build the message")))?;
    ses.send(OutgoingEmail { from: &ctx.settings.mail_from, to, mime }).await?;
    Ok(())
}
