//! `GET /api/v1/health`, `/api/v1/health/live`, `/api/v1/health/ready`.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::service::{self, OverallStatus, Readiness};
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health).service(live).service(ready);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// Always `ok` when the service answers.
    #[schema(example = "ok")]
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
}

fn ok() -> HealthStatus {
    HealthStatus {
        status: "ok",
        service: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// Basic health: the service answers HTTP.
#[utoipa::path(operation_id = "health_check", tag = "health", responses((status = 200, description = "The service is up", body = HealthStatus)))]
#[get("/health")]
async fn health() -> web::Json<HealthStatus> {
    web::Json(ok())
}

/// Liveness: 200 while the process can serve. Checks no dependency, so a
/// database outage never makes an orchestrator restart healthy processes.
#[utoipa::path(operation_id = "health_live", tag = "health", responses((status = 200, description = "The process can serve", body = HealthStatus)))]
#[get("/health/live")]
async fn live() -> web::Json<HealthStatus> {
    web::Json(ok())
}

/// Readiness: whether this instance should receive traffic. 503 when
/// PostgreSQL is unreachable; 200 with `degraded` when only Redis is.
#[utoipa::path(
    operation_id = "health_ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready (status `ok` or `degraded`)", body = Readiness),
        (status = 503, description = "Not ready: a required dependency is down", body = Readiness),
    )
)]
#[get("/health/ready")]
async fn ready(state: web::Data<Infra>) -> HttpResponse {
    let readiness = service::readiness(&state).await;
    let mut response = match readiness.status {
        OverallStatus::Unavailable => HttpResponse::ServiceUnavailable(),
        OverallStatus::Ok | OverallStatus::Degraded => HttpResponse::Ok(),
    };
    // Probes and load balancers must always see the current state.
    response
        .insert_header(("Cache-Control", "no-store"))
        .json(readiness)
}
