//! Retention, run by beat every `beat.purge_interval_secs`: keeps the stock
//! history's monthly partitions created ahead and drops those past
//! `retention.stock_history_days`, and deletes the other kinds' old rows —
//! outbox events, finished deliveries and sync jobs, expired credentials —
//! in batches of `retention.batch_size`, each its own short transaction, at
//! most `retention.max_batches_per_run` per kind (the rest waits for the next
//! run). The SQL side is `retention_purge` and the `stock_history_*`
//! functions (migration 0010): index-driven, across tenants.
//!
//! Every step takes the current time as an argument, so tests drive it with
//! a clock of their own.

use std::time::Duration;

use prometheus::IntCounterVec;
use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgRow};
use time::OffsetDateTime;

use crate::config::Settings;
use crate::db::{Database, observed};
use crate::telemetry::metrics::{MetricDef, Metrics};

use super::leadership::{Fence, NoLongerLeading};

pub const ROWS_PURGED: MetricDef = MetricDef::counter(
    "stock_tracker_retention_rows_purged_total",
    "Rows deleted by retention, by kind: stock_history, outbox_events, webhook_deliveries, telegram_deliveries, sync_jobs, revoked_sessions, refresh_tokens, email_messages, account_tokens, invitations, audit_events, tenant_exports, deleted_tenants",
    &["kind"],
);

pub const METRICS: &[MetricDef] = &[ROWS_PURGED];

/// The kinds `retention_purge` deletes by rows, and the kind that goes by
/// partition.
pub const ROW_KINDS: &[&str] = &[
    "outbox_events",
    "webhook_deliveries",
    "telegram_deliveries",
    "sync_jobs",
    "revoked_sessions",
    "refresh_tokens",
    "email_messages",
    "account_tokens",
    "invitations",
    "audit_events",
    "tenant_exports",
    "deleted_tenants",
];
pub const STOCK_HISTORY: &str = "stock_history";

/// Rows removed per kind in one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub purged: Vec<(&'static str, u64)>,
    pub partitions_created: i32,
}

impl Report {
    pub fn total(&self) -> u64 {
        self.purged.iter().map(|(_, n)| n).sum()
    }

    pub fn of(&self, kind: &str) -> u64 {
        self.purged
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

/// The purge counter, every kind present from the start (so `increase()`
/// sees the first purge).
pub fn register(metrics: &Metrics) -> IntCounterVec {
    let counter = metrics.counter_vec(&ROWS_PURGED);
    for kind in ROW_KINDS.iter().chain([&STOCK_HISTORY]) {
        counter.with_label_values(&[kind]);
    }
    counter
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// The oldest instant each row kind keeps, at `now`.
fn cutoffs(settings: &Settings, now: OffsetDateTime) -> [(&'static str, OffsetDateTime); 12] {
    let retention = &settings.retention;
    [
        ("outbox_events", now - days(retention.outbox_events_days)),
        (
            "webhook_deliveries",
            now - days(retention.webhook_deliveries_days),
        ),
        (
            "telegram_deliveries",
            now - days(retention.telegram_deliveries_days),
        ),
        ("sync_jobs", now - days(retention.sync_jobs_days)),
        (
            "revoked_sessions",
            now - Duration::from_secs(settings.auth.leeway_secs),
        ),
        (
            "refresh_tokens",
            now - days(retention.expired_credentials_days),
        ),
        ("email_messages", now - days(retention.email_messages_days)),
        (
            "account_tokens",
            now - days(retention.expired_credentials_days),
        ),
        (
            "invitations",
            now - days(retention.expired_credentials_days),
        ),
        ("audit_events", now - days(retention.audit_events_days)),
        // Both go by their own expiry: what is past it goes now.
        ("tenant_exports", now),
        ("deleted_tenants", now),
    ]
}

/// One run at `now`. A kind that fails is logged and skipped; the others
/// still run. With a `fence` (beat's), every statement first checks that
/// this beat still leads, and the run stops once it does not.
pub async fn run(
    db: &Database,
    settings: &Settings,
    purged: &IntCounterVec,
    now: OffsetDateTime,
    fence: Option<Fence>,
) -> anyhow::Result<Report> {
    let retention = &settings.retention;
    let mut report = Report::default();
    // Months ahead first: inserts must always find their partition.
    let ahead = now + days(31 * retention.history_months_ahead);
    report.partitions_created = one(
        db,
        fence,
        "retention.add_partitions",
        sqlx::query_scalar("SELECT stock_history_add_partitions($1, $2)")
            .bind(now)
            .bind(ahead),
    )
    .await?;
    let batch = retention.batch_size as i32;
    let history: i64 = one(
        db,
        fence,
        "retention.drop_partitions",
        sqlx::query_scalar("SELECT stock_history_drop_partitions($1, $2)")
            .bind(now - days(retention.stock_history_days))
            .bind(batch),
    )
    .await?;
    record(&mut report, purged, STOCK_HISTORY, history as u64);

    for (kind, before) in cutoffs(settings, now) {
        let mut removed = 0u64;
        for _ in 0..retention.max_batches_per_run {
            let query = sqlx::query_scalar("SELECT retention_purge($1, $2, $3)")
                .bind(kind)
                .bind(before)
                .bind(batch);
            let deleted: i64 = match one(db, fence, "retention.purge", query).await {
                Ok(deleted) => deleted,
                Err(err) if err.is::<NoLongerLeading>() => return Err(err),
                Err(err) => {
                    tracing::warn!(kind, error = %format!("{err:#}"), "retention could not purge");
                    break;
                }
            };
            removed += deleted as u64;
            if deleted < i64::from(batch) {
                break;
            }
        }
        record(&mut report, purged, kind, removed);
    }
    Ok(report)
}

fn record(report: &mut Report, purged: &IntCounterVec, kind: &'static str, removed: u64) {
    purged.with_label_values(&[kind]).inc_by(removed);
    report.purged.push((kind, removed));
}

/// One statement in its own transaction (as beat's role, no tenant).
async fn one<'q, T>(
    db: &Database,
    fence: Option<Fence>,
    kind: &'static str,
    query: sqlx::query::QueryScalar<'q, Postgres, T, PgArguments>,
) -> anyhow::Result<T>
where
    T: Send + Unpin,
    (T,): for<'r> sqlx::FromRow<'r, PgRow>,
{
    let mut tx = db.begin().await?;
    if let Some(fence) = fence {
        fence.check(&mut tx).await?;
    }
    let value = query.fetch_one(observed(kind, &mut *tx)).await?;
    tx.commit().await?;
    Ok(value)
}
