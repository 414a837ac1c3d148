//! One integration-test binary: every test builds the application through the
//! production builder on port 0, against a fresh PostgreSQL database (cloned
//! from a migrated template) and its own Redis key prefix.

mod helpers;
mod processes;

mod accounts;
mod audit_log;
mod auth_flows;
mod catalog_cache;
mod cli;
mod cors_and_compression;
mod durability;
mod error_reporting;
mod errors;
mod health;
mod idempotency;
mod invitations;
mod jwt_attacks;
mod marketplaces;
mod metrics;
mod notifications;
mod openapi;
mod pooler;
mod products;
mod query_plans;
mod rate_limits;
mod redis_cluster;
mod replicas;
mod request_id;
mod resilience;
mod retention;
mod roles_and_isolation;
mod row_level_security;
mod telegram;
mod telemetry;
mod tenant_lifecycle;
mod users_and_keys;
mod webhooks;
mod wildberries;
mod workers;
