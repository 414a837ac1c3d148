//! The rate-limiting middleware: inside authentication (it keys on the
//! tenant, user and tier), outside the handlers. It answers a refused request
//! itself, as an `Ok` 429 response, so the outer layers (metrics, CORS,
//! request id) still see and decorate it.
//!
//! It also settles a bearer token's revocation state, which the script reads
//! in the same round trip as the limits.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};
use uuid::Uuid;

use super::RateLimiter;
use super::limiter::{Caller, Decision, Mode, Revocation};
use crate::auth::AuthState;
use crate::auth::extractor::{AuthRejection, Authentication};
use crate::auth::middleware::{settle_api_key, settle_bearer, settle_bearer_alone};
use crate::auth::revocation::RevocationError;
use crate::http::error::ApiError;
use crate::infra::Infra;

/// The route that reports limits without consuming them.
pub const STATUS_ROUTE: &str = "/api/v1/rate-limits/me";

/// CORS preflights (answered by the CORS layer anyway) and the exempt routes.
fn is_exempt(method: &Method, route: Option<&str>) -> bool {
    method == Method::OPTIONS || route.is_some_and(crate::http::is_operational_route)
}

/// The decision of a request, for the `/rate-limits/me` handler.
#[derive(Debug, Clone)]
pub struct RateLimitStatus {
    pub decision: Decision,
    pub tier: Option<crate::auth::roles::Tier>,
    pub client_ip: Option<std::net::IpAddr>,
}

pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let (Some(limiter), Some(auth)) = (
        req.app_data::<web::Data<RateLimiter>>().cloned(),
        req.app_data::<web::Data<AuthState>>().cloned(),
    ) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let mut authentication = req.extensions().get::<Authentication>().cloned();
    let route = req.match_pattern();
    if is_exempt(req.method(), route.as_deref()) {
        if let Some(Authentication::PendingRevocationCheck(claims)) = &authentication {
            let settled = settle_bearer_alone(&auth, claims).await;
            req.extensions_mut().insert(settled);
        }
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }

    let client_ip = limiter.client_ip(req.peer_addr().map(|a| a.ip()), req.headers());
    // An API key the cache did not know: the attempt counts against the
    // client's address first (`rate_limit.api_key_lookups`), and only if
    // that admits it is PostgreSQL asked; the request then counts as the
    // key's, like any other.
    if let Some(Authentication::PendingApiKeyLookup(pending)) = &authentication {
        let mut checks = Vec::with_capacity(1);
        limiter.plan_api_key_lookup(&mut checks, client_ip);
        let lookup = limiter
            .decide(&Caller::Anonymous, &checks, Mode::Record, &auth.revocations)
            .await;
        if !lookup.admitted {
            limiter.count(&lookup, None);
            return Ok(refuse(req, &lookup, None).map_into_right_body());
        }
        let settled = match req.app_data::<web::Data<Infra>>().cloned() {
            Some(infra) => settle_api_key(&infra, &auth, pending).await,
            None => Authentication::Rejected(AuthRejection::Unavailable),
        };
        req.extensions_mut().insert(settled.clone());
        authentication = Some(settled);
    }
    let caller = match &authentication {
        Some(Authentication::PendingRevocationCheck(claims)) => Caller::Bearer(claims),
        Some(Authentication::Authenticated(principal)) => Caller::ApiKey(principal),
        _ => Caller::Anonymous,
    };
    let mode = if route.as_deref() == Some(STATUS_ROUTE) {
        Mode::Peek
    } else {
        Mode::Record
    };
    let checks = limiter.plan(&caller, client_ip, req.method(), route.as_deref(), mode);
    let decision = limiter
        .decide(&caller, &checks, mode, &auth.revocations)
        .await;

    // The caller as the limits saw it: a revoked token is an anonymous call.
    let (tier, tenant) = match (&caller, decision.revocation) {
        (Caller::Bearer(_), Revocation::Revoked) | (Caller::Anonymous, _) => (None, None),
        (Caller::Bearer(claims), _) => (Some(claims.tier), Some(claims.tid)),
        (Caller::ApiKey(principal), _) => (Some(principal.tier), Some(principal.tenant.id())),
    };
    if let Caller::Bearer(claims) = &caller {
        let revocation = match decision.revocation {
            Revocation::Valid | Revocation::NoToken => Ok(()),
            Revocation::Revoked => Err(RevocationError::Revoked),
            Revocation::Unavailable => Err(RevocationError::Unavailable),
        };
        let settled = settle_bearer(&auth.events, claims, revocation);
        req.extensions_mut().insert(settled);
    }
    limiter.count(&decision, tier);

    if !decision.admitted && mode == Mode::Record {
        return Ok(refuse(req, &decision, tenant).map_into_right_body());
    }
    let mut headers = HeaderMap::new();
    write_headers(&mut headers, &decision, tenant, false);
    req.extensions_mut().insert(RateLimitStatus {
        decision,
        tier,
        client_ip,
    });
    let mut response = next.call(req).await?;
    let response_headers = response.headers_mut();
    for (name, value) in headers {
        response_headers.insert(name, value);
    }
    Ok(response.map_into_left_body())
}

