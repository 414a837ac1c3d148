//! The OpenAPI 3 document, generated from the route registrations themselves
//! (utoipa-actix-web collects each `service(...)` with its `#[utoipa::path]`),
//! so a route cannot be served without being documented. Served at
//! `/openapi.json`, with Swagger UI (assets compiled into the binary, no CDN)
//! at `/docs`.

use actix_web::http::header;
use actix_web::{App, HttpResponse, get, web};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::http::error::{ErrorBody, LocPart, ValidationErrorBody, ValidationIssue};
use crate::http::validation::{NO_NUL_PATTERN, NOT_BLANK_PATTERN};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stock Tracker API",
        description = "Multi-tenant stock tracking for marketplace sellers: products, stock history, \
            marketplace sync, webhooks. Errors use FastAPI's shapes: `{\"detail\", \"code\", \"request_id\"}`, \
            and 422 `{\"detail\": [{\"loc\", \"msg\", \"type\"}]}`. Every response carries `X-Request-ID`."
    ),
    components(schemas(ErrorBody, ValidationErrorBody, ValidationIssue, LocPart)),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "observability", description = "Prometheus metrics and their catalogue"),
        (name = "auth", description = "Register, sign in, rotate tokens, sign out"),
        (name = "users", description = "The signed-in user and the tenant's users"),
        (name = "api-keys", description = "The tenant's service credentials"),
        (name = "invitations", description = "Invitations by email with a role (admin); accepting one"),
        (name = "audit", description = "The tenant's audit log of security-relevant events (admin)"),
        (name = "tenants", description = "The caller's tenant"),
        (name = "marketplaces", description = "Marketplace connections (credentials encrypted, never returned)"),
        (name = "products", description = "Products, stock history, search"),
        (name = "sync", description = "Marketplace sync jobs"),
        (name = "webhooks", description = "Webhook subscriptions (admin)"),
        (name = "telegram", description = "Telegram chats for notifications (admin)"),
        (name = "rate-limits", description = "The caller's rate limits and what remains of them"),
        (name = "platform", description = "Platform operators' routes"),
        (name = "docs", description = "This document and its interactive viewer"),
    ),
    modifiers(&SecuritySchemes, &CommonResponses)
)]
pub struct ApiDoc;

/// The three ways to present credentials. `bearer` and `oauth2_password` are
/// the same access token (the latter lets the docs' Authorize button sign in
/// through `/api/v1/auth/token`); `api_key` is a tenant service key.
struct SecuritySchemes;

/// The security requirement a protected operation declares in its
/// `#[utoipa::path]`; [`CommonResponses`] expands it to all three schemes.
const DECLARED_SCHEME: &str = "bearer";

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes,
            SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            DECLARED_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from /api/v1/auth/login or /api/v1/auth/token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "oauth2_password",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::Password(Password::new(
                    "/api/v1/auth/token",
                    Scopes::new(),
                ))],
                "Sign in with email (as username) and password; yields a bearer token",
            )),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A tenant API key (stk_...) created at /api/v1/api-keys",
            ))),
        );
    }
}

