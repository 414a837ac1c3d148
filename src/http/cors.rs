//! CORS from configuration. Browsers may read the product's own response
//! headers (request id, cache status, rate-limit state) only if they are
//! listed in `Access-Control-Expose-Headers`, so the list lives here.

use actix_cors::Cors;
use actix_web::http::Method;

use crate::config::CorsSettings;

/// Response headers a browser client is allowed to read.
pub const EXPOSED_HEADERS: &[&str] = &[
    "X-Request-ID",
    "X-Cache",
    "Idempotent-Replayed",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Tenant",
    "RateLimit",
    "RateLimit-Policy",
];

pub fn cors(settings: &CorsSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(
            settings
                .allowed_methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok()),
        )
        .allowed_headers(settings.allowed_headers.iter().map(String::as_str))
        .expose_headers(EXPOSED_HEADERS.iter().copied())
        .max_age(settings.max_age_secs);
    if settings.allowed_origins.iter().any(|o| o == "*") {
        // Validation guarantees credentials are off in this case.
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in &settings.allowed_origins {
            cors = cors.allowed_origin(origin);
        }
    }
    if settings.allow_credentials {
        cors = cors.supports_credentials();
    }
    cors
}
