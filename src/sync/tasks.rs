//! The sync tasks, on queue `sync` (a contract with any Celery client, a
//! Python `send_task` included: keep names and arguments):
//!
//! - `sync_tenant_products(tenant_id, connection_id, job_id, traceparent=None)`
//!   (`traceparent`: the W3C trace context of the request that queued it)
//! - `sync_all_tenants()`

use std::sync::Arc;

use celery::prelude::*;
use tracing::Instrument;
use uuid::Uuid;

use super::service::{self, SyncError};
use crate::auth::TenantCtx;
use crate::broker::TaskQueue;
use crate::infra::tasks::{WORKER_RETRIES, backoff_secs, context, measured, task_span};
use crate::telemetry::traces;

/// Hands a sync job to the workers.
pub async fn send_sync(
    queue: &TaskQueue,
    tenant_id: Uuid,
    connection_id: Uuid,
    job_id: Uuid,
) -> anyhow::Result<()> {
    // The task continues this trace (see `telemetry::traces`). TRACE, like
    // every client span: log lines inside keep the request's span.
    let span = tracing::trace_span!(
        "queue.publish",
        otel.name = "sync_tenant_products publish",
        otel.kind = "producer",
        messaging.destination.name = queue.sync_queue(),
    );
    let traceparent = traces::traceparent(&span);
    let signature = sync_tenant_products::new(tenant_id, connection_id, job_id, traceparent)
        .with_queue(queue.sync_queue());
    queue.send(signature).instrument(span).await
}

/// Asks a worker to schedule a sync of every idle connection.
pub async fn send_sync_all(queue: &TaskQueue) -> anyhow::Result<()> {
    queue
        .send(sync_all_tenants::new().with_queue(queue.sync_queue()))
        .await
}

#[celery::task(name = "sync_tenant_products", bind = true)]
pub async fn sync_tenant_products(
    task: &Self,
    tenant_id: Uuid,
    connection_id: Uuid,
    job_id: Uuid,
    traceparent: Option<String>,
) -> TaskResult<()> {
    let ctx = context()?;
    let attempt = task.request().retries;
    let final_attempt = attempt >= ctx.settings.worker.max_retries;
    let span = task_span("sync_tenant_products", tenant_id, traceparent.as_deref());
    span.record("task_id", task.request().id.as_str());
    span.record("job_id", tracing::field::display(job_id));
    let tenant = TenantCtx::for_system_task(tenant_id);
    // A hub per task: its reports carry the tenant and job (the hub of the
    // task's tokio task, not the thread's).
    let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::current()));
    hub.configure_scope(|scope| {
        scope.set_tag("task", "sync_tenant_products");
        scope.set_tag("tenant_id", tenant_id);
        scope.set_tag("job_id", job_id);
    });
    let body = measured(&ctx.metrics, "sync_tenant_products", async {
        tracing::info!(attempt, "sync started");
        match service::run_sync(&ctx, tenant, connection_id, job_id, final_attempt).await {
            Ok(()) => {
                tracing::info!("sync succeeded");
                ("succeeded", Ok(()))
            }
            Err(SyncError::AlreadyFinished) => ("skipped", Ok(())),
            Err(SyncError::Transient {
                message,
                retry_after,
            }) => {
                let delay = backoff_secs(&ctx.settings, attempt, retry_after);
                tracing::warn!(%message, attempt, delay_secs = delay, "sync failed transiently; retrying");
                ctx.metrics
                    .counter_vec(&WORKER_RETRIES)
                    .with_label_values(&["sync_tenant_products"])
                    .inc();
                ("retried", task.retry_with_countdown(delay))
            }
            Err(SyncError::Failed(message)) => {
                tracing::warn!(%message, "sync failed");
                ("failed", Ok(()))
            }
            Err(SyncError::Internal(err)) => {
                tracing::error!(error = %format!("{err:#}"), "sync task error");
                sentry::integrations::anyhow::capture_anyhow(&err);
                let delay = backoff_secs(&ctx.settings, attempt, None);
                ("retried", task.retry_with_countdown(delay))
            }
        }
    });
    sentry::SentryFutureExt::bind_hub(tracing::Instrument::instrument(body, span), hub).await
}

#[celery::task(name = "sync_all_tenants")]
pub async fn sync_all_tenants() -> TaskResult<()> {
    let ctx = context()?;
    measured(&ctx.metrics, "sync_all_tenants", async {
        match service::sync_all_tenants(&ctx).await {
            Ok(count) => {
                tracing::info!(jobs = count, "scheduled a sync of every idle connection");
                ("succeeded", Ok(()))
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "sync_all_tenants failed");
                sentry::integrations::anyhow::capture_anyhow(&err);
                ("failed", Err(TaskError::ExpectedError(format!("{err:#}"))))
            }
        }
    })
    .await
}
