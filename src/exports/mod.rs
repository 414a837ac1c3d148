//! Tenant exports: an admin asks (`POST /api/v1/tenants/me/export`), a
//! worker builds one archive — a gzip-compressed tar with a JSON-lines file
//! per table and a manifest, no secrets ([`archive`]) — and admins download
//! it (`GET /api/v1/tenants/me/exports/{id}?download=true`) until
//! `retention.tenant_export_hours` have passed.

pub mod archive;
pub mod routes;
pub mod service;
pub mod tasks;
