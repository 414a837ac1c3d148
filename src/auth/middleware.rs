//! Authentication middleware: turns the request's credentials into an
//! [`Authentication`] once, before rate limiting (which keys on the tenant)
//! and the handlers (which require a role through `Auth<R>`).
//!
//! Cost: a bearer token is verified in memory here; its revocation state is
//! read by the rate limiter, in the same Redis round trip as the limits
//! ([`settle_bearer`]; PostgreSQL only when Redis cannot answer). An API key
//! is one Redis read, which also remembers keys PostgreSQL did not know; a
//! key of the wrong shape costs nothing. A well-formed key the cache does
//! not know is looked up only after the rate limiter has counted the
//! attempt against the client's address ([`settle_api_key`]), so PostgreSQL
//! is asked at most once per key per `auth.api_key_cache_ttl_secs` and at
//! most `rate_limit.api_key_lookups` times per address.
//!
//! Bad credentials do not fail the request here: a public route still
//! answers; a protected one answers 401 through `Auth<R>`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};

use std::sync::Arc;

use super::extractor::{
    AuthRejection, Authentication, PendingApiKey, Principal, PrincipalKind, TenantCtx,
};
use super::repository;
use super::revocation::{ApiKeyGrant, RevocationError, RevocationStore};
use super::tokens::{API_KEY_PREFIX, AccessClaims, hash_secret, unix_now};
use super::{AuthEvents, AuthState};
#[cfg(feature = "bench-layers")]
use crate::config::Layer;
use crate::infra::Infra;

pub const API_KEY_HEADER: &str = "x-api-key";

/// Longest credential considered; anything longer is refused unparsed.
const MAX_CREDENTIAL_LEN: usize = 4096;

enum Credentials {
    Bearer(String),
    ApiKey(String),
    Unsupported,
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default().trim();
        return Some(match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer")
                    && !token.trim().is_empty()
                    && token.len() <= MAX_CREDENTIAL_LEN =>
            {
                Credentials::Bearer(token.trim().to_owned())
            }
            _ => Credentials::Unsupported,
        });
    }
    headers.get(API_KEY_HEADER).map(|value| {
        let key = value.to_str().unwrap_or_default().trim();
        if key.starts_with(API_KEY_PREFIX) && key.len() <= MAX_CREDENTIAL_LEN {
            Credentials::ApiKey(key.to_owned())
        } else {
            Credentials::Unsupported
        }
    })
}

pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let outcome = match credentials(req.headers()) {
        None => Authentication::Anonymous,
        Some(credentials) => match (
            req.app_data::<web::Data<Infra>>().cloned(),
            req.app_data::<web::Data<AuthState>>().cloned(),
        ) {
            (Some(infra), Some(auth)) => resolve(&infra, &auth, credentials).await,
            _ => Authentication::Rejected(AuthRejection::Unavailable),
        },
    };
    req.extensions_mut().insert(outcome);
    next.call(req).await
}

/// Counts a credential check (see the `auth_events_total` metric).
fn count(events: &AuthEvents, kind: &str, outcome: &Authentication) {
    let label = match outcome {
        Authentication::Authenticated(_) => "success",
        Authentication::Rejected(AuthRejection::Unavailable) => "unavailable",
        Authentication::Rejected(AuthRejection::Revoked) => "revoked",
        _ => "invalid",
    };
    events.count(kind, label);
}

/// Turns a pending bearer token into its final [`Authentication`], given its
/// revocation state as the rate limiter read it.
pub fn settle_bearer(
    events: &AuthEvents,
    claims: &AccessClaims,
    revocation: Result<(), RevocationError>,
) -> Authentication {
    let outcome = match revocation {
        Ok(()) => Authentication::Authenticated(principal_for_token(claims)),
        Err(RevocationError::Revoked) => {
            tracing::info!(reason = "revoked", "bearer token refused");
            Authentication::Rejected(AuthRejection::Revoked)
        }
        Err(RevocationError::Unavailable) => Authentication::Rejected(AuthRejection::Unavailable),
    };
    count(events, "bearer", &outcome);
    outcome
}

/// Settles a pending bearer token on its own, for routes the rate limiter
/// does not count (health, metrics, docs).
pub async fn settle_bearer_alone(auth: &AuthState, claims: &AccessClaims) -> Authentication {
    let revocation = auth.revocations.check_access_token(claims).await;
    settle_bearer(&auth.events, claims, revocation)
}

