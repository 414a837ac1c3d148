//! Stock Tracker: a multi-tenant REST backend for marketplace sellers.
//!
//! # Layout
//!
//! Three layers; each imports only from the layers above it in this list
//! (`scripts/check-deps.py` keeps it so, in CI):
//!
//! - **Foundations**, which know no domain: [`config`] (settings by
//!   section), [`crypto`] (the Fernet key ring), [`telemetry`] (logs,
//!   metrics, memory, traces, error reports), [`resilience`] (circuit
//!   breakers, load monitor), [`db`] (PostgreSQL behind its breaker,
//!   tenant-scoped transactions), [`redis_conn`] (Redis and its guard),
//!   [`cache`] (the per-tenant response cache), [`broker`] (handing tasks
//!   to RabbitMQ), [`http`] (the error type, request context, extractors,
//!   the load-shedding layer), [`ssrf`] (which addresses tenant-chosen URLs
//!   may reach), [`mailer`] (emails out: the log or SMTP) and [`infra`] (all of it built once per
//!   process, for the API, the worker and beat).
//! - **Domains**, each with `routes`, `service`, `repository` and `model` as
//!   it needs: [`auth`] (identity, tokens, the `Auth<R>` extractor),
//!   [`sessions`] (register, sign in, refresh, sign out), [`users`], [`api_keys`], [`tenants`], [`marketplaces`], [`products`],
//!   [`sync`], [`webhooks`], [`telegram`], [`notifications`] (what the two
//!   channels share), [`email`] (the account emails' outbox, templates and
//!   delivery), [`accounts`] (password reset, email verification),
//!   [`invitations`], [`audit`] (the tenant's audit log), [`exports`] (a
//!   tenant's data as one archive), [`idempotency`] (`Idempotency-Key` on
//!   creating POSTs), [`rate_limit`], [`health`] and [`key_rotation`] (every
//!   stored secret under the current key). Tasks are declared by
//!   the domain that owns them (`sync::tasks`, ...).
//! - **Entry points**: [`app`] (the API builder: middleware order, routes,
//!   OpenAPI) and [`worker`] (the worker and beat roles); `main.rs` is the CLI.

pub mod accounts;
pub mod api_keys;
pub mod app;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod db;
pub mod email;
pub mod exports;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod infra;
pub mod invitations;
pub mod key_rotation;
pub mod mailer;
pub mod marketplaces;
pub mod notifications;
pub mod products;
pub mod rate_limit;
pub mod redis_conn;
pub mod resilience;
pub mod sessions;
pub mod ssrf;
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
