//! Identity: who is calling, for which tenant, with which role.
//!
//! - [`roles`]: the role ladder `viewer < member < admin < owner` and tiers.
//! - [`tokens`]: JWT access tokens, opaque refresh tokens, API keys.
//! - [`password`]: argon2id hashing and the password policy.
//! - [`login_backoff`]: per-account backoff on failed password checks.
//! - [`revocation`]: revoked sessions and per-user "invalid before" marks, in
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
pub mod login_backoff;
pub mod middleware;
pub mod password;
pub mod repository;
pub mod revocation;
pub mod roles;
pub mod tenant_context;
pub mod tokens;

pub use extractor::{Admin, Auth, Member, Owner, Principal, PrincipalKind, TenantCtx, Viewer};
pub use roles::{Role, Tier};

use crate::telemetry::metrics::{MetricDef, Metrics};

pub const AUTH_EVENTS: MetricDef = MetricDef::counter(
    "stock_tracker_auth_events_total",
    "Authentication events by outcome: register, login, refresh, logout (success, failure, reuse_detected) and credentials presented per request, bearer and api_key (success, invalid, revoked, unavailable)",
    &["event", "outcome"],
);

pub const METRICS: &[MetricDef] = &[AUTH_EVENTS];

/// Every `(event, outcome)` pair [`AUTH_EVENTS`] counts, registered at start.
const AUTH_EVENT_OUTCOMES: &[(&str, &[&str])] = &[
    ("register", &["success"]),
    ("login", &["success", "failure", "unverified"]),
    ("refresh", &["success", "failure", "reuse_detected"]),
    ("logout", &["success"]),
    ("password_reset", &["success"]),
    ("bearer", &["success", "invalid", "revoked", "unavailable"]),
    ("api_key", &["success", "invalid", "revoked", "unavailable"]),
];

/// Counts authentication events (see [`AUTH_EVENTS`]).
#[derive(Clone)]
pub struct AuthEvents(prometheus::IntCounterVec);

impl AuthEvents {
    pub fn register(metrics: &Metrics) -> Self {
        let events = metrics.counter_vec(&AUTH_EVENTS);
        for (event, outcomes) in AUTH_EVENT_OUTCOMES {
            for outcome in *outcomes {
                events.with_label_values(&[event, outcome]);
            }
        }
        Self(events)
    }

    pub fn count(&self, event: &str, outcome: &str) {
        debug_assert!(
            AUTH_EVENT_OUTCOMES
                .iter()
                .any(|(e, outcomes)| *e == event && outcomes.contains(&outcome)),
            "{event}/{outcome} is not in AUTH_EVENT_OUTCOMES"
        );
        self.0.with_label_values(&[event, outcome]).inc();
    }
}

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
    pub events: AuthEvents,
    /// Per-account backoff on failed password checks.
    pub login_backoff: login_backoff::LoginBackoff,
}
