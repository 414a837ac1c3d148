//! `GET /metrics` (Prometheus text) and `GET /metrics/catalog` (JSON list of
//! every metric definition).

use actix_web::{HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::infra::Infra;
use crate::rate_limit::RateLimiter;
use crate::telemetry::metrics::{CATALOG, MetricDef};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(metrics).service(catalog);
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    tag = "observability",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4", body = String))
)]
#[get("/metrics")]
async fn metrics(state: web::Data<Infra>, limiter: web::Data<RateLimiter>) -> HttpResponse {
    // One PFCOUNT; when Redis is out of reach the last estimate stays.
    if let Ok(active) = limiter.active_tenants().await {
        state.metrics.active_tenants.set(active as i64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.scrape(state.db.pool()))
}

/// Every metric the service exports, with its type, help text and labels.
#[utoipa::path(
    tag = "observability",
    responses((status = 200, description = "The metric catalogue", body = Vec<MetricDef>))
)]
#[get("/metrics/catalog")]
async fn catalog() -> web::Json<&'static [MetricDef]> {
    web::Json(CATALOG)
}
