//! `/api/v1/tenants/me` and the platform operators' `/api/v1/admin/tenants/{id}/tier`.

use actix_web::{get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::model::{SetTier, Tenant, TransferOwnership, UpdateTenant};
use super::service;
use crate::audit::Origin;
use crate::auth::AuthState;
use crate::auth::{Auth, Owner, Viewer};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::ValidatedJson;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_me)
        .service(update_me)
        .service(transfer_ownership)
        .service(set_tier);
}

/// The caller's tenant.
#[utoipa::path(
    tag = "tenants",
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant", body = Tenant))
)]
#[get("/tenants/me")]
async fn get_me(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
) -> Result<web::Json<Tenant>, ApiError> {
    Ok(web::Json(service::get(&state, &auth).await?))
}

/// Rename the tenant or change its settings (owner). The tier cannot be changed here.
#[utoipa::path(
    tag = "tenants",
    security(("bearer" = [])),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "Updated", body = Tenant),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input (unknown fields such as `tier` included)", body = ValidationErrorBody),
    )
)]
#[patch("/tenants/me")]
async fn update_me(
    state: web::Data<Infra>,
    auth: Auth<Owner>,
    body: ValidatedJson<UpdateTenant>,
) -> Result<web::Json<Tenant>, ApiError> {
    Ok(web::Json(service::update(&state, &auth, body.0).await?))
}

/// Make another user the owner; you become an admin.
#[utoipa::path(
    tag = "tenants",
    security(("bearer" = [])),
    request_body = TransferOwnership,
    responses(
        (status = 200, description = "Ownership transferred", body = Tenant),
        (status = 404, description = "No such active user in this tenant", body = ErrorBody),
        (status = 409, description = "The named user is the caller", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[post("/tenants/me/transfer-ownership")]
async fn transfer_ownership(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Owner>,
    origin: Origin,
    body: ValidatedJson<TransferOwnership>,
) -> Result<web::Json<Tenant>, ApiError> {
    Ok(web::Json(
        service::transfer_ownership(&state, &auth_state, &auth, &origin, body.0).await?,
    ))
}

/// Change a tenant's tier (platform administrators only).
#[utoipa::path(
    tag = "platform",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    request_body = SetTier,
    responses(
        (status = 200, description = "Tier changed", body = Tenant),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[patch("/admin/tenants/{id}/tier")]
async fn set_tier(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
    id: web::Path<Uuid>,
    body: ValidatedJson<SetTier>,
) -> Result<web::Json<Tenant>, ApiError> {
    Ok(web::Json(
        service::set_tier(&state, &auth, *id, body.0).await?,
    ))
}
