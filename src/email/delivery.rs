//! One attempt at an email: claim it (its `next_attempt_at` pushed past the
//! attempt's timeout, so a duplicate task finds nothing to do and a dead
//! worker's claim expires), render and send it, then record the outcome: sent,
//! retried after the next delay of `notifications.retry_schedule_secs`, or
//! failed (a permanent refusal, or the schedule exhausted). A finished
//! email's link, which carries a token, is cleared.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Kind;
use super::templates;
use crate::db::{self, observed};
use crate::infra::Infra;
use crate::telemetry::metrics::{MetricDef, Metrics};

pub const EMAILS: MetricDef = MetricDef::counter(
    "stock_tracker_emails_total",
    "Account emails by kind (password_reset, email_verification, invitation) and outcome: sent, retried (a failure with tries left), failed (refused for good, or out of tries)",
    &["kind", "outcome"],
);

pub const METRICS: &[MetricDef] = &[EMAILS];

const OUTCOMES: [&str; 3] = ["sent", "retried", "failed"];

/// Registers the email count with every kind and outcome, so panels and the
/// failure alert read 0 rather than "no data" before the first email.
pub fn register_metrics(metrics: &Metrics) {
    let emails = metrics.counter_vec(&EMAILS);
    for kind in Kind::ALL {
        for outcome in OUTCOMES {
            emails.with_label_values(&[kind.as_str(), outcome]);
        }
    }
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do: not due, claimed by another attempt, finished or gone.
    Skipped,
    Sent,
    Failed {
        error: String,
        /// When it is tried again; `None`: never (failed for good).
        next_attempt_at: Option<OffsetDateTime>,
    },
}

#[derive(sqlx::FromRow)]
struct Claimed {
    kind: String,
    recipient: String,
    context: Value,
    link_encrypted: Option<String>,
    attempts: i32,
}

/// One attempt at `now` of the email `id`.
pub async fn attempt(
    infra: &Infra,
    tenant_id: Uuid,
    id: Uuid,
    now: OffsetDateTime,
) -> anyhow::Result<Outcome> {
    let timeout = Duration::from_millis(infra.settings.notifications.timeout_ms);
    let lease = now + timeout + Duration::from_secs(30);
    let claimed: Option<Claimed> = {
        let mut tx = db::begin_tenant_tx(&infra.db, tenant_id).await?;
        let claimed = sqlx::query_as(
            "UPDATE email_messages SET next_attempt_at = $4, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND next_attempt_at <= $3
             RETURNING kind, recipient, context, link_encrypted, attempts",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(now)
        .bind(lease)
        .fetch_optional(observed("email.claim", &mut *tx))
        .await?;
        tx.commit().await?;
        claimed
    };
    let Some(claimed) = claimed else {
        return Ok(Outcome::Skipped);
    };
    let kind = Kind::parse(&claimed.kind);
    let sent = match (kind, &claimed.link_encrypted) {
        (Some(kind), Some(link)) => send(infra, kind, &claimed, link).await,
        _ => Err(crate::mailer::NotSent {
            permanent: true,
            reason: "the email has no kind or link this release knows".into(),
        }),
    };
    let outcome = match sent {
        Ok(()) => Outcome::Sent,
        Err(not_sent) => {
            let schedule = &infra.settings.notifications.retry_schedule_secs;
            let next = schedule
                .get(claimed.attempts as usize)
                .filter(|_| !not_sent.permanent)
                .map(|secs| now + Duration::from_secs(*secs));
            Outcome::Failed {
                error: not_sent.reason,
                next_attempt_at: next,
            }
        }
    };
    record(infra, tenant_id, id, now, &outcome).await?;
    let label = match &outcome {
        Outcome::Sent => "sent",
        Outcome::Failed {
            next_attempt_at: Some(_),
            ..
        } => "retried",
        _ => "failed",
    };
    infra
        .metrics
        .counter_vec(&EMAILS)
        .with_label_values(&[claimed.kind.as_str(), label])
        .inc();
    match &outcome {
        Outcome::Sent => tracing::info!(email_id = %id, kind = %claimed.kind, "email sent"),
        Outcome::Failed {
            error,
            next_attempt_at,
        } => tracing::warn!(
            email_id = %id,
            kind = %claimed.kind,
            error = %error,
            retry_at = ?next_attempt_at,
            "email not sent"
        ),
        Outcome::Skipped => {}
    }
    Ok(outcome)
}

async fn send(
    infra: &Infra,
    kind: Kind,
    claimed: &Claimed,
    link_encrypted: &str,
) -> Result<(), crate::mailer::NotSent> {
    let not_sent = |reason: String| crate::mailer::NotSent {
        permanent: true,
        reason,
    };
    let link = infra
        .secrets
        .decrypt(link_encrypted)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| not_sent("the link cannot be decrypted with any configured key".into()))?;
    let email = templates::render(
        kind,
        &claimed.recipient,
        &claimed.context,
        &link,
        &infra.settings.email.product_name,
    )
    .map_err(|err| not_sent(format!("the template failed: {err}")))?;
    infra.mailer.send(&email).await
}

/// Writes the outcome. A finished email (sent or failed) loses its link.
async fn record(
    infra: &Infra,
    tenant_id: Uuid,
    id: Uuid,
    now: OffsetDateTime,
    outcome: &Outcome,
) -> anyhow::Result<()> {
    let (status, error, next, sent_at) = match outcome {
        Outcome::Sent => ("sent", None, None, Some(now)),
        Outcome::Failed {
            error,
            next_attempt_at: Some(next),
        } => ("pending", Some(error.as_str()), Some(*next), None),
        Outcome::Failed { error, .. } => ("failed", Some(error.as_str()), None, None),
        Outcome::Skipped => return Ok(()),
    };
    let mut tx = db::begin_tenant_tx(&infra.db, tenant_id).await?;
    sqlx::query(
        "UPDATE email_messages SET status = $3, attempts = attempts + 1, error = $4,
             next_attempt_at = COALESCE($5, next_attempt_at), sent_at = $6, updated_at = $7,
             handed_over_at = NULL,
             link_encrypted = CASE WHEN $3 = 'pending' THEN link_encrypted END
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(status)
    .bind(error)
    .bind(next)
    .bind(sent_at)
    .bind(now)
    .execute(observed("email.record", &mut *tx))
    .await?;
    tx.commit().await?;
    Ok(())
}
