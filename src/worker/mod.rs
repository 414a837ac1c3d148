//! The two background roles: `stock-tracker worker` ([`runner`]), which
//! consumes the queues and runs the tasks the domains declare
//! (`sync::tasks`, `webhooks::tasks`, `telegram::tasks`), and
//! `stock-tracker beat` ([`beat`]), which schedules. Both build the same
//! [`crate::infra::Infra`] as the API; beat also runs [`retention`]. The worker's `/metrics` adds the
//! broker's queue depths ([`queue_stats`]).

pub mod beat;
pub mod leadership;
pub mod queue_stats;
pub mod retention;
pub mod runner;

use crate::notifications::Channel;
use crate::telemetry::metrics::MetricDef;
use crate::telemetry::{self, logging, memory, outbound};
use crate::{broker, db, email, infra, resilience, sync, telegram, webhooks};

/// Every metric the worker exports: the process's and the infrastructure's
/// it shares with the API, then its own, the tasks' and the channels'.
pub fn metrics_catalog() -> Vec<MetricDef> {
    [
        telemetry::metrics::METRICS,
        memory::METRICS,
        logging::METRICS,
        db::METRICS,
        resilience::breaker::METRICS,
        infra::tasks::METRICS,
        broker::METRICS,
        broker::consumer::METRICS,
        runner::METRICS,
        sync::metrics::METRICS,
        webhooks::delivery::METRICS,
        telegram::delivery::METRICS,
        email::delivery::METRICS,
        outbound::METRICS,
        queue_stats::METRICS,
        retention::METRICS,
    ]
    .concat()
}

/// The notification channels, in the order an event's deliveries are made.
pub static CHANNELS: &[&dyn Channel] = &[
    &crate::webhooks::delivery::Webhooks,
    &crate::telegram::delivery::Telegram,
];

/// Resolves at the first SIGTERM or SIGINT (never, if they cannot be watched).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn catalog_names_are_unique_prefixed_and_unit_suffixed() {
        crate::telemetry::metrics::check_catalog(&super::metrics_catalog());
    }
}
