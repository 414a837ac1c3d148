//! `[webhooks]`: which receiver URLs subscriptions may name.

use garde::Validate;
use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Development only: accept `http://` webhook URLs.
    #[garde(skip)]
    pub allow_http: bool,
    /// Development only: accept hosts on private, loopback or link-local networks.
    #[garde(skip)]
    pub allow_private_networks: bool,
    /// Ports webhook URLs may use; empty: any (refused in production).
    #[serde(deserialize_with = "super::list_or_comma_separated")]
    #[garde(skip)]
    pub allowed_ports: Vec<u16>,
    // Keys that moved to `[notifications]`: read only to refuse them with
    // the new key's name (see [`WebhookSettings::check`]).
    #[serde(default)]
    #[garde(skip)]
    pub(crate) timeout_ms: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[garde(skip)]
    pub(crate) retry_schedule_secs: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[garde(skip)]
    pub(crate) disable_after_secs: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[garde(skip)]
    pub(crate) dispatch_interval_secs: Option<serde::de::IgnoredAny>,
}

impl WebhookSettings {
    /// The keys set here that now live in `[notifications]`.
    fn moved_keys(&self) -> impl Iterator<Item = &'static str> {
        [
            ("timeout_ms", self.timeout_ms.is_some()),
            ("retry_schedule_secs", self.retry_schedule_secs.is_some()),
            ("disable_after_secs", self.disable_after_secs.is_some()),
            (
                "dispatch_interval_secs",
                self.dispatch_interval_secs.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
    }

    pub(super) fn check(&self, production: bool) -> Result<(), ConfigError> {
        if let Some(key) = self.moved_keys().next() {
            return invalid(
                &format!("webhooks.{key}"),
                format!(
                    "has moved to `notifications.{key}` (shared by webhooks and Telegram); set that instead"
                ),
            );
        }
        if production && (self.allow_http || self.allow_private_networks) {
            return invalid(
                "webhooks.allow_private_networks",
                "must be false in production, like webhooks.allow_http (they open the service to SSRF)",
            );
        }
        if production && self.allowed_ports.is_empty() {
            return invalid(
                "webhooks.allowed_ports",
                "must name the ports webhook URLs may use in production (e.g. [443, 8443]); an empty list allows any",
            );
        }
        Ok(())
    }
}
