//! `/api/v1/telegram/chats` (admin role): register, list, read, change,
//! remove chats, and read a chat's delivery log. The queries are here: the
//! module is small and each is used once.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use secrecy::ExposeSecret;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::model::{CreateChat, TelegramChat, UpdateChat};
use crate::auth::{Admin, Auth};
use crate::db;
use crate::db::observed;
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, ValidatedQuery};
use crate::http::pagination::{Page, PageQuery};
use crate::infra::Infra;
use crate::webhooks::model::{Delivery, EventType};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_chat)
        .service(update)
        .service(remove)
        .service(deliveries);
}

const COLUMNS: &str = "id, chat_id, events, description, enabled, disabled_reason, created_at";

fn names(events: &[EventType]) -> Vec<&'static str> {
    events.iter().map(|e| e.as_str()).collect()
}

fn not_found() -> ApiError {
    ApiError::not_found("Telegram chat")
}

/// Register a chat for events. The bot token is encrypted and never returned.
#[utoipa::path(
    tag = "telegram",
    security(("bearer" = [])),
    request_body = CreateChat,
    responses(
        (status = 201, description = "Registered", body = TelegramChat),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ValidationErrorBody),
    )
)]
#[post("/telegram/chats")]
async fn create(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    body: ValidatedJson<CreateChat>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    let encrypted = state
        .secrets
        .encrypt(request.bot_token.expose_secret().as_bytes());
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let chat: TelegramChat = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO telegram_chats (id, tenant_id, chat_id, bot_token_encrypted, events, description)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(&request.chat_id)
    .bind(&encrypted)
    .bind(names(&request.events))
    .bind(&request.description)
    .fetch_one(observed("telegram.create", &mut *tx))
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(chat))
}

/// The tenant's Telegram chats.
#[utoipa::path(
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
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let rows: Vec<TelegramChat> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM telegram_chats
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )))
    .bind(tenant.id())
    .bind(page.after)
    .bind(i64::from(page.limit) + 1)
    .fetch_all(observed("telegram.list", &mut *tx))
    .await?;
    Ok(web::Json(Page::from_rows(rows, page.limit, |c| c.id)))
}

async fn find(state: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<TelegramChat, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let chat: Option<TelegramChat> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM telegram_chats WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("telegram.find", &mut *tx))
    .await?;
    chat.ok_or_else(not_found)
}

/// One chat (without its bot token).
#[utoipa::path(
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
    Ok(web::Json(find(&state, &auth, *id).await?))
}

/// Change the events or description, or enable/disable the chat.
#[utoipa::path(
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
    let request = body.0;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let chat: Option<TelegramChat> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE telegram_chats SET
             events = COALESCE($3, events), description = COALESCE($4, description),
             enabled = COALESCE($5, enabled),
             disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,
             failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(tenant.id())
    .bind(*id)
    .bind(request.events.as_deref().map(names))
    .bind(&request.description)
    .bind(request.enabled)
    .fetch_optional(observed("telegram.update", &mut *tx))
    .await?;
    let chat = chat.ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(web::Json(chat))
}

/// Remove the chat (its delivery log goes with it).
#[utoipa::path(
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
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let deleted = sqlx::query("DELETE FROM telegram_chats WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(*id)
        .execute(observed("telegram.remove", &mut *tx))
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The chat's delivery log, newest first.
#[utoipa::path(
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
    find(&state, &auth, *id).await?;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let rows: Vec<Delivery> = sqlx::query_as(
        "SELECT id, event_id, event_type, status, attempts, status_code, error,
                delivered_at, next_attempt_at, created_at
         FROM telegram_deliveries
         WHERE tenant_id = $1 AND chat_id = $2 AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
    )
    .bind(tenant.id())
    .bind(*id)
    .bind(page.after)
    .bind(i64::from(page.limit) + 1)
    .fetch_all(observed("telegram.deliveries", &mut *tx))
    .await?;
    Ok(web::Json(Page::from_rows(rows, page.limit, |d| d.id)))
}
