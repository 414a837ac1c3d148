//! `[redis]`: the connection the rate limiter, the cache and revocation share.

use std::time::Duration;

use garde::Validate;
use secrecy::SecretString;
use serde::Deserialize;

use super::rules::secret_url_of;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// May hold a password: never logged.
    #[garde(custom(secret_url_of(&["redis", "rediss"])))]
    pub url: SecretString,
    /// Deployments sharing a Redis would collide without one.
    #[garde(length(min = 1))]
    pub key_prefix: String,
    /// Both timeouts above 0: a dead Redis would otherwise hang requests.
    #[garde(range(min = 1))]
    pub connect_timeout_ms: u64,
    #[garde(range(min = 1))]
    pub command_timeout_ms: u64,
}

impl RedisSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}
