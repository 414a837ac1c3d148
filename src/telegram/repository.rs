//! SQL for Telegram chats, scoped to the tenant. The bot-token column holds
//! a Fernet token; this module never sees plaintext.

use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{TelegramChat, UpdateChat};
use crate::auth::TenantCtx;
use crate::db::observed;
use crate::notifications::events::{EventType, names};

const COLUMNS: &str = "id, chat_id, events, description, enabled, disabled_reason, created_at";

pub async fn insert(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    chat_id: &str,
    bot_token_encrypted: &str,
    events: &[EventType],
    description: Option<&str>,
) -> Result<TelegramChat, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO telegram_chats (id, tenant_id, chat_id, bot_token_encrypted, events, description)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(chat_id)
    .bind(bot_token_encrypted)
    .bind(names(events))
    .bind(description)
    .fetch_one(observed("telegram.create", conn))
    .await
}

pub async fn list(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<TelegramChat>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM telegram_chats
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )))
    .bind(tenant.id())
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed("telegram.list", conn))
    .await
}

pub async fn find(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<TelegramChat>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM telegram_chats WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("telegram.find", conn))
    .await
}

/// Applies a partial update; re-enabling clears why it was disabled.
pub async fn update(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    change: &UpdateChat,
) -> Result<Option<TelegramChat>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE telegram_chats SET
             events = COALESCE($3, events), description = COALESCE($4, description),
             enabled = COALESCE($5, enabled),
             disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,
             failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(tenant.id())
    .bind(id)
    .bind(change.events.as_deref().map(names))
    .bind(&change.description)
    .bind(change.enabled)
    .fetch_optional(observed("telegram.update", conn))
    .await
}

/// Deletes a chat and, by cascade, its delivery log.
pub async fn delete(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM telegram_chats WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(id)
        .execute(observed("telegram.remove", conn))
        .await?;
    Ok(deleted.rows_affected() == 1)
}
