//! The sync tasks, on queue `sync` (a contract with any Celery client, a
//! Python `send_task` included: keep names and arguments):
//!
//! - `sync_tenant_products(tenant_id, connection_id, job_id, traceparent=None)`
//!   (`traceparent`: the W3C trace context of the request that queued it)
//! - `sync_all_tenants()`
//!
//! A message only says "look at this job": the job row decides. A delivery
//! claims the job under a lease ([`service::claim`]); a duplicate, early or
//! late delivery finds nothing to claim and is dropped. A run its worker
//! abandons at shutdown hands the job back to the queue.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tracing::Instrument;
use uuid::Uuid;

use super::service::{self, Claim, SyncError};
use crate::auth::TenantCtx;
use crate::broker::{BadMessage, TaskMessage, TaskQueue, consumer};
use crate::infra::Infra;
use crate::infra::tasks::{WORKER_RETRIES, measured, task_span};
use crate::telemetry::traces;

pub const SYNC_TENANT_PRODUCTS: &str = "sync_tenant_products";
pub const SYNC_ALL_TENANTS: &str = "sync_all_tenants";

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
    let mut kwargs = Map::new();
    if let Some(traceparent) = traces::traceparent(&span) {
        kwargs.insert("traceparent".into(), Value::String(traceparent));
    }
    let message = TaskMessage::new(
        SYNC_TENANT_PRODUCTS,
        vec![json!(tenant_id), json!(connection_id), json!(job_id)],
        kwargs,
    );
    queue
        .send(queue.sync_queue(), message)
        .instrument(span)
        .await
}

/// Asks a worker to schedule a sync of every idle connection.
pub async fn send_sync_all(queue: &TaskQueue) -> anyhow::Result<()> {
    let message = TaskMessage::new(SYNC_ALL_TENANTS, vec![], Map::new());
    queue.send(queue.sync_queue(), message).await
}

pub async fn sync_tenant_products(ctx: Arc<Infra>, message: TaskMessage) -> Result<(), BadMessage> {
    let tenant_id: Uuid = message.arg(0, "tenant_id")?;
    let _connection_id: Uuid = message.arg(1, "connection_id")?;
    let job_id: Uuid = message.arg(2, "job_id")?;
    let traceparent: Option<String> = message.optional_arg(3, "traceparent")?;
    let span = task_span(SYNC_TENANT_PRODUCTS, tenant_id, traceparent.as_deref());
    span.record("task_id", message.id.as_str());
    span.record("job_id", tracing::field::display(job_id));
    let tenant = TenantCtx::for_system_task(tenant_id);
    // A hub per task: its reports carry the tenant and job (the hub of the
    // task's tokio task, not the thread's).
    let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::current()));
    hub.configure_scope(|scope| {
        scope.set_tag("task", SYNC_TENANT_PRODUCTS);
        scope.set_tag("tenant_id", tenant_id);
        scope.set_tag("job_id", job_id);
    });
    let body = measured(&ctx.metrics, SYNC_TENANT_PRODUCTS, async {
        let run = match service::claim(&ctx, tenant, job_id).await {
            Ok(Claim::Claimed(run)) => run,
            Ok(Claim::Dropped(state)) => {
                tracing::info!(
                    state,
                    "nothing to run: a duplicate or early delivery, dropped"
                );
                return "skipped";
            }
            Err(err) => {
                // The job stays queued; beat's sweeper hands it over again.
                tracing::warn!(error = %err, "could not claim the job");
                return "failed";
            }
        };
        tracing::info!(attempt = run.job.attempts, "sync started");
        let ran = tokio::select! {
            ran = service::run_leased(&ctx, &run) => ran,
            () = consumer::abandoned() => return hand_back(&ctx, &run).await,
        };
        let failure = match ran {
            Ok(()) => {
                tracing::info!("sync succeeded");
                return "succeeded";
            }
            Err(SyncError::Failed(message)) => {
                tracing::warn!(%message, "sync failed");
                return "failed";
            }
            Err(SyncError::LeaseLost) => return lease_lost(),
            Err(SyncError::Transient {
                message,
                retry_after,
            }) => (message, retry_after),
            Err(SyncError::Internal(err)) => {
                tracing::error!(error = %format!("{err:#}"), "sync task error");
                sentry::integrations::anyhow::capture_anyhow(&err);
                (format!("{err:#}"), None)
            }
        };
        match service::settle_failure(&ctx, &run, &failure.0, failure.1).await {
            Ok("retried") => {
                ctx.metrics
                    .counter_vec(&WORKER_RETRIES)
                    .with_label_values(&[SYNC_TENANT_PRODUCTS])
                    .inc();
                "retried"
            }
            Ok(status) => {
                tracing::warn!(message = %failure.0, "sync failed on its final attempt");
                status
            }
            Err(SyncError::LeaseLost) => lease_lost(),
            Err(err) => {
                // The lease runs out and beat's reaper settles the job.
                tracing::error!(error = ?err, "could not record the sync's failure");
                "failed"
            }
        }
    });
    sentry::SentryFutureExt::bind_hub(tracing::Instrument::instrument(body, span), hub).await;
    Ok(())
}

/// The worker is shutting down and stopped waiting for this run: the job
/// goes back to the queue for another worker (the run stopped at a page
/// boundary or mid-page, whose transaction rolled back).
async fn hand_back(ctx: &Infra, run: &service::Run) -> &'static str {
    match service::release(ctx, run).await {
        Ok(true) => {
            tracing::warn!("the worker is shutting down; the job was handed back to the queue");
            "released"
        }
        Ok(false) => lease_lost(),
        Err(err) => {
            // Its lease runs out and beat's reaper queues it again.
            tracing::error!(error = %err, "could not hand the job back at shutdown");
            "failed"
        }
    }
}

fn lease_lost() -> &'static str {
    tracing::warn!("the job's lease passed to another worker; stopped without writing more");
    "lease_lost"
}

pub async fn sync_all_tenants(ctx: Arc<Infra>, _message: TaskMessage) -> Result<(), BadMessage> {
    measured(&ctx.metrics, SYNC_ALL_TENANTS, async {
        match service::sync_all_tenants(&ctx).await {
            Ok(count) => {
                tracing::info!(jobs = count, "scheduled a sync of every idle connection");
                "succeeded"
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "sync_all_tenants failed");
                sentry::integrations::anyhow::capture_anyhow(&err);
                "failed"
            }
        }
    })
    .await;
    Ok(())
}