/// The 429 answer, with the decision's headers.
fn refuse(req: ServiceRequest, decision: &Decision, tenant: Option<Uuid>) -> ServiceResponse {
    let mut headers = HeaderMap::new();
    write_headers(&mut headers, decision, tenant, true);
    let mut response = req.into_response(too_many_requests(decision).error_response());
    let response_headers = response.headers_mut();
    for (name, value) in headers {
        response_headers.insert(name, value);
    }
    response
}

fn too_many_requests(decision: &Decision) -> ApiError {
    let retry_after_secs = decision.retry_after_secs();
    let detail = match decision.headline() {
        Some(policy) => format!(
            "Rate limit exceeded: policy `{}` allows {} requests per {} s; retry in {} s",
            policy.policy, policy.limit, policy.window_secs, retry_after_secs
        ),
        None => format!("Rate limit exceeded; retry in {retry_after_secs} s"),
    };
    ApiError::TooManyRequests {
        detail,
        retry_after_secs,
    }
}

const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const X_RATELIMIT_TENANT: HeaderName = HeaderName::from_static("x-ratelimit-tenant");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The `X-RateLimit-*` headers (seed 000) and the IETF pair
/// (draft-ietf-httpapi-ratelimit-headers-10): `RateLimit-Policy` lists every
/// policy the request was counted against, `RateLimit` names the headline one.
fn write_headers(
    headers: &mut HeaderMap,
    decision: &Decision,
    tenant: Option<Uuid>,
    refused: bool,
) {
    let Some(headline) = decision.headline() else {
        return;
    };
    let reset_secs = headline.reset_ms.div_ceil(1000);
    let reset_at = (decision.now_ms as u64 + headline.reset_ms).div_ceil(1000);
    let mut set = |name: HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(X_RATELIMIT_LIMIT, headline.limit.to_string());
    set(X_RATELIMIT_REMAINING, headline.remaining.to_string());
    set(X_RATELIMIT_RESET, reset_at.to_string());
    if let Some(tenant) = tenant {
        set(X_RATELIMIT_TENANT, tenant.to_string());
    }
    let policies: Vec<String> = decision
        .visible()
        .map(|p| format!("\"{}\";q={};w={}", p.policy, p.limit, p.window_secs))
        .collect();
    set(RATELIMIT_POLICY, policies.join(", "));
    set(
        RATELIMIT,
        format!(
            "\"{}\";r={};t={}",
            headline.policy, headline.remaining, reset_secs
        ),
    );
    if refused {
        set(RETRY_AFTER, decision.retry_after_secs().to_string());
    }
}