/// Documents what every operation can answer whatever its handler does: the
/// `X-Request-ID` header, the opaque 500 of an unexpected failure, and for
/// protected operations the three credential schemes with 401, 403 and 503.
struct CommonResponses;

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build(),
    )
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in HEADERS {
            components
                .headers
                .insert((*name).into(), RefOr::T(string_header(description)));
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let limited = !crate::http::is_operational_route(path);
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
                let protected = operation.security.as_ref().is_some_and(|requirements| {
                    serde_json::to_value(requirements)
                        .map(|v| v.to_string().contains(&format!("\"{DECLARED_SCHEME}\"")))
                        .unwrap_or(false)
                });
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                if has_body {
                    responses
                        .entry("413".into())
                        .or_insert_with(|| error_response("The body is larger than the limit"));
                }
                responses.entry("500".into()).or_insert_with(|| {
                    error_response("Unexpected failure; the body never says why")
                });
                if protected {
                    operation.security = Some(
                        [DECLARED_SCHEME, "oauth2_password", "api_key"]
                            .into_iter()
                            .map(|name| SecurityRequirement::new(name, Vec::<String>::new()))
                            .collect(),
                    );
                    responses.entry("401".into()).or_insert_with(|| {
                        let mut response =
                            error_response("Missing, invalid, expired or revoked credentials");
                        if let RefOr::T(r) = &mut response {
                            r.headers
                                .insert("WWW-Authenticate".into(), header_ref("WWW-Authenticate"));
                        }
                        response
                    });
                    responses
                        .entry("403".into())
                        .or_insert_with(|| error_response("The caller's role does not allow this"));
                }
                if limited {
                    responses.entry("503".into()).or_insert_with(|| {
                        let mut response = error_response(
                            "Overloaded (code `overloaded`), or a dependency is unavailable \
                             (`database_unavailable`, `auth_unavailable`); retry after `Retry-After`",
                        );
                        if let RefOr::T(r) = &mut response {
                            r.headers.insert(
                                "Retry-After".into(),
                                header_ref("Retry-After"),
                            );
                        }
                        response
                    });
                }
                if limited {
                    responses.entry("429".into()).or_insert_with(|| {
                        let mut response = error_response(
                            "A rate limit was exceeded (code `rate_limited`); the detail names the policy",
                        );
                        if let RefOr::T(r) = &mut response {
                            r.headers.insert(
                                "Retry-After".into(),
                                header_ref("Retry-After"),
                            );
                        }
                        response
                    });
                }
                if crate::idempotency::declares_key(operation) {
                    document_idempotency(&mut operation.responses.responses);
                }
                let responses = &mut operation.responses.responses;
                for response in responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .entry("X-Request-ID".into())
                            .or_insert_with(|| header_ref("X-Request-ID"));
                        if limited {
                            for name in RATE_LIMIT_HEADERS {
                                response
                                    .headers
                                    .entry(name.into())
                                    .or_insert_with(|| header_ref(name));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What an operation taking `Idempotency-Key` answers besides its own:
/// replays marked as such, 409 while the key's first request runs, 422 for a
/// key reused with another request (an error body, not a list of fields),
/// 503 when the keys cannot be read.
fn document_idempotency(
    responses: &mut std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>>,
) {
    use crate::idempotency::REPLAYED_HEADER;
    let append = |response: &mut RefOr<utoipa::openapi::Response>, text: &str| {
        if let RefOr::T(response) = response {
            response.description = format!("{}; {text}", response.description);
        }
    };
    for (status, response) in responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response
                .headers
                .insert(REPLAYED_HEADER.into(), header_ref(REPLAYED_HEADER));
        }
    }
    let in_use = "(`idempotency_key_in_use`) a request with the same `Idempotency-Key` \
                  is still running: retry after `Retry-After`";
    match responses.get_mut("409") {
        Some(response) => append(response, &format!("or {in_use}")),
        None => {
            let mut response = error_response(in_use);
            if let RefOr::T(r) = &mut response {
                r.headers
                    .insert("Retry-After".into(), header_ref("Retry-After"));
            }
            responses.insert("409".into(), response);
        }
    }
    let reused = "or (`idempotency_key_reused`, an error body) the `Idempotency-Key` \
                  was used with another request";
    let body_schema = |name: &str| RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name));
    let either = utoipa::openapi::schema::OneOfBuilder::new()
        .item(body_schema("ValidationErrorBody"))
        .item(body_schema("ErrorBody"))
        .build();
    let unprocessable = responses.entry("422".into()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description("Invalid input (a list of fields)")
                .build(),
        )
    });
    append(unprocessable, reused);
    if let RefOr::T(response) = unprocessable {
        response.content.insert(
            "application/json".into(),
            RefOr::T(
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::T(utoipa::openapi::schema::Schema::OneOf(
                        either,
                    ))))
                    .build(),
            ),
        );
    }
    if let Some(unavailable) = responses.get_mut("503") {
        append(
            unavailable,
            "or (`idempotency_unavailable`) `Idempotency-Key` was sent while the keys cannot be read",
        );
    }
}

/// Response headers the operations share, each described once in
/// `components.headers` and referenced from every response that sends it.
const HEADERS: &[(&str, &str)] = &[
    (
        "X-Request-ID",
        "The request's id: the caller's when sane, generated otherwise",
    ),
    (
        "X-RateLimit-Limit",
        "Requests allowed by the headline policy (the one with the fewest left, or on 429 the one exceeded)",
    ),
    (
        "X-RateLimit-Remaining",
        "Requests left in the headline policy",
    ),
    (
        "X-RateLimit-Reset",
        "Unix time (seconds) when the headline policy's window is empty again",
    ),
    (
        "X-RateLimit-Tenant",
        "The tenant counted, for authenticated calls",
    ),
    (
        "RateLimit-Policy",
        "Every policy counted, e.g. `\"tenant-minute\";q=100;w=60` (draft-ietf-httpapi-ratelimit-headers-10)",
    ),
    (
        "RateLimit",
        "The headline policy's state, e.g. `\"tenant-minute\";r=42;t=18`",
    ),
    (
        "Retry-After",
        "Seconds to wait before retrying (after a 429: until a request is admitted again)",
    ),
    ("WWW-Authenticate", "The authentication challenge"),
    (
        crate::idempotency::REPLAYED_HEADER,
        "`true` when this is the stored answer of an earlier request with the same `Idempotency-Key`",
    ),
];

