//! HTTP plumbing shared by every domain: the error type and its FastAPI-
//! compatible bodies, the request context (id, span, access log), the panic
//! guard, the load-shedding layer, the 404/405 fallback, CORS, and the extractors that turn bad input
//! into the product's 4xx shapes. The order these layers run in is fixed
//! once, where the application is built.

pub mod cors;
pub mod error;
pub mod extractors;
pub mod fallback;
pub mod load_shedding;
pub mod pagination;
pub mod panic_guard;
pub mod pydantic;
pub mod request_context;
pub mod strict_json;
pub mod validation;

/// Operational routes — probes, metrics and docs — which neither the rate
/// limiter nor the load shedder ever refuses: they must answer whatever the
/// traffic (a limited readiness probe would take replicas out of service
/// exactly when they are busiest). `route` is the route pattern.
pub fn is_operational_route(route: &str) -> bool {
    route.starts_with("/api/v1/health")
        || route == "/metrics"
        || route.starts_with("/metrics/")
        || route == "/openapi.json"
        || route.starts_with("/docs")
}
