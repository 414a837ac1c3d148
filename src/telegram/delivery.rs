//! Sending events to Telegram chats: a readable message per event through
//! the Bot API's `sendMessage`, with the webhooks' rules — a claim lease,
//! the retry schedule kept in PostgreSQL (or Telegram's own `retry_after`
//! when it asks for longer), disabling after failing too long. The bot token
//! sits in the request URL, so no error message ever includes the URL.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::TenantCtx;
use crate::db;
use crate::db::observed;
use crate::infra::Infra;
use crate::telemetry::outbound;
use crate::webhooks::delivery::Attempt;

/// The message a chat reads for an event.
pub fn message(event_type: &str, data: &Value) -> String {
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let number = |key: &str| data.get(key).and_then(Value::as_i64).unwrap_or(0);
    match event_type {
        "sync.completed" => format!(
            "✅ Sync completed: {} products read, {} new, {} updated, {} stock changes, {} low on stock.",
            number("products_seen"),
            number("products_created"),
            number("products_updated"),
            number("stock_changes"),
            number("low_stock_products"),
        ),
        "sync.failed" => format!("❌ Sync failed: {}", text("error")),
        "stock.low" => format!(
            "⚠️ Low stock: {} ({}) has {} left (threshold {}).",
            text("name"),
            text("sku"),
            number("stock"),
            number("threshold"),
        ),
        other => format!("Stock Tracker event: {other}"),
    }
}

/// Inserts a delivery for every enabled chat registered for `event_type`,
/// in the dispatcher's transaction.
pub async fn enqueue_for_event(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    payload: &Value,
) -> Result<u64, sqlx::Error> {
    let chats: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM telegram_chats WHERE tenant_id = $1 AND enabled AND $2 = ANY (events) ORDER BY id",
    )
    .bind(tenant_id)
    .bind(event_type)
    .fetch_all(observed("telegram.matching_chats", &mut *conn))
    .await?;
    if chats.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = chats.iter().map(|_| Uuid::now_v7()).collect();
    let inserted = sqlx::query(
        "INSERT INTO telegram_deliveries (id, tenant_id, chat_id, event_id, event_type, payload, next_attempt_at)
         SELECT d.id, $1, d.chat_id, $4, $5, $6, now()
         FROM unnest($2::uuid[], $3::uuid[]) AS d(id, chat_id)
         ON CONFLICT ON CONSTRAINT telegram_deliveries_event_key DO NOTHING",
    )
    .bind(tenant_id)
    .bind(&ids)
    .bind(&chats)
    .bind(event_id)
    .bind(event_type)
    .bind(payload)
    .execute(observed("telegram.insert_deliveries", conn))
    .await?;
    Ok(inserted.rows_affected())
}

#[derive(sqlx::FromRow)]
struct Claimed {
    chat: Uuid,
    event_type: String,
    payload: Value,
    attempts: i32,
    chat_id: String,
    bot_token_encrypted: String,
    enabled: bool,
}

/// One attempt at `now`.
pub async fn attempt(
    ctx: &Infra,
    tenant_id: Uuid,
    delivery_id: Uuid,
    now: OffsetDateTime,
) -> anyhow::Result<Attempt> {
    let tenant = TenantCtx::for_system_task(tenant_id);
    let timeout = Duration::from_millis(ctx.settings.webhooks.timeout_ms);
    let lease = now + timeout + Duration::from_secs(30);
    let claimed: Option<Claimed> = {
        let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
        let claimed = sqlx::query_as(
            "UPDATE telegram_deliveries d SET next_attempt_at = $4, updated_at = $3
             FROM telegram_chats c
             WHERE d.tenant_id = $1 AND d.id = $2 AND d.status = 'pending'
               AND d.next_attempt_at <= $3 AND c.id = d.chat_id
             RETURNING d.chat_id AS chat, d.event_type, d.payload, d.attempts,
                       c.chat_id, c.bot_token_encrypted, c.enabled",
        )
        .bind(tenant.id())
        .bind(delivery_id)
        .bind(now)
        .bind(lease)
        .fetch_optional(observed("telegram.claim_delivery", &mut *tx))
        .await?;
        tx.commit().await?;
        claimed
    };
    let Some(claimed) = claimed else {
        return Ok(Attempt::Skipped);
    };
    let (status_code, result, asked) = if claimed.enabled {
        send(ctx, &claimed, timeout).await
    } else {
        (None, Err("the chat is disabled".to_owned()), None)
    };
    let outcome = match result {
        Ok(()) => Attempt::Delivered {
            status_code: status_code.unwrap_or(200),
        },
        Err(error) => {
            let scheduled = ctx
                .settings
                .webhooks
                .retry_schedule_secs
                .get(claimed.attempts as usize)
                .copied()
                .filter(|_| claimed.enabled);
            Attempt::Failed {
                error,
                next_attempt_at: scheduled
                    .map(|secs| now + Duration::from_secs(secs.max(asked.unwrap_or(0)))),
            }
        }
    };
    record(
        ctx,
        tenant,
        delivery_id,
        &claimed,
        now,
        status_code,
        &outcome,
    )
    .await?;
    Ok(outcome)
}

