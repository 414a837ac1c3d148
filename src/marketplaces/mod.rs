//! Marketplace connections: a tenant's accounts on `demo` or `wildberries`,
//! whose credentials are encrypted at rest (Fernet) and never leave the
//! service — no route returns them, no log line or error report holds them.

pub mod adapters;
pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
