//! `GET /api/v1/rate-limits/me`: the caller's tier, every policy that applies
//! to its requests and what remains in each. The middleware answers it in
//! look-only mode, so asking does not use up what it reports.

use actix_web::{HttpMessage, HttpRequest, get, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::limiter::Backend;
use super::middleware::RateLimitStatus;
use crate::auth::roles::Tier;
use crate::http::error::ApiError;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(me);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimits {
    /// The tenant's tier; null for a call without (valid) credentials, which
    /// is limited per client IP.
    pub tier: Option<Tier>,
    /// The address per-IP limits count this caller as.
    #[schema(example = "203.0.113.7")]
    pub client_ip: Option<String>,
    /// `redis` normally; `fallback` while Redis is unavailable and each
    /// process counts on its own.
    #[schema(example = "redis")]
    pub backend: String,
    pub policies: Vec<PolicyStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyStatus {
    /// As in the `RateLimit-Policy` header, e.g. `tenant-minute`, `login`.
    #[schema(example = "tenant-minute")]
    pub name: String,
    /// What it counts by: `tenant`, `user`, `ip` or `endpoint`.
    #[schema(example = "tenant")]
    pub scope: String,
    /// Requests allowed per window.
    pub limit: u64,
    pub window_secs: u64,
    /// Requests left right now.
    pub remaining: u64,
    /// Seconds until everything counted has left the window.
    pub reset_secs: u64,
}

/// Your rate limits and what remains of them. Works with or without
/// credentials; does not count against any limit.
#[utoipa::path(
    operation_id = "rate_limits_me",
    tag = "rate-limits",
    responses(
        (status = 200, description = "The caller's policies", body = RateLimits),
    )
)]
#[get("/rate-limits/me")]
async fn me(req: HttpRequest) -> Result<web::Json<RateLimits>, ApiError> {
    let status = req
        .extensions()
        .get::<RateLimitStatus>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the rate limiter did not run")))?;
    let decision = status.decision;
    let policies = decision
        .visible()
        .map(|policy| PolicyStatus {
            name: policy.policy.to_string(),
            scope: policy.scope.as_str().to_owned(),
            limit: policy.limit,
            window_secs: policy.window_secs,
            remaining: policy.remaining,
            reset_secs: policy.reset_ms.div_ceil(1000),
        })
        .collect();
    Ok(web::Json(RateLimits {
        tier: status.tier,
        client_ip: status.client_ip.map(|ip| ip.to_string()),
        backend: match decision.backend {
            Backend::Redis => "redis",
            Backend::Fallback => "fallback",
        }
        .to_owned(),
        policies,
    }))
}
