//! `/api/v1/users`: the signed-in user, and user management (admin).

use actix_web::{HttpResponse, delete, get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::model::{CreateUser, UpdateMe, UpdateUser, User};
use super::service;
use crate::audit::Origin;
use crate::auth::AuthState;
use crate::auth::{Admin, Auth, Viewer};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, ValidatedQuery};
use crate::http::pagination::{Page, PageQuery};
use crate::idempotency::IdempotencyKey;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(me)
        .service(update_me)
        .service(list)
        .service(create)
        .service(get_user)
        .service(update_user)
        .service(deactivate)
        .service(delete_me)
        .service(delete_user);
}

/// The signed-in user.
#[utoipa::path(
    operation_id = "users_get_me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = User),
        (status = 403, description = "Called with an API key", body = ErrorBody),
    )
)]
#[get("/users/me")]
async fn me(state: web::Data<Infra>, auth: Auth<Viewer>) -> Result<web::Json<User>, ApiError> {
    Ok(web::Json(service::me(&state, &auth).await?))
}

/// Change your name, or your password (with the current one). A password
/// change ends every session, this one included: sign in again.
#[utoipa::path(
    operation_id = "users_update_me",
    tag = "users",
    security(("bearer" = [])),
    request_body = UpdateMe,
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 403, description = "Wrong current password, or called with an API key", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input, or a password policy failure (`type` names the rule)", body = ValidationErrorBody),
    )
)]
#[patch("/users/me")]
async fn update_me(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Viewer>,
    origin: Origin,
    body: ValidatedJson<UpdateMe>,
) -> Result<web::Json<User>, ApiError> {
    Ok(web::Json(
        service::update_me(&state, &auth_state, &auth, &origin, body.0).await?,
    ))
}

/// The tenant's users, oldest first.
#[utoipa::path(
    operation_id = "users_list",
    tag = "users",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of users", body = Page<User>),
        (status = 422, description = "Invalid limit or cursor", body = ValidationErrorBody),
    )
)]
#[get("/users")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<User>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(service::list(&state, &auth, page).await?))
}

/// Create a user in the tenant. Only an owner can create an owner.
#[utoipa::path(
    operation_id = "users_create",
    tag = "users",
    security(("bearer" = [])),
    request_body = CreateUser,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 409, description = "The email is already registered", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input or password policy failure", body = ValidationErrorBody),
    )
)]
#[post("/users")]
async fn create(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Admin>,
    origin: Origin,
    body: ValidatedJson<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let user = service::create(&state, &auth_state, &auth, &origin, body.0).await?;
    Ok(HttpResponse::Created().json(user))
}

/// One user of the tenant.
#[utoipa::path(
    operation_id = "users_get",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "No such user in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[get("/users/{id}")]
async fn get_user(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
) -> Result<web::Json<User>, ApiError> {
    Ok(web::Json(service::get(&state, &auth, *id).await?))
}

/// Change a user's role or name. Only an owner can promote to owner or
/// change an owner; the last owner cannot be demoted.
#[utoipa::path(
    operation_id = "users_update",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 404, description = "No such user in this tenant", body = ErrorBody),
        (status = 409, description = "Would leave the tenant without an owner", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[patch("/users/{id}")]
async fn update_user(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Admin>,
    origin: Origin,
    id: web::Path<Uuid>,
    body: ValidatedJson<UpdateUser>,
) -> Result<web::Json<User>, ApiError> {
    Ok(web::Json(
        service::update(&state, &auth_state, &auth, &origin, *id, body.0).await?,
    ))
}

/// Deactivate a user: their tokens, sessions and API keys stop working at once.
#[utoipa::path(
    operation_id = "users_deactivate",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Deactivated", body = User),
        (status = 404, description = "No such user in this tenant", body = ErrorBody),
        (status = 409, description = "The tenant's last owner", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[post("/users/{id}/deactivate")]
async fn deactivate(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Admin>,
    origin: Origin,
    id: web::Path<Uuid>,
) -> Result<web::Json<User>, ApiError> {
    Ok(web::Json(
        service::deactivate(&state, &auth_state, &auth, &origin, *id).await?,
    ))
}

/// Delete your own account (after a password sign-in within
/// `auth.reauthentication_secs`). The last active owner transfers ownership
/// first. Every session and API key of yours ends.
#[utoipa::path(
    operation_id = "users_delete_me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Called with an API key, or no recent password sign-in (`reauthentication_required`)", body = ErrorBody),
        (status = 409, description = "The last active owner (`last_owner`): transfer ownership first", body = ErrorBody),
    )
)]
#[delete("/users/me")]
async fn delete_me(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Viewer>,
    origin: Origin,
) -> Result<HttpResponse, ApiError> {
    service::delete_me(&state, &auth_state, &auth, &origin).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete a user of the tenant (admin; an owner only by an owner). Their
/// sessions and API keys end at once.
#[utoipa::path(
    operation_id = "users_delete",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not an admin, an API key, or an owner deleted by a non-owner (`owner_required`)", body = ErrorBody),
        (status = 404, description = "No such user in this tenant", body = ErrorBody),
        (status = 409, description = "The last active owner (`last_owner`)", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[delete("/users/{id}")]
async fn delete_user(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Admin>,
    origin: Origin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &auth_state, &auth, &origin, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
