//! `/api/v1/auth/*`: register, login (JSON and OAuth2 password form),
//! refresh, logout.

use actix_web::{HttpResponse, post, web};
use garde::Validate;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::service::{
    self, LoginRequest, RefreshRequest, RegisterRequest, RegisterResponse, TokenResponse,
};
use crate::audit::Origin;
use crate::auth::AuthState;
use crate::auth::extractor::{Auth, Viewer};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, garde_issues};
use crate::http::validation::no_nul;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(register)
        .service(login)
        .service(token)
        .service(refresh)
        .service(logout);
}

/// Create a tenant (a seller company, tier `free`) and its owner.
#[utoipa::path(
    operation_id = "auth_register",
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Tenant and owner created", body = RegisterResponse),
        (status = 409, description = "The email is already registered", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input or password policy failure (`type` names the rule)", body = ValidationErrorBody),
    )
)]
#[post("/auth/register")]
async fn register(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    body: ValidatedJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let created = service::register(&state, &auth_state, body.0).await?;
    Ok(HttpResponse::Created().json(created))
}

/// Sign in with email and password.
#[utoipa::path(
    operation_id = "auth_login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Incorrect email or password (never says which)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[post("/auth/login")]
async fn login(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    origin: Origin,
    body: ValidatedJson<LoginRequest>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    Ok(web::Json(
        service::login(
            &state,
            &auth_state,
            &origin,
            &body.0.email,
            &body.0.password,
        )
        .await?,
    ))
}

/// OAuth2 password grant form (`application/x-www-form-urlencoded`), as
/// FastAPI's `OAuth2PasswordRequestForm`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct TokenForm {
    /// Must be `password` when sent.
    #[garde(inner(pattern("^password$")))]
    #[schema(pattern = "^password$")]
    pub grant_type: Option<String>,
    /// The email address.
    #[garde(length(min = 1, max = 320), custom(no_nul))]
    #[schema(min_length = 1, max_length = 320)]
    pub username: String,
    #[garde(length(min = 1, max = 1024), custom(no_nul))]
    #[schema(min_length = 1, max_length = 1024, format = Password)]
    pub password: String,
    /// Accepted and ignored: roles come from the account.
    #[garde(skip)]
    pub scope: Option<String>,
    #[garde(skip)]
    pub client_id: Option<String>,
    #[garde(skip)]
    pub client_secret: Option<String>,
}

/// Sign in with the OAuth2 password flow (used by the docs' Authorize button).
#[utoipa::path(
    operation_id = "auth_token",
    tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Incorrect email or password", body = ErrorBody),
        (status = 415, description = "Not a form", body = ErrorBody),
        (status = 422, description = "Invalid form", body = ValidationErrorBody),
    )
)]
#[post("/auth/token")]
async fn token(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    origin: Origin,
    form: web::Form<TokenForm>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    crate::http::pydantic::validate(&*form)
        .map_err(|report| ApiError::Validation(garde_issues(&report, None)))?;
    Ok(web::Json(
        service::login(&state, &auth_state, &origin, &form.username, &form.password).await?,
    ))
}

/// Exchange a refresh token for a new token pair. Each refresh token works
/// once; presenting a spent one ends the whole session.
#[utoipa::path(
    operation_id = "auth_refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New token pair", body = TokenResponse),
        (status = 401, description = "Invalid, expired or reused refresh token", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[post("/auth/refresh")]
async fn refresh(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    body: ValidatedJson<RefreshRequest>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    Ok(web::Json(
        service::refresh(&state, &auth_state, &body.0.refresh_token).await?,
    ))
}

/// Sign out: revokes the session's refresh tokens and this access token.
#[utoipa::path(
    operation_id = "auth_logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "Called with an API key, which has no session", body = ErrorBody),
    )
)]
#[post("/auth/logout")]
async fn logout(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Viewer>,
) -> Result<HttpResponse, ApiError> {
    service::logout(&state, &auth_state, &auth).await?;
    Ok(HttpResponse::NoContent().finish())
}
