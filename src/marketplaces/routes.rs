//! `/api/v1/marketplaces`: connect (admin), list, get, disconnect (admin).

use actix_web::{HttpResponse, delete, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::model::{Connection, CreateConnection};
use super::service;
use crate::auth::{Admin, Auth, Viewer};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, ValidatedQuery};
use crate::http::pagination::{Page, PageQuery};
use crate::idempotency::IdempotencyKey;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_connection)
        .service(remove);
}

/// Connect a marketplace account (admin). The credentials are encrypted and never returned.
#[utoipa::path(
    operation_id = "marketplaces_create",
    tag = "marketplaces",
    security(("bearer" = [])),
    request_body = CreateConnection,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Connected", body = Connection),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input or credentials for the kind", body = ValidationErrorBody),
    )
)]
#[post("/marketplaces")]
async fn create(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    body: ValidatedJson<CreateConnection>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::create(&state, &auth, body.0).await?))
}

/// The tenant's marketplace connections.
#[utoipa::path(
    operation_id = "marketplaces_list",
    tag = "marketplaces",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of connections", body = Page<Connection>),
        (status = 422, description = "Invalid page size or cursor", body = ValidationErrorBody),
    )
)]
#[get("/marketplaces")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<Connection>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(service::list(&state, &auth, page).await?))
}

/// One marketplace connection.
#[utoipa::path(
    operation_id = "marketplaces_get",
    tag = "marketplaces",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection", body = Connection),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[get("/marketplaces/{id}")]
async fn get_connection(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Connection>, ApiError> {
    Ok(web::Json(service::get(&state, &auth, *id).await?))
}

/// Disconnect a marketplace (admin); its synced products are deleted with it.
#[utoipa::path(
    operation_id = "marketplaces_delete",
    tag = "marketplaces",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[delete("/marketplaces/{id}")]
async fn remove(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &auth, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
