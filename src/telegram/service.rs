//! Telegram chats: registration (the bot token encrypted) and changes. The
//! delivery log, manual retries and test messages are `notifications::log`.

use secrecy::ExposeSecret;
use serde_json::json;
use uuid::Uuid;

use super::model::{CreateChat, TelegramChat, UpdateChat};
use super::repository;
use crate::auth::{Admin, Auth};
use crate::db;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;
use crate::notifications::targets::{self, TargetKind};

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
    targets::ensure_room(
        &mut tx,
        &state.settings.notifications.max_targets,
        auth.principal.tier,
        TargetKind::TelegramChat,
    )
    .await?;
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

/// The payload of the channel's test event to target `id`.
pub fn test_payload(id: Uuid) -> serde_json::Value {
    json!({"chat": id, "message": "A test message from Stock Tracker"})
}
