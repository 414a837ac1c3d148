//! One delivery attempt, the same for every channel:
//!
//! 1. **Claim** the delivery: its `next_attempt_at` is pushed past the
//!    attempt's timeout (and a margin), so a duplicate task finds nothing to
//!    do and a dead worker's claim expires.
//! 2. **Send** it through its [`Channel`] (a disabled target is not sent to:
//!    the delivery fails at once).
//! 3. **Record** the outcome: success, or a retry after the next delay of
//!    `notifications.retry_schedule_secs` (or longer, if the receiver asked for
//!    longer), kept in `next_attempt_at` for beat — no long broker ETAs —
//!    until the schedule is exhausted. The hand-over stamp goes with it: the
//!    next hand-over is due at `next_attempt_at`.
//! 4. **Track** the target's failures: one that has failed without a success
//!    for `notifications.disable_after_secs` is disabled, with the reason.
//!
//! Every step takes the current time as an argument, so tests drive the
//! schedule with a clock of their own.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::TenantCtx;
use crate::broker::TaskQueue;
use crate::db::{self, observed};
use crate::infra::Infra;
use crate::telemetry::metrics::{MetricDef, Metrics};

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

/// Where a channel keeps its deliveries and targets, and the statement kinds
/// (metric labels) of the shared statements on them. Constants of each
/// channel: the only names the shared SQL is built from.
pub struct Tables {
    /// `webhook_deliveries`, `telegram_deliveries`.
    pub deliveries: &'static str,
    /// `webhook_subscriptions`, `telegram_chats`.
    pub targets: &'static str,
    /// The deliveries' column naming their target.
    pub target_column: &'static str,
    /// The target's columns a send needs, read with the claim: where to
    /// (a URL, a chat id) and the encrypted secret (signing key, bot token).
    pub address_column: &'static str,
    pub secret_column: &'static str,
    /// What a target is called in messages: `subscription`, `chat`.
    pub target_noun: &'static str,
    /// ... and in a 404: `Webhook subscription`, `Telegram chat`.
    pub target_title: &'static str,
    /// The event type of a test delivery: `webhook.test`, `telegram.test`.
    pub test_event: &'static str,
    pub find_kind: &'static str,
    pub match_kind: &'static str,
    pub insert_kind: &'static str,
    pub claim_kind: &'static str,
    pub record_kind: &'static str,
    pub lock_kind: &'static str,
    pub track_kind: &'static str,
    pub log_kind: &'static str,
    pub retry_kind: &'static str,
    pub test_kind: &'static str,
    /// The SQL function that takes the due deliveries (see the migrations).
    pub take_due_function: &'static str,
    pub take_due_kind: &'static str,
}

/// A claimed delivery: what every channel needs to send it.
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    pub target_id: Uuid,
    pub event_type: String,
    pub payload: Value,
    /// Attempts made before this one.
    pub attempts: i32,
    /// Whether the target is enabled.
    pub enabled: bool,
    /// Where the target receives ([`Tables::address_column`]).
    pub address: String,
    /// The target's encrypted secret ([`Tables::secret_column`]).
    pub secret_encrypted: String,
}

/// What a send did: the receiver's HTTP status when it answered, success or
/// an error that names what happened (never a URL or secret), and how long
/// the receiver asked to be left alone, if it did.
pub struct Sent {
    pub status_code: Option<u16>,
    pub result: Result<(), String>,
    pub retry_after_secs: Option<u64>,
}

impl Sent {
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            status_code: None,
            result: Err(error.into()),
            retry_after_secs: None,
        }
    }
}

/// A notification channel: its tables, how a delivery is sent, and its
/// counters.
pub trait Channel: Send + Sync {
    fn tables(&self) -> &'static Tables;

    /// Hands a due delivery to the workers (the channel's task).
    fn hand_over<'a>(
        &'a self,
        queue: &'a TaskQueue,
        tenant_id: Uuid,
        delivery_id: Uuid,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Sends one claimed delivery. `Err` only for what prevents trying
    /// (the database): the delivery stays claimed and is tried again later.
    fn send<'a>(
        &'a self,
        ctx: &'a Infra,
        tenant: TenantCtx,
        delivery_id: Uuid,
        claimed: &'a Claimed,
        now: OffsetDateTime,
        timeout: Duration,
    ) -> BoxFuture<'a, anyhow::Result<Sent>>;

    /// The channel's count of deliveries by event and outcome (`delivered`,
    /// `retried`, `failed`).
    fn deliveries_metric(&self) -> &'static MetricDef;

    /// Why a target failing since `since` was disabled, for its owner.
    fn disabled_reason(&self, since: OffsetDateTime) -> String;

    /// A target was just disabled.
    fn on_disabled(&self, _metrics: &Metrics, _target_id: Uuid) {}

    /// Registers the channel's families (at the worker's start).
    fn register_metrics(&self, metrics: &Metrics) {
        register_deliveries(metrics, self.deliveries_metric());
    }
}

/// Registers a delivery count with every known event and outcome, so ratios
/// and panels read 0 rather than "no data" before the first event.
pub fn register_deliveries(metrics: &Metrics, def: &MetricDef) {
    let deliveries = metrics.counter_vec(def);
    for event in super::events::EventType::ALL {
        for outcome in ["delivered", "retried", "failed"] {
            deliveries.with_label_values(&[event.as_str(), outcome]);
        }
    }
}

