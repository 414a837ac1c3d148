//! Delivering events to webhook subscriptions: the webhook [`Channel`] of
//! [`crate::notifications`], which holds the claim, retry and disabling
//! rules both channels share.
//!
//! - **Dispatch** (beat, through [`crate::notifications`]): each new outbox
//!   event becomes one delivery row per enabled subscription to its type,
//!   in the transaction that marks it published.
//! - **Send** ([`Webhooks`]): the URL checked again against SSRF, the body
//!   signed (Standard Webhooks: `webhook-id` is the delivery's id, the same
//!   on every retry) and posted without following redirects, within
//!   `notifications.timeout_ms`. 2xx is success.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use super::target;
use crate::auth::TenantCtx;
use crate::broker::TaskQueue;
use crate::infra::Infra;
pub use crate::notifications::Attempt;
use crate::notifications::{self, Channel, Claimed, Sent, delivery::Tables};
use crate::telemetry::metrics::{CHECK_LATENCY_BUCKETS, MetricDef, Metrics};
use crate::telemetry::outbound;

pub const WEBHOOK_DELIVERIES: MetricDef = MetricDef::counter(
    "stock_tracker_webhook_deliveries_total",
    "Webhook delivery attempts by event type and outcome: delivered, retried (failed, another attempt scheduled) or failed (no attempts left)",
    &["event", "outcome"],
);

pub const WEBHOOK_DELIVERY_DURATION: MetricDef = MetricDef::histogram(
    "stock_tracker_webhook_delivery_duration_seconds",
    "Duration of webhook requests to receivers",
    &[],
    CHECK_LATENCY_BUCKETS,
);

pub const WEBHOOK_SUBSCRIPTIONS_DISABLED: MetricDef = MetricDef::counter(
    "stock_tracker_webhook_subscriptions_disabled_total",
    "Webhook subscriptions disabled by the service after failing too long",
    &[],
);

pub const METRICS: &[MetricDef] = &[
    WEBHOOK_DELIVERIES,
    WEBHOOK_DELIVERY_DURATION,
    WEBHOOK_SUBSCRIPTIONS_DISABLED,
];

/// Signs a message the Standard Webhooks way: `v1,` + base64 of the
/// HMAC-SHA256, keyed by the secret's decoded bytes, of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The webhook channel: signed HTTP posts to the subscription's URL.
pub struct Webhooks;

static TABLES: Tables = Tables {
    deliveries: "webhook_deliveries",
    targets: "webhook_subscriptions",
    target_column: "subscription_id",
    address_column: "url",
    secret_column: "secret_encrypted",
    target_noun: "subscription",
    target_title: "Webhook subscription",
    test_event: "webhook.test",
    find_kind: "webhooks.target_exists",
    match_kind: "webhooks.matching_subscriptions",
    insert_kind: "webhooks.insert_deliveries",
    claim_kind: "webhooks.claim_delivery",
    record_kind: "webhooks.record_attempt",
    lock_kind: "webhooks.lock_subscription",
    track_kind: "webhooks.track_failures",
    log_kind: "webhooks.deliveries",
    retry_kind: "webhooks.retry_delivery",
    test_kind: "webhooks.insert_test_delivery",
    take_due_function: "webhook_take_due_deliveries",
    take_due_kind: "webhooks.take_due_deliveries",
};

