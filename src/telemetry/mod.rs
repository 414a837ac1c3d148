//! What the service tells operators about itself: structured logs
//! ([`logging`]), Prometheus metrics ([`metrics`], served by the API's and the
//! worker's `/metrics`),
//! memory signals ([`memory`]), outbound-call measurements ([`outbound`]),
//! OpenTelemetry traces ([`traces`]) and error reports to Sentry
//! ([`error_reporting`]).

pub mod error_reporting;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod outbound;
pub mod traces;
