//! Protection against overload and failing dependencies: the load shedder
//! ([`load`]) and the circuit breakers ([`breaker`]) for PostgreSQL and Redis.
//! Timeouts bound every outbound call where it is made: the pool acquire and
//! statement timeouts (`crate::db`), Redis connect and command timeouts
//! (`crate::cache`), and the Sentry transport's (`crate::telemetry::error_reporting`).

pub mod breaker;
pub mod load;