/// One attempt at `now` of a channel's delivery.
pub async fn attempt(
    ctx: &Infra,
    channel: &dyn Channel,
    tenant_id: Uuid,
    delivery_id: Uuid,
    now: OffsetDateTime,
) -> anyhow::Result<Attempt> {
    let tables = channel.tables();
    let settings = &ctx.settings.notifications;
    let tenant = TenantCtx::for_system_task(tenant_id);
    let timeout = Duration::from_millis(settings.timeout_ms);
    // The claim lasts the attempt's timeout and a margin.
    let lease = now + timeout + Duration::from_secs(30);
    let claimed: Option<Claimed> = {
        let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
        let claimed = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE {deliveries} d SET next_attempt_at = $4, updated_at = $3
             FROM {targets} t
             WHERE d.tenant_id = $1 AND d.id = $2 AND d.status = 'pending'
               AND d.next_attempt_at <= $3 AND t.id = d.{target}
             RETURNING d.{target} AS target_id, d.event_type, d.payload, d.attempts, t.enabled,
                       t.{address} AS address, t.{secret} AS secret_encrypted",
            deliveries = tables.deliveries,
            targets = tables.targets,
            target = tables.target_column,
            address = tables.address_column,
            secret = tables.secret_column,
        )))
        .bind(tenant.id())
        .bind(delivery_id)
        .bind(now)
        .bind(lease)
        .fetch_optional(observed(tables.claim_kind, &mut *tx))
        .await?;
        tx.commit().await?;
        claimed
    };
    let Some(claimed) = claimed else {
        return Ok(Attempt::Skipped);
    };
    let sent = if claimed.enabled {
        channel
            .send(ctx, tenant, delivery_id, &claimed, now, timeout)
            .await?
    } else {
        Sent::failed(format!("the {} is disabled", tables.target_noun))
    };
    let outcome = match sent.result {
        Ok(()) => Attempt::Delivered {
            status_code: sent.status_code.unwrap_or(200),
        },
        Err(error) => {
            let scheduled = settings
                .retry_schedule_secs
                .get(claimed.attempts as usize)
                .copied()
                .filter(|_| claimed.enabled);
            let asked = sent.retry_after_secs.unwrap_or(0);
            Attempt::Failed {
                error,
                next_attempt_at: scheduled.map(|secs| now + Duration::from_secs(secs.max(asked))),
            }
        }
    };
    record(
        ctx,
        channel,
        tenant,
        delivery_id,
        &claimed,
        now,
        sent.status_code,
        &outcome,
    )
    .await?;
    Ok(outcome)
}

/// Writes the attempt's outcome and the target's failure state.
#[allow(clippy::too_many_arguments)] // one attempt's facts, each used once
async fn record(
    ctx: &Infra,
    channel: &dyn Channel,
    tenant: TenantCtx,
    delivery_id: Uuid,
    claimed: &Claimed,
    now: OffsetDateTime,
    status_code: Option<u16>,
    outcome: &Attempt,
) -> anyhow::Result<()> {
    let tables = channel.tables();
    let (status, error, next, delivered) = match outcome {
        Attempt::Delivered { .. } => ("succeeded", None, None, Some(now)),
        Attempt::Failed {
            error,
            next_attempt_at: Some(next),
        } => ("pending", Some(error.as_str()), Some(*next), None),
        Attempt::Failed { error, .. } => ("failed", Some(error.as_str()), None, None),
        Attempt::Skipped => return Ok(()),
    };
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    // The attempt is over, so its hand-over stamp goes: the next one is due at
    // `next_attempt_at`. (The stamp only guards a hand-over whose message was
    // lost; kept, it held every retry back until it was a minute old.)
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET status = $3, attempts = attempts + 1, status_code = $4,
             error = $5, next_attempt_at = $6, delivered_at = $7, updated_at = $8,
             handed_over_at = NULL
         WHERE tenant_id = $1 AND id = $2",
        tables.deliveries
    )))
    .bind(tenant.id())
    .bind(delivery_id)
    .bind(status)
    .bind(status_code.map(i32::from))
    .bind(error)
    .bind(next)
    .bind(delivered)
    .bind(now)
    .execute(observed(tables.record_kind, &mut *tx))
    .await?;

    let (enabled, failing_since): (bool, Option<OffsetDateTime>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT enabled, failing_since FROM {} WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tables.targets
        )))
        .bind(tenant.id())
        .bind(claimed.target_id)
        .fetch_one(observed(tables.lock_kind, &mut *tx))
        .await?;
    let succeeded = matches!(outcome, Attempt::Delivered { .. });
    let since = (!succeeded).then(|| failing_since.unwrap_or(now));
    let limit = Duration::from_secs(ctx.settings.notifications.disable_after_secs);
    let disable = enabled && since.is_some_and(|since| now - since >= limit);
    let reason = since
        .filter(|_| disable)
        .map(|since| channel.disabled_reason(since));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET failing_since = $3, enabled = enabled AND NOT $4,
             disabled_reason = COALESCE($5, disabled_reason)
         WHERE tenant_id = $1 AND id = $2",
        tables.targets
    )))
    .bind(tenant.id())
    .bind(claimed.target_id)
    .bind(since)
    .bind(disable)
    .bind(reason)
    .execute(observed(tables.track_kind, &mut *tx))
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
        .counter_vec(channel.deliveries_metric())
        .with_label_values(&[claimed.event_type.as_str(), label])
        .inc();
    if disable {
        channel.on_disabled(&ctx.metrics, claimed.target_id);
    }
    Ok(())
}
