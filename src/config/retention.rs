//! `[retention]`: how long each kind of growing record is kept, and how beat
//! purges them (`crate::retention`).

use garde::Validate;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Stock history, dropped a month (partition) at a time once the whole
    /// month is older than this.
    #[garde(range(min = 1))]
    pub stock_history_days: u32,
    /// Outbox events, counted from their publication (unpublished ones stay).
    #[garde(range(min = 1))]
    pub outbox_events_days: u32,
    /// Finished webhook deliveries, counted from their last attempt.
    #[garde(range(min = 1))]
    pub webhook_deliveries_days: u32,
    /// Finished Telegram deliveries, counted from their last attempt.
    #[garde(range(min = 1))]
    pub telegram_deliveries_days: u32,
    /// Finished sync jobs, counted from their end.
    #[garde(range(min = 1))]
    pub sync_jobs_days: u32,
    /// Sent or failed account emails, counted from their last attempt.
    #[garde(range(min = 1))]
    pub email_messages_days: u32,
    /// A deleted tenant is purged (with everything of it) this long after
    /// its deletion; its owner may restore it until then.
    #[garde(range(min = 1, max = 365))]
    pub tenant_deletion_grace_days: u32,
    /// An export's archive is downloadable this long after it is built.
    #[garde(range(min = 1, max = 720))]
    pub tenant_export_hours: u32,
    /// Audit events, counted from when they happened.
    #[garde(range(min = 1))]
    pub audit_events_days: u32,
    /// Refresh tokens past their expiry (kept so a stolen, spent one still
    /// trips reuse detection). Revocations go as soon as their token has
    /// expired, plus `auth.leeway_secs`.
    #[garde(range(min = 1))]
    pub expired_credentials_days: u32,
    /// Rows deleted per statement (and transaction).
    #[garde(range(min = 1, max = 100000))]
    pub batch_size: u32,
    /// Batches per kind in one run; what is left waits for the next run.
    #[garde(range(min = 1))]
    pub max_batches_per_run: u32,
    /// Monthly stock-history partitions created ahead of the current month.
    #[garde(range(min = 1, max = 24))]
    pub history_months_ahead: u32,
}
