//! Stock Tracker: a multi-tenant REST backend for marketplace sellers.
//!
//! Layout, by domain first and layer second:
//! - [`startup`]: the one application builder (used by `main` and by every
//!   test), the middleware order, and the route table.
//! - [`config`]: layered, validated settings.
//! - [`http`]: request context, panic guard, fallback, CORS, extractors.
//! - [`error`]: the single error type and its FastAPI-compatible bodies.
//! - [`db`], [`cache`]: PostgreSQL (migrations, row-level security) and
//!   Redis (pool, per-tenant response cache).
//! - Domains, each with `routes`, `service`, `repository` (and `model`):
//!   [`auth`] (identity, tokens, the `Auth<R>` extractor), [`users`],
//!   [`api_keys`], [`tenants`], [`marketplaces`], [`products`], [`health`].
//! - [`rate_limit`]: tenant, user, IP, endpoint and global limits in one
//!   Redis script, with an in-process fallback.
//! - [`resilience`]: load shedding and circuit breakers.
//! - [`sync`], [`worker`]: marketplace sync jobs, and the Celery tasks,
//!   worker and beat that run them.
//! - [`webhooks`], [`telegram`]: notifications — signed webhooks and
//!   Telegram messages, with retries and delivery logs.
//! - [`crypto`]: secrets at rest (Fernet key ring).
//! - [`telemetry`]: logs, metrics, memory signals, traces and error reports.
//! - [`openapi`]: the generated OpenAPI document and the docs UI.

pub mod api_keys;
pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod db;
pub mod health;
pub mod http;
pub mod marketplaces;
pub mod products;
pub mod rate_limit;
pub mod redis_conn;
pub mod resilience;
pub mod sync;
pub mod telegram;
pub mod telemetry;
pub mod tenants;
pub mod users;
pub mod webhooks;
pub mod worker;

/// jemalloc: less fragmentation than glibc's malloc under many threads, and
/// statistics the memory gauges read (`telemetry::memory`). Declared in the
/// library so the binary and the tests run on the same allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
