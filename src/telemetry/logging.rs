//! Structured logs with tracing: JSON lines for log shippers, or a pretty
//! format for a terminal. Fields of the enclosing request span (request id,
//! route, tenant, user) are attached to every line logged inside it. Lines
//! at INFO and above also become Sentry breadcrumbs (a no-op while Sentry is
//! off), so an error report shows what led to it. When tracing is on, the
//! service's spans also go to OpenTelemetry ([`super::traces`]).

use tracing::Level;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LoggingSettings};

/// Installs the global subscriber. Returns an error if one is already set
/// (tests call this once per process). `quiet` keeps the log output off
/// while still feeding Sentry's breadcrumbs (tests that do not print logs).
pub fn init(
    settings: &LoggingSettings,
    quiet: bool,
) -> Result<(), tracing_subscriber::util::TryInitError> {
    init_with_tracer(settings, quiet, None)
}

/// As [`init`], also sending the service's spans to `tracer`.
pub fn init_with_tracer(
    settings: &LoggingSettings,
    quiet: bool,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Result<(), tracing_subscriber::util::TryInitError> {
    subscriber(settings, quiet, tracer).try_init()
}

/// The subscriber [`init_with_tracer`] installs.
pub fn subscriber(
    settings: &LoggingSettings,
    quiet: bool,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> impl tracing::Subscriber + Send + Sync {
    let filter = if quiet {
        EnvFilter::new("off")
    } else {
        EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let output = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::NONE)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().pretty().boxed(),
    }
    .with_filter(filter);
    // Errors are reported explicitly (see `error_reporting`); log lines only
    // become breadcrumbs, so nothing is reported twice.
    let breadcrumbs = sentry::integrations::tracing::layer()
        .event_filter(|metadata| match *metadata.level() {
            Level::ERROR | Level::WARN | Level::INFO => {
                sentry::integrations::tracing::EventFilter::Breadcrumb
            }
            _ => sentry::integrations::tracing::EventFilter::Ignore,
        })
        .span_filter(|_| false)
        .with_filter(LevelFilter::INFO);
    let spans = tracer.map(super::traces::layer);
    tracing_subscriber::registry()
        .with(output)
        .with(breadcrumbs)
        .with(spans)
}
