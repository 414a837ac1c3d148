//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when
//! `tracing.otlp_endpoint` is set, and entirely absent otherwise: no layer
//! is installed, so the spans below are disabled at their call sites.
//!
//! The spans are `tracing` spans turned into OpenTelemetry spans by
//! `tracing-opentelemetry`:
//! - `request` (server): one per HTTP request, continuing the caller's W3C
//!   `traceparent`; attributes `request_id`, `route`, status;
//! - `db.query` ([`crate::db::observe`]), `redis` ([`crate::redis_conn::RedisGuard`])
//!   and `http.client` ([`super::outbound`]) (client);
//! - `queue.publish` (producer) and `task` (consumer): a task continues the
//!   trace of whoever queued it. The context travels in the task's
//!   `traceparent` keyword argument, which any Celery client can set
//!   (optional: other clients may leave it out).
//!
//! The trace id is recorded on the request and task spans, so every JSON
//! log line inside them carries it, and tagged on Sentry events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;

use crate::config::Settings;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (checked before any per-request tracing work).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Owns the exporter; dropping it flushes the spans still queued.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("stock-tracker: flushing traces: {err}");
        }
    }
}

/// Builds the OTLP exporter and the tracer `role` (api, worker, beat)
/// records with, or `None` when tracing is off.
pub fn init(settings: &Settings, role: &str) -> anyhow::Result<Option<(Tracing, SdkTracer)>> {
    let config = &settings.tracing;
    if config.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let endpoint = format!("{}/v1/traces", config.otlp_endpoint.trim_end_matches('/'));
    // Exports run on the batch processor's own thread with a blocking client,
    // never on the request runtime.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_millis(config.export_timeout_ms))
        .build()
        .context("building the OTLP span exporter (`tracing.otlp_endpoint`)")?;
    let service_name = if config.service_name.is_empty() {
        format!("stock-tracker-{role}")
    } else {
        config.service_name.clone()
    };
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(
                "deployment.environment.name",
                format!("{:?}", settings.environment).to_lowercase(),
            ),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("stock-tracker");
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((Tracing { provider }, tracer)))
}

/// The layer that turns the service's spans into OpenTelemetry spans: every
/// span of the service, whatever the log level (the per-statement and
/// outbound spans are TRACE, so logs never pay for them), and its events at
/// INFO and above as span events.
pub fn layer<S>(tracer: SdkTracer) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(|metadata| {
            metadata.target().starts_with("stock_tracker")
                && (metadata.is_span() || *metadata.level() <= tracing::Level::INFO)
        }))
}

/// Continues the caller's trace (`traceparent`, `tracestate`) in `span`.
/// Must run before anything reads the span's context.
pub fn continue_trace(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Continues the trace a task was queued in (its `traceparent` argument).
pub fn continue_from_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent.filter(|_| enabled()) {
        let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
        continue_trace(span, &carrier);
    }
}

/// `span`'s W3C `traceparent`, to hand to the next process.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Names `span` once its name is known (a request's route is known only
/// after routing, and the span has started by then).
pub fn rename(span: &tracing::Span, name: String) {
    if enabled() {
        span.context().span().update_name(name);
    }
}

/// The trace id of `span` (32 hex digits), if it is being traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context: Context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Reads propagation headers from an actix request.
pub struct HeaderExtractor<'a>(pub &'a actix_web::http::header::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_hands_its_context_on_and_a_task_continues_it() {
        ENABLED.store(true, Ordering::Relaxed);
        let provider = SdkTracerProvider::builder().build();
        let settings = crate::config::Settings::load(None).expect("default settings");
        let (writer, _guard) = crate::telemetry::logging::non_blocking(std::io::sink(), 16);
        let subscriber = crate::telemetry::logging::subscriber(
            &settings.logging,
            true,
            Some(provider.tracer("test")),
            writer,
        );
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request");
            let carrier = HashMap::from([(
                "traceparent".to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            )]);
            continue_trace(&request, &carrier);
            assert_eq!(
                trace_id(&request).as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736")
            );
            let queue = String::from("sync");
            let publish = request.in_scope(|| {
                tracing::info_span!(
                    "queue.publish",
                    otel.name = "sync_tenant_products publish",
                    otel.kind = "producer",
                    messaging.destination.name = queue.as_str(),
                )
            });
            let handed = traceparent(&publish).expect("a traceparent");
            assert!(
                handed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{handed}"
            );
            let task = tracing::info_span!("task");
            continue_from_traceparent(&task, Some(&handed));
            assert_eq!(trace_id(&task), trace_id(&request));
        });
    }
}
