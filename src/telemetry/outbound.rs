//! Outbound HTTP calls (marketplace APIs, webhook receivers, the Telegram
//! Bot API), measured in one place: a count by service, operation and
//! status code, a latency histogram, and a client span when tracing is on.
//!
//! No trace context is sent: the receivers are third parties, and a
//! `traceparent` would tell them nothing and leak our trace ids.

use std::time::Instant;

use super::metrics::{MetricDef, Metrics};

pub const EXTERNAL_API_REQUESTS: MetricDef = MetricDef::counter(
    "stock_tracker_external_api_requests_total",
    "Outbound HTTP calls by service (wildberries, webhook, telegram), operation and status: the HTTP status code, or timeout / error when no response came",
    &["service", "operation", "status"],
);

pub const EXTERNAL_API_DURATION: MetricDef = MetricDef::histogram(
    "stock_tracker_external_api_duration_seconds",
    "Duration of outbound HTTP calls until the response headers (or the failure), by service and operation",
    &["service", "operation"],
    EXTERNAL_API_BUCKETS,
);

/// Buckets for outbound calls, in seconds (seed 004; alerts at p95 3 s and 10 s).
pub const EXTERNAL_API_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Seed 004's external API tracker.
pub const METRICS: &[MetricDef] = &[EXTERNAL_API_REQUESTS, EXTERNAL_API_DURATION];

/// Registers the outbound families with `service`'s operations, so their
/// latency series and their counts of calls that got no answer exist before
/// the first call (HTTP status codes appear as they are answered).
pub fn register(metrics: &Metrics, service: &str, operations: &[&str]) {
    let duration = metrics.histogram_vec(&EXTERNAL_API_DURATION);
    let requests = metrics.counter_vec(&EXTERNAL_API_REQUESTS);
    for operation in operations {
        duration.with_label_values(&[service, operation]);
        for status in ["timeout", "error"] {
            requests.with_label_values(&[service, operation, status]);
        }
    }
}

/// Sends `request` as one call of `service`'s `operation`. The latency runs
/// until the response's headers (or the failure); reading the body is the
/// caller's.
pub async fn send(
    metrics: &Metrics,
    service: &'static str,
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    // TRACE: exported when tracing is on, never the current span of a log line.
    let span = tracing::trace_span!(
        target: "stock_tracker::outbound",
        "http.client",
        otel.name = %format_args!("{service} {operation}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        peer.service = service,
        http.response.status_code = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = tracing::Instrument::instrument(request.send(), span.clone()).await;
    metrics
        .histogram_vec(&EXTERNAL_API_DURATION)
        .with_label_values(&[service, operation])
        .observe(started.elapsed().as_secs_f64());
    let status = result.as_ref().ok().map(reqwest::Response::status);
    let status_code = match (&status, &result) {
        (Some(status), _) => {
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
            status.as_str()
        }
        (None, Err(err)) if err.is_timeout() => "timeout",
        (None, _) => "error",
    };
    if status.is_none() {
        span.record("otel.status_code", "ERROR");
    }
    metrics
        .counter_vec(&EXTERNAL_API_REQUESTS)
        .with_label_values(&[service, operation, status_code])
        .inc();
    result
}
