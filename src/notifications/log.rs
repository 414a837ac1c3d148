//! What the API offers on every channel's deliveries: the delivery log, a
//! manual retry (due at once again, whatever the schedule said) and a test
//! delivery to one target, due now. The SQL is written once; each channel
//! names its tables ([`Tables`]).

use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::delivery::Tables;
use crate::auth::TenantCtx;
use crate::db::observed;

/// One event sent (or being sent) to one target (a webhook subscription or
/// a Telegram chat).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    /// `sync.completed`, `sync.failed`, `stock.low`, or the channel's test
    /// event (`webhook.test`, `telegram.test`).
    pub event_type: String,
    /// `pending` (sending or waiting for a retry), `succeeded` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// The receiver's last HTTP status, if it answered.
    pub status_code: Option<i32>,
    /// What went wrong last (never the URL or a secret).
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, event_id, event_type, status, attempts, status_code, error, \
     delivered_at, next_attempt_at, created_at";

/// A target's deliveries, newest first.
pub async fn deliveries(
    tables: &Tables,
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    target_id: Uuid,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {deliveries}
         WHERE tenant_id = $1 AND {target} = $2 AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
        deliveries = tables.deliveries,
        target = tables.target_column,
    )))
    .bind(tenant.id())
    .bind(target_id)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed(tables.log_kind, conn))
    .await
}

/// Makes a delivery due now again (a manual retry).
pub async fn retry_delivery(
    tables: &Tables,
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    target_id: Uuid,
    delivery_id: Uuid,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE {deliveries} SET status = 'pending', next_attempt_at = now(),
             handed_over_at = NULL, updated_at = now()
         WHERE tenant_id = $1 AND {target} = $2 AND id = $3
         RETURNING {COLUMNS}",
        deliveries = tables.deliveries,
        target = tables.target_column,
    )))
    .bind(tenant.id())
    .bind(target_id)
    .bind(delivery_id)
    .fetch_optional(observed(tables.retry_kind, conn))
    .await
}

/// A test delivery (`event_type`, `payload`) to one target, due now.
pub async fn insert_test_delivery(
    tables: &Tables,
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    target_id: Uuid,
    event_type: &str,
    payload: &Value,
) -> Result<Delivery, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {deliveries}
             (id, tenant_id, {target}, event_id, event_type, payload, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())
         RETURNING {COLUMNS}",
        deliveries = tables.deliveries,
        target = tables.target_column,
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(target_id)
    .bind(Uuid::now_v7())
    .bind(event_type)
    .bind(payload)
    .fetch_one(observed(tables.test_kind, conn))
    .await
}
