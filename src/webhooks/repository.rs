//! SQL for webhook subscriptions, scoped to the tenant.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::Subscription;
use crate::auth::TenantCtx;
use crate::db::observed;
use crate::notifications::events::{EventType, names};

const COLUMNS: &str =
    "id, url, events, description, enabled, disabled_reason, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

fn to_model(row: Row) -> Subscription {
    Subscription {
        id: row.id,
        url: row.url,
        events: row
            .events
            .iter()
            .filter_map(|e| EventType::parse(e))
            .collect(),
        description: row.description,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

pub async fn insert(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    url: &str,
    events: &[EventType],
    description: Option<&str>,
    secret_encrypted: &str,
) -> Result<Subscription, sqlx::Error> {
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_subscriptions (id, tenant_id, url, events, description, secret_encrypted)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(url)
    .bind(names(events))
    .bind(description)
    .bind(secret_encrypted)
    .fetch_one(observed("webhooks.insert", conn))
    .await?;
    Ok(to_model(row))
}

pub async fn list(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Subscription>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )))
    .bind(tenant.id())
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed("webhooks.list", conn))
    .await?;
    Ok(rows.into_iter().map(to_model).collect())
}

pub async fn find(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("webhooks.find", conn))
    .await?;
    Ok(row.map(to_model))
}

/// Applies the given changes; re-enabling clears the failure state.
pub async fn update(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    url: Option<&str>,
    events: Option<&[EventType]>,
    description: Option<&str>,
    enabled: Option<bool>,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_subscriptions SET
             url = COALESCE($3, url),
             events = COALESCE($4, events),
             description = COALESCE($5, description),
             enabled = COALESCE($6, enabled),
             disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
             failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END,
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(tenant.id())
    .bind(id)
    .bind(url)
    .bind(events.map(names))
    .bind(description)
    .bind(enabled)
    .fetch_optional(observed("webhooks.update", conn))
    .await?;
    Ok(row.map(to_model))
}

pub async fn set_secret(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    secret_encrypted: &str,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_subscriptions SET secret_encrypted = $3, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(tenant.id())
    .bind(id)
    .bind(secret_encrypted)
    .fetch_optional(observed("webhooks.set_secret", conn))
    .await?;
    Ok(row.map(to_model))
}

pub async fn delete(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM webhook_subscriptions WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(id)
        .execute(observed("webhooks.delete", conn))
        .await?;
    Ok(deleted.rows_affected() == 1)
}
