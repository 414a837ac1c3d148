//! The Celery tasks. Names and arguments are a contract with any client
//! (a Python `send_task` included): keep them.
//!
//! - `sync_tenant_products(tenant_id, connection_id, job_id, traceparent=None)`
//!   on queue `sync` (`traceparent`: the W3C trace context of the request
//!   that queued it, optional)
//! - `sync_all_tenants()` on queue `sync`
//! - `deliver_webhook(tenant_id, delivery_id)` on queue `notifications`
//! - `deliver_telegram(tenant_id, delivery_id)` on queue `notifications`
//!
//! Tasks reach the worker's connections through [`WorkerContext`], set once
//! when the worker starts (celery-rs tasks are plain functions).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use celery::prelude::*;
use rand::Rng;
use uuid::Uuid;

use super::queue::TaskQueue;
use crate::auth::TenantCtx;
use crate::cache::ResponseCache;
use crate::config::Settings;
use crate::db::Database;
use crate::sync::service::{self, SyncError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces;

/// What tasks run with: the worker's connections and settings.
pub struct WorkerContext {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub cache: ResponseCache,
    pub metrics: Metrics,
    pub queue: TaskQueue,
    /// Decrypts marketplace credentials, webhook secrets and bot tokens.
    pub secrets: crate::crypto::SecretBox,
    /// One HTTP client for webhook and Telegram deliveries (its connection
    /// pool is reused): redirects never followed, as they would bypass the
    /// SSRF check; each request sets its own timeout.
    pub notifier: reqwest::Client,
}

static CONTEXT: OnceLock<Arc<WorkerContext>> = OnceLock::new();

pub fn install_context(context: Arc<WorkerContext>) {
    let _ = CONTEXT.set(context);
}

fn context() -> TaskResult<Arc<WorkerContext>> {
    CONTEXT
        .get()
        .cloned()
        .ok_or_else(|| TaskError::UnexpectedError("the worker context is not installed".into()))
}

/// The span a task runs in: its fields are on every log line of the task,
/// and, when traced, it continues the trace of the request that queued it.
fn task_span(task: &'static str, tenant_id: Uuid, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "task",
        task,
        %tenant_id,
        task_id = tracing::field::Empty,
        job_id = tracing::field::Empty,
        delivery_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    if traces::enabled() {
        span.record("otel.name", task);
        span.record("otel.kind", "consumer");
    }
    traces::continue_from_traceparent(&span, traceparent);
    if let Some(trace_id) = traces::trace_id(&span) {
        span.record("trace_id", trace_id.as_str());
    }
    span
}

/// Runs a task body with its metrics: in progress, duration and outcome.
async fn measured<T>(
    metrics: &Metrics,
    task: &str,
    body: impl Future<Output = (&'static str, TaskResult<T>)>,
) -> TaskResult<T> {
    let in_progress = metrics.worker_tasks_in_progress.with_label_values(&[task]);
    in_progress.inc();
    let started = Instant::now();
    let (status, result) = body.await;
    in_progress.dec();
    metrics
        .worker_task_duration
        .with_label_values(&[task, status])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .worker_tasks
        .with_label_values(&[task, status])
        .inc();
    result
}

/// Exponential backoff with jitter: base·2^attempt seconds, capped, then
/// between half of it and all of it, so retries of many jobs spread out.
fn backoff_secs(settings: &Settings, attempt: u32, asked: Option<u32>) -> u32 {
    let worker = &settings.worker;
    let exponential = worker
        .retry_base_secs
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(worker.retry_max_secs);
    let jittered = rand::rng().random_range(exponential.div_ceil(2)..=exponential);
    // A marketplace's Retry-After is honoured when it asks for longer.
    jittered.max(asked.unwrap_or(0)).max(1)
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
                    .worker_retries
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
        match crate::webhooks::delivery::attempt(&ctx, tenant_id, delivery_id, now).await {
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

#[celery::task(name = "deliver_telegram")]
pub async fn deliver_telegram(tenant_id: Uuid, delivery_id: Uuid) -> TaskResult<()> {
    let ctx = context()?;
    let span = task_span("deliver_telegram", tenant_id, None);
    span.record("delivery_id", tracing::field::display(delivery_id));
    let body = measured(&ctx.metrics, "deliver_telegram", async {
        let now = time::OffsetDateTime::now_utc();
        match crate::telegram::delivery::attempt(&ctx, tenant_id, delivery_id, now).await {
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
