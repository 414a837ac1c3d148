//! Background work with celery-rs over RabbitMQ: the tasks ([`tasks`]), how
//! they are handed to the broker ([`queue`]), and the two roles that run
//! them — `stock-tracker worker` ([`runner`]) and `stock-tracker beat`
//! ([`beat`]). Both use the same library code as the API. The worker's
//! `/metrics` adds the broker's queue depths ([`queue_stats`]).

pub mod beat;
pub mod queue;
pub mod queue_stats;
pub mod runner;
pub mod tasks;
