//! Delivering events to webhook subscriptions.
//!
//! - **Dispatch** (beat, through [`crate::notifications`]): each new outbox
//!   event becomes one delivery row per enabled subscription to its type
//!   ([`enqueue_for_event`]), in the transaction that marks it published.
//! - **Attempt** (`deliver_webhook` task, or beat for due retries): the
//!   delivery is claimed (its `next_attempt_at` pushed past the attempt's
//!   timeout, so a duplicate task finds nothing to do and a dead worker's
//!   claim expires), the URL checked again against SSRF, the request signed
//!   (Standard Webhooks) and sent without following redirects. 2xx is
//!   success; anything else is retried after the next delay of
//!   `webhooks.retry_schedule_secs`, kept in `next_attempt_at` (beat picks it
//!   up: no long broker ETAs), until the schedule is exhausted.
//! - A subscription whose deliveries have failed, without a success, for
//!   `webhooks.disable_after_secs` is disabled, with the reason.
//!
//! Every step takes the current time as an argument, so tests drive the
//! schedule with a clock of their own.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::target;
use crate::auth::TenantCtx;
use crate::db;
use crate::db::observed;
use crate::infra::Infra;
use crate::telemetry::outbound;

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

/// Inserts one delivery per enabled subscription of the tenant to
/// `event_type` (inside the dispatching transaction). Returns the new ids.
pub async fn enqueue_for_event(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    payload: &Value,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let subscriptions: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM webhook_subscriptions
         WHERE tenant_id = $1 AND enabled AND $2 = ANY (events) ORDER BY id",
    )
    .bind(tenant_id)
    .bind(event_type)
    .fetch_all(observed("webhooks.matching_subscriptions", &mut *conn))
    .await?;
    let ids: Vec<Uuid> = subscriptions.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query_scalar(
        "INSERT INTO webhook_deliveries
             (id, tenant_id, subscription_id, event_id, event_type, payload, next_attempt_at)
         SELECT d.id, $1, d.subscription_id, $4, $5, $6, now()
         FROM unnest($2::uuid[], $3::uuid[]) AS d(id, subscription_id)
         ON CONFLICT ON CONSTRAINT webhook_deliveries_event_key DO NOTHING
         RETURNING id",
    )
    .bind(tenant_id)
    .bind(&ids)
    .bind(&subscriptions)
    .bind(event_id)
    .bind(event_type)
    .bind(payload)
    .fetch_all(observed("webhooks.insert_deliveries", conn))
    .await
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Nothing to do: not due, already claimed, finished, or gone.
    Skipped,
    Delivered {
        status_code: u16,
    },
    /// Failed; retried at `next_attempt_at`, or `None` when the schedule is exhausted.
    Failed {
        error: String,
        next_attempt_at: Option<OffsetDateTime>,
    },
}

#[derive(sqlx::FromRow)]
struct Claimed {
    subscription_id: Uuid,
    event_type: String,
    payload: Value,
    attempts: i32,
    url: String,
    secret_encrypted: String,
    enabled: bool,
}

