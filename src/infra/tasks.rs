//! What every task shares: its span (and trace), its metrics, and the
//! retry backoff. The worker hands each task the [`super::Infra`] it runs with.

use std::time::Instant;

use rand::Rng;
use uuid::Uuid;

use crate::config::Settings;
use crate::telemetry::metrics::{MetricDef, Metrics};
use crate::telemetry::traces;

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

pub const WORKER_TASKS: MetricDef = MetricDef::counter(
    "stock_tracker_worker_tasks_total",
    "Tasks run by the worker, by task and status: succeeded, failed, retried, skipped (a duplicate or early delivery: nothing to run), lease_lost (another worker took the job over), released (handed back to the queue as the worker shut down)",
    &["task", "status"],
);

pub const WORKER_TASK_DURATION: MetricDef = MetricDef::histogram(
    "stock_tracker_worker_task_duration_seconds",
    "Task run time, by task and status",
    &["task", "status"],
    TASK_DURATION_BUCKETS,
);

pub const WORKER_TASKS_IN_PROGRESS: MetricDef = MetricDef::gauge(
    "stock_tracker_worker_tasks_in_progress",
    "Tasks running now, by task",
    &["task"],
);

pub const WORKER_RETRIES: MetricDef = MetricDef::counter(
    "stock_tracker_worker_task_retries_total",
    "Task retries scheduled after a transient failure, by task",
    &["task"],
);

/// Buckets for task durations, in seconds: a sync of thousands of products takes seconds.
pub const TASK_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

pub const METRICS: &[MetricDef] = &[
    WORKER_TASKS,
    WORKER_TASK_DURATION,
    WORKER_TASKS_IN_PROGRESS,
    WORKER_RETRIES,
];

/// Registers the task families with the worker's task names, so the
/// in-progress and retry series exist before the first task.
pub fn register_metrics(metrics: &Metrics, tasks: &[&str]) {
    let runs = metrics.counter_vec(&WORKER_TASKS);
    let durations = metrics.histogram_vec(&WORKER_TASK_DURATION);
    let in_progress = metrics.int_gauge_vec(&WORKER_TASKS_IN_PROGRESS);
    let retries = metrics.counter_vec(&WORKER_RETRIES);
    for task in tasks {
        in_progress.with_label_values(&[task]);
        retries.with_label_values(&[task]);
        for status in TASK_STATUSES {
            runs.with_label_values(&[task, status]);
            durations.with_label_values(&[task, status]);
        }
    }
}

/// What a task run can end as (the `status` label of the task families).
pub const TASK_STATUSES: [&str; 6] = [
    "succeeded",
    "failed",
    "retried",
    "skipped",
    "lease_lost",
    "released",
];

/// Runs a task body with its metrics: in progress, duration and outcome.
pub async fn measured(metrics: &Metrics, task: &str, body: impl Future<Output = &'static str>) {
    let in_progress = metrics
        .int_gauge_vec(&WORKER_TASKS_IN_PROGRESS)
        .with_label_values(&[task]);
    in_progress.inc();
    let started = Instant::now();
    let status = body.await;
    debug_assert!(
        TASK_STATUSES.contains(&status),
        "{status} is not in TASK_STATUSES"
    );
    in_progress.dec();
    metrics
        .histogram_vec(&WORKER_TASK_DURATION)
        .with_label_values(&[task, status])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .counter_vec(&WORKER_TASKS)
        .with_label_values(&[task, status])
        .inc();
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
