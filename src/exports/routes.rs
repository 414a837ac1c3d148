//! `POST /api/v1/tenants/me/export` and `GET /api/v1/tenants/me/exports/{id}`.

use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use garde::Validate;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::service::{self, Export};
use crate::audit::Origin;
use crate::auth::{Admin, Auth};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::ValidatedQuery;
use crate::idempotency::IdempotencyKey;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(start).service(get_export);
}

/// Export the tenant's data (admins, signed in as a person): a worker builds
/// one archive — a `.tar.gz` of JSON-lines files, one per table, without
/// secrets. Answers the export under way if there is one.
#[utoipa::path(
    operation_id = "tenants_export_start",
    tag = "tenants",
    security(("bearer" = [])),
    params(IdempotencyKey),
    responses(
        (status = 202, description = "Queued (or the one under way)", body = Export),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not an admin, or an API key", body = ErrorBody),
    )
)]
#[post("/tenants/me/export")]
async fn start(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    origin: Origin,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(service::start(&state, &auth, &origin).await?))
}

#[derive(Debug, Deserialize, IntoParams, Validate)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `true`: the archive itself (`application/gzip`) instead of the status.
    #[garde(skip)]
    pub download: Option<bool>,
}

/// An export's status, or with `download=true` its archive (while
/// `expires_at` has not passed).
#[utoipa::path(
    operation_id = "tenants_export_get",
    tag = "tenants",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Export id"), ExportQuery),
    responses(
        (status = 200, description = "The status (JSON), or the archive with `download=true`", body = Export,
         content(
             (Export = "application/json"),
             (Vec<u8> = "application/gzip"),
         )),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such export in this tenant", body = ErrorBody),
        (status = 409, description = "Not built (`export_not_ready`) or no longer kept (`export_expired`)", body = ErrorBody),
        (status = 422, description = "Invalid id or query", body = ValidationErrorBody),
    )
)]
#[get("/tenants/me/exports/{id}")]
async fn get_export(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
    query: ValidatedQuery<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if query.0.download != Some(true) {
        return Ok(HttpResponse::Ok().json(service::get(&state, &auth, id).await?));
    }
    let archive = service::archive(&state, &auth, id).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/gzip")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"stock-tracker-export-{id}.tar.gz\""),
        ))
        .body(archive))
}
