//! `deliver_email(tenant_id, email_id)` on queue `notifications` (a contract
//! with any Celery client: keep name and arguments).

use std::sync::Arc;

use uuid::Uuid;

use crate::broker::{BadMessage, TaskMessage};
use crate::infra::Infra;
use crate::infra::tasks::{measured, task_span};

pub const DELIVER_EMAIL: &str = "deliver_email";

/// Attempts one email; a failure leaves it due, and beat hands it over again.
pub async fn deliver_email(ctx: Arc<Infra>, message: TaskMessage) -> Result<(), BadMessage> {
    let tenant_id: Uuid = message.arg(0, "tenant_id")?;
    let email_id: Uuid = message.arg(1, "email_id")?;
    let span = task_span(DELIVER_EMAIL, tenant_id, None);
    span.record("task_id", message.id.as_str());
    span.record("delivery_id", tracing::field::display(email_id));
    let body = measured(&ctx.metrics, DELIVER_EMAIL, async {
        let now = time::OffsetDateTime::now_utc();
        match super::delivery::attempt(&ctx, tenant_id, email_id, now).await {
            Ok(_) => "succeeded",
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "email task error");
                sentry::integrations::anyhow::capture_anyhow(&err);
                "failed"
            }
        }
    });
    tracing::Instrument::instrument(body, span).await;
    Ok(())
}
