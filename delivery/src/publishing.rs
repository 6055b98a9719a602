//! The publishing workflow: draft → review → approved → scheduled → published, and any
//! state but archived → archived. Approved content may also be published at once. The
//! API's status and publish endpoints and the scheduler's `content:publish-scheduled`
//! move content only through [`allowed`] and [`transition`].

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use sqlx::PgConnection;
use uuid::Uuid;

/// The statuses in order.
pub const STATUSES: &[&str] = &["draft", "review", "approved", "scheduled", "published", "archived"];

/// Whether `from → to` is a legal step.
pub fn allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("draft", "review")
            | ("review", "approved")
            | ("approved", "scheduled")
            | ("approved", "published")
            | ("scheduled", "published")
            | ("draft" | "review" | "approved" | "scheduled" | "published", "archived")
    )
}

/// The steps open from `from`, for error messages.
pub fn next_steps(from: &str) -> Vec<&'static str> {
    STATUSES.iter().copied().filter(|to| allowed(from, to)).collect()
}

/// One workflow step, as recorded in the history.
pub struct Step<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub scheduled_publish_at: Option<DateTime<Utc>>,
    pub actor: Option<Uuid>,
    pub notes: Option<&'a str>,
    /// `status_change`, `publish`, …
    pub action: &'a str,
}

/// Moves the workflow and writes the history row, in the caller's transaction. The
/// caller has locked the row and checked the step.
#[tracing::instrument(name = "publishing.transition", skip(conn, step), fields(to = step.to), err)]
pub async fn transition(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    step: &Step<'_>,
) -> Result<(), sqlx::Error> {
    let workflow: Uuid = sqlx::query_scalar(
        "update content_workflow set status = $3,
            scheduled_publish_at = case when $3 = 'scheduled' then $4 when $3 = 'published' then scheduled_publish_at else null end,
            published_at = case when $3 = 'published' then now() else published_at end
         where tenant_id = $1 and content_type = 'generated_content' and content_id = $2 returning id",
    )
    .bind(tenant)
    .bind(id)
    .bind(step.to)
    .bind(step.scheduled_publish_at)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "insert into content_workflow_history (tenant_id, workflow_id, action, from_status, to_status, performed_by, notes)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant)
    .bind(workflow)
    .bind(step.action)
    .bind(step.from)
    .bind(step.to)
    .bind(step.actor)
    .bind(step.notes)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_transition_table() {
        let legal = [
            ("draft", "review"),
            ("review", "approved"),
            ("approved", "scheduled"),
            ("approved", "published"),
            ("scheduled", "published"),
            ("draft", "archived"),
            ("review", "archived"),
            ("approved", "archived"),
            ("scheduled", "archived"),
            ("published", "archived"),
        ];
        for from in STATUSES {
            for to in STATUSES {
                assert_eq!(allowed(from, to), legal.contains(&(*from, *to)), "{from} -> {to}");
            }
        }
        assert_eq!(next_steps("archived"), Vec::<&str>::new());
        assert_eq!(next_steps("approved"), vec!["scheduled", "published", "archived"]);
    }
}
