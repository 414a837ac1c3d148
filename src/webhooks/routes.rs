//! `/api/v1/webhooks`: the tenant's webhook subscriptions (admin role).

use actix_web::{HttpResponse, delete, get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::delivery::Webhooks;
use super::model::{CreateSubscription, Subscription, SubscriptionWithSecret, UpdateSubscription};
use super::service;
use crate::audit::Origin;
use crate::auth::{Admin, Auth};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, ValidatedQuery};
use crate::http::pagination::{Page, PageQuery};
use crate::idempotency::IdempotencyKey;
use crate::infra::Infra;
use crate::notifications::log::{self, Delivery};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_subscription)
        .service(update)
        .service(remove)
        .service(rotate_secret)
        .service(deliveries)
        .service(retry_delivery)
        .service(send_test);
}

/// Subscribe a URL to events. The answer holds the signing secret: it is
/// shown this once (and on rotation), stored encrypted, never returned again.
#[utoipa::path(
    operation_id = "webhooks_create",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = CreateSubscription,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Subscribed; `secret` shown once", body = SubscriptionWithSecret),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input, a URL that is not https or not public, or (`limit_reached`, an error body) the tier's cap of subscriptions reached", body = ValidationErrorBody),
    )
)]
#[post("/webhooks")]
async fn create(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    body: ValidatedJson<CreateSubscription>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::create(&state, &auth, body.0).await?))
}

/// The tenant's subscriptions.
#[utoipa::path(
    operation_id = "webhooks_list",
    tag = "webhooks",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of subscriptions", body = Page<Subscription>),
        (status = 422, description = "Invalid page size or cursor", body = ValidationErrorBody),
    )
)]
#[get("/webhooks")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<Subscription>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(service::list(&state, &auth, page).await?))
}

/// One subscription (without its secret).
#[utoipa::path(
    operation_id = "webhooks_get",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = Subscription),
        (status = 404, description = "No such subscription in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[get("/webhooks/{id}")]
async fn get_subscription(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Subscription>, ApiError> {
    Ok(web::Json(service::get(&state, &auth, *id).await?))
}

/// Change the URL, events or description, or enable/disable it.
#[utoipa::path(
    operation_id = "webhooks_update",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body = UpdateSubscription,
    responses(
        (status = 200, description = "Updated", body = Subscription),
        (status = 404, description = "No such subscription in your tenant", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input or id", body = ValidationErrorBody),
    )
)]
#[patch("/webhooks/{id}")]
async fn update(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
    body: ValidatedJson<UpdateSubscription>,
) -> Result<web::Json<Subscription>, ApiError> {
    Ok(web::Json(
        service::update(&state, &auth, *id, body.0).await?,
    ))
}

/// Unsubscribe (its delivery log goes with it).
#[utoipa::path(
    operation_id = "webhooks_delete",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[delete("/webhooks/{id}")]
async fn remove(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &auth, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replace the signing secret; the new one is shown this once.
#[utoipa::path(
    operation_id = "webhooks_rotate_secret",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The new secret", body = SubscriptionWithSecret),
        (status = 404, description = "No such subscription in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[post("/webhooks/{id}/rotate-secret")]
async fn rotate_secret(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    origin: Origin,
    id: web::Path<Uuid>,
) -> Result<web::Json<SubscriptionWithSecret>, ApiError> {
    Ok(web::Json(
        service::rotate_secret(&state, &auth, &origin, *id).await?,
    ))
}

/// The subscription's delivery log, newest first: attempts, last status
/// code and error, when it was delivered or will be tried next.
#[utoipa::path(
    operation_id = "webhooks_deliveries_list",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Subscription id"), PageQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = Page<Delivery>),
        (status = 404, description = "No such subscription in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id, page size or cursor", body = ValidationErrorBody),
    )
)]
#[get("/webhooks/{id}/deliveries")]
async fn deliveries(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<Delivery>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(
        log::page(&state, &Webhooks, &auth, *id, page).await?,
    ))
}

/// Send a delivery again now (whatever its state).
#[utoipa::path(
    operation_id = "webhooks_deliveries_retry",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Subscription id"),
        ("delivery_id" = Uuid, Path, description = "Delivery id"),
        IdempotencyKey,
    ),
    responses(
        (status = 202, description = "Queued for sending", body = Delivery),
        (status = 404, description = "No such delivery of this subscription in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[post("/webhooks/{id}/deliveries/{delivery_id}/retry")]
async fn retry_delivery(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (id, delivery_id) = path.into_inner();
    Ok(HttpResponse::Accepted().json(log::retry(&state, &Webhooks, &auth, id, delivery_id).await?))
}

/// Send a `webhook.test` event to the subscription's URL.
#[utoipa::path(
    operation_id = "webhooks_send_test",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Subscription id"), IdempotencyKey),
    responses(
        (status = 202, description = "Queued for sending; follow it in the delivery log", body = Delivery),
        (status = 404, description = "No such subscription in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[post("/webhooks/{id}/test")]
async fn send_test(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted()
        .json(log::send_test(&state, &Webhooks, &auth, *id, &service::test_payload(*id)).await?))
}
