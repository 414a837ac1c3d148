//! Sending events to Telegram chats: the Telegram [`Channel`] of
//! [`crate::notifications`] — a readable message per event through the Bot
//! API's `sendMessage`, with the rules every channel shares (a claim lease,
//! the retry schedule kept in PostgreSQL, or Telegram's own `retry_after`
//! when it asks for longer; disabling after failing too long). The bot token
//! sits in the request URL, so no error message ever includes the URL.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::TenantCtx;
use crate::broker::TaskQueue;
use crate::infra::Infra;
use crate::notifications::delivery::Tables;
use crate::notifications::{self, Attempt, Channel, Claimed, Sent};
use crate::telemetry::metrics::{MetricDef, Metrics};
use crate::telemetry::outbound;

pub const TELEGRAM_DELIVERIES: MetricDef = MetricDef::counter(
    "stock_tracker_telegram_deliveries_total",
    "Telegram message attempts by event type and outcome: delivered, retried or failed",
    &["event", "outcome"],
);

pub const METRICS: &[MetricDef] = &[TELEGRAM_DELIVERIES];

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
        "telegram.test" => "👋 A test message from Stock Tracker: this chat receives the events it was registered for.".to_owned(),
        other => format!("Stock Tracker event: {other}"),
    }
}

/// The Telegram channel: messages through the Bot API's `sendMessage`,
/// honouring Telegram's `retry_after`.
pub struct Telegram;

static TABLES: Tables = Tables {
    deliveries: "telegram_deliveries",
    targets: "telegram_chats",
    target_column: "chat_id",
    address_column: "chat_id",
    secret_column: "bot_token_encrypted",
    target_noun: "chat",
    target_title: "Telegram chat",
    test_event: "telegram.test",
    find_kind: "telegram.target_exists",
    match_kind: "telegram.matching_chats",
    insert_kind: "telegram.insert_deliveries",
    claim_kind: "telegram.claim_delivery",
    record_kind: "telegram.record_attempt",
    lock_kind: "telegram.lock_chat",
    track_kind: "telegram.track_failures",
    log_kind: "telegram.deliveries",
    retry_kind: "telegram.retry_delivery",
    test_kind: "telegram.insert_test_delivery",
    take_due_function: "telegram_take_due_deliveries",
    take_due_kind: "telegram.take_due_deliveries",
};

impl Channel for Telegram {
    fn tables(&self) -> &'static Tables {
        &TABLES
    }

    fn hand_over<'a>(
        &'a self,
        queue: &'a TaskQueue,
        tenant_id: Uuid,
        delivery_id: Uuid,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(super::tasks::send_telegram(queue, tenant_id, delivery_id))
    }

    fn send<'a>(
        &'a self,
        ctx: &'a Infra,
        _tenant: TenantCtx,
        _delivery_id: Uuid,
        claimed: &'a Claimed,
        _now: OffsetDateTime,
        timeout: Duration,
    ) -> BoxFuture<'a, anyhow::Result<Sent>> {
        Box::pin(async move { Ok(post(ctx, claimed, timeout).await) })
    }

    fn deliveries_metric(&self) -> &'static MetricDef {
        &TELEGRAM_DELIVERIES
    }

    fn register_metrics(&self, metrics: &Metrics) {
        notifications::delivery::register_deliveries(metrics, &TELEGRAM_DELIVERIES);
        outbound::register(metrics, "telegram", &["send_message"]);
    }

    fn disabled_reason(&self, _since: OffsetDateTime) -> String {
        "Messages have failed for too long; check the bot token and chat, then enable the chat again".into()
    }
}

/// One attempt at `now` of a Telegram message.
pub async fn attempt(
    ctx: &Infra,
    tenant_id: Uuid,
    delivery_id: Uuid,
    now: OffsetDateTime,
) -> anyhow::Result<Attempt> {
    notifications::attempt(ctx, &Telegram, tenant_id, delivery_id, now).await
}

/// Posts the message; returns the HTTP status, the result, and Telegram's
/// `retry_after` when it asked for one.
async fn post(ctx: &Infra, claimed: &Claimed, timeout: Duration) -> Sent {
    let Some(token) = ctx
        .secrets
        .decrypt(&claimed.secret_encrypted)
        .ok()
        .and_then(|plain| String::from_utf8(plain).ok())
    else {
        return Sent::failed("the bot token cannot be read; register the chat again");
    };
    let url = format!(
        "{}/bot{token}/sendMessage",
        ctx.settings.telegram.api_base_url.trim_end_matches('/')
    );
    let body = json!({
        "chat_id": claimed.address,
        "text": message(&claimed.event_type, &claimed.payload),
        "disable_web_page_preview": true,
    });
    let request = ctx.notifier.post(url).timeout(timeout).json(&body);
    let response = match outbound::send(&ctx.metrics, "telegram", "send_message", request).await {
        Ok(response) => response,
        Err(err) if err.is_timeout() => return Sent::failed("Telegram did not answer in time"),
        Err(_) => return Sent::failed("Telegram could not be reached"),
    };
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if (200..300).contains(&status) && answer["ok"] == true {
        return Sent {
            status_code: Some(status),
            result: Ok(()),
            retry_after_secs: None,
        };
    }
    let description = answer["description"].as_str().unwrap_or("no description");
    Sent {
        status_code: Some(status),
        result: Err(format!("Telegram answered {status}: {description}")),
        retry_after_secs: answer["parameters"]["retry_after"].as_u64(),
    }
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
