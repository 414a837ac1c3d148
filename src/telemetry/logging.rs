//! Structured logs with tracing: JSON lines for log shippers, or a pretty
//! format for a terminal. Fields of the enclosing request span (request id,
//! route, tenant, user) are attached to every line logged inside it.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, LoggingSettings};

/// Installs the global subscriber. Returns an error if one is already set
/// (tests call this once per process).
pub fn init(settings: &LoggingSettings) -> Result<(), tracing_subscriber::util::TryInitError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE);
    match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .try_init(),
        LogFormat::Pretty => builder.pretty().finish().try_init(),
    }
}
