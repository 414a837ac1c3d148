//! The two background roles: `stock-tracker worker` ([`runner`]), which
//! consumes the queues and runs the tasks the domains declare
//! (`sync::tasks`, `webhooks::tasks`, `telegram::tasks`), and
//! `stock-tracker beat` ([`beat`]), which schedules. Both build the same
//! [`crate::infra::Infra`] as the API. The worker's `/metrics` adds the
//! broker's queue depths ([`queue_stats`]).

pub mod beat;
pub mod queue_stats;
pub mod runner;

use crate::notifications::Channel;

/// The notification channels, in the order an event's deliveries are made.
pub static CHANNELS: &[&dyn Channel] = &[
    &crate::webhooks::delivery::Webhooks,
    &crate::telegram::delivery::Telegram,
];
