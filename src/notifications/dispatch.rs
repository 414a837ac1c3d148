//! Dispatch, run by beat: turns each new outbox event into deliveries on
//! every channel, in one transaction with marking the event published
//! ([`dispatch`]), then hands every due delivery to the workers
//! ([`dispatch_and_hand_over`]). The channels are the caller's list.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Channel;
use super::delivery::Tables;
use crate::db::{self, observed};
use crate::infra::Infra;

/// How many events, and due deliveries per channel, one round takes.
const ROUND: i32 = 500;

/// Turns up to `limit` new outbox events into deliveries on every channel.
/// Returns the new deliveries as (tenant, delivery) pairs: for each event,
/// those of the first channel in `channels`, then the next channel's.
pub async fn dispatch(
    ctx: &Infra,
    channels: &[&dyn Channel],
    limit: i32,
) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let mut tx = ctx.db.begin().await?;
    let events: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT tenant_id, event_id FROM webhook_undispatched_events($1)")
            .bind(limit)
            .fetch_all(observed("webhooks.undispatched_events", &mut *tx))
            .await?;
    tx.commit().await?;
    let mut created = Vec::new();
    for (tenant_id, event_id) in events {
        let mut tx = db::begin_tenant_tx(&ctx.db, tenant_id).await?;
        let event: Option<(String, serde_json::Value)> = sqlx::query_as(
            "UPDATE outbox_events SET published_at = now()
             WHERE tenant_id = $1 AND id = $2 AND published_at IS NULL
             RETURNING event_type, payload",
        )
        .bind(tenant_id)
        .bind(event_id)
        .fetch_optional(observed("webhooks.publish_event", &mut *tx))
        .await?;
        let Some((event_type, payload)) = event else {
            continue;
        };
        for channel in channels {
            let inserted = enqueue_for_event(
                channel.tables(),
                &mut tx,
                tenant_id,
                event_id,
                &event_type,
                &payload,
            )
            .await?;
            created.extend(inserted.into_iter().map(|id| (tenant_id, id)));
        }
        tx.commit().await?;
    }
    Ok(created)
}

/// Inserts one delivery per enabled target of the tenant registered for
/// `event_type` (inside the dispatching transaction). Returns the new ids.
async fn enqueue_for_event(
    tables: &Tables,
    conn: &mut PgConnection,
    tenant_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    payload: &Value,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let targets: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {} WHERE tenant_id = $1 AND enabled AND $2 = ANY (events) ORDER BY id",
        tables.targets
    )))
    .bind(tenant_id)
    .bind(event_type)
    .fetch_all(observed(tables.match_kind, &mut *conn))
    .await?;
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = targets.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {deliveries}
             (id, tenant_id, {target}, event_id, event_type, payload, next_attempt_at)
         SELECT d.id, $1, d.target, $4, $5, $6, now()
         FROM unnest($2::uuid[], $3::uuid[]) AS d(id, target)
         ON CONFLICT ON CONSTRAINT {deliveries}_event_key DO NOTHING
         RETURNING id",
        deliveries = tables.deliveries,
        target = tables.target_column,
    )))
    .bind(tenant_id)
    .bind(&ids)
    .bind(&targets)
    .bind(event_id)
    .bind(event_type)
    .bind(payload)
    .fetch_all(observed(tables.insert_kind, conn))
    .await
}

/// Turns new outbox events into deliveries, then hands every due delivery
/// (new ones, and retries whose time has come) to the workers. A delivery
/// handed over less than a minute ago and not attempted since is left alone:
/// its message may still be on its way.
pub async fn dispatch_and_hand_over(ctx: &Infra, channels: &[&dyn Channel]) -> anyhow::Result<()> {
    dispatch(ctx, channels, ROUND).await?;
    for channel in channels {
        let tables = channel.tables();
        let mut tx = ctx.db.begin().await?;
        let due: Vec<(Uuid, Uuid)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT tenant_id, delivery_id FROM {}($1, interval '60 seconds')",
            tables.take_due_function
        )))
        .bind(ROUND)
        .fetch_all(observed(tables.take_due_kind, &mut *tx))
        .await?;
        tx.commit().await?;
        for (tenant_id, delivery_id) in due {
            channel
                .hand_over(&ctx.queue, tenant_id, delivery_id)
                .await?;
        }
    }
    Ok(())
}
