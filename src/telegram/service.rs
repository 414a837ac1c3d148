//! Telegram chats: registration (the bot token encrypted), changes, the
//! delivery log, manual retries and test messages.

use secrecy::ExposeSecret;
use serde_json::json;
use uuid::Uuid;

use super::delivery::Telegram;
use super::model::{CreateChat, TelegramChat, UpdateChat};
use super::repository;
use crate::auth::{Admin, Auth};
use crate::db;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;
use crate::notifications::Channel;
use crate::notifications::log::{self, Delivery};

fn not_found() -> ApiError {
    ApiError::not_found("Telegram chat")
}

pub async fn create(
    state: &Infra,
    auth: &Auth<Admin>,
    request: CreateChat,
) -> Result<TelegramChat, ApiError> {
    let encrypted = state
        .secrets
        .encrypt(request.bot_token.expose_secret().as_bytes());
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let chat = repository::insert(
        &tenant,
        &mut tx,
        &request.chat_id,
        &encrypted,
        &request.events,
        request.description.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(chat)
}

pub async fn list(
    state: &Infra,
    auth: &Auth<Admin>,
    page: PageRequest,
) -> Result<Page<TelegramChat>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let rows = repository::list(&tenant, &mut tx, page.after, page.limit).await?;
    Ok(Page::from_rows(rows, page.limit, |c| c.id))
}

pub async fn get(state: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<TelegramChat, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(not_found)
}

pub async fn update(
    state: &Infra,
    auth: &Auth<Admin>,
    id: Uuid,
    change: UpdateChat,
) -> Result<TelegramChat, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let chat = repository::update(&tenant, &mut tx, id, &change)
        .await?
        .ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(chat)
}

pub async fn delete(state: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<(), ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    if !repository::delete(&tenant, &mut tx, id).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(())
}

pub async fn deliveries(
    state: &Infra,
    auth: &Auth<Admin>,
    id: Uuid,
    page: PageRequest,
) -> Result<Page<Delivery>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(not_found)?;
    let rows = log::deliveries(
        Telegram.tables(),
        &tenant,
        &mut tx,
        id,
        page.after,
        page.limit,
    )
    .await?;
    Ok(Page::from_rows(rows, page.limit, |d| d.id))
}

/// Hands a due message to the workers; if the broker is down, beat will.
async fn hand_over(state: &Infra, tenant_id: Uuid, delivery: &Delivery) {
    if let Err(err) = super::tasks::send_telegram(&state.queue, tenant_id, delivery.id).await {
        tracing::warn!(error = %format!("{err:#}"), delivery_id = %delivery.id, "broker unavailable; beat will hand the message over");
    }
}

/// Makes a delivery due now again, whatever its state, and hands it over.
pub async fn retry(
    state: &Infra,
    auth: &Auth<Admin>,
    id: Uuid,
    delivery_id: Uuid,
) -> Result<Delivery, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let delivery = log::retry_delivery(Telegram.tables(), &tenant, &mut tx, id, delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Delivery"))?;
    tx.commit().await?;
    hand_over(state, tenant.id(), &delivery).await;
    Ok(delivery)
}

/// Sends a `telegram.test` message to the chat, through the usual delivery.
pub async fn send_test(state: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<Delivery, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(not_found)?;
    let payload = json!({"chat": id, "message": "A test message from Stock Tracker"});
    let delivery = log::insert_test_delivery(
        Telegram.tables(),
        &tenant,
        &mut tx,
        id,
        "telegram.test",
        &payload,
    )
    .await?;
    tx.commit().await?;
    hand_over(state, tenant.id(), &delivery).await;
    Ok(delivery)
}
