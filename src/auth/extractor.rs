//! The authenticated caller, by type.
//!
//! A handler that needs a caller takes `Auth<R>`, where `R` is the least role
//! it accepts (`Auth<Viewer>`, `Auth<Member>`, `Auth<Admin>`, `Auth<Owner>`):
//! no credentials or bad ones → 401 with `WWW-Authenticate`; a weaker role →
//! 403. From it comes the [`TenantCtx`] that every repository function takes
//! first — and a `TenantCtx` can only be built here, from verified
//! credentials, so no code path can pick a tenant from request input.

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use uuid::Uuid;

use super::roles::{Role, Tier};
use super::tokens::AccessClaims;
use crate::http::error::ApiError;

/// The tenant every query of a request is scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantCtx {
    tenant_id: Uuid,
}

impl TenantCtx {
    /// Only authentication and `crate::sessions` (registration creates the
    /// tenant; sign-in and refresh read it from the verified account) may
    /// name a tenant; nothing outside the crate can.
    pub(crate) fn new(tenant_id: Uuid) -> Self {
        Self { tenant_id }
    }

    /// For work the service does on a tenant's behalf with no caller —
    /// scheduled syncs, maintenance, the query-plan checks — where the tenant
    /// comes from the database, never from request input.
    pub fn for_system_task(tenant_id: Uuid) -> Self {
        Self { tenant_id }
    }

    pub fn id(&self) -> Uuid {
        self.tenant_id
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A user's access token.
    User {
        jti: Uuid,
        /// The refresh-token family the token was minted from.
        session_id: Uuid,
        /// The token's `exp`, in Unix seconds.
        expires_at: i64,
        /// When the session's password sign-in happened (Unix seconds, 0 unknown).
        authenticated_at: i64,
    },
    /// An API key, acting with its own role on behalf of the user who created it.
    ApiKey { key_id: Uuid },
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantCtx,
    /// The user, or for an API key the user who created it.
    pub user_id: Uuid,
    pub role: Role,
    pub tier: Tier,
    pub kind: PrincipalKind,
}

/// Why credentials were refused; each maps to one client-visible answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRejection {
    /// A bearer token that is malformed, forged, expired or for another
    /// audience. The client is not told which.
    InvalidToken,
    /// A genuine bearer token that was revoked; answered exactly as `InvalidToken`.
    Revoked,
    InvalidApiKey,
    /// The `Authorization` header uses a scheme other than Bearer.
    UnsupportedScheme,
    /// The revocation state could not be read from Redis nor PostgreSQL.
    Unavailable,
}

/// What authentication concluded about a request; set by the middleware.
#[derive(Debug, Clone)]
pub enum Authentication {
    Anonymous,
    Authenticated(Principal),
    Rejected(AuthRejection),
    /// A bearer token whose signature and claims are verified but whose
    /// revocation state is still to be read: the rate limiter reads it in the
    /// same Redis round trip as the limits and settles this into one of the
    /// above. Never seen by a handler; if it were, `Auth<R>` fails closed.
    PendingRevocationCheck(Box<AccessClaims>),
    /// A well-formed API key the cache does not know: the rate limiter
    /// first counts the attempt against the client's address, then has it
    /// looked up in PostgreSQL and settles this (see
    /// `auth::middleware::settle_api_key`). `Auth<R>` fails closed on it too.
    PendingApiKeyLookup(Box<PendingApiKey>),
}

/// An API key still to be looked up: its hash, and the cache's stamp.
#[derive(Debug, Clone)]
pub struct PendingApiKey {
    pub hash: Vec<u8>,
    pub stamp: Option<String>,
}

impl AuthRejection {
    pub fn into_api_error(self) -> ApiError {
        match self {
            AuthRejection::InvalidToken | AuthRejection::Revoked => ApiError::Unauthorized {
                code: "invalid_token",
                detail: "Could not validate credentials".into(),
                challenge: r#"Bearer error="invalid_token""#,
            },
            AuthRejection::InvalidApiKey => ApiError::Unauthorized {
                code: "invalid_api_key",
                detail: "Invalid API key".into(),
                challenge: "Bearer",
            },
            AuthRejection::UnsupportedScheme => ApiError::Unauthorized {
                code: "invalid_token",
                detail: "Use `Authorization: Bearer <token>` or `X-API-Key`".into(),
                challenge: r#"Bearer error="invalid_request""#,
            },
            AuthRejection::Unavailable => ApiError::ServiceUnavailable {
                code: "auth_unavailable",
                detail: "Credentials cannot be verified right now; retry shortly".into(),
                retry_after_secs: Some(1),
            },
        }
    }
}

