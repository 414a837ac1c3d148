//! `deliver_telegram(tenant_id, delivery_id)` on queue `notifications` (a
//! contract with any Celery client: keep name and arguments).

use std::sync::Arc;

use serde_json::{Map, json};
use uuid::Uuid;

use crate::broker::{BadMessage, TaskMessage, TaskQueue};
use crate::infra::Infra;
use crate::infra::tasks::{measured, task_span};

pub const DELIVER_TELEGRAM: &str = "deliver_telegram";

/// Hands a due message to the workers.
pub async fn send_telegram(
    queue: &TaskQueue,
    tenant_id: Uuid,
    delivery_id: Uuid,
) -> anyhow::Result<()> {
    let message = TaskMessage::new(
        DELIVER_TELEGRAM,
        vec![json!(tenant_id), json!(delivery_id)],
        Map::new(),
    );
    queue.send(queue.notifications_queue(), message).await
}

/// Attempts one message; a failure leaves it due, and beat hands it over again.
pub async fn deliver_telegram(ctx: Arc<Infra>, message: TaskMessage) -> Result<(), BadMessage> {
    let tenant_id: Uuid = message.arg(0, "tenant_id")?;
    let delivery_id: Uuid = message.arg(1, "delivery_id")?;
    let span = task_span(DELIVER_TELEGRAM, tenant_id, None);
    span.record("task_id", message.id.as_str());
    span.record("delivery_id", tracing::field::display(delivery_id));
    let body = measured(&ctx.metrics, DELIVER_TELEGRAM, async {
        let now = time::OffsetDateTime::now_utc();
        match super::delivery::attempt(&ctx, tenant_id, delivery_id, now).await {
            Ok(outcome) => {
                tracing::info!(?outcome, "telegram message attempted");
                "succeeded"
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "telegram task error");
                sentry::integrations::anyhow::capture_anyhow(&err);
                "failed"
            }
        }
    });
    tracing::Instrument::instrument(body, span).await;
    Ok(())
}
