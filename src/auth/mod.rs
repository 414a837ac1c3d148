//! Identity: who is calling, for which tenant, with which role.
//!
//! - [`roles`]: the role ladder `viewer < member < admin < owner` and tiers.
//! - [`tokens`]: JWT access tokens, opaque refresh tokens, API keys.
//! - [`password`]: argon2id hashing and the password policy.
//! - [`revocation`]: the deny-list and per-user "invalid before" marks, in
//!   Redis with PostgreSQL as the record and fallback.
//! - [`middleware`]: authentication — resolves credentials into a
//!   [`Principal`] once per request, before rate limiting.
//! - [`extractor`]: `Auth<R>`, the only way a handler obtains a caller, and
//!   with it the [`TenantCtx`] every repository function requires.
//! - [`tenant_context`]: the layer that names the settled caller in the
//!   request's Sentry scope and log span.
//! - [`routes`], [`service`], [`repository`]: register, login, refresh, logout.

pub mod extractor;
pub mod middleware;
pub mod password;
pub mod repository;
pub mod revocation;
pub mod roles;
pub mod routes;
pub mod service;
pub mod tenant_context;
pub mod tokens;

pub use extractor::{Admin, Auth, Member, Owner, Principal, PrincipalKind, TenantCtx, Viewer};
pub use roles::{Role, Tier};