/// One delivery attempt at `now`.
pub async fn attempt(
    ctx: &Infra,
    tenant_id: Uuid,
    delivery_id: Uuid,
    now: OffsetDateTime,
) -> anyhow::Result<Attempt> {
    let settings = &ctx.settings.webhooks;
    let tenant = TenantCtx::for_system_task(tenant_id);
    let timeout = Duration::from_millis(settings.timeout_ms);
    // The claim lasts the attempt's timeout and a margin.
    let lease = now + timeout + Duration::from_secs(30);
    let claimed: Option<Claimed> = {
        let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
        let claimed = sqlx::query_as(
            "UPDATE webhook_deliveries d SET next_attempt_at = $4, updated_at = $3
             FROM webhook_subscriptions s
             WHERE d.tenant_id = $1 AND d.id = $2 AND d.status = 'pending'
               AND d.next_attempt_at <= $3 AND s.id = d.subscription_id
             RETURNING d.subscription_id, d.event_type, d.payload, d.attempts,
                       s.url, s.secret_encrypted, s.enabled",
        )
        .bind(tenant.id())
        .bind(delivery_id)
        .bind(now)
        .bind(lease)
        .fetch_optional(observed("webhooks.claim_delivery", &mut *tx))
        .await?;
        tx.commit().await?;
        claimed
    };
    let Some(claimed) = claimed else {
        return Ok(Attempt::Skipped);
    };
    if !claimed.enabled {
        let outcome = Attempt::Failed {
            error: "the subscription is disabled".into(),
            next_attempt_at: None,
        };
        record(ctx, tenant, delivery_id, &claimed, now, None, &outcome).await?;
        return Ok(outcome);
    }

    let body = json!({
        "type": claimed.event_type,
        "timestamp": now.format(&time::format_description::well_known::Rfc3339)?,
        "data": claimed.payload,
    })
    .to_string();
    let (status_code, result) = match send(ctx, &claimed, delivery_id, &body, now, timeout).await {
        Ok(code) if (200..300).contains(&code) => (Some(code), Ok(code)),
        Ok(code) => (Some(code), Err(format!("the receiver answered {code}"))),
        Err(error) => (None, Err(error)),
    };
    let outcome = match result {
        Ok(code) => Attempt::Delivered { status_code: code },
        Err(error) => {
            let delay = settings
                .retry_schedule_secs
                .get(claimed.attempts as usize)
                .copied();
            Attempt::Failed {
                error,
                next_attempt_at: delay.map(|secs| now + Duration::from_secs(secs)),
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

/// Signs and posts the body. Errors name what happened, never the URL
/// (its path or query may hold a secret).
async fn send(
    ctx: &Infra,
    claimed: &Claimed,
    delivery_id: Uuid,
    body: &str,
    now: OffsetDateTime,
    timeout: Duration,
) -> Result<u16, String> {
    let url = target::check(&claimed.url, &ctx.settings.webhooks)
        .await
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
        .notifier
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
        .webhook_delivery_duration
        .with_label_values::<&str>(&[])
        .observe(started.elapsed().as_secs_f64());
    match response {
        Ok(response) => Ok(response.status().as_u16()),
        Err(err) if err.is_timeout() => Err("the receiver did not answer in time".into()),
        Err(err) if err.is_connect() => Err("the receiver could not be reached".into()),
        Err(_) => Err("the request failed".into()),
    }
}

/// Writes the attempt's outcome and the subscription's failure state.
async fn record(
    ctx: &Infra,
    tenant: TenantCtx,
    delivery_id: Uuid,
    claimed: &Claimed,
    now: OffsetDateTime,
    status_code: Option<u16>,
    outcome: &Attempt,
) -> anyhow::Result<()> {
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    let (status, error, next, delivered) = match outcome {
        Attempt::Delivered { .. } => ("succeeded", None, None, Some(now)),
        Attempt::Failed {
            error,
            next_attempt_at: Some(next),
        } => ("pending", Some(error.as_str()), Some(*next), None),
        Attempt::Failed { error, .. } => ("failed", Some(error.as_str()), None, None),
        Attempt::Skipped => return Ok(()),
    };
    // The attempt is over, so its hand-over stamp goes: the next one is due at
    // `next_attempt_at`. (The stamp only guards a hand-over whose message was
    // lost; kept, it held every retry back until it was a minute old.)
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, status_code = $4,
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
    .execute(observed("webhooks.record_attempt", &mut *tx))
    .await?;
    let outcome_label = match outcome {
        Attempt::Delivered { .. } => "delivered",
        Attempt::Failed {
            next_attempt_at: Some(_),
            ..
        } => "retried",
        _ => "failed",
    };
    ctx.metrics
        .webhook_deliveries
        .with_label_values(&[claimed.event_type.as_str(), outcome_label])
        .inc();
    track_failures(
        &mut tx,
        ctx,
        tenant,
        claimed.subscription_id,
        now,
        matches!(outcome, Attempt::Delivered { .. }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn track_failures(
    conn: &mut PgConnection,
    ctx: &Infra,
    tenant: TenantCtx,
    subscription_id: Uuid,
    now: OffsetDateTime,
    succeeded: bool,
) -> anyhow::Result<()> {
    if succeeded {
        sqlx::query("UPDATE webhook_subscriptions SET failing_since = NULL WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.id())
            .bind(subscription_id)
            .execute(observed("webhooks.clear_failing", conn))
            .await?;
        return Ok(());
    }
    let (enabled, failing_since): (bool, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT enabled, failing_since FROM webhook_subscriptions
         WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tenant.id())
    .bind(subscription_id)
    .fetch_one(observed("webhooks.lock_subscription", &mut *conn))
    .await?;
    let since = failing_since.unwrap_or(now);
    let limit = Duration::from_secs(ctx.settings.webhooks.disable_after_secs);
    let disable = enabled && now - since >= limit;
    let reason = disable.then(|| {
        format!(
            "Deliveries have failed without a success since {}; fix the receiver, then enable the subscription again",
            since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        )
    });
    sqlx::query(
        "UPDATE webhook_subscriptions SET failing_since = $3,
             enabled = enabled AND NOT $4, disabled_reason = COALESCE($5, disabled_reason)
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(subscription_id)
    .bind(since)
    .bind(disable)
    .bind(reason)
    .execute(observed("webhooks.track_failures", &mut *conn))
    .await?;
    if disable {
        ctx.metrics.webhook_subscriptions_disabled.inc();
        tracing::warn!(%subscription_id, "webhook subscription disabled after failing too long");
    }
    Ok(())
}
