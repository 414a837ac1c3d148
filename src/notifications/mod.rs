//! Notifications: what webhooks and Telegram share. Beat turns each new
//! outbox event into deliveries for every channel, in one transaction with
//! marking the event published ([`dispatch`]), then hands every due
//! delivery to the workers ([`dispatch_and_hand_over`]).

use uuid::Uuid;

use crate::db::{self, observed};
use crate::infra::Infra;

/// Turns up to `limit` new outbox events into deliveries on every channel.
/// Returns the new webhook deliveries, as (tenant, delivery) pairs.
pub async fn dispatch(ctx: &Infra, limit: i32) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let events: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT tenant_id, event_id FROM webhook_undispatched_events($1)")
            .bind(limit)
            .fetch_all(observed(
                "webhooks.undispatched_events",
                &mut *ctx.db.acquire().await?,
            ))
            .await?;
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
        crate::telegram::delivery::enqueue_for_event(
            &mut tx,
            tenant_id,
            event_id,
            &event_type,
            &payload,
        )
        .await?;
        let inserted = crate::webhooks::delivery::enqueue_for_event(
            &mut tx,
            tenant_id,
            event_id,
            &event_type,
            &payload,
        )
        .await?;
        tx.commit().await?;
        created.extend(inserted.into_iter().map(|id| (tenant_id, id)));
    }
    Ok(created)
}

/// Turns new outbox events into deliveries, then hands every due delivery
/// (new ones, and retries whose time has come) to the workers. A delivery
/// handed over less than a minute ago and not attempted since is left alone:
/// its message may still be on its way.
pub async fn dispatch_and_hand_over(ctx: &Infra) -> anyhow::Result<()> {
    dispatch(ctx, 500).await?;
    let due: Vec<(Uuid, Uuid)> =
        sqlx::query_as(
            "SELECT tenant_id, delivery_id FROM webhook_take_due_deliveries(500, interval '60 seconds')",
        )
            .fetch_all(observed("webhooks.take_due_deliveries", &mut *ctx.db.acquire().await?))
            .await?;
    for (tenant_id, delivery_id) in due {
        crate::webhooks::tasks::send_delivery(&ctx.queue, tenant_id, delivery_id).await?;
    }
    let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, delivery_id FROM telegram_take_due_deliveries(500, interval '60 seconds')",
    )
    .fetch_all(observed("telegram.take_due_deliveries", &mut *ctx.db.acquire().await?))
    .await?;
    for (tenant_id, delivery_id) in due {
        crate::telegram::tasks::send_telegram(&ctx.queue, tenant_id, delivery_id).await?;
    }
    Ok(())
}