impl Channel for Webhooks {
    fn tables(&self) -> &'static Tables {
        &TABLES
    }

    fn hand_over<'a>(
        &'a self,
        queue: &'a TaskQueue,
        tenant_id: Uuid,
        delivery_id: Uuid,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(super::tasks::send_delivery(queue, tenant_id, delivery_id))
    }

    fn send<'a>(
        &'a self,
        ctx: &'a Infra,
        _tenant: TenantCtx,
        delivery_id: Uuid,
        claimed: &'a Claimed,
        now: OffsetDateTime,
        timeout: Duration,
    ) -> BoxFuture<'a, anyhow::Result<Sent>> {
        Box::pin(async move {
            let body = json!({
                "type": claimed.event_type,
                "timestamp": now.format(&time::format_description::well_known::Rfc3339)?,
                "data": claimed.payload,
            })
            .to_string();
            let sent = post(ctx, claimed, delivery_id, &body, now, timeout).await;
            Ok(match sent {
                Ok(code) => Sent {
                    status_code: Some(code),
                    result: if (200..300).contains(&code) {
                        Ok(())
                    } else {
                        Err(format!("the receiver answered {code}"))
                    },
                    retry_after_secs: None,
                },
                Err(error) => Sent::failed(error),
            })
        })
    }

    fn deliveries_metric(&self) -> &'static MetricDef {
        &WEBHOOK_DELIVERIES
    }

    fn disabled_reason(&self, since: OffsetDateTime) -> String {
        format!(
            "Deliveries have failed without a success since {}; fix the receiver, then enable the subscription again",
            since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        )
    }

    fn register_metrics(&self, metrics: &Metrics) {
        notifications::delivery::register_deliveries(metrics, &WEBHOOK_DELIVERIES);
        metrics
            .histogram_vec(&WEBHOOK_DELIVERY_DURATION)
            .with_label_values::<&str>(&[]);
        metrics.counter(&WEBHOOK_SUBSCRIPTIONS_DISABLED);
        outbound::register(metrics, "webhook", &["deliver"]);
    }

    fn on_disabled(&self, metrics: &Metrics, subscription_id: Uuid) {
        metrics.counter(&WEBHOOK_SUBSCRIPTIONS_DISABLED).inc();
        tracing::warn!(%subscription_id, "webhook subscription disabled after failing too long");
    }
}

/// One attempt at `now` of a webhook delivery.
pub async fn attempt(
    ctx: &Infra,
    tenant_id: Uuid,
    delivery_id: Uuid,
    now: OffsetDateTime,
) -> anyhow::Result<Attempt> {
    notifications::attempt(ctx, &Webhooks, tenant_id, delivery_id, now).await
}

/// Signs and posts the body. Errors name what happened, never the URL
/// (its path or query may hold a secret).
async fn post(
    ctx: &Infra,
    claimed: &Claimed,
    delivery_id: Uuid,
    body: &str,
    now: OffsetDateTime,
    timeout: Duration,
) -> Result<u16, String> {
    // The host is resolved and checked by the client's resolver, which
    // connects to exactly what it checked.
    let url = target::check_form(&claimed.address, &ctx.settings.webhooks)
        .map_err(|err| format!("the URL is refused: {err}"))?;
    let secret = ctx
        .secrets
        .decrypt(&claimed.secret_encrypted)
        .ok()
        .and_then(|plain| String::from_utf8(plain).ok())
        .ok_or("the signing secret cannot be read; rotate it")?;
    let id = delivery_id.to_string();
    let timestamp = now.unix_timestamp();
    let signature =
        sign(&secret, &id, timestamp, body).ok_or("the signing secret is malformed; rotate it")?;
    let started = std::time::Instant::now();
    let request = ctx
        .webhook_client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("stock-tracker-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned());
    let response = outbound::send(&ctx.metrics, "webhook", "deliver", request).await;
    ctx.metrics
        .histogram_vec(&WEBHOOK_DELIVERY_DURATION)
        .with_label_values::<&str>(&[])
        .observe(started.elapsed().as_secs_f64());
    match response {
        Ok(response) => Ok(response.status().as_u16()),
        Err(err) if let Some(refused) = crate::ssrf::refusal(&err) => {
            Err(format!("the URL is refused: {refused}"))
        }
        Err(err) if err.is_timeout() => Err("the receiver did not answer in time".into()),
        Err(err) if err.is_connect() => Err("the receiver could not be reached".into()),
        Err(_) => Err("the request failed".into()),
    }
}
