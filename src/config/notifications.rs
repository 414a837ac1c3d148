//! `[notifications]`: what the webhook and Telegram channels share.

use garde::Validate;
use serde::Deserialize;

use super::list_or_comma_separated;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// Each delivery attempt gives up after this long.
    #[garde(skip)]
    pub timeout_ms: u64,
    /// Delay before each retry, in seconds; after the last, the delivery fails.
    #[serde(deserialize_with = "list_or_comma_separated")]
    #[garde(skip)]
    pub retry_schedule_secs: Vec<u64>,
    /// A subscription or chat whose deliveries have failed for this long is disabled.
    #[garde(skip)]
    pub disable_after_secs: u64,
    /// How often beat turns new events into deliveries and re-sends due ones.
    #[garde(skip)]
    pub dispatch_interval_secs: u64,
    /// Notification targets one tenant may have, by tier.
    #[garde(dive)]
    pub max_targets: TargetCapsByTier,
}

/// Webhook subscriptions and Telegram chats one tenant may have.
#[derive(Debug, Clone, Copy, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct TargetCaps {
    #[garde(range(min = 1))]
    pub webhook_subscriptions: u32,
    #[garde(range(min = 1))]
    pub telegram_chats: u32,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct TargetCapsByTier {
    #[garde(dive)]
    pub free: TargetCaps,
    #[garde(dive)]
    pub premium: TargetCaps,
    #[garde(dive)]
    pub enterprise: TargetCaps,
    #[garde(dive)]
    pub internal: TargetCaps,
}