/// Posts the message; returns the HTTP status, the result, and Telegram's
/// `retry_after` when it asked for one.
async fn send(
    ctx: &Infra,
    claimed: &Claimed,
    timeout: Duration,
) -> (Option<u16>, Result<(), String>, Option<u64>) {
    let Some(token) = ctx
        .secrets
        .decrypt(&claimed.bot_token_encrypted)
        .ok()
        .and_then(|plain| String::from_utf8(plain).ok())
    else {
        return (
            None,
            Err("the bot token cannot be read; register the chat again".into()),
            None,
        );
    };
    let url = format!(
        "{}/bot{token}/sendMessage",
        ctx.settings.telegram.api_base_url.trim_end_matches('/')
    );
    let body = json!({
        "chat_id": claimed.chat_id,
        "text": message(&claimed.event_type, &claimed.payload),
        "disable_web_page_preview": true,
    });
    let request = ctx.notifier.post(url).timeout(timeout).json(&body);
    let response = match outbound::send(&ctx.metrics, "telegram", "send_message", request).await {
        Ok(response) => response,
        Err(err) if err.is_timeout() => {
            return (None, Err("Telegram did not answer in time".into()), None);
        }
        Err(_) => return (None, Err("Telegram could not be reached".into()), None),
    };
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if (200..300).contains(&status) && answer["ok"] == true {
        return (Some(status), Ok(()), None);
    }
    let description = answer["description"].as_str().unwrap_or("no description");
    let retry_after = answer["parameters"]["retry_after"].as_u64();
    (
        Some(status),
        Err(format!("Telegram answered {status}: {description}")),
        retry_after,
    )
}

async fn record(
    ctx: &Infra,
    tenant: TenantCtx,
    delivery_id: Uuid,
    claimed: &Claimed,
    now: OffsetDateTime,
    status_code: Option<u16>,
    outcome: &Attempt,
) -> anyhow::Result<()> {
    let (status, error, next, delivered) = match outcome {
        Attempt::Delivered { .. } => ("succeeded", None, None, Some(now)),
        Attempt::Failed {
            error,
            next_attempt_at: Some(next),
        } => ("pending", Some(error.as_str()), Some(*next), None),
        Attempt::Failed { error, .. } => ("failed", Some(error.as_str()), None, None),
        Attempt::Skipped => return Ok(()),
    };
    let succeeded = matches!(outcome, Attempt::Delivered { .. });
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    // The attempt is over, so its hand-over stamp goes: the next one is due at
    // `next_attempt_at`. (The stamp only guards a hand-over whose message was
    // lost; kept, it held every retry back until it was a minute old.)
    sqlx::query(
        "UPDATE telegram_deliveries SET status = $3, attempts = attempts + 1, status_code = $4,
             error = $5, next_attempt_at = $6, delivered_at = $7, updated_at = $8,
             handed_over_at = NULL
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(delivery_id)
    .bind(status)
    .bind(status_code.map(i32::from))
    .bind(error)
    .bind(next)
    .bind(delivered)
    .bind(now)
    .execute(observed("telegram.record_attempt", &mut *tx))
    .await?;
    let (enabled, failing_since): (bool, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT enabled, failing_since FROM telegram_chats WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tenant.id())
    .bind(claimed.chat)
    .fetch_one(observed("telegram.lock_chat", &mut *tx))
    .await?;
    let since = (!succeeded).then(|| failing_since.unwrap_or(now));
    let limit = Duration::from_secs(ctx.settings.webhooks.disable_after_secs);
    let disable = enabled && since.is_some_and(|since| now - since >= limit);
    sqlx::query(
        "UPDATE telegram_chats SET failing_since = $3, enabled = enabled AND NOT $4,
             disabled_reason = CASE WHEN $4 THEN $5 ELSE disabled_reason END
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(claimed.chat)
    .bind(since)
    .bind(disable)
    .bind("Messages have failed for too long; check the bot token and chat, then enable the chat again")
    .execute(observed("telegram.track_failures", &mut *tx))
    .await?;
    tx.commit().await?;
    let label = match outcome {
        Attempt::Delivered { .. } => "delivered",
        Attempt::Failed {
            next_attempt_at: Some(_),
            ..
        } => "retried",
        _ => "failed",
    };
    ctx.metrics
        .telegram_deliveries
        .with_label_values(&[claimed.event_type.as_str(), label])
        .inc();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_readable() {
        let text = message(
            "stock.low",
            &json!({"name": "Mug", "sku": "M-1", "stock": 2, "threshold": 10}),
        );
        assert_eq!(text, "⚠️ Low stock: Mug (M-1) has 2 left (threshold 10).");
        assert!(message("sync.failed", &json!({"error": "boom"})).ends_with("boom"));
    }
}
