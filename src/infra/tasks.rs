//! What Celery tasks run with. celery-rs tasks are plain functions, so the
//! worker installs its [`Infra`] once ([`install`]) and each task takes it
//! from here ([`context`]). Also the parts every task shares: its span (and
//! trace), its metrics, and the retry backoff.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use celery::prelude::*;
use rand::Rng;
use uuid::Uuid;

use super::Infra;
use crate::config::Settings;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces;

static CONTEXT: OnceLock<Arc<Infra>> = OnceLock::new();

/// Makes `infra` what tasks run with (once per process: the worker's).
pub fn install(infra: Arc<Infra>) {
    let _ = CONTEXT.set(infra);
}

/// The worker's infrastructure, for a task.
pub fn context() -> TaskResult<Arc<Infra>> {
    CONTEXT
        .get()
        .cloned()
        .ok_or_else(|| TaskError::UnexpectedError("the worker context is not installed".into()))
}

/// The span a task runs in: its fields are on every log line of the task,
/// and, when traced, it continues the trace of the request that queued it.
pub fn task_span(task: &'static str, tenant_id: Uuid, traceparent: Option<&str>) -> tracing::Span {
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
pub async fn measured<T>(
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
pub fn backoff_secs(settings: &Settings, attempt: u32, asked: Option<u32>) -> u32 {
    let worker = &settings.worker;
    let exponential = worker
        .retry_base_secs
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(worker.retry_max_secs);
    let jittered = rand::rng().random_range(exponential.div_ceil(2)..=exponential);
    // A marketplace's Retry-After is honoured when it asks for longer.
    jittered.max(asked.unwrap_or(0)).max(1)
}
