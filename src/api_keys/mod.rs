//! API keys: a tenant's service credentials, sent as `X-API-Key`. Each
//! carries a role (admin, member or viewer — never owner) no higher than its
//! creator's, is shown once at creation, and is stored only as a hash.

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
