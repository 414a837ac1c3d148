//! The OpenAPI 3 document, generated from the route registrations themselves
//! (utoipa-actix-web collects each `service(...)` with its `#[utoipa::path]`),
//! so a route cannot be served without being documented. Served at
//! `/openapi.json`, with Swagger UI (assets compiled into the binary, no CDN)
//! at `/docs`.

use actix_web::http::header;
use actix_web::{App, HttpResponse, get, web};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ErrorBody, ValidationErrorBody, ValidationIssue};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stock Tracker API",
        description = "Multi-tenant stock tracking for marketplace sellers: products, stock history, \
            marketplace sync, webhooks. Errors use FastAPI's shapes: `{\"detail\", \"code\", \"request_id\"}`, \
            and 422 `{\"detail\": [{\"loc\", \"msg\", \"type\"}]}`. Every response carries `X-Request-ID`."
    ),
    components(schemas(ErrorBody, ValidationErrorBody, ValidationIssue)),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "observability", description = "Prometheus metrics and their catalogue"),
        (name = "docs", description = "This document and its interactive viewer"),
    ),
    modifiers(&CommonResponses)
)]
pub struct ApiDoc;

/// Documents what every operation can answer whatever its handler does: the
/// `X-Request-ID` header, and the opaque 500 of an unexpected failure.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let request_id = HeaderBuilder::new()
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String),
            ))
            .description(Some(
                "The request's id: the caller's when sane, generated otherwise",
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .entry("500".into())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description("Unexpected failure; the body never says why")
                                .content(
                                    "application/json",
                                    utoipa::openapi::ContentBuilder::new()
                                        .schema(Some(RefOr::Ref(
                                            utoipa::openapi::Ref::from_schema_name("ErrorBody"),
                                        )))
                                        .build(),
                                )
                                .build(),
                        )
                    });
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .entry("X-Request-ID".into())
                            .or_insert_with(|| RefOr::T(request_id.clone()));
                    }
                }
            }
        }
    }
}

/// The serialized document, built once at start.
pub struct OpenApiJson(pub String);

/// Builds the document from the same route registrations the server uses.
pub fn document() -> OpenApiDoc {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::startup::routes)
        .split_for_parts();
    // Modifiers run when `ApiDoc::openapi()` is built, before the routes are
    // collected; run the common-responses pass again over the full document.
    CommonResponses.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(openapi_json).service(docs_redirect);
}

/// This OpenAPI document.
#[utoipa::path(
    tag = "docs",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
#[get("/openapi.json")]
async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// Interactive documentation (Swagger UI), served from `/docs/`.
#[utoipa::path(
    tag = "docs",
    responses((status = 308, description = "Redirect to the Swagger UI at /docs/", headers(("Location" = String))))
)]
#[get("/docs")]
async fn docs_redirect() -> HttpResponse {
    // Swagger UI loads its assets by relative path, so it must be served under the slash.
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}
