//! What the API offers on every channel's deliveries: the delivery log, a
//! manual retry (due at once again, whatever the schedule said) and a test
//! delivery to one target, due now, each handed to the workers at once (or
//! by beat, if the broker is down). Written once; each channel names its
//! tables ([`Tables`]).

use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Channel;
use super::delivery::Tables;
use crate::auth::{Admin, Auth, TenantCtx};
use crate::db::{self, observed};
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;

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
async fn select_page(
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
async fn make_due(
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

/// A test delivery (`payload`) to one target, due now.
async fn insert_test(
    tables: &Tables,
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    target_id: Uuid,
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
    .bind(tables.test_event)
    .bind(payload)
    .fetch_one(observed(tables.test_kind, conn))
    .await
}

/// Whether the tenant has this target: 404 otherwise.
async fn target_exists(
    tables: &Tables,
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    target_id: Uuid,
) -> Result<(), ApiError> {
    let found: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE tenant_id = $1 AND id = $2)",
        tables.targets
    )))
    .bind(tenant.id())
    .bind(target_id)
    .fetch_one(observed(tables.find_kind, conn))
    .await?;
    if found {
        Ok(())
    } else {
        Err(ApiError::not_found(tables.target_title))
    }
}

/// Hands a due delivery to the workers; if the broker is down, beat will.
async fn hand_over(ctx: &Infra, channel: &dyn Channel, tenant_id: Uuid, delivery: &Delivery) {
    if let Err(err) = channel.hand_over(&ctx.queue, tenant_id, delivery.id).await {
        tracing::warn!(error = %format!("{err:#}"), delivery_id = %delivery.id, "broker unavailable; beat will hand the delivery over");
    }
}

/// A page of the target's delivery log.
pub async fn page(
    ctx: &Infra,
    channel: &dyn Channel,
    auth: &Auth<Admin>,
    target_id: Uuid,
    page: PageRequest,
) -> Result<Page<Delivery>, ApiError> {
    let tables = channel.tables();
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    target_exists(tables, &tenant, &mut tx, target_id).await?;
    let rows = select_page(tables, &tenant, &mut tx, target_id, page.after, page.limit).await?;
    Ok(Page::from_rows(rows, page.limit, |d| d.id))
}

/// Makes one of the target's deliveries due now, whatever its state, and
/// hands it over.
pub async fn retry(
    ctx: &Infra,
    channel: &dyn Channel,
    auth: &Auth<Admin>,
    target_id: Uuid,
    delivery_id: Uuid,
) -> Result<Delivery, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    let delivery = make_due(channel.tables(), &tenant, &mut tx, target_id, delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Delivery"))?;
    tx.commit().await?;
    hand_over(ctx, channel, tenant.id(), &delivery).await;
    Ok(delivery)
}

/// Sends the channel's test event (`payload`) to the target, through the
/// usual delivery.
pub async fn send_test(
    ctx: &Infra,
    channel: &dyn Channel,
    auth: &Auth<Admin>,
    target_id: Uuid,
    payload: &Value,
) -> Result<Delivery, ApiError> {
    let tables = channel.tables();
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    target_exists(tables, &tenant, &mut tx, target_id).await?;
    let delivery = insert_test(tables, &tenant, &mut tx, target_id, payload).await?;
    tx.commit().await?;
    hand_over(ctx, channel, tenant.id(), &delivery).await;
    Ok(delivery)
}