/// The least role a route accepts.
pub trait MinimumRole {
    const ROLE: Role;
}

/// Any member of the tenant: reads.
pub struct Viewer;
/// Writes products, triggers syncs.
pub struct Member;
/// Manages users, API keys, marketplaces and webhooks.
pub struct Admin;
/// Manages the tenant itself.
pub struct Owner;

impl MinimumRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinimumRole for Member {
    const ROLE: Role = Role::Member;
}
impl MinimumRole for Admin {
    const ROLE: Role = Role::Admin;
}
impl MinimumRole for Owner {
    const ROLE: Role = Role::Owner;
}

/// An authenticated caller holding at least role `R`.
pub struct Auth<R: MinimumRole> {
    pub principal: Principal,
    _role: PhantomData<R>,
}

impl<R: MinimumRole> Auth<R> {
    pub fn tenant(&self) -> TenantCtx {
        self.principal.tenant
    }

    /// For routes about the signed-in user (`/users/me`, logout): API keys
    /// have no session. Returns the user, the token's `jti` and its session.
    pub fn user_session(&self) -> Result<(Uuid, Uuid, Uuid), ApiError> {
        match self.principal.kind {
            PrincipalKind::User {
                jti, session_id, ..
            } => Ok((self.principal.user_id, jti, session_id)),
            PrincipalKind::ApiKey { .. } => Err(ApiError::Forbidden {
                code: "user_session_required",
                detail: "This route needs a signed-in user, not an API key".into(),
            }),
        }
    }
}

impl<R: MinimumRole> Auth<R> {
    /// For routes that create or change credentials — API keys, users,
    /// roles, ownership: a signed-in user, never an API key, so no key can
    /// hand out access that would outlive it.
    pub fn managing_credentials(&self) -> Result<(), ApiError> {
        match self.principal.kind {
            PrincipalKind::User { .. } => Ok(()),
            PrincipalKind::ApiKey { .. } => Err(ApiError::Forbidden {
                code: "api_key_not_allowed",
                detail: "API keys cannot create or change credentials (API keys, users, roles, \
                         ownership); sign in as a user"
                    .into(),
            }),
        }
    }

    /// For admin-level credentials (an admin or owner user or API key, a
    /// promotion to admin or owner, an ownership transfer): a user whose
    /// session signed in with a password within `window_secs`.
    pub fn recently_signed_in(&self, window_secs: u64) -> Result<(), ApiError> {
        self.managing_credentials()?;
        let PrincipalKind::User {
            authenticated_at, ..
        } = self.principal.kind
        else {
            return Ok(());
        };
        if crate::auth::tokens::unix_now() - authenticated_at <= window_secs as i64 {
            return Ok(());
        }
        Err(ApiError::Forbidden {
            code: "reauthentication_required",
            detail: format!(
                "Sign in again with your password: admin-level credentials need a sign-in \
                 within the last {} minutes",
                window_secs.div_ceil(60)
            ),
        })
    }
}

pub fn not_authenticated() -> ApiError {
    ApiError::Unauthorized {
        code: "not_authenticated",
        detail: "Not authenticated".into(),
        challenge: "Bearer",
    }
}

impl<R: MinimumRole> FromRequest for Auth<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let outcome = match req.extensions().get::<Authentication>() {
            Some(Authentication::Authenticated(principal)) => {
                if principal.role >= R::ROLE {
                    Ok(Auth {
                        principal: principal.clone(),
                        _role: PhantomData,
                    })
                } else {
                    Err(ApiError::Forbidden {
                        code: "insufficient_role",
                        detail: format!("This action requires the {} role or higher", R::ROLE),
                    })
                }
            }
            Some(Authentication::Rejected(rejection)) => Err(rejection.into_api_error()),
            Some(Authentication::PendingRevocationCheck(_)) => {
                tracing::error!("a bearer token reached a handler without its revocation check");
                Err(AuthRejection::Unavailable.into_api_error())
            }
            Some(Authentication::PendingApiKeyLookup(_)) => {
                tracing::error!("an API key reached a handler without being looked up");
                Err(AuthRejection::Unavailable.into_api_error())
            }
            Some(Authentication::Anonymous) | None => Err(not_authenticated()),
        };
        ready(outcome)
    }
}
