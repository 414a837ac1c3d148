//! `/api/v1/invitations`: invite (admin), list, revoke, and accept (the
//! invitee, with the emailed token).

use actix_web::guard::GuardContext;
use actix_web::{HttpResponse, delete, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::model::{AcceptInvitation, Accepted, CreateInvitation, Invitation};
use super::service;
use crate::audit::Origin;
use crate::auth::{Admin, Auth, AuthState};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, ValidatedQuery};
use crate::http::pagination::{Page, PageQuery};
use crate::idempotency::IdempotencyKey;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(revoke)
        .service(accept);
}

/// Invite an address with a role (at most your own) and email the link.
/// Inviting an address again replaces its pending invitation.
#[utoipa::path(
    operation_id = "invitations_create",
    tag = "invitations",
    request_body = CreateInvitation,
    security(("bearer" = [])),
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Invited; the link is on its way", body = Invitation),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not an admin; an API key (`api_key_not_allowed`); a role above your own (`role_above_own`); admin-level roles need a recent sign-in (`reauthentication_required`)", body = ErrorBody),
        (status = 409, description = "The address already has an account (`email_taken`)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[post("/invitations")]
async fn create(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    origin: Origin,
    body: ValidatedJson<CreateInvitation>,
) -> Result<HttpResponse, ApiError> {
    let invitation = service::create(&state, &auth, &origin, body.0).await?;
    Ok(HttpResponse::Created().json(invitation))
}

/// The tenant's invitations, oldest first, with their status.
#[utoipa::path(
    operation_id = "invitations_list",
    tag = "invitations",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of invitations", body = Page<Invitation>),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 422, description = "Invalid cursor or limit", body = ValidationErrorBody),
    )
)]
#[get("/invitations")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<Invitation>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(service::list(&state, &auth, page).await?))
}

/// Revoke an invitation: its link stops working.
#[utoipa::path(
    operation_id = "invitations_revoke",
    tag = "invitations",
    params(("id" = Uuid, Path, description = "Invitation id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked (or already revoked or expired)"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not an admin, or an API key", body = ErrorBody),
        (status = 404, description = "No such invitation in this tenant", body = ErrorBody),
        (status = 409, description = "Already accepted (`invitation_accepted`)", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[delete("/invitations/{id}", guard = "not_the_accept_route")]
async fn revoke(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    origin: Origin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::revoke(&state, &auth, &origin, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `/invitations/accept` also fits `/invitations/{id}`: other methods there
/// get the fallback's 405 (`Allow: POST`), not this route's 401 or 422.
fn not_the_accept_route(ctx: &GuardContext) -> bool {
    !ctx.head().uri.path().ends_with("/invitations/accept")
}

/// Accept an invitation with the emailed token: creates your account (sign
/// in afterwards with the password chosen here).
#[utoipa::path(
    operation_id = "invitations_accept",
    tag = "invitations",
    request_body = AcceptInvitation,
    responses(
        (status = 201, description = "Account created", body = Accepted),
        (status = 400, description = "`token_invalid`, `token_expired`, `token_used` or `invitation_revoked`", body = ErrorBody),
        (status = 409, description = "The address got an account meanwhile (`email_taken`)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input or password policy failure (`type` names the rule)", body = ValidationErrorBody),
    )
)]
#[post("/invitations/accept")]
async fn accept(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    origin: Origin,
    body: ValidatedJson<AcceptInvitation>,
) -> Result<HttpResponse, ApiError> {
    let accepted = service::accept(&state, &auth_state, &origin, body.0).await?;
    Ok(HttpResponse::Created().json(accepted))
}
