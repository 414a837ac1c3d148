//! `/api/v1/products`: list, detail, manual create/update/delete, stock history.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::model::{CreateProduct, Product, ProductQuery, StockChange, UpdateProduct};
use super::service::{self, CachedBody};
use crate::auth::{Auth, Member, Viewer};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, ValidatedQuery};
use crate::http::pagination::{Page, PageQuery};
use crate::idempotency::IdempotencyKey;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_product)
        .service(update)
        .service(remove)
        .service(stock_history);
}

fn cached_json(cached: CachedBody) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("X-Cache", cached.cache))
        .body(cached.body)
}

/// The tenant's products, a page at a time, with filters, sort and search.
#[utoipa::path(
    operation_id = "products_list",
    tag = "products",
    security(("bearer" = [])),
    params(ProductQuery),
    responses(
        (status = 200, description = "A page of products", body = Page<Product>,
         headers(("X-Cache" = String, description = "HIT, MISS, or BYPASS (cache unavailable)"))),
        (status = 422, description = "Invalid filter, sort, cursor or page size", body = ValidationErrorBody),
    )
)]
#[get("/products")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
    query: ValidatedQuery<ProductQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    Ok(cached_json(
        service::list(&state, &auth, query.0, req.query_string()).await?,
    ))
}

/// Create a manual product (member).
#[utoipa::path(
    operation_id = "products_create",
    tag = "products",
    security(("bearer" = [])),
    request_body = CreateProduct,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 409, description = "The SKU is taken", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input (negative price or stock included)", body = ValidationErrorBody),
    )
)]
#[post("/products")]
async fn create(
    state: web::Data<Infra>,
    auth: Auth<Member>,
    body: ValidatedJson<CreateProduct>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::create(&state, &auth, body.0).await?))
}

/// One product.
#[utoipa::path(
    operation_id = "products_get",
    tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = Product,
         headers(("X-Cache" = String, description = "HIT, MISS, or BYPASS (cache unavailable)"))),
        (status = 404, description = "No such product in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[get("/products/{id}")]
async fn get_product(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(cached_json(service::get(&state, &auth, *id).await?))
}

/// Change any subset of a manual product's fields (member).
#[utoipa::path(
    operation_id = "products_update",
    tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = UpdateProduct,
    responses(
        (status = 200, description = "Updated", body = Product),
        (status = 404, description = "No such product in this tenant", body = ErrorBody),
        (status = 409, description = "The SKU is taken, or the product is managed by a sync", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[patch("/products/{id}")]
async fn update(
    state: web::Data<Infra>,
    auth: Auth<Member>,
    id: web::Path<Uuid>,
    body: ValidatedJson<UpdateProduct>,
) -> Result<web::Json<Product>, ApiError> {
    Ok(web::Json(
        service::update(&state, &auth, *id, body.0).await?,
    ))
}

/// Delete a manual product (member).
#[utoipa::path(
    operation_id = "products_delete",
    tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such product in this tenant", body = ErrorBody),
        (status = 409, description = "The product is managed by a sync", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[delete("/products/{id}")]
async fn remove(
    state: web::Data<Infra>,
    auth: Auth<Member>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &auth, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A product's stock changes, newest first.
#[utoipa::path(
    operation_id = "products_stock_history",
    tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id"), PageQuery),
    responses(
        (status = 200, description = "A page of stock changes", body = Page<StockChange>),
        (status = 404, description = "No such product in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid id, page size or cursor", body = ValidationErrorBody),
    )
)]
#[get("/products/{id}/stock-history")]
async fn stock_history(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
    id: web::Path<Uuid>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<StockChange>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(
        service::stock_history(&state, &auth, *id, page).await?,
    ))
}