async fn resolve(
    // Read only when a benchmark switches the rate limiter off.
    #[cfg_attr(not(feature = "bench-layers"), allow(unused_variables))] infra: &Infra,
    auth: &AuthState,
    credentials: Credentials,
) -> Authentication {
    let events = &auth.events;
    match credentials {
        Credentials::Unsupported => {
            let outcome = Authentication::Rejected(AuthRejection::UnsupportedScheme);
            count(events, "bearer", &outcome);
            outcome
        }
        Credentials::Bearer(token) => match auth.tokens.verify(&token) {
            // Without the rate limiter (switched off for a benchmark) nothing
            // else would read the revocation state: read it here.
            #[cfg(feature = "bench-layers")]
            Ok(claims) if !infra.settings.server.layer_enabled(Layer::RateLimit) => {
                settle_bearer_alone(auth, &claims).await
            }
            Ok(claims) => Authentication::PendingRevocationCheck(Box::new(claims)),
            Err(reason) => {
                tracing::info!(%reason, "bearer token refused");
                let outcome = Authentication::Rejected(AuthRejection::InvalidToken);
                count(events, "bearer", &outcome);
                outcome
            }
        },
        Credentials::ApiKey(key) => {
            let outcome = resolve_api_key(&auth.revocations, &key).await;
            match outcome {
                // Without the rate limiter (switched off for a benchmark)
                // nothing else would look the key up: do it here.
                #[cfg(feature = "bench-layers")]
                Authentication::PendingApiKeyLookup(pending)
                    if !infra.settings.server.layer_enabled(Layer::RateLimit) =>
                {
                    settle_api_key(infra, auth, &pending).await
                }
                Authentication::PendingApiKeyLookup(_) => outcome,
                outcome => {
                    count(events, "api_key", &outcome);
                    outcome
                }
            }
        }
    }
}

/// `stk_`, 8 lowercase letters or digits, `_`, then 32 random bytes in
/// unpadded base64url: what `tokens::new_api_key` makes.
fn is_well_formed_api_key(key: &str) -> bool {
    let Some((id, secret)) = key
        .strip_prefix(API_KEY_PREFIX)
        .and_then(|rest| rest.split_once('_'))
    else {
        return false;
    };
    id.len() == 8
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the cache says of an API key: its grant, a refusal (the key is
/// malformed, or PostgreSQL recently did not know it), or a lookup to make.
async fn resolve_api_key(revocations: &Arc<RevocationStore>, key: &str) -> Authentication {
    if !is_well_formed_api_key(key) {
        return Authentication::Rejected(AuthRejection::InvalidApiKey);
    }
    let hash = hash_secret(key);
    let lookup = revocations.cached_api_key(&hash).await;
    match lookup.grant {
        // A cached grant ends with its key (PostgreSQL refuses it from then on).
        Some(grant) if grant.expires_at.is_some_and(|at| at <= unix_now()) => {
            Authentication::Rejected(AuthRejection::InvalidApiKey)
        }
        Some(grant) => Authentication::Authenticated(principal_for_key(grant)),
        None if lookup.unknown => Authentication::Rejected(AuthRejection::InvalidApiKey),
        None => Authentication::PendingApiKeyLookup(Box::new(PendingApiKey {
            hash,
            stamp: lookup.stamp,
        })),
    }
}

/// Looks up an API key the cache did not know, in PostgreSQL, once the rate
/// limiter has admitted the attempt; remembers the answer either way.
pub async fn settle_api_key(
    infra: &Infra,
    auth: &AuthState,
    pending: &PendingApiKey,
) -> Authentication {
    let revocations = &auth.revocations;
    let hash = &pending.hash;
    // Boxed: the statement's large future would otherwise be copied with
    // this layer's on every request (see `products::service::cached`).
    let outcome = match Box::pin(repository::use_api_key(&infra.db, hash)).await {
        Ok(Some(grant)) => {
            revocations
                .cache_api_key(hash, &grant, pending.stamp.clone())
                .await;
            Authentication::Authenticated(principal_for_key(grant))
        }
        Ok(None) => {
            revocations
                .cache_unknown_api_key(hash, pending.stamp.clone())
                .await;
            Authentication::Rejected(AuthRejection::InvalidApiKey)
        }
        Err(err) => {
            tracing::error!(error = %err, "API key lookup failed");
            Authentication::Rejected(AuthRejection::Unavailable)
        }
    };
    count(&auth.events, "api_key", &outcome);
    outcome
}

fn principal_for_token(claims: &AccessClaims) -> Principal {
    Principal {
        tenant: TenantCtx::new(claims.tid),
        user_id: claims.sub,
        role: claims.role,
        tier: claims.tier,
        kind: PrincipalKind::User {
            jti: claims.jti,
            session_id: claims.sid,
            expires_at: claims.exp,
            authenticated_at: claims.auth_time,
        },
    }
}

fn principal_for_key(grant: ApiKeyGrant) -> Principal {
    Principal {
        tenant: TenantCtx::new(grant.tenant_id),
        user_id: grant.user_id,
        role: grant.role,
        tier: grant.tier,
        kind: PrincipalKind::ApiKey {
            key_id: grant.key_id,
        },
    }
}