/// The rate limiter's headers, on every response of a limited operation.
const RATE_LIMIT_HEADERS: [&str; 6] = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Tenant",
    "RateLimit-Policy",
    "RateLimit",
];

/// A reference to one of [`HEADERS`].
fn header_ref(name: &str) -> RefOr<utoipa::openapi::Header> {
    debug_assert!(HEADERS.iter().any(|(known, _)| *known == name));
    RefOr::Ref(utoipa::openapi::Ref::new(format!(
        "#/components/headers/{name}"
    )))
}

fn string_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String),
        ))
        .description(Some(description))
        .build()
}

/// Every text field of a request or response refuses NUL characters
/// (PostgreSQL text cannot hold them, and the JSON extractor rejects them
/// with 422); this pass writes that into each string schema's `pattern`.
struct TextPatterns;

impl TextPatterns {
    fn visit(schema: &mut RefOr<utoipa::openapi::schema::Schema>) {
        use utoipa::openapi::schema::{ArrayItems, Schema, SchemaType, Type};
        let RefOr::T(schema) = schema else { return };
        match schema {
            Schema::Object(object) => {
                let is_string = matches!(&object.schema_type, SchemaType::Type(Type::String))
                    || matches!(&object.schema_type, SchemaType::Array(types) if types.contains(&Type::String));
                if is_string && object.enum_values.is_none() {
                    object.pattern = Some(match object.pattern.as_deref() {
                        Some(r"\S") => NOT_BLANK_PATTERN.to_owned(),
                        Some(other) => other.to_owned(),
                        None => NO_NUL_PATTERN.to_owned(),
                    });
                }
                for property in object.properties.values_mut() {
                    Self::visit(property);
                }
            }
            Schema::Array(array) => {
                if let ArrayItems::RefOrSchema(items) = &mut array.items {
                    Self::visit(items);
                }
            }
            Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(Self::visit),
            Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(Self::visit),
            Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(Self::visit),
            _ => {}
        }
    }
}

impl Modify for TextPatterns {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        if let Some(components) = openapi.components.as_mut() {
            components.schemas.values_mut().for_each(Self::visit);
        }
    }
}

/// utoipa inlines a generic's argument: `Page<Product>`'s items are a copy of
/// `Product`. Where the copy is exactly a component, this pass refers to the
/// component instead, so a client generator makes one `Product` type, not
/// one more per page (a test holds every page to it).
struct PageItemsByReference;

impl Modify for PageItemsByReference {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        use utoipa::openapi::schema::{ArrayItems, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let as_json = |schema: &RefOr<Schema>| serde_json::to_value(schema).ok();
        let named: std::collections::BTreeMap<String, Option<serde_json::Value>> = components
            .schemas
            .iter()
            .map(|(name, schema)| (name.clone(), as_json(schema)))
            .collect();
        for (name, schema) in components.schemas.iter_mut() {
            let Some(item) = name.strip_prefix("Page_") else {
                continue;
            };
            let Some(Some(component)) = named.get(item) else {
                continue;
            };
            let RefOr::T(Schema::Object(page)) = schema else {
                continue;
            };
            if let Some(RefOr::T(Schema::Array(list))) = page.properties.get_mut("items")
                && let ArrayItems::RefOrSchema(items) = &mut list.items
                && as_json(items).as_ref() == Some(component)
            {
                **items = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(item));
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
        .configure(crate::app::routes)
        .split_for_parts();
    // Modifiers run when `ApiDoc::openapi()` is built, before the routes are
    // collected; run the passes that need the routes' schemas over the full document.
    CommonResponses.modify(&mut doc);
    TextPatterns.modify(&mut doc);
    PageItemsByReference.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(openapi_json).service(docs_redirect);
}

/// This OpenAPI document.
#[utoipa::path(
    operation_id = "docs_openapi",
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
    operation_id = "docs_redirect",
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
