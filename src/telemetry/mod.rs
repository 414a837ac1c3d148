//! What the service tells operators about itself: structured logs
//! ([`logging`]) and Prometheus metrics ([`metrics`], served by [`routes`]).

pub mod logging;
pub mod metrics;
pub mod routes;
