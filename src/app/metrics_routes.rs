//! `GET /metrics` (Prometheus text) and `GET /metrics/catalog` (JSON list of
//! every metric definition), and the API's catalogue, assembled from the
//! lists of the modules that record each family.

use actix_web::{HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::infra::Infra;
use crate::rate_limit::{self, RateLimiter};
use crate::telemetry::metrics::{self as process, MetricDef};
use crate::telemetry::{logging, memory};
use crate::{auth, broker, cache, db, email, health, resilience};

/// Requests by route pattern, method and status (recorded by actix-web-prom).
pub const HTTP_REQUESTS_TOTAL: MetricDef = MetricDef::counter(
    "stock_tracker_http_requests_total",
    "Total number of HTTP requests",
    &["endpoint", "method", "status"],
);

/// Request latency by route pattern, method and status (recorded by actix-web-prom).
pub const HTTP_REQUEST_DURATION: MetricDef = MetricDef::histogram(
    "stock_tracker_http_requests_duration_seconds",
    "HTTP request duration in seconds for all requests",
    &["endpoint", "method", "status"],
    HTTP_LATENCY_BUCKETS,
);

/// Buckets for HTTP latency, in seconds. Dense around the alert thresholds
/// (p50 100 ms, p95 300 ms, p95 1 s) so quantile estimates there are accurate.
pub const HTTP_LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric the API exports.
pub fn metrics_catalog() -> Vec<MetricDef> {
    [
        &[HTTP_REQUESTS_TOTAL, HTTP_REQUEST_DURATION][..],
        process::METRICS,
        health::service::METRICS,
        auth::METRICS,
        cache::METRICS,
        rate_limit::metrics::METRICS,
        resilience::breaker::METRICS,
        resilience::load::METRICS,
        broker::METRICS,
        db::METRICS,
        memory::METRICS,
        logging::METRICS,
        rate_limit::metrics::ACTIVITY_METRICS,
        email::delivery::METRICS,
        crate::idempotency::METRICS,
    ]
    .concat()
}

static CATALOG: std::sync::LazyLock<Vec<MetricDef>> = std::sync::LazyLock::new(metrics_catalog);

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(metrics).service(catalog);
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    operation_id = "observability_metrics",
    tag = "observability",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4", body = String))
)]
#[get("/metrics")]
async fn metrics(state: web::Data<Infra>, limiter: web::Data<RateLimiter>) -> HttpResponse {
    limiter.observe_active_tenants().await;
    state.db.observe_pool();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.scrape())
}

/// Every metric the service exports, with its type, help text and labels.
#[utoipa::path(
    operation_id = "observability_metrics_catalog",
    tag = "observability",
    responses((status = 200, description = "The metric catalogue", body = Vec<MetricDef>))
)]
#[get("/metrics/catalog")]
async fn catalog() -> web::Json<&'static [MetricDef]> {
    web::Json(CATALOG.as_slice())
}

#[cfg(test)]
mod tests {
    #[test]
    fn catalog_names_are_unique_prefixed_and_unit_suffixed() {
        crate::telemetry::metrics::check_catalog(&super::metrics_catalog());
    }
}
