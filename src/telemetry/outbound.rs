//! Outbound HTTP calls (marketplace APIs, webhook receivers, the Telegram
//! Bot API), measured in one place: a count by service, operation and
//! status code, a latency histogram, and a client span when tracing is on.
//!
//! No trace context is sent: the receivers are third parties, and a
//! `traceparent` would tell them nothing and leak our trace ids.

use std::time::Instant;

use super::metrics::Metrics;

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
        .external_api_duration
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
        .external_api_requests
        .with_label_values(&[service, operation, status_code])
        .inc();
    result
}
