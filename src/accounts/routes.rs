//! `/api/v1/auth/password-reset`, `/password-reset/confirm`,
//! `/verify-email` and `/verify-email/resend`.

use actix_web::{HttpResponse, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::service::{self, EmailRequest, ResetConfirmation, VerificationRequest};
use crate::audit::Origin;
use crate::auth::AuthState;
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::ValidatedJson;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(request_password_reset)
        .service(confirm_password_reset)
        .service(verify_email)
        .service(resend_verification);
}

/// Runs `work` after the response: what the request asks for happens (or
/// not) without the answer or its timing saying which.
fn after_answering<F>(work: F)
where
    F: Future<Output = anyhow::Result<()>> + 'static,
{
    actix_web::rt::spawn(async move {
        if let Err(err) = work.await {
            tracing::warn!(error = %format!("{err:#}"), "account email not sent");
        }
    });
}

/// Ask for a password-reset link by email. Always 202, whether or not the
/// address has an account; at most `auth.account_emails_per_address_per_hour`
/// emails per address, and `rate_limit.rules.account_emails` per client.
#[utoipa::path(
    operation_id = "auth_request_password_reset",
    tag = "auth",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "If the address has an account, a link is on its way"),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Not an email address", body = ValidationErrorBody),
        (status = 429, description = "Too many requests from this client", body = ErrorBody),
    )
)]
#[post("/auth/password-reset")]
async fn request_password_reset(
    state: web::Data<Infra>,
    body: ValidatedJson<EmailRequest>,
) -> HttpResponse {
    let email = body.0.email;
    after_answering(async move { service::send_password_reset(&state, &email).await });
    HttpResponse::Accepted().finish()
}

/// Set a new password with the emailed token. The token works once; every
/// session of the user ends (sign in again with the new password).
#[utoipa::path(
    operation_id = "auth_confirm_password_reset",
    tag = "auth",
    request_body = ResetConfirmation,
    responses(
        (status = 204, description = "Password set; every session ended"),
        (status = 400, description = "`token_invalid`, `token_expired` or `token_used`", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input or password policy failure (`type` names the rule)", body = ValidationErrorBody),
    )
)]
#[post("/auth/password-reset/confirm")]
async fn confirm_password_reset(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    origin: Origin,
    body: ValidatedJson<ResetConfirmation>,
) -> Result<HttpResponse, ApiError> {
    service::confirm_password_reset(&state, &auth_state, &origin, body.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Confirm an email address with the emailed token.
#[utoipa::path(
    operation_id = "auth_verify_email",
    tag = "auth",
    request_body = VerificationRequest,
    responses(
        (status = 204, description = "Address verified"),
        (status = 400, description = "`token_invalid`, `token_expired` or `token_used`", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[post("/auth/verify-email")]
async fn verify_email(
    state: web::Data<Infra>,
    origin: Origin,
    body: ValidatedJson<VerificationRequest>,
) -> Result<HttpResponse, ApiError> {
    service::verify_email(&state, &origin, body.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Send a new verification link. Always 202, whether or not the address has
/// an unverified account (same limits as the password reset).
#[utoipa::path(
    operation_id = "auth_resend_verification",
    tag = "auth",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "If the address has an unverified account, a link is on its way"),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Not an email address", body = ValidationErrorBody),
        (status = 429, description = "Too many requests from this client", body = ErrorBody),
    )
)]
#[post("/auth/verify-email/resend")]
async fn resend_verification(
    state: web::Data<Infra>,
    body: ValidatedJson<EmailRequest>,
) -> HttpResponse {
    let email = body.0.email;
    after_answering(async move { service::resend_verification(&state, &email).await });
    HttpResponse::Accepted().finish()
}
