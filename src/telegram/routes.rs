//! `/api/v1/telegram/chats` (admin role): register, list, read, change,
//! remove chats, read a chat's delivery log, retry a delivery and send a
//! test message.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::delivery::Telegram;
use super::model::{CreateChat, TelegramChat, UpdateChat};
use super::service;
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
        .service(get_chat)
        .service(update)
        .service(remove)
        .service(deliveries)
        .service(retry_delivery)
        .service(send_test);
}

/// Register a chat for events. The bot token is encrypted and never returned.
#[utoipa::path(
    operation_id = "telegram_chats_create",
    tag = "telegram",
    security(("bearer" = [])),
    request_body = CreateChat,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Registered", body = TelegramChat),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input, or (`limit_reached`, an error body) the tier's cap of chats reached", body = ValidationErrorBody),
    )
)]
#[post("/telegram/chats")]
async fn create(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    body: ValidatedJson<CreateChat>,
) -> Result<HttpResponse, ApiError> {
    let chat = service::create(&state, &auth, body.0).await?;
    Ok(HttpResponse::Created().json(chat))
}

/// The tenant's Telegram chats.
#[utoipa::path(
    operation_id = "telegram_chats_list",
    tag = "telegram",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of chats", body = Page<TelegramChat>),
        (status = 422, description = "Invalid page size or cursor", body = ValidationErrorBody),
    )
)]
#[get("/telegram/chats")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<TelegramChat>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(service::list(&state, &auth, page).await?))
}

/// One chat (without its bot token).
#[utoipa::path(
    operation_id = "telegram_chats_get",
    tag = "telegram",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat registration id")),
    responses(
        (status = 200, description = "The chat", body = TelegramChat),
        (status = 404, description = "No such chat in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[get("/telegram/chats/{id}")]
async fn get_chat(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
) -> Result<web::Json<TelegramChat>, ApiError> {
    Ok(web::Json(service::get(&state, &auth, *id).await?))
}

/// Change the events or description, or enable/disable the chat.
#[utoipa::path(
    operation_id = "telegram_chats_update",
    tag = "telegram",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat registration id")),
    request_body = UpdateChat,
    responses(
        (status = 200, description = "Updated", body = TelegramChat),
        (status = 404, description = "No such chat in your tenant", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input or id", body = ValidationErrorBody),
    )
)]
#[patch("/telegram/chats/{id}")]
async fn update(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
    body: ValidatedJson<UpdateChat>,
) -> Result<web::Json<TelegramChat>, ApiError> {
    Ok(web::Json(
        service::update(&state, &auth, *id, body.0).await?,
    ))
}

/// Remove the chat (its delivery log goes with it).
#[utoipa::path(
    operation_id = "telegram_chats_delete",
    tag = "telegram",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat registration id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such chat in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[delete("/telegram/chats/{id}")]
async fn remove(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state, &auth, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The chat's delivery log, newest first.
#[utoipa::path(
    operation_id = "telegram_deliveries_list",
    tag = "telegram",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat registration id"), PageQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = Page<Delivery>),
        (status = 404, description = "No such chat in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id, page size or cursor", body = ValidationErrorBody),
    )
)]
#[get("/telegram/chats/{id}/deliveries")]
async fn deliveries(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
    query: ValidatedQuery<PageQuery>,
) -> Result<web::Json<Page<Delivery>>, ApiError> {
    let page = query.0.page_request()?;
    Ok(web::Json(
        log::page(&state, &Telegram, &auth, *id, page).await?,
    ))
}

/// Send a message again now (whatever its state).
#[utoipa::path(
    operation_id = "telegram_deliveries_retry",
    tag = "telegram",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Chat registration id"),
        ("delivery_id" = Uuid, Path, description = "Delivery id"),
        IdempotencyKey,
    ),
    responses(
        (status = 202, description = "Queued for sending", body = Delivery),
        (status = 404, description = "No such delivery of this chat in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[post("/telegram/chats/{id}/deliveries/{delivery_id}/retry")]
async fn retry_delivery(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (id, delivery_id) = path.into_inner();
    Ok(HttpResponse::Accepted().json(log::retry(&state, &Telegram, &auth, id, delivery_id).await?))
}

/// Send a `telegram.test` message to the chat.
#[utoipa::path(
    operation_id = "telegram_chats_send_test",
    tag = "telegram",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat registration id"), IdempotencyKey),
    responses(
        (status = 202, description = "Queued for sending; follow it in the delivery log", body = Delivery),
        (status = 404, description = "No such chat in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[post("/telegram/chats/{id}/test")]
async fn send_test(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted()
        .json(log::send_test(&state, &Telegram, &auth, *id, &service::test_payload(*id)).await?))
}
