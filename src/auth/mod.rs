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
//! - [`repository`]: the credential SQL the layers and other domains share.
//!
//! Registering, signing in and out are `crate::sessions`, above this module.

pub mod extractor;
pub mod middleware;
pub mod password;
pub mod repository;
pub mod revocation;
pub mod roles;
pub mod tenant_context;
pub mod tokens;

pub use extractor::{Admin, Auth, Member, Owner, Principal, PrincipalKind, TenantCtx, Viewer};
pub use roles::{Role, Tier};

/// What the API's authentication holds, built once by the API builder: the
/// token keys, the password hasher and the revocation store. The
/// authentication and rate-limit layers and the handlers that issue, check
/// or revoke credentials take it (as `web::Data<AuthState>`).
pub struct AuthState {
    pub tokens: tokens::TokenKeys,
    pub passwords: password::PasswordHasher,
    pub revocations: std::sync::Arc<revocation::RevocationStore>,
    /// How long a refresh token lives (`auth.refresh_token_ttl_secs`).
    pub refresh_token_ttl_secs: u64,
}
