//! Tenants (marketplace sellers): the caller's own tenant (name, settings,
//! ownership transfer) and the platform operators' tier changes.

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
