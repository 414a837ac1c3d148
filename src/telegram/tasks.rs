//! `deliver_telegram(tenant_id, delivery_id)` on queue `notifications` (a
//! contract with any Celery client: keep name and arguments).

use celery::prelude::*;
use uuid::Uuid;

use crate::broker::TaskQueue;
use crate::infra::tasks::{context, measured, task_span};

/// Hands a due message to the workers.
pub async fn send_telegram(
    queue: &TaskQueue,
    tenant_id: Uuid,
    delivery_id: Uuid,
) -> anyhow::Result<()> {
    queue
        .send(deliver_telegram::new(tenant_id, delivery_id).with_queue(queue.notifications_queue()))
        .await
}

#[celery::task(name = "deliver_telegram")]
pub async fn deliver_telegram(tenant_id: Uuid, delivery_id: Uuid) -> TaskResult<()> {
    let ctx = context()?;
    let span = task_span("deliver_telegram", tenant_id, None);
    span.record("delivery_id", tracing::field::display(delivery_id));
    let body = measured(&ctx.metrics, "deliver_telegram", async {
        let now = time::OffsetDateTime::now_utc();
        match super::delivery::attempt(&ctx, tenant_id, delivery_id, now).await {
            Ok(outcome) => {
                tracing::info!(?outcome, "telegram message attempted");
                ("succeeded", Ok(()))
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "telegram task error");
                sentry::integrations::anyhow::capture_anyhow(&err);
                (
                    "failed",
                    Err(TaskError::UnexpectedError(format!("{err:#}"))),
                )
            }
        }
    });
    tracing::Instrument::instrument(body, span).await
}
