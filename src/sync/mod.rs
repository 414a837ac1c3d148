//! Marketplace sync: jobs recorded in PostgreSQL (the API starts them, the
//! worker runs them, beat schedules and sweeps them), the batched upsert of
//! a marketplace's listings, and the outbox of domain events
//! (`sync.completed`, `sync.failed`, `stock.low`) written in the same
//! transactions as the changes they announce.

pub mod metrics;
pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
pub mod tasks;
