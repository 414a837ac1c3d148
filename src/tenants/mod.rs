//! Tenants (marketplace sellers): the caller's own tenant (name, settings,
//! ownership transfer), its deletion and restoration ([`deletion`]), and the
//! platform operators' tier changes.

pub mod deletion;
pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
