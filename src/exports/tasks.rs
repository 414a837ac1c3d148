//! `export_tenant(tenant_id, export_id)` on queue `sync` (long work, with
//! the syncs rather than ahead of notifications).

use std::sync::Arc;

use serde_json::{Map, json};
use uuid::Uuid;

use crate::broker::{BadMessage, TaskMessage, TaskQueue};
use crate::infra::Infra;
use crate::infra::tasks::{measured, task_span};

pub const EXPORT_TENANT: &str = "export_tenant";

pub async fn send_export(
    queue: &TaskQueue,
    tenant_id: Uuid,
    export_id: Uuid,
) -> anyhow::Result<()> {
    let message = TaskMessage::new(
        EXPORT_TENANT,
        vec![json!(tenant_id), json!(export_id)],
        Map::new(),
    );
    queue.send(queue.sync_queue(), message).await
}

pub async fn export_tenant(ctx: Arc<Infra>, message: TaskMessage) -> Result<(), BadMessage> {
    let tenant_id: Uuid = message.arg(0, "tenant_id")?;
    let export_id: Uuid = message.arg(1, "export_id")?;
    let span = task_span(EXPORT_TENANT, tenant_id, None);
    span.record("task_id", message.id.as_str());
    let body = measured(&ctx.metrics, EXPORT_TENANT, async {
        match super::service::build(&ctx, tenant_id, export_id).await {
            Ok(_) => "succeeded",
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "export task error");
                sentry::integrations::anyhow::capture_anyhow(&err);
                "failed"
            }
        }
    });
    tracing::Instrument::instrument(body, span).await;
    Ok(())
}
