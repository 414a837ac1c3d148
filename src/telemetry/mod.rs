//! What the service tells operators about itself: structured logs
//! ([`logging`]), Prometheus metrics ([`metrics`], served by [`routes`]) and
//! error reports to Sentry ([`error_reporting`]).

pub mod error_reporting;
pub mod logging;
pub mod metrics;
pub mod routes;
