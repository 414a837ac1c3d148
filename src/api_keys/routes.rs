//! `/api/v1/api-keys` (admin).

use actix_web::{HttpResponse, delete, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::model::{ApiKey, CreateApiKey, CreatedApiKey};
use super::service;
use crate::audit::Origin;
use crate::auth::AuthState;
use crate::auth::{Admin, Auth};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, ValidatedQuery};
use crate::http::pagination::{Page, PageQuery};
use crate::idempotency::IdempotencyKey;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create).service(list).service(revoke);
}

/// Create an API key. The key is in this response only.
#[utoipa::path(
    operation_id = "api_keys_create",
    tag = "api-keys",
    security(("bearer" = [])),
    request_body = CreateApiKey,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created; store `key` now", body = CreatedApiKey),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[post("/api-keys")]
async fn create(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    origin: Origin,
    body: ValidatedJson<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let created = service::create(&state, &auth, &origin, body.0).await?;
    Ok(HttpResponse::Created().json(created))
}

/// The tenant's active API keys (never the keys themselves).
#[utoipa::path(
    operation_id = "api_keys_list",
    tag = "api-keys",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of keys", body = Page<ApiKey>),
        (status = 422, description = "Invalid limit or cursor", body = ValidationErrorBody),
    )
)]
#[get("/api-keys")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<ApiKey>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(service::list(&state, &auth, page).await?))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(
    operation_id = "api_keys_revoke",
    tag = "api-keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such active key in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[delete("/api-keys/{id}")]
async fn revoke(
    state: web::Data<Infra>,
    auth_state: web::Data<AuthState>,
    auth: Auth<Admin>,
    origin: Origin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::revoke(&state, &auth_state, &auth, &origin, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
