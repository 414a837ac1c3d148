//! `deliver_webhook(tenant_id, delivery_id)` on queue `notifications` (a
//! contract with any Celery client: keep name and arguments).

use std::sync::Arc;

use celery::prelude::*;
use uuid::Uuid;

use crate::broker::TaskQueue;
use crate::infra::tasks::{context, measured, task_span};

/// Hands a due delivery to the workers.
pub async fn send_delivery(
    queue: &TaskQueue,
    tenant_id: Uuid,
    delivery_id: Uuid,
) -> anyhow::Result<()> {
    queue
        .send(deliver_webhook::new(tenant_id, delivery_id).with_queue(queue.notifications_queue()))
        .await
}

#[celery::task(name = "deliver_webhook")]
pub async fn deliver_webhook(tenant_id: Uuid, delivery_id: Uuid) -> TaskResult<()> {
    let ctx = context()?;
    let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::current()));
    hub.configure_scope(|scope| {
        scope.set_tag("task", "deliver_webhook");
        scope.set_tag("tenant_id", tenant_id);
    });
    let span = task_span("deliver_webhook", tenant_id, None);
    span.record("delivery_id", tracing::field::display(delivery_id));
    let body = measured(&ctx.metrics, "deliver_webhook", async {
        let now = time::OffsetDateTime::now_utc();
        match super::delivery::attempt(&ctx, tenant_id, delivery_id, now).await {
            Ok(outcome) => {
                tracing::info!(?outcome, "webhook delivery attempted");
                ("succeeded", Ok(()))
            }
            Err(err) => {
                // The delivery stays due; beat hands it over again.
                tracing::error!(error = %format!("{err:#}"), "webhook delivery task error");
                sentry::integrations::anyhow::capture_anyhow(&err);
                (
                    "failed",
                    Err(TaskError::UnexpectedError(format!("{err:#}"))),
                )
            }
        }
    });
    sentry::SentryFutureExt::bind_hub(tracing::Instrument::instrument(body, span), hub).await
}
