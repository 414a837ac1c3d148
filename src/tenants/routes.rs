//! `/api/v1/tenants/me` and the platform operators' `/api/v1/admin/tenants/{id}/tier`.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::deletion::{self, RestoreRequest, ScheduledDeletion};
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
        .service(delete_me)
        .service(restore)
        .service(set_tier);
}

/// The caller's tenant.
#[utoipa::path(
    operation_id = "tenants_get_me",
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
    operation_id = "tenants_update_me",
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
    operation_id = "tenants_transfer_ownership",
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
    operation_id = "platform_tenants_set_tier",
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

/// Delete the tenant (owner, signed in with a password within
/// `auth.reauthentication_secs`): disabled at once — every session ends, API
/// keys stop working, nobody signs in — and purged with all its data after
/// `retention.tenant_deletion_grace_days` (30); restorable until then.
#[utoipa::path(
    operation_id = "tenants_delete_me",
    tag = "tenants",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Disabled; purged after the grace period", body = ScheduledDeletion),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not an owner, an API key, or no recent password sign-in (`reauthentication_required`)", body = ErrorBody),
    )
)]
#[delete("/tenants/me")]
async fn delete_me(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Owner>,
    origin: Origin,
) -> Result<HttpResponse, ApiError> {
    let scheduled = deletion::delete(&state, &auth_state, &auth, &origin).await?;
    Ok(HttpResponse::Accepted().json(scheduled))
}

/// Restore a deleted tenant before its purge, with an owner's email and
/// password (its sessions ended with the deletion). Sign in afterwards.
#[utoipa::path(
    operation_id = "tenants_restore",
    tag = "tenants",
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restored", body = Tenant),
        (status = 401, description = "Incorrect email or password", body = ErrorBody),
        (status = 403, description = "Not an owner (`owner_required`)", body = ErrorBody),
        (status = 409, description = "The tenant is not deleted (`tenant_not_deleted`)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[post("/tenants/me/restore")]
async fn restore(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    origin: Origin,
    body: ValidatedJson<RestoreRequest>,
) -> Result<web::Json<Tenant>, ApiError> {
    Ok(web::Json(
        deletion::restore(&state, &auth_state, &origin, body.0).await?,
    ))
}
